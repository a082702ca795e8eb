/* gst-vae: JPEG images in memory (libjpeg), 8-bit RGB, for vae-server's
 * JPEG request bodies and image_format=jpg replies. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

/* The quality of replies: what PIL's Image.save gives by default is 75 (with
 * 4:2:0 chroma); a VAE server's output is worth more: 90, with 4:4:4. */
#define VAE_JPEG_QUALITY 90

/* The width and height in DATA's frame header (LEN bytes), read without
 * decoding, so that a caller can refuse a frame too large before anything
 * of its size is allocated.  FALSE with *ERR (g_free) when DATA is not a
 * readable JPEG. */
gboolean vae_jpeg_read_size (const guint8 *data, gsize len, int *width, int *height,
                             char **err);
/* DATA (LEN bytes) to interleaved RGB (free with vae_free); greyscale and
 * YCbCr (any subsampling) are converted.  FALSE with ERROR set on failure:
 * VAE_ERROR_NO_MEMORY when the pixels or libjpeg's buffers cannot be
 * allocated, VAE_ERROR_FORMAT for a bad JPEG or a side over MAX_SIDE. */
gboolean vae_jpeg_decode (const guint8 *data, gsize len, int max_side, guint8 **rgb,
                          int *width, int *height, GError **error);
/* Interleaved RGB of WIDTH x HEIGHT (stride WIDTH * 3) to a baseline JPEG
 * (YCbCr 4:4:4) of QUALITY (1..100); NULL with ERROR set on failure
 * (VAE_ERROR_NO_MEMORY when it does not fit in memory). */
GBytes *vae_jpeg_encode (const guint8 *rgb, int width, int height, int quality,
                         GError **error);

G_END_DECLS
