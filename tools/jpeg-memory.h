/* gst-vae: JPEG images in memory (libjpeg), 8-bit RGB, for vae-server's
 * JPEG request bodies and image_format=jpg replies. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

/* The quality of replies: what PIL's Image.save gives by default is 75 (with
 * 4:2:0 chroma); a VAE server's output is worth more: 90, with 4:4:4. */
#define VAE_JPEG_QUALITY 90

/* DATA (LEN bytes) to interleaved RGB (g_free); greyscale and YCbCr
 * (any subsampling) are converted.  FALSE with *ERR (g_free) on failure or
 * when a side is over MAX_SIDE. */
gboolean vae_jpeg_decode (const guint8 *data, gsize len, int max_side, guint8 **rgb,
                          int *width, int *height, char **err);
/* Interleaved RGB of WIDTH x HEIGHT (stride WIDTH * 3) to a baseline JPEG
 * (YCbCr 4:4:4) of QUALITY (1..100); NULL on failure. */
GBytes *vae_jpeg_encode (const guint8 *rgb, int width, int height, int quality);

G_END_DECLS
