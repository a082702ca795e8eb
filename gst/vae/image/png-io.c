/* gst-vae tools: 8-bit RGB PNG reading and writing over libpng's
 * setjmp-based API. */
#include "png-io.h"
#include "vae-error.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <string.h>
#include <glib/gstdio.h>

/* Largest image accepted on read, in pixels (about 800 MB as RGB). */
#define VAE_PNG_MAX_PIXELS ((guint64) 1 << 28)

typedef struct {
  char message[256];
} PngErrorState;

static void
on_png_error (png_structp png, png_const_charp message)
{
  PngErrorState *state = png_get_error_ptr (png);
  g_strlcpy (state->message, message ? message : "unknown libpng error",
             sizeof state->message);
  png_longjmp (png, 1);
}

static void
on_png_warning (png_structp png, png_const_charp message)
{
  /* Warnings (unknown chunks, bad ancillary CRCs, ...) do not stop us. */
}

gboolean
vae_png_read_rgb8 (const char *path, guint8 **rgb, int *width, int *height,
                   GError **error)
{
  PngErrorState state = { "" };
  png_structp png = NULL;
  png_infop info = NULL;
  guint8 *volatile pixels = NULL;
  png_bytep *volatile rows = NULL;
  guint8 sig[8];

  g_return_val_if_fail (path && rgb && width && height, FALSE);
  *rgb = NULL;

  FILE *fp = g_fopen (path, "rb");
  if (!fp) {
    int saved = errno;
    g_set_error (error, VAE_ERROR, VAE_ERROR_IO, "%s: cannot open: %s", path,
                 g_strerror (saved));
    return FALSE;
  }
  size_t got = fread (sig, 1, sizeof sig, fp);
  if (got != sizeof sig || png_sig_cmp (sig, 0, sizeof sig) != 0) {
    fclose (fp);
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: not a PNG file (bad signature)", path);
    return FALSE;
  }

  png = png_create_read_struct (PNG_LIBPNG_VER_STRING, &state, on_png_error,
                                on_png_warning);
  if (png)
    info = png_create_info_struct (png);
  if (!png || !info) {
    png_destroy_read_struct (&png, &info, NULL);
    fclose (fp);
    g_set_error (error, VAE_ERROR, VAE_ERROR_IO,
                 "%s: cannot set up libpng (out of memory)", path);
    return FALSE;
  }

  if (setjmp (png_jmpbuf (png))) {
    png_destroy_read_struct (&png, &info, NULL);
    fclose (fp);
    g_free (pixels);
    g_free (rows);
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "%s: invalid PNG: %s",
                 path, state.message);
    return FALSE;
  }

  png_init_io (png, fp);
  png_set_sig_bytes (png, sizeof sig);
  png_set_user_limits (png, VAE_PNG_MAX_SIDE, VAE_PNG_MAX_SIDE);
  png_read_info (png, info);

  png_uint_32 w = png_get_image_width (png, info);
  png_uint_32 h = png_get_image_height (png, info);
  int bit_depth = png_get_bit_depth (png, info);
  int color_type = png_get_color_type (png, info);

  if ((guint64) w * h > VAE_PNG_MAX_PIXELS) {
    g_snprintf (state.message, sizeof state.message,
                "image of %ux%u pixels is too large", (unsigned) w, (unsigned) h);
    png_longjmp (png, 1);
  }

  /* Everything to 8-bit RGB.  tRNS is not expanded, so palette and grey
   * images with transparency come out opaque, as do alpha images. */
  if (color_type == PNG_COLOR_TYPE_PALETTE)
    png_set_palette_to_rgb (png);
  if ((color_type & ~PNG_COLOR_MASK_ALPHA) == PNG_COLOR_TYPE_GRAY && bit_depth < 8)
    png_set_expand_gray_1_2_4_to_8 (png);
  if (bit_depth == 16)
    png_set_scale_16 (png);
  if (color_type & PNG_COLOR_MASK_ALPHA)
    png_set_strip_alpha (png);
  if ((color_type & ~PNG_COLOR_MASK_ALPHA) == PNG_COLOR_TYPE_GRAY)
    png_set_gray_to_rgb (png);
  png_set_interlace_handling (png);
  png_read_update_info (png, info);

  gsize row_bytes = png_get_rowbytes (png, info);
  if (row_bytes != (gsize) w * 3 || png_get_bit_depth (png, info) != 8
      || png_get_channels (png, info) != 3) {
    g_snprintf (state.message, sizeof state.message,
                "unexpected row layout after conversion (%zu bytes, %d channels)",
                (size_t) row_bytes, (int) png_get_channels (png, info));
    png_longjmp (png, 1);
  }

  pixels = g_try_malloc ((gsize) h * row_bytes);
  rows = g_try_new (png_bytep, h);
  if (!pixels || !rows) {
    g_strlcpy (state.message, "out of memory", sizeof state.message);
    png_longjmp (png, 1);
  }
  for (png_uint_32 y = 0; y < h; y++)
    rows[y] = pixels + (gsize) y * row_bytes;
  png_read_image (png, rows);
  png_read_end (png, NULL);

  png_destroy_read_struct (&png, &info, NULL);
  fclose (fp);
  g_free (rows);

  *rgb = pixels;
  *width = (int) w;
  *height = (int) h;
  return TRUE;
}

gboolean
vae_png_write_rgb8 (const char *path, const guint8 *rgb, int width, int height,
                    int stride, GError **error)
{
  PngErrorState state = { "" };
  png_structp png = NULL;
  png_infop info = NULL;

  g_return_val_if_fail (path && rgb, FALSE);
  if (width < 1 || height < 1 || width > 0x7fffffff / 3 || stride < width * 3) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "%s: cannot write a %dx%d image with row stride %d", path,
                 width, height, stride);
    return FALSE;
  }

  png_bytep *rows = g_try_new (png_bytep, height);
  if (!rows) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_IO, "%s: out of memory", path);
    return FALSE;
  }
  for (int y = 0; y < height; y++)
    rows[y] = (png_bytep) (rgb + (gsize) y * stride);

  FILE *fp = g_fopen (path, "wb");
  if (!fp) {
    int saved = errno;
    g_free (rows);
    g_set_error (error, VAE_ERROR, VAE_ERROR_IO, "%s: cannot create: %s",
                 path, g_strerror (saved));
    return FALSE;
  }

  png = png_create_write_struct (PNG_LIBPNG_VER_STRING, &state, on_png_error,
                                 on_png_warning);
  if (png)
    info = png_create_info_struct (png);
  if (!png || !info) {
    png_destroy_write_struct (&png, &info);
    fclose (fp);
    g_unlink (path);
    g_free (rows);
    g_set_error (error, VAE_ERROR, VAE_ERROR_IO,
                 "%s: cannot set up libpng (out of memory)", path);
    return FALSE;
  }

  if (setjmp (png_jmpbuf (png))) {
    png_destroy_write_struct (&png, &info);
    fclose (fp);
    g_unlink (path);
    g_free (rows);
    g_set_error (error, VAE_ERROR, VAE_ERROR_IO, "%s: cannot write PNG: %s",
                 path, state.message);
    return FALSE;
  }

  png_init_io (png, fp);
  png_set_IHDR (png, info, (png_uint_32) width, (png_uint_32) height, 8,
                PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info (png, info);
  png_write_image (png, rows);
  png_write_end (png, NULL);
  png_destroy_write_struct (&png, &info);
  g_free (rows);

  if (fflush (fp) != 0 || ferror (fp)) {
    int saved = errno;
    fclose (fp);
    g_unlink (path);
    g_set_error (error, VAE_ERROR, VAE_ERROR_IO, "%s: cannot write: %s", path,
                 g_strerror (saved));
    return FALSE;
  }
  if (fclose (fp) != 0) {
    int saved = errno;
    g_unlink (path);
    g_set_error (error, VAE_ERROR, VAE_ERROR_IO, "%s: cannot write: %s", path,
                 g_strerror (saved));
    return FALSE;
  }
  return TRUE;
}
