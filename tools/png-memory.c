/* gst-vae: PNG images in memory; see png-memory.h. */
#include "png-memory.h"
#include <png.h>
#include <string.h>

gboolean
vae_png_decode (const guint8 *data, gsize len, int max_side, guint8 **rgb, int *width,
                int *height, char **err)
{
  png_image img;
  memset (&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory (&img, data, len)) {
    *err = g_strdup_printf ("cannot read the PNG body: %s", img.message);
    return FALSE;
  }
  if (img.width < 1 || img.height < 1 || img.width > (guint) max_side
      || img.height > (guint) max_side) {
    *err = g_strdup_printf ("PNG of %ux%u is empty or larger than %d pixels a side",
                            img.width, img.height, max_side);
    png_image_free (&img);
    return FALSE;
  }
  img.format = PNG_FORMAT_RGB;
  guint8 *buf = g_try_malloc (PNG_IMAGE_SIZE (img));
  if (!buf) {
    png_image_free (&img);
    *err = g_strdup ("out of memory for the PNG body");
    return FALSE;
  }
  if (!png_image_finish_read (&img, NULL, buf, 0, NULL)) {
    *err = g_strdup_printf ("cannot read the PNG body: %s", img.message);
    png_image_free (&img);
    g_free (buf);
    return FALSE;
  }
  *rgb = buf;
  *width = (int) img.width;
  *height = (int) img.height;
  return TRUE;
}

GBytes *
vae_png_encode (const guint8 *rgb, int width, int height)
{
  png_image img;
  memset (&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = (png_uint_32) width;
  img.height = (png_uint_32) height;
  img.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (!png_image_write_get_memory_size (img, size, 0, rgb, width * 3, NULL))
    return NULL;
  /* As large as the frame: NULL rather than an abort when it does not fit. */
  void *buf = g_try_malloc (size);
  if (!buf)
    return NULL;
  if (!png_image_write_to_memory (&img, buf, &size, 0, rgb, width * 3, NULL)) {
    g_free (buf);
    return NULL;
  }
  return g_bytes_new_take (buf, size);
}
