/* gst-vae tools: 8-bit RGB PNG reading and writing (libpng).
 *
 * Reading accepts any PNG (palette, grey, grey+alpha, RGB, RGBA, 1 to 16
 * bits, interlaced) and returns tightly packed 8-bit RGB: palettes and grey
 * are expanded, 16-bit samples are reduced to 8 bits and alpha is dropped
 * (not composited).  Every failure is a GError in VAE_ERROR that names the
 * file. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

/* Largest width or height accepted on read. */
#define VAE_PNG_MAX_SIDE 32768

/* *RGB: WIDTH * HEIGHT * 3 bytes, rows packed (stride WIDTH * 3); free with
 * g_free. */
gboolean vae_png_read_rgb8 (const char *path, guint8 **rgb, int *width,
                            int *height, GError **error);

/* Writes 8-bit RGB (rows STRIDE bytes apart) to PATH; on failure no partial
 * file is left behind. */
gboolean vae_png_write_rgb8 (const char *path, const guint8 *rgb, int width,
                             int height, int stride, GError **error);

G_END_DECLS
