/* gst-vae: JPEG images in memory; see jpeg-memory.h.
 *
 * libjpeg reports errors through error_exit, which must not return: it
 * longjmps back to the call, with the message kept for the caller. */
#include "jpeg-memory.h"
#include <setjmp.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <jpeglib.h>

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

gboolean
vae_jpeg_decode (const guint8 *data, gsize len, int max_side, guint8 **rgb, int *width,
                 int *height, char **err)
{
  struct jpeg_decompress_struct cinfo;
  ErrorMgr jerr;
  /* volatile: set between setjmp and a longjmp back to it. */
  guint8 *volatile buf = NULL;

  memset (&cinfo, 0, sizeof cinfo);
  cinfo.err = jpeg_std_error (&jerr.pub);
  jerr.pub.error_exit = on_error_exit;
  jerr.pub.output_message = on_output_message;
  if (setjmp (jerr.jump)) {
    *err = g_strdup_printf ("cannot read the JPEG body: %s", jerr.message);
    jpeg_destroy_decompress (&cinfo);
    g_free (buf);
    return FALSE;
  }
  jpeg_create_decompress (&cinfo);
  jpeg_mem_src (&cinfo, data, (unsigned long) len);
  jpeg_read_header (&cinfo, TRUE);
  if (cinfo.image_width < 1 || cinfo.image_height < 1
      || cinfo.image_width > (JDIMENSION) max_side || cinfo.image_height > (JDIMENSION) max_side) {
    *err = g_strdup_printf ("JPEG of %ux%u is empty or larger than %d pixels a side",
                            cinfo.image_width, cinfo.image_height, max_side);
    jpeg_destroy_decompress (&cinfo);
    return FALSE;
  }
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress (&cinfo);
  const gsize stride = (gsize) cinfo.output_width * 3;
  buf = g_try_malloc (stride * cinfo.output_height);
  if (!buf) {
    *err = g_strdup ("out of memory for the JPEG body");
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
vae_jpeg_encode (const guint8 *rgb, int width, int height, int quality)
{
  struct jpeg_compress_struct cinfo;
  ErrorMgr jerr;
  unsigned char *volatile out = NULL;
  unsigned long out_size = 0;

  memset (&cinfo, 0, sizeof cinfo);
  cinfo.err = jpeg_std_error (&jerr.pub);
  jerr.pub.error_exit = on_error_exit;
  jerr.pub.output_message = on_output_message;
  if (setjmp (jerr.jump)) {
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
  GBytes *bytes = g_bytes_new (out, out_size);
  free (out);
  return bytes;
}
