/* gst-vae: JPEG images in memory; see jpeg-memory.h.
 *
 * libjpeg reports errors through error_exit, which must not return: it
 * longjmps back to the call, with the message kept for the caller.  libjpeg
 * allocates its own buffers (progressive coefficients, the output file)
 * with malloc and reports a failure as JERR_OUT_OF_MEMORY, which comes back
 * as VAE_ERROR_NO_MEMORY; the pixels are allocated here, fallibly. */
#include "jpeg-memory.h"
#include "vae-error.h"
#include <setjmp.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

typedef struct {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
} ErrorMgr;

static void
on_error_exit (j_common_ptr cinfo)
{
  ErrorMgr *e = (ErrorMgr *) cinfo->err;
  e->pub.format_message (cinfo, e->message);
  longjmp (e->jump, 1);
}

/* Warnings (e.g. a truncated file) are not errors for libjpeg; the data is
 * still decoded, so they are not reported. */
static void
on_output_message (j_common_ptr cinfo)
{
  (void) cinfo;
}

static void
error_mgr_init (ErrorMgr *e)
{
  jpeg_std_error (&e->pub);
  e->pub.error_exit = on_error_exit;
  e->pub.output_message = on_output_message;
  e->message[0] = '\0';
}

/* The GError for a libjpeg error that longjmp'd back (WHAT: "read" or
 * "write"). */
static void
set_jpeg_error (const ErrorMgr *e, const char *what, GError **error)
{
  const gboolean oom = e->pub.msg_code == JERR_OUT_OF_MEMORY;
  g_set_error (error, VAE_ERROR, oom ? VAE_ERROR_NO_MEMORY : VAE_ERROR_FORMAT,
               "%scannot %s the JPEG body: %s", oom ? "out of memory: " : "", what,
               e->message);
}

gboolean
vae_jpeg_read_size (const guint8 *data, gsize len, int *width, int *height, char **err)
{
  struct jpeg_decompress_struct cinfo;
  ErrorMgr jerr;

  memset (&cinfo, 0, sizeof cinfo);
  error_mgr_init (&jerr);
  cinfo.err = &jerr.pub;
  if (setjmp (jerr.jump)) {
    *err = g_strdup_printf ("cannot read the JPEG body: %s", jerr.message);
    jpeg_destroy_decompress (&cinfo);
    return FALSE;
  }
  jpeg_create_decompress (&cinfo);
  jpeg_mem_src (&cinfo, data, (unsigned long) len);
  /* Up to the start of the scan: the frame header, no pixels. */
  jpeg_read_header (&cinfo, TRUE);
  /* JPEG sides are 16-bit. */
  *width = (int) cinfo.image_width;
  *height = (int) cinfo.image_height;
  jpeg_destroy_decompress (&cinfo);
  return TRUE;
}

gboolean
vae_jpeg_decode (const guint8 *data, gsize len, int max_side, guint8 **rgb, int *width,
                 int *height, GError **error)
{
  struct jpeg_decompress_struct cinfo;
  ErrorMgr jerr;
  /* volatile: set between setjmp and a longjmp back to it. */
  guint8 *volatile buf = NULL;

  memset (&cinfo, 0, sizeof cinfo);
  error_mgr_init (&jerr);
  cinfo.err = &jerr.pub;
  if (setjmp (jerr.jump)) {
    set_jpeg_error (&jerr, "read", error);
    jpeg_destroy_decompress (&cinfo);
    vae_free (buf);
    return FALSE;
  }
  jpeg_create_decompress (&cinfo);
  jpeg_mem_src (&cinfo, data, (unsigned long) len);
  jpeg_read_header (&cinfo, TRUE);
  if (cinfo.image_width < 1 || cinfo.image_height < 1
      || cinfo.image_width > (JDIMENSION) max_side || cinfo.image_height > (JDIMENSION) max_side) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "JPEG of %ux%u is empty or larger than %d pixels a side",
                 cinfo.image_width, cinfo.image_height, max_side);
    jpeg_destroy_decompress (&cinfo);
    return FALSE;
  }
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress (&cinfo);
  const gsize stride = (gsize) cinfo.output_width * 3;
  g_autofree char *what = g_strdup_printf ("the pixels of a %ux%u JPEG",
                                           cinfo.output_width, cinfo.output_height);
  buf = vae_try_alloc0 (cinfo.output_height, stride, what, error);
  if (!buf) {
    jpeg_destroy_decompress (&cinfo);
    return FALSE;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = buf + stride * cinfo.output_scanline;
    jpeg_read_scanlines (&cinfo, &row, 1);
  }
  jpeg_finish_decompress (&cinfo);
  *width = (int) cinfo.output_width;
  *height = (int) cinfo.output_height;
  jpeg_destroy_decompress (&cinfo);
  *rgb = buf;
  return TRUE;
}

GBytes *
vae_jpeg_encode (const guint8 *rgb, int width, int height, int quality, GError **error)
{
  struct jpeg_compress_struct cinfo;
  ErrorMgr jerr;
  unsigned char *volatile out = NULL;
  unsigned long out_size = 0;

  memset (&cinfo, 0, sizeof cinfo);
  error_mgr_init (&jerr);
  cinfo.err = &jerr.pub;
  if (setjmp (jerr.jump)) {
    set_jpeg_error (&jerr, "write", error);
    jpeg_destroy_compress (&cinfo);
    free (out);
    return NULL;
  }
  jpeg_create_compress (&cinfo);
  /* libjpeg allocates OUT with malloc and grows it as needed. */
  jpeg_mem_dest (&cinfo, (unsigned char **) &out, &out_size);
  cinfo.image_width = (JDIMENSION) width;
  cinfo.image_height = (JDIMENSION) height;
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults (&cinfo);
  jpeg_set_quality (&cinfo, quality, TRUE);
  /* Full-resolution chroma (4:4:4): a decoder's pixels then do not depend
   * on how it upsamples chroma, and colour edges stay sharp. */
  cinfo.comp_info[0].h_samp_factor = 1;
  cinfo.comp_info[0].v_samp_factor = 1;
  jpeg_start_compress (&cinfo, TRUE);
  const gsize stride = (gsize) width * 3;
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = (JSAMPROW) (rgb + stride * cinfo.next_scanline);
    jpeg_write_scanlines (&cinfo, &row, 1);
  }
  jpeg_finish_compress (&cinfo);
  jpeg_destroy_compress (&cinfo);
  /* Handed over as it is: a copy would be a second, infallible allocation
   * of the file's size. */
  return g_bytes_new_with_free_func (out, out_size, free, out);
}
