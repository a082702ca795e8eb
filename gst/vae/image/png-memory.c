/* gst-vae: PNG images in memory; see png-memory.h.
 *
 * The buffers whose size follows from the image (pixels, the encoded file)
 * are allocated with the fallible helpers of vae-error.h: an image too
 * large for memory is an error for the caller to report, not an abort. */
#include "png-memory.h"
#include "vae-error.h"
#include <png.h>
#include <string.h>

gboolean
vae_png_read_size (const guint8 *data, gsize len, int *width, int *height, char **err)
{
  png_image img;
  memset (&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  /* Reads the signature and IHDR only. */
  if (!png_image_begin_read_from_memory (&img, data, len)) {
    *err = g_strdup_printf ("cannot read the PNG body: %s", img.message);
    return FALSE;
  }
  /* libpng limits a side to 2^31 - 1 (PNG_UINT_31_MAX), so an int holds it. */
  *width = (int) MIN (img.width, (png_uint_32) G_MAXINT);
  *height = (int) MIN (img.height, (png_uint_32) G_MAXINT);
  png_image_free (&img);
  return TRUE;
}

gboolean
vae_png_decode (const guint8 *data, gsize len, int max_side, guint8 **rgb, int *width,
                int *height, GError **error)
{
  png_image img;
  memset (&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory (&img, data, len)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "cannot read the PNG body: %s",
                 img.message);
    return FALSE;
  }
  if (img.width < 1 || img.height < 1 || img.width > (guint) max_side
      || img.height > (guint) max_side) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "PNG of %ux%u is empty or larger than %d pixels a side", img.width,
                 img.height, max_side);
    png_image_free (&img);
    return FALSE;
  }
  img.format = PNG_FORMAT_RGB;
  g_autofree char *what = g_strdup_printf ("the pixels of a %ux%u PNG", img.width,
                                           img.height);
  guint8 *buf = vae_try_alloc0 ((gsize) img.height, (gsize) img.width * 3, what, error);
  if (!buf) {
    png_image_free (&img);
    return FALSE;
  }
  if (!png_image_finish_read (&img, NULL, buf, 0, NULL)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "cannot read the PNG body: %s",
                 img.message);
    png_image_free (&img);
    vae_free (buf);
    return FALSE;
  }
  *rgb = buf;
  *width = (int) img.width;
  *height = (int) img.height;
  return TRUE;
}

GBytes *
vae_png_encode_full (const guint8 *rgb, int width, int height, GError **error)
{
  png_image img;
  memset (&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = (png_uint_32) width;
  img.height = (png_uint_32) height;
  img.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  /* A first pass compresses without output, to learn the file's size. */
  if (!png_image_write_get_memory_size (img, size, 0, rgb, width * 3, NULL)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "cannot write a PNG: %s",
                 img.message);
    return NULL;
  }
  void *buf = vae_try_alloc0 (1, size, "a PNG reply", error);
  if (!buf)
    return NULL;
  if (!png_image_write_to_memory (&img, buf, &size, 0, rgb, width * 3, NULL)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "cannot write a PNG: %s",
                 img.message);
    vae_free (buf);
    return NULL;
  }
  return g_bytes_new_take (buf, size);
}

GBytes *
vae_png_encode (const guint8 *rgb, int width, int height)
{
  return vae_png_encode_full (rgb, width, height, NULL);
}
