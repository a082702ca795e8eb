/* vae-server: requests, in the protocol's terms.
 *
 * Why a file of its own: a request's query and body (a PNG or JPEG image,
 * a raw image tensor, latents, packed Flux latents) are checked against
 * the model and the server's limits, with the protocol's error texts, and
 * turned into the engine's float input, before anything of a request's
 * size is allocated (413 from the header or the shape).  The wire format's
 * names and parsing are wire-protocol.h's. */
#include "vae-server.h"
#include "jpeg-memory.h"
#include "png-memory.h"

/* The shape/dtype query of a raw tensor body (ND from vae_wire_query_shape), with
 * the protocol's error texts; uint8 only where ALLOW_U8 (image input). */
static gboolean
check_tensor_query (int nd, const char *dts, gboolean allow_u8, VaeWireDtype *dt, char **err)
{
  if (nd == 0) {
    *err = g_strdup ("Expected `shape` in query params.");
    return FALSE;
  }
  if (nd == VAE_WIRE_SHAPE_TOO_LARGE) {
    *err = g_strdup_printf ("`shape` is too large (a dimension over %d)", G_MAXINT32);
    return FALSE;
  }
  if (nd < 0) {
    *err = g_strdup ("`shape` must be a list of positive integers");
    return FALSE;
  }
  if (!dts) {
    *err = g_strdup ("Expected `dtype` in query params.");
    return FALSE;
  }
  if (!vae_wire_dtype_parse (dts, dt) || (!allow_u8 && *dt == VAE_WIRE_U8)) {
    *err = g_strdup_printf ("Supported `dtype`: [%s'float16', 'float32', 'bfloat16']. "
                            "Got `%s`.", allow_u8 ? "'uint8', " : "", dts);
    return FALSE;
  }
  return TRUE;
}

/* The query's latent_format into *FORMAT (untouched when absent; *GIVEN
 * says whether it was there); FALSE with *ERR for another value. */
static gboolean
query_latent_format (const VaeWireQuery *q, VaeLatentFormat *format, gboolean *given,
                     char **err)
{
  const char *name = vae_wire_query_get (q, VAE_WIRE_KEY_LATENT_FORMAT);
  *given = name != NULL;
  if (!name || vae_latent_format_from_name (name, format))
    return TRUE;
  *err = g_strdup_printf ("unknown latent_format `%s` (normalized or raw)", name);
  return FALSE;
}

/* A request refused with STATUS and MESSAGE (taken); always FALSE. */
static gboolean
refuse (guint *status, char **err, guint code, char *message)
{
  *status = code;
  *err = message;
  return FALSE;
}

/* A failed allocation or decode (ERROR) as the request's refusal: 503 when
 * memory ran out, else 400 (the body was bad). */
static gboolean
refuse_error (guint *status, char **err, const GError *error)
{
  return refuse (status, err,
                 g_error_matches (error, VAE_ERROR, VAE_ERROR_NO_MEMORY) ? 503 : 400,
                 g_strdup (error->message));
}

/* 413 for a frame of H x W pixels over --max-pixels. */
static gboolean
check_frame_pixels (Server *s, gint64 h, gint64 w, guint *status, char **err)
{
  if (h * w <= s->max_pixels)
    return TRUE;
  return refuse (status, err, 413,
                 g_strdup_printf ("a frame of %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                                  " (%" G_GINT64_FORMAT " pixels) is larger than this "
                                  "server's limit of %" G_GINT64_FORMAT " pixels",
                                  w, h, h * w, s->max_pixels));
}

/* Encode of a PNG or JPEG body: the size from its header is checked
 * against the limits before the pixels are decoded (a 200 KB PNG can
 * claim 8192 x 8192). */
static gboolean
prepare_encode_image (Server *s, Job *job, const guint8 *data, gsize len, gboolean png,
                      guint *status, char **err)
{
  const VaeModel *m = s->model;
  const int f = vae_latent_format_factor (m, job->format);
  const char *kind = png ? "PNG" : "JPEG";
  int w, h;
  if (png ? !vae_png_read_size (data, len, &w, &h, err)
          : !vae_jpeg_read_size (data, len, &w, &h, err))
    return FALSE;
  if (w < 1 || h < 1 || w > MAX_SIDE || h > MAX_SIDE)
    return refuse (status, err, 400,
                   g_strdup_printf ("%s of %dx%d is empty or larger than %d pixels a side",
                                    kind, w, h, MAX_SIDE));
  if (!check_frame_pixels (s, h, w, status, err))
    return FALSE;
  if (w % f || h % f)
    return refuse (status, err, 400,
                   g_strdup_printf ("image of %dx%d: width and height must be multiples "
                                    "of %d", w, h, f));
  g_autoptr (GError) error = NULL;
  guint8 *rgb = NULL;
  if (png ? !vae_png_decode (data, len, MAX_SIDE, &rgb, &w, &h, &error)
          : !vae_jpeg_decode (data, len, MAX_SIDE, &rgb, &w, &h, &error))
    return refuse_error (status, err, error);
  job->n = 1;
  job->h = h;
  job->w = w;
  job->input = vae_try_alloc0 ((gsize) 3 * h, (gsize) w * sizeof (float),
                               "the engine's input", &error);
  if (job->input)
    vae_pixels_from_rgb8 (m, rgb, w, h, w * 3, 3, job->input, h, w);
  vae_free (rgb);
  return job->input ? TRUE : refuse_error (status, err, error);
}

/* Fills JOB's input from the request; FALSE with the status (400 unless
 * set) and message in *STATUS and *ERR. */
gboolean
prepare_encode (Server *s, Job *job, const VaeWireQuery *q, GBytes *body, guint *status,
                char **err)
{
  const VaeModel *m = s->model;
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  gint64 dims[VAE_WIRE_MAX_DIMS];
  int nd = vae_wire_query_shape (q, dims, VAE_WIRE_MAX_DIMS);
  const char *dts = vae_wire_query_get (q, VAE_WIRE_KEY_DTYPE);
  gboolean ok = TRUE, format_given;
  job->format = VAE_LATENT_FORMAT_NORMALIZED;
  if (!query_latent_format (q, &job->format, &format_given, err))
    return FALSE;
  /* Frames are multiples of the format's factor (FLUX.2 normalised: 16). */
  const int f = vae_latent_format_factor (m, job->format);
  job->scaling = m->scaling_factor;
  job->shift = m->shift_factor;
  gboolean have_scale = vae_wire_query_double (q, VAE_WIRE_KEY_SCALING, &job->scaling, &ok);
  vae_wire_query_double (q, VAE_WIRE_KEY_SHIFT, &job->shift, &ok);
  if (have_scale && !vae_wire_query_get (q, VAE_WIRE_KEY_SHIFT))
    job->shift = 0.0;
  if (!ok) {
    *err = g_strdup ("scaling_factor and shift_factor must be numbers");
    return FALSE;
  }
  if (!m->encoder) {
    *err = g_strdup ("this model has no encoder");
    return FALSE;
  }
  job->direction = VAE_DIRECTION_ENCODE;
  job->out = OUT_TENSOR_F32;

  if (nd == 0 && !dts) {
    const VaeWireImage image = vae_wire_sniff_image (data, len);
    if (image != VAE_WIRE_IMAGE_NONE)
      return prepare_encode_image (s, job, data, len, image == VAE_WIRE_IMAGE_PNG, status,
                                   err);
    *err = g_strdup ("Expected `shape` in query params (or a PNG or JPEG body).");
    return FALSE;
  }
  VaeWireDtype dt;
  if (!check_tensor_query (nd, dts, TRUE, &dt, err))
    return FALSE;
  gint64 b, c, h, w;
  if (nd == 4) {
    b = dims[0]; c = dims[1]; h = dims[2]; w = dims[3];
  } else if (nd == 3) {
    b = 1; c = dims[0]; h = dims[1]; w = dims[2];
  } else {
    *err = g_strdup_printf ("`shape` must be [B,3,H,W] (got %d dimensions)", nd);
    return FALSE;
  }
  if (c != m->image_channels) {
    *err = g_strdup_printf ("`shape` has %" G_GINT64_FORMAT " channels; the model takes %d",
                            c, m->image_channels);
    return FALSE;
  }
  if (b > MAX_FRAMES || h > MAX_SIDE || w > MAX_SIDE) {
    g_autofree char *t = vae_wire_shape_format (dims, nd);
    *err = g_strdup_printf ("`shape` %s is too large (at most %d frames of %d pixels a "
                            "side)", t, MAX_FRAMES, MAX_SIDE);
    return FALSE;
  }
  if (!check_frame_pixels (s, h, w, status, err))
    return FALSE;
  if (h % f || w % f) {
    *err = g_strdup_printf ("height %" G_GINT64_FORMAT " and width %" G_GINT64_FORMAT
                            " must be multiples of %d", h, w, f);
    return FALSE;
  }
  const gint64 bchw[4] = { b, c, h, w };
  gsize count, bytes;
  if (!vae_wire_shape_bytes (bchw, 4, 1, &count) || !vae_wire_shape_bytes (bchw, 4, vae_wire_dtype_size (dt), &bytes)) {
    *err = g_strdup ("`shape` is too large (its size overflows)");
    return FALSE;
  }
  if (len != bytes) {
    *err = g_strdup_printf ("cannot reshape a body of %" G_GSIZE_FORMAT " bytes into shape [%"
                            G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",%"
                            G_GINT64_FORMAT "] of %s (%" G_GSIZE_FORMAT " bytes)",
                            len, b, c, h, w, dts, bytes);
    return FALSE;
  }
  job->n = (int) b;
  job->h = (int) h;
  job->w = (int) w;
  g_autoptr (GError) error = NULL;
  job->input = vae_try_alloc0 (count, sizeof (float), "the engine's input", &error);
  if (!job->input)
    return refuse_error (status, err, error);
  const float lo = m->image_min, span = 1.0f - m->image_min;
  if (dt == VAE_WIRE_U8) {
    for (gsize i = 0; i < count; i++)
      job->input[i] = data[i] / 255.0f * span + lo;
  } else {
    for (gsize i = 0; i < count; i++)
      job->input[i] = (vae_wire_load (data, dt, i) + 1.0f) * 0.5f * span + lo;
  }
  if (dt == VAE_WIRE_F16)
    job->out = OUT_TENSOR_F16;
  return TRUE;
}

/* Packed Flux latents [B, (H/16)*(W/16), 4C] with height=H&width=W: the
 * B, C, h, w of the unpacked latents; FALSE with *ERR when they do not
 * match. */
static gboolean
packed_dims (const VaeWireQuery *q, const gint64 *dims, gint64 *bchw, char **err)
{
  gint64 H, W;
  if (vae_wire_parse_dim (vae_wire_query_get (q, VAE_WIRE_KEY_HEIGHT), &H) || vae_wire_parse_dim (vae_wire_query_get (q, VAE_WIRE_KEY_WIDTH), &W)
      || H < 16 || W < 16 || H % 16 || W % 16 || dims[2] % 4
      || dims[1] != (H / 16) * (W / 16)) {
    *err = g_strdup ("packed latents: `height`/`width` do not match `shape`");
    return FALSE;
  }
  bchw[0] = dims[0];
  bchw[1] = dims[2] / 4;
  bchw[2] = H / 8;
  bchw[3] = W / 8;
  return TRUE;
}

/* The reply kind of a decode from its query (and Accept header). */
static gboolean
decode_output_kind (const VaeWireQuery *q, SoupServerMessage *msg, VaeWireDtype dt, OutKind *out,
                    char **err)
{
  const char *ot = vae_wire_query_get (q, VAE_WIRE_KEY_OUTPUT_TYPE);
  if (!ot)
    ot = "pt";
  if (!strcmp (ot, "pt")) {
    if (vae_wire_query_bool (q, VAE_WIRE_KEY_PARTIAL, FALSE))
      *out = OUT_U8_NHWC;
    else
      *out = dt == VAE_WIRE_F16 ? OUT_TENSOR_F16 : dt == VAE_WIRE_BF16 ? OUT_TENSOR_BF16 : OUT_TENSOR_F32;
    return TRUE;
  }
  if (strcmp (ot, "pil")) {
    *err = g_strdup_printf ("unsupported output_type `%s` (pt or pil)", ot);
    return FALSE;
  }
  const char *fmt = vae_wire_query_get (q, VAE_WIRE_KEY_IMAGE_FORMAT);
  if (!fmt) {
    const char *acc = soup_message_headers_get_one (
        soup_server_message_get_request_headers (msg), "Accept");
    fmt = acc && strstr (acc, "image/jpeg") ? "jpg" : "png";
  }
  if (!g_ascii_strcasecmp (fmt, "png")) {
    *out = OUT_PNG;
  } else if (!g_ascii_strcasecmp (fmt, "jpg") || !g_ascii_strcasecmp (fmt, "jpeg")) {
    *out = OUT_JPEG;
  } else {
    *err = g_strdup_printf ("unknown image_format `%s` (png or jpg)", fmt);
    return FALSE;
  }
  return TRUE;
}

gboolean
prepare_decode (Server *s, Job *job, SoupServerMessage *msg, const VaeWireQuery *q, GBytes *body,
                guint *status, char **err)
{
  const VaeModel *m = s->model;
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  gint64 dims[VAE_WIRE_MAX_DIMS];
  if (!m->decoder) {
    *err = g_strdup ("this model has no decoder");
    return FALSE;
  }
  int nd = vae_wire_query_shape (q, dims, VAE_WIRE_MAX_DIMS);
  const char *dts = vae_wire_query_get (q, VAE_WIRE_KEY_DTYPE);
  VaeWireDtype dt;
  if (!check_tensor_query (nd, dts, FALSE, &dt, err))
    return FALSE;
  /* scaling */
  gboolean ok = TRUE;
  double scaling = 1.0, shift = 0.0;
  gboolean have_scale = vae_wire_query_double (q, VAE_WIRE_KEY_SCALING, &scaling, &ok);
  gboolean have_shift = vae_wire_query_double (q, VAE_WIRE_KEY_SHIFT, &shift, &ok);
  if (!ok || (have_scale && scaling == 0.0)) {
    *err = g_strdup ("scaling_factor and shift_factor must be numbers (scaling not 0)");
    return FALSE;
  }
  if (!have_scale && !have_shift && vae_wire_query_bool (q, VAE_WIRE_KEY_DO_SCALING, FALSE)) {
    scaling = m->scaling_factor;
    shift = m->shift_factor;
  }
  if (!decode_output_kind (q, msg, dt, &job->out, err))
    return FALSE;
  gboolean format_given;
  job->format = VAE_LATENT_FORMAT_NORMALIZED;
  if (!query_latent_format (q, &job->format, &format_given, err))
    return FALSE;
  /* A model with latent patches (FLUX.2) takes either format: patchified
   * (normalised, 128 channels) or the network's own (raw, 32). */
  const int patch = vae_latent_format_patch (m, VAE_LATENT_FORMAT_NORMALIZED);
  gint64 bchw[4];
  gboolean packed = FALSE;
  if (nd == 4) {
    memcpy (bchw, dims, sizeof bchw);
  } else if (nd == 3 && vae_wire_query_get (q, VAE_WIRE_KEY_HEIGHT) && vae_wire_query_get (q, VAE_WIRE_KEY_WIDTH)) {
    if (!packed_dims (q, dims, bchw, err))
      return FALSE;
    packed = TRUE;
    if (patch > 1) {
      /* FLUX.2 packs its patchified latents [B, h*w, C*4] (the same 2x2
       * order as Flux's packing): normalised, at the format's size. */
      job->format = VAE_LATENT_FORMAT_NORMALIZED;
      bchw[1] = dims[2];
      bchw[2] /= 2;
      bchw[3] /= 2;
    }
  } else {
    *err = g_strdup_printf ("`shape` must be [B,C,h,w] (got %d dimensions)", nd);
    return FALSE;
  }
  const gint64 b = bchw[0], c = bchw[1], h = bchw[2], w = bchw[3];
  if (patch > 1 && !format_given && !packed)
    vae_latent_format_for_channels (m, (int) MIN (c, G_MAXINT), &job->format, NULL);
  const int lc = vae_latent_format_channels (m, job->format);
  if (c != lc) {
    if (patch > 1 && !format_given)
      *err = g_strdup_printf ("`shape` has %" G_GINT64_FORMAT " latent channels; the model "
                              "takes %d (latent_format=normalized) or %d (raw)", c,
                              vae_latent_format_channels (m, VAE_LATENT_FORMAT_NORMALIZED),
                              vae_latent_format_channels (m, VAE_LATENT_FORMAT_RAW));
    else
      *err = g_strdup_printf ("`shape` has %" G_GINT64_FORMAT " latent channels; the model "
                              "takes %d", c, lc);
    return FALSE;
  }
  const int f = vae_latent_format_factor (m, job->format);
  const int fp = vae_latent_format_patch (m, job->format);
  if (b > MAX_FRAMES || h > MAX_SIDE / f || w > MAX_SIDE / f) {
    g_autofree char *t = vae_wire_shape_format (dims, nd);
    *err = g_strdup_printf ("`shape` %s is too large (at most %d frames of %d pixels a "
                            "side)", t, MAX_FRAMES, MAX_SIDE);
    return FALSE;
  }
  if (!check_frame_pixels (s, h * f, w * f, status, err))
    return FALSE;
  if ((job->out == OUT_PNG || job->out == OUT_JPEG) && b != 1) {
    *err = g_strdup ("output_type=pil takes one frame (B=1); use output_type=pt for batches");
    return FALSE;
  }
  gsize count, bytes;
  if (!vae_wire_shape_bytes (bchw, 4, 1, &count) || !vae_wire_shape_bytes (bchw, 4, vae_wire_dtype_size (dt), &bytes)) {
    *err = g_strdup ("`shape` is too large (its size overflows)");
    return FALSE;
  }
  if (len != bytes) {
    *err = g_strdup_printf ("cannot reshape a body of %" G_GSIZE_FORMAT " bytes into the "
                            "given shape of %s (%" G_GSIZE_FORMAT " bytes)", len, dts, bytes);
    return FALSE;
  }
  job->direction = VAE_DIRECTION_DECODE;
  job->n = (int) b;
  job->h = (int) h * fp;         /* the network's latent size */
  job->w = (int) w * fp;
  g_autoptr (GError) error = NULL;
  float *z = vae_try_alloc0 (count, sizeof (float), "the request's latents", &error);
  if (z)
    job->input = vae_try_alloc0 (count, sizeof (float), "the engine's input", &error);
  if (!job->input) {
    vae_free (z);
    return refuse_error (status, err, error);
  }
  if (!packed) {
    for (gsize i = 0; i < count; i++)
      z[i] = vae_wire_load (data, dt, i);
  } else if (fp > 1) {
    /* [B, h*w, C] channel-last to [B, C, h, w] */
    const gsize plane = (gsize) h * w;
    gsize o = 0;
    for (gint64 bi = 0; bi < b; bi++)
      for (gint64 ci = 0; ci < c; ci++)
        for (gsize p = 0; p < plane; p++)
          z[o++] = vae_wire_load (data, dt, ((gsize) bi * plane + p) * c + ci);
  } else {
    /* view b, h/2, w/2, c, 2, 2 -> permute 0,3,1,4,2,5 -> b, c, h, w */
    const gint64 h2 = h / 2, w2 = w / 2;
    gsize o = 0;
    for (gint64 bi = 0; bi < b; bi++)
      for (gint64 ci = 0; ci < c; ci++)
        for (gint64 y = 0; y < h; y++)
          for (gint64 x = 0; x < w; x++) {
            gsize src = ((((bi * h2 + y / 2) * w2 + x / 2) * c + ci) * 2 + y % 2) * 2 + x % 2;
            z[o++] = vae_wire_load (data, dt, src);
          }
  }
  if (fp > 1) {
    /* FLUX.2's normalised latents: un-normalised per channel and
     * unpatchified, frame by frame (the scalar pair has no part). */
    const gsize frame = count / b;
    for (gint64 i = 0; i < b; i++)
      vae_latents_to_decoder_format (m, job->format, z + frame * i, job->h, job->w,
                                     scaling, shift, job->input + frame * i);
  } else {
    /* Every other model (and FLUX.2's raw latents): the scalar pair as the
     * query says. */
    vae_latents_to_decoder (z, count, scaling, shift, job->input);
  }
  vae_free (z);
  return TRUE;
}
