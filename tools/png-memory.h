/* gst-vae: PNG images in memory (libpng's simplified API), 8-bit RGB.
 * Shared by vae-server (request and reply bodies) and the remote engine
 * (remote-input=png). */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

/* DATA (LEN bytes) to interleaved RGB (g_free); any PNG colour type is
 * converted, alpha dropped.  FALSE with *ERR (g_free) on failure or when a
 * side is 0 or over MAX_SIDE. */
gboolean vae_png_decode (const guint8 *data, gsize len, int max_side, guint8 **rgb,
                         int *width, int *height, char **err);
/* Interleaved RGB of WIDTH x HEIGHT (row stride WIDTH * 3) to a PNG file's
 * bytes; NULL on failure. */
GBytes *vae_png_encode (const guint8 *rgb, int width, int height);

G_END_DECLS
