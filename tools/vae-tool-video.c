/* vae-tool: the video models' encode, decode, bench and info (Wan, TAEHV).
 *
 * A clip goes through the core's video coder (gst/vae/core/video-coder.h)
 * frame by frame: encode reads one PNG at a time and decode writes each
 * frame as soon as it is decoded, so neither holds the clip's frames; only
 * the latents (48x to 192x smaller than the frames) are gathered for the
 * output file.
 *
 * Latent files: tensor "latents", F32 [1, C, T', h, w], in diffusion space
 * (Wan: (mean - latents_mean[c]) / latents_std[c], what Wan pipelines feed
 * the transformer; TAEHV: as it comes), metadata frames (the real count),
 * temporal_factor, spatial_factor, model, width, height. */
#include "vae-tool-video.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "png-io.h"
#include "safetensors.h"
#include "vae-error.h"
#include "video-coder.h"

/* Frame INDEX of a printf pattern ("dir/f_%04d.png"). */
static char *
pattern_path (const char *pattern, int index)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
  return g_strdup_printf (pattern, index);
#pragma GCC diagnostic pop
}

/* A pattern holds exactly one integer conversion (%d, %04d, ...) and no
 * other conversion, so that it can be given to printf. */
static gboolean
pattern_check (const char *pattern, gboolean *is_pattern, GError **error)
{
  int conversions = 0;
  for (const char *p = pattern; *p; p++) {
    if (*p != '%')
      continue;
    if (p[1] == '%') {
      p++;
      continue;
    }
    const char *q = p + 1;
    while (*q >= '0' && *q <= '9')
      q++;
    if (*q != 'd') {
      g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                   "'%s': a frame pattern takes one %%d (e.g. f_%%04d.png), nothing else",
                   pattern);
      return FALSE;
    }
    conversions++;
    p = q;
  }
  if (conversions > 1) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "'%s': a frame pattern takes one %%d, not %d", pattern, conversions);
    return FALSE;
  }
  *is_pattern = conversions == 1;
  return TRUE;
}

/* ---- encode ---- */

typedef struct {
  const VaeModel *model;
  GArray *latents;             /* float, [T', C, h, w] as they come */
  int c, h, w;
} EncodeSink;

static gboolean
encode_sink (const float *frame, int index, int c, int h, int w, gpointer user_data,
             GError **error)
{
  EncodeSink *s = user_data;
  s->c = vae_latent_channels_for_mode (s->model, VAE_LATENT_MODE);
  s->h = h;
  s->w = w;
  gsize n = (gsize) s->c * h * w;
  g_array_set_size (s->latents, s->latents->len + n);
  vae_latents_from_encoder_format (s->model, VAE_LATENT_FORMAT_NORMALIZED, frame, h, w,
                                   VAE_LATENT_MODE, NULL, s->model->scaling_factor,
                                   s->model->shift_factor,
                                   &g_array_index (s->latents, float, s->latents->len - n));
  return TRUE;
}

gboolean
vae_tool_video_encode (VaeEngine *engine, const char *input, const char *output,
                       GError **error)
{
  const VaeModel *model = engine->model;
  gboolean is_pattern;
  if (!pattern_check (input, &is_pattern, error))
    return FALSE;
  EncodeSink sink = { model, g_array_new (FALSE, FALSE, sizeof (float)) };
  g_autoptr (VaeVideoCoder) coder = NULL;
  g_autofree float *pixels = NULL, *nct = NULL;
  g_autoptr (VaeSafetensorsWriter) writer = NULL;
  int width = 0, height = 0, ph = 0, pw = 0, frames = 0;
  gboolean ok = FALSE;
  const int f = model->spatial_factor;

  for (;; frames++) {
    g_autofree char *path = is_pattern ? pattern_path (input, frames) : g_strdup (input);
    if (frames > 0 && (!is_pattern || !g_file_test (path, G_FILE_TEST_EXISTS)))
      break;   /* a pattern's frames run from 0 to the first missing one */
    g_autofree guint8 *rgb = NULL;
    int fw, fh;
    if (frames == 0 && is_pattern && !g_file_test (path, G_FILE_TEST_EXISTS)) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_IO,
                   "'%s': no first frame %s (a pattern's frames are numbered from 0)", input,
                   path);
      goto out;
    }
    if (!vae_png_read_rgb8 (path, &rgb, &fw, &fh, error))
      goto out;
    if (frames == 0) {
      width = fw;
      height = fh;
      ph = vae_padded_size (height, f);
      pw = vae_padded_size (width, f);
      pixels = vae_try_alloc ((gsize) 3 * ph * pw, sizeof (float), "a frame's pixels", error);
      if (!pixels)
        goto out;
      coder = vae_video_coder_new (engine, VAE_DIRECTION_ENCODE, ph, pw, encode_sink, &sink,
                                   error);
      if (!coder)
        goto out;
    } else if (fw != width || fh != height) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                   "%s is %dx%d, the clip's first frame %dx%d: every frame must have "
                   "the same size", path, fw, fh, width, height);
      goto out;
    }
    vae_pixels_from_rgb8 (model, rgb, width, height, width * 3, 3, pixels, ph, pw);
    if (!vae_video_coder_push (coder, pixels, error))
      goto out;
  }
  if (!vae_video_coder_finish (coder, error))
    goto out;

  /* [T', C, h, w] -> [1, C, T', h, w] */
  const int tl = sink.latents->len / ((gsize) sink.c * sink.h * sink.w);
  const gsize plane = (gsize) sink.h * sink.w;
  nct = vae_try_alloc (sink.latents->len, sizeof (float), "the latents", error);
  if (!nct)
    goto out;
  for (int t = 0; t < tl; t++)
    for (int c = 0; c < sink.c; c++)
      memcpy (nct + ((gsize) c * tl + t) * plane,
              &g_array_index (sink.latents, float, ((gsize) t * sink.c + c) * plane),
              plane * sizeof (float));
  writer = vae_safetensors_writer_new ();
  const gint64 shape[5] = { 1, sink.c, tl, sink.h, sink.w };
  if (!vae_safetensors_writer_add (writer, "latents", VAE_DTYPE_F32, 5, shape, nct,
                                   sink.latents->len * sizeof (float), error))
    goto out;
  char buf[32];
  g_snprintf (buf, sizeof buf, "%d", frames);
  vae_safetensors_writer_set_metadata (writer, "frames", buf);
  g_snprintf (buf, sizeof buf, "%d", model->temporal_factor);
  vae_safetensors_writer_set_metadata (writer, "temporal_factor", buf);
  g_snprintf (buf, sizeof buf, "%d", f);
  vae_safetensors_writer_set_metadata (writer, "spatial_factor", buf);
  if (model->name && g_utf8_validate (model->name, -1, NULL))
    vae_safetensors_writer_set_metadata (writer, "model", model->name);
  g_snprintf (buf, sizeof buf, "%d", width);
  vae_safetensors_writer_set_metadata (writer, "width", buf);
  g_snprintf (buf, sizeof buf, "%d", height);
  vae_safetensors_writer_set_metadata (writer, "height", buf);
  vae_safetensors_writer_set_metadata (writer, "latent_space", model->latents_mean
                                       ? "(mean - latents_mean) / latents_std" : "raw");
  ok = vae_safetensors_writer_save (writer, output, error);
out:
  g_array_unref (sink.latents);
  return ok;
}

/* ---- decode ---- */

typedef struct {
  const VaeModel *model;
  const char *output;
  gboolean is_pattern;
  gboolean single;             /* one frame, no pattern: OUTPUT itself */
  int width, height;
  guint8 *rgb;
} DecodeSink;

static char *
numbered_path (const char *out, int index)
{
  const char *slash = strrchr (out, '/');
  const char *dot = strrchr (slash ? slash : out, '.');
  if (!dot)
    return g_strdup_printf ("%s_%04d", out, index);
  return g_strdup_printf ("%.*s_%04d%s", (int) (dot - out), out, index, dot);
}

static gboolean
decode_sink (const float *frame, int index, int c, int h, int w, gpointer user_data,
             GError **error)
{
  DecodeSink *s = user_data;
  vae_pixels_to_rgb8 (s->model, frame, h, w, s->rgb, s->width, s->height, s->width * 3, 3);
  g_autofree char *path = s->is_pattern ? pattern_path (s->output, index)
                          : s->single ? g_strdup (s->output) : numbered_path (s->output, index);
  return vae_png_write_rgb8 (path, s->rgb, s->width, s->height, s->width * 3, error);
}

static int
metadata_int (const VaeSafetensors *st, const char *key, int def)
{
  const char *v = vae_safetensors_metadata (st, key);
  if (!v)
    return def;
  char *end = NULL;
  gint64 x = g_ascii_strtoll (v, &end, 10);
  return end && *end == '\0' && x > 0 && x < G_MAXINT ? (int) x : -1;
}

gboolean
vae_tool_video_decode (VaeEngine *engine, const char *input, const char *output,
                       int *frames_written, GError **error)
{
  const VaeModel *model = engine->model;
  DecodeSink sink = { model, output };
  if (!pattern_check (output, &sink.is_pattern, error))
    return FALSE;
  g_autoptr (VaeSafetensors) st = vae_safetensors_open (input, error);
  if (!st)
    return FALSE;
  const VaeTensorView *t = vae_safetensors_lookup (st, "latents");
  if (!t) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "%s: no tensor 'latents'", input);
    return FALSE;
  }
  const int zc = model->latent_channels;
  if (t->ndim != 5 || t->shape[0] != 1 || t->shape[1] != zc || t->shape[2] < 1
      || t->shape[3] < 1 || t->shape[4] < 1 || t->shape[2] > 1 << 20
      || t->shape[3] > VAE_PNG_MAX_SIDE || t->shape[4] > VAE_PNG_MAX_SIDE) {
    g_autofree char *shape = NULL;
    GString *sh = g_string_new ("[");
    for (int i = 0; i < t->ndim; i++)
      g_string_append_printf (sh, "%s%" G_GINT64_FORMAT, i ? "," : "", t->shape[i]);
    g_string_append (sh, "]");
    shape = g_string_free (sh, FALSE);
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "%s: 'latents' is %s; model '%s' decodes [1,%d,T,h,w] (a video clip's "
                 "latents with %d channels)", input, shape, model->name, zc, zc);
    return FALSE;
  }
  const int tl = t->shape[2], lh = t->shape[3], lw = t->shape[4];
  const int f = model->spatial_factor;
  int frames = metadata_int (st, "frames", vae_video_decoded_frames (model, tl));
  int max_frames = vae_video_decoded_frames (model, tl);
  if (frames < 1 || frames > max_frames) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: metadata frames='%s' does not fit %d latent frames (1 to %d)", input,
                 vae_safetensors_metadata (st, "frames"), tl, max_frames);
    return FALSE;
  }
  sink.single = frames == 1;
  sink.width = metadata_int (st, "width", lw * f);
  sink.height = metadata_int (st, "height", lh * f);
  if (sink.width < 1 || sink.width > lw * f || sink.height < 1 || sink.height > lh * f) {
    sink.width = lw * f;
    sink.height = lh * f;
  }
  const gsize plane = (gsize) lh * lw, frame_latent = (gsize) zc * plane;
  g_autofree float *all = vae_try_alloc ((gsize) tl * frame_latent, sizeof (float),
                                         "the latents", error);
  g_autofree float *z = vae_try_alloc (frame_latent, sizeof (float), "a latent frame", error);
  g_autofree float *dec_in = vae_try_alloc (frame_latent, sizeof (float), "a latent frame",
                                            error);
  sink.rgb = vae_try_alloc ((gsize) sink.width * sink.height, 3, "a frame", error);
  if (!all || !z || !dec_in || !sink.rgb || !vae_tensor_view_to_f32 (t, all, error)) {
    g_free (sink.rgb);
    return FALSE;
  }
  g_autoptr (VaeVideoCoder) coder = vae_video_coder_new (engine, VAE_DIRECTION_DECODE, lh, lw,
                                                         decode_sink, &sink, error);
  gboolean ok = coder != NULL;
  if (ok)
    vae_video_coder_set_output_limit (coder, frames);
  for (int k = 0; ok && k < tl; k++) {
    for (int c = 0; c < zc; c++)
      memcpy (z + c * plane, all + ((gsize) c * tl + k) * plane, plane * sizeof (float));
    vae_latents_to_decoder_format (model, VAE_LATENT_FORMAT_NORMALIZED, z, lh, lw,
                                   model->scaling_factor, model->shift_factor, dec_in);
    ok = vae_video_coder_push (coder, dec_in, error);
  }
  if (ok && frames_written)
    *frames_written = vae_video_coder_frames_out (coder);
  ok = ok && vae_video_coder_finish (coder, error);
  g_free (sink.rgb);
  return ok;
}

/* ---- bench ---- */

static gboolean
count_sink (const float *frame, int index, int c, int h, int w, gpointer user_data,
            GError **error)
{
  (*(int *) user_data)++;
  return TRUE;
}

static int
compare_doubles (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

gboolean
vae_tool_video_bench (VaeEngine *engine, VaeDirection dir, int width, int height,
                      int frames, int runs, GError **error)
{
  const VaeModel *model = engine->model;
  const int f = model->spatial_factor;
  const int ph = vae_padded_size (height, f), pw = vae_padded_size (width, f);
  const int tl = vae_video_latent_frames (model, frames);
  const int h = dir == VAE_DIRECTION_ENCODE ? ph : ph / f;
  const int w = dir == VAE_DIRECTION_ENCODE ? pw : pw / f;
  const int c = dir == VAE_DIRECTION_ENCODE ? model->image_channels : model->latent_channels;
  const int n_in = dir == VAE_DIRECTION_ENCODE ? frames : tl;
  int emitted = 0;
  g_autoptr (GRand) rng = g_rand_new_with_seed (20240601u);
  /* A few distinct input frames, cycled: the clip's own frames are never
   * all held (a long clip must run in the memory of a short one). */
  enum { DISTINCT = 4 };
  const gsize frame = (gsize) c * h * w;
  g_autofree float *in = vae_try_alloc (frame * DISTINCT, sizeof (float), "bench input", error);
  if (!in)
    return FALSE;
  for (gsize i = 0; i < frame * DISTINCT; i++)
    in[i] = (float) g_rand_double_range (rng, dir == VAE_DIRECTION_ENCODE ? -1 : -2, 1);
  g_autoptr (VaeVideoCoder) coder = vae_video_coder_new (engine, dir, h, w, count_sink,
                                                         &emitted, error);
  if (!coder)
    return FALSE;
  g_autofree double *times = g_new (double, runs);
  for (int r = -1; r < runs; r++) {   /* r = -1: warm-up */
    gint64 t0 = g_get_monotonic_time ();
    emitted = 0;
    for (int i = 0; i < n_in; i++)
      if (!vae_video_coder_push (coder, in + (i % DISTINCT) * frame, error))
        return FALSE;
    if (!vae_video_coder_finish (coder, error))
      return FALSE;
    double s = (g_get_monotonic_time () - t0) / 1e6;
    if (r >= 0) {
      times[r] = s;
      g_print ("run %d: %.3f s (%d frames in, %d out)\n", r, s, n_in, emitted);
    }
  }
  double gmac = vae_tool_video_clip_macs (model, dir, frames, ph, pw) / 1e9;
  qsort (times, runs, sizeof (double), compare_doubles);
  double median = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);
  g_print ("clip: %dx%d x %d frames, %d latent frames, %s\n", width, height, frames, tl,
           dir == VAE_DIRECTION_ENCODE ? "encode" : "decode");
  g_print ("gmac_clip=%.1f gflops=%.1f\n", gmac, 2 * gmac / median);
  g_print ("median_s=%.4f\n", median);
  return TRUE;
}

double
vae_tool_video_clip_macs (const VaeModel *m, VaeDirection dir, int frames, int ph, int pw)
{
  const int f = m->spatial_factor, tl = vae_video_latent_frames (m, frames);
  const VaeGraph *first = dir == VAE_DIRECTION_ENCODE ? m->encoder_first : m->decoder_first;
  const VaeGraph *steady = dir == VAE_DIRECTION_ENCODE ? m->encoder : m->decoder;
  if (!steady)
    return 0;
  if (!first)
    first = steady;
  const int h = dir == VAE_DIRECTION_ENCODE ? ph : ph / f;
  const int w = dir == VAE_DIRECTION_ENCODE ? pw : pw / f;
  if (dir == VAE_DIRECTION_DECODE)
    return vae_graph_macs_t (first, 1, h, w) + (tl - 1) * vae_graph_macs_t (steady, 1, h, w);
  int n0 = m->encode_first_frames, nc = m->encode_chunk_frames;
  return vae_graph_macs_t (first, n0, h, w) + (tl - 1) * vae_graph_macs_t (steady, nc, h, w);
}

void
vae_tool_video_info (const VaeModel *m)
{
  g_print ("variant: %s\n", m->variant ? m->variant : "-");
  g_print ("temporal_factor: %d\n", m->temporal_factor);
  g_print ("patch_size: %d\n", m->patch_size);
  g_print ("chunks: encode %d frame%s first, then %d; decode 1 latent frame at a time%s\n",
           m->encode_first_frames, m->encode_first_frames == 1 ? "" : "s",
           m->encode_chunk_frames,
           m->decode_drop_frames ? ", the stream's first frames dropped" : "");
  if (m->latents_mean) {
    GString *mean = g_string_new (NULL), *std = g_string_new (NULL);
    for (int c = 0; c < m->latent_channels; c++) {
      g_string_append_printf (mean, "%s%g", c ? "," : "", m->latents_mean[c]);
      g_string_append_printf (std, "%s%g", c ? "," : "", m->latents_std[c]);
    }
    g_print ("normalisation: per channel, (mean - latents_mean) / latents_std\n");
    g_print ("latents_mean: %s\n", mean->str);
    g_print ("latents_std: %s\n", std->str);
    g_string_free (mean, TRUE);
    g_string_free (std, TRUE);
  } else {
    g_print ("normalisation: none (latents as the encoder gives them)\n");
  }
  if (m->encoder)
    g_print ("encoder_gmac_per_frame_480x832: %.1f\n",
             vae_graph_macs_t (m->encoder, m->encode_chunk_frames, 480, 832) / 1e9
             / m->encode_chunk_frames);
  if (m->decoder) {
    int f = m->spatial_factor;
    g_print ("decoder_gmac_per_frame_480x832: %.1f\n",
             vae_graph_macs_t (m->decoder, 1, 480 / f, 832 / f) / 1e9 / m->temporal_factor);
  }
}
