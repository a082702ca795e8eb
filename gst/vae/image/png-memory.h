/* gst-vae: PNG images in memory (libpng's simplified API), 8-bit RGB.
 * Shared by vae-server (request and reply bodies) and the remote engine
 * (remote-input=png). */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

/* The width and height in DATA's header (LEN bytes), read without decoding
 * the image, so that a caller can refuse a frame too large before anything
 * of its size is allocated.  FALSE with *ERR (g_free) when DATA is not a
 * readable PNG. */
gboolean vae_png_read_size (const guint8 *data, gsize len, int *width, int *height,
                            char **err);
/* DATA (LEN bytes) to interleaved RGB (free with vae_free); any PNG colour
 * type is converted, alpha dropped.  FALSE with ERROR set on failure:
 * VAE_ERROR_NO_MEMORY when the pixels cannot be allocated, VAE_ERROR_FORMAT
 * when DATA is not a PNG or a side is 0 or over MAX_SIDE. */
gboolean vae_png_decode (const guint8 *data, gsize len, int max_side, guint8 **rgb,
                         int *width, int *height, GError **error);
/* Interleaved RGB of WIDTH x HEIGHT (row stride WIDTH * 3) to a PNG file's
 * bytes; NULL with ERROR set on failure (VAE_ERROR_NO_MEMORY when the file
 * does not fit in memory). */
GBytes *vae_png_encode_full (const guint8 *rgb, int width, int height, GError **error);
/* vae_png_encode_full without the reason: NULL on failure. */
GBytes *vae_png_encode (const guint8 *rgb, int width, int height);

G_END_DECLS
