/* vae-server: replies, in the protocol's terms.
 *
 * Why a file of its own: the worker's engine output becomes what the
 * request asked for (latents in the asked format, scaled as asked, in the
 * request's float dtype; decoded frames as a float tensor in [-1, 1], uint8
 * NHWC frames, or a PNG or JPEG), with the shape and dtype headers, or the
 * error status (503 when memory ran out). */
#include "vae-server.h"
#include "jpeg-memory.h"
#include "png-memory.h"

/* ---- tensors ---- */

/* The wire dtype of a float tensor reply. */
static VaeWireDtype
out_dtype (OutKind out)
{
  return out == OUT_TENSOR_F16 ? VAE_WIRE_F16 : out == OUT_TENSOR_BF16 ? VAE_WIRE_BF16
                                                                       : VAE_WIRE_F32;
}

/* Float tensor to little-endian bytes of OUT kind (f32, f16, bf16); NULL
 * with ERROR set when the reply does not fit in memory. */
static GBytes *
floats_to_bytes (const float *src, gsize n, OutKind out, GError **error)
{
  const VaeWireDtype dt = out_dtype (out);
  const gsize size = vae_wire_dtype_size (dt);
  guint8 *d = vae_try_alloc0 (n, size, "the reply tensor", error);
  if (!d)
    return NULL;
  vae_wire_from_floats (src, n, dt, d);
  return g_bytes_new_take (d, n * size);
}

/* The HTTP status of a failure: memory running out is the server's state,
 * not the request's fault, and may pass (503); anything else is a 500. */
static guint
status_for_error (const GError *error)
{
  return g_error_matches (error, VAE_ERROR, VAE_ERROR_NO_MEMORY) ? 503 : 500;
}

/* JOB answered with ERROR (PREFIX before its message): 503 when memory ran
 * out, else 500. */
void
job_set_error (Job *j, const GError *error, const char *prefix)
{
  j->status = status_for_error (error);
  g_free (j->error);
  j->error = g_strdup_printf ("%s%s", prefix, error->message);
}

/* Encode: the engine's output to the reply's latents. */
static void
job_build_latents (Server *s, Job *j)
{
  const VaeModel *m = s->model;
  /* The network's latent size, and the reply's in the request's format
   * (FLUX.2 normalised: 128 channels at half of it, 2x2 patches). */
  const int lh = j->h / m->spatial_factor, lw = j->w / m->spatial_factor;
  const int f = vae_latent_format_factor (m, j->format);
  const int oh = j->h / f, ow = j->w / f;
  const int c = vae_latent_format_channels_for_mode (m, j->format, VAE_LATENT_MODE);
  const gsize fo = frame_out_size (s, j), fl = (gsize) c * oh * ow;
  g_autoptr (GError) error = NULL;
  float *lat = vae_try_alloc0 (j->n, fl * sizeof (float), "the reply's latents", &error);
  if (!lat) {
    job_set_error (j, error, "");
    return;
  }
  for (int i = 0; i < j->n; i++)
    vae_latents_from_encoder_format (m, j->format, j->output + fo * i, lh, lw,
                                     VAE_LATENT_MODE, NULL, j->scaling, j->shift,
                                     lat + fl * i);
  j->body = floats_to_bytes (lat, fl * j->n, j->out, &error);
  vae_free (lat);
  if (!j->body) {
    job_set_error (j, error, "");
    return;
  }
  const gint64 shape[4] = { j->n, c, oh, ow };
  j->shape_header = vae_wire_shape_format (shape, 4);
  j->dtype_header = vae_wire_dtype_name (out_dtype (j->out));
  j->content_type = VAE_WIRE_CONTENT_TYPE_TENSOR;
  j->status = 200;
}

/* Decode to 8-bit RGB: a uint8 NHWC tensor, or a PNG or JPEG of it. */
static void
job_build_rgb (Server *s, Job *j)
{
  const VaeModel *m = s->model;
  const int f = m->spatial_factor;
  const int oh = j->h * f, ow = j->w * f;
  const gsize fo = frame_out_size (s, j);
  const gsize fb = (gsize) oh * ow * 3;
  g_autoptr (GError) error = NULL;
  guint8 *rgb = vae_try_alloc0 (j->n, fb, "the reply's pixels", &error);
  if (!rgb) {
    job_set_error (j, error, "");
    return;
  }
  for (int i = 0; i < j->n; i++)
    vae_pixels_to_rgb8 (m, j->output + fo * i, oh, ow, rgb + fb * i, ow, oh, ow * 3, 3);
  if (j->out == OUT_U8_NHWC) {
    j->body = g_bytes_new_take (rgb, fb * j->n);
    const gint64 shape[4] = { j->n, oh, ow, 3 };
    j->shape_header = vae_wire_shape_format (shape, 4);
    j->dtype_header = vae_wire_dtype_name (VAE_WIRE_U8);
    j->content_type = VAE_WIRE_CONTENT_TYPE_TENSOR;
    j->status = 200;
    return;
  }
  const gboolean png = j->out == OUT_PNG;
  j->body = png ? vae_png_encode_full (rgb, ow, oh, &error)
                : vae_jpeg_encode (rgb, ow, oh, VAE_JPEG_QUALITY, &error);
  vae_free (rgb);
  if (!j->body) {
    job_set_error (j, error, png ? "PNG encoding failed: " : "JPEG encoding failed: ");
    return;
  }
  j->content_type = png ? VAE_WIRE_CONTENT_TYPE_PNG : VAE_WIRE_CONTENT_TYPE_JPEG;
  j->status = 200;
}

/* Decode to a float tensor in [-1, 1]. */
static void
job_build_pixels (Server *s, Job *j)
{
  const VaeModel *m = s->model;
  const int f = m->spatial_factor;
  const int oh = j->h * f, ow = j->w * f;
  const int oc = vae_engine_output_channels (m, VAE_DIRECTION_DECODE);
  const gsize total = frame_out_size (s, j) * j->n;
  g_autoptr (GError) error = NULL;
  float *px = vae_try_alloc0 (total, sizeof (float), "the reply's pixels", &error);
  if (!px) {
    job_set_error (j, error, "");
    return;
  }
  const float span = 1.0f - m->image_min;
  for (gsize i = 0; i < total; i++)
    px[i] = (j->output[i] - m->image_min) / span * 2.0f - 1.0f;
  j->body = floats_to_bytes (px, total, j->out, &error);
  vae_free (px);
  if (!j->body) {
    job_set_error (j, error, "");
    return;
  }
  const gint64 shape[4] = { j->n, oc, oh, ow };
  j->shape_header = vae_wire_shape_format (shape, 4);
  j->dtype_header = vae_wire_dtype_name (out_dtype (j->out));
  j->content_type = VAE_WIRE_CONTENT_TYPE_TENSOR;
  j->status = 200;
}

/* Post-processing of one job's engine output into its reply body. */
void
job_build_reply (Server *s, Job *j)
{
  if (j->direction == VAE_DIRECTION_ENCODE)
    job_build_latents (s, j);
  else if (j->out == OUT_U8_NHWC || j->out == OUT_PNG || j->out == OUT_JPEG)
    job_build_rgb (s, j);
  else
    job_build_pixels (s, j);
}
