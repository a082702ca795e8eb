/* Golden test of the video models (Wan 2.1 / 2.2, TAEHV) on the cpu engine,
 * through the core's video coder (video-coder.h) as vae-tool and the
 * elements use it, against the peers' reference outputs in
 * $VAE_TESTDATA/reference-video (diffusers AutoencoderKLWan and taehv.py; see
 * ../shared/testdata/README.md).
 *
 * For each reference file <model>__<photo>_<W>x<H>x<T>.safetensors and each
 * model file that holds <model>'s weights (wan21-mini: the diffusers folder
 * and the original-layout single file, whose latents_mean/std are the real
 * Wan 2.1 values, so latent_normalized does not hold for it):
 *   px      vae_pixels_from_rgb8 (`frames`) == `input`, vae_pixels_to_rgb8
 *           (`decoded`) == `decoded_u8` within 1 level
 *   latent  `input` pushed frame by frame (the clip whole: a partial last
 *           group is completed with copies of the last frame), the first z
 *           channels of each output frame == `latent_mean`.  The coder gives
 *           vae_video_latent_frames (T) latents; when that is more than the
 *           reference's (T = 7: 3, where diffusers and taehv.py give 2),
 *           the reference's are a prefix of ours (causality).
 *   norm    vae_latents_from_encoder == `latent_normalized`
 *   dec     `latent_mean` decoded frame by frame == `decoded`
 *   dec_n   Wan: `latent_normalized` through vae_latents_to_decoder_frame,
 *           decoded == `decoded` (the pipeline's path)
 *   u8      vae_pixels_to_rgb8 of our decoded frames vs `decoded_u8`
 *   own     our latents through the pipeline (normalised and back),
 *           decoded with set_output_limit (T): exactly T frames, the first
 *           `decoded_frames` == `decoded` (T = 7: 7 frames, the first 5)
 *   reset   the same coder, after another clip: bit-identical to the first
 *           run (encode and decode)
 *   split   T >= 9: vae_stream_run with the frames split differently
 *           (encode [first,4,4] vs [first,8], decode [1,1,1] vs [1,2])
 *           within 1e-5
 * reference-video/streaming/ (prefix evidence): our encoding of a clip's
 * first frames == the reference's prefix latents and bit-identical to the
 * start of our whole-clip latents where the reference says so; decoding
 * the first latents == the reference's prefix frames and bit-identical to
 * the start of our whole decode; TAEHV's StreamingTAEHV outputs too.
 * Then the errors: video models refused by engines without streams
 * (cuda, remote), an image model refused by vae_stream_new, frame sizes
 * that are not a multiple of the spatial factor refused by the coder.
 *
 * Bounds: max |diff| <= 1e-3 and relative L2 <= 1e-4 (float32), u8 within
 * 1 level.  Under AddressSanitizer only the T = 1 and T = 5 files run (and
 * no streaming files), to keep that tree quick.  Without the test data the
 * program skips loudly, writes the golden skip marker and exits 77.
 *
 * Arguments: substrings; only files or model paths containing one of them
 * run (e.g. `test-video-golden taew2_2`). */
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden-diff.h"
#include "golden-util.h"
#include "codec.h"
#include "engine.h"
#include "model.h"
#include "safetensors.h"
#include "vae-error.h"
#include "video-coder.h"

#define MAX_ABS_TOL 1e-3
#define REL_L2_TOL 1e-4
#define SPLIT_TOL 1e-5
#define U8_TOL 1

#if defined(__SANITIZE_ADDRESS__)
#define REDUCED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REDUCED 1
#endif
#endif
#ifndef REDUCED
#define REDUCED 0
#endif

static int n_pass, n_fail;
static GString *failures;

static void
fail (const char *what, ...) G_GNUC_PRINTF (1, 2);

static void
fail (const char *what, ...)
{
  va_list ap;
  va_start (ap, what);
  g_autofree char *s = g_strdup_vprintf (what, ap);
  va_end (ap);
  g_string_append_printf (failures, "  FAIL %s\n", s);
  n_fail++;
}

/* ------------------------------------------------------------ comparisons */

typedef struct {
  gboolean present;
  double max_diff, rel;
  gboolean nan, ok;
} Cmp;

static Cmp
compare (const float *got, const float *want, gsize n, double max_tol, double rel_tol)
{
  const GoldenDiff d = golden_diff_f32 (got, want, n);
  Cmp c = { TRUE, d.max_diff, d.rel, d.nan, FALSE };
  c.ok = !c.nan && c.max_diff <= max_tol && c.rel <= rel_tol;
  return c;
}

static Cmp
compare_f32 (const float *got, const float *want, gsize n)
{
  return compare (got, want, n, MAX_ABS_TOL, REL_L2_TOL);
}

/* Bit-for-bit: ok only when every float is identical. */
static Cmp
compare_exact (const float *got, const float *want, gsize n)
{
  Cmp c = compare (got, want, n, 0, 1);
  c.ok = memcmp (got, want, n * sizeof (float)) == 0;
  return c;
}

static Cmp
compare_u8 (const guint8 *got, const guint8 *want, gsize n)
{
  const GoldenDiffU8 d = golden_diff_u8 (got, want, n);
  Cmp c = { TRUE, d.max_diff, 0, FALSE, TRUE };
  c.rel = n ? (double) d.off / n : 0;   /* here: the fraction that differ */
  c.ok = c.max_diff <= U8_TOL;
  return c;
}

/* Records a check: a failing one goes to the failure list. */
static void
check (Cmp *slot, Cmp c, const char *file, const char *model, const char *what)
{
  if (!c.ok)
    fail ("%s / %s: %s: max|diff| %.3g, rel %.3g%s", file, model, what, c.max_diff, c.rel,
          c.nan ? " (NaN)" : "");
  /* Keep the worst: the first failure, else the largest difference. */
  if (!slot->present || (slot->ok && (!c.ok || c.max_diff > slot->max_diff)))
    *slot = c;
}

static char *
fmt_cmp (const Cmp *c, gboolean u8)
{
  if (!c->present)
    return g_strdup ("-");
  if (u8)
    return g_strdup_printf ("%d (%.1f%%)%s", (int) c->max_diff, 100 * c->rel, c->ok ? "" : " !");
  return g_strdup_printf ("%.1e/%.1e%s", c->max_diff, c->rel, c->nan ? " NaN" : c->ok ? "" : " !");
}

/* --------------------------------------------------------------- tensors */

static const VaeTensorView *
ref_view (VaeSafetensors *st, const char *name, int ndim, GError **error)
{
  const VaeTensorView *t = vae_safetensors_lookup (st, name);
  if (!t) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "%s: no tensor '%s'",
                 vae_safetensors_path (st), name);
    return NULL;
  }
  if (t->ndim != ndim) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "%s: tensor '%s' has %d dims, not %d",
                 vae_safetensors_path (st), name, t->ndim, ndim);
    return NULL;
  }
  return t;
}

/* A 5-d float tensor as frame-major [T, C, H, W] (from NCTHW or NTCHW). */
typedef struct {
  float *data;
  int t, c, h, w;
} Clip;

static void
clip_clear (Clip *c)
{
  g_clear_pointer (&c->data, g_free);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Clip, clip_clear)

static gsize
clip_frame (const Clip *c)
{
  return (gsize) c->c * c->h * c->w;
}

static gboolean
ref_clip (VaeSafetensors *st, const char *name, gboolean ncthw, Clip *out, GError **error)
{
  const VaeTensorView *t = ref_view (st, name, 5, error);
  if (!t)
    return FALSE;
  const int c = (int) (ncthw ? t->shape[1] : t->shape[2]);
  const int n = (int) (ncthw ? t->shape[2] : t->shape[1]);
  const int h = (int) t->shape[3], w = (int) t->shape[4];
  g_autofree float *raw = g_new (float, MAX (t->n_elements, 1));
  if (!vae_tensor_view_to_f32 (t, raw, error))
    return FALSE;
  const gsize hw = (gsize) h * w;
  out->data = g_new (float, MAX (t->n_elements, 1));
  out->t = n;
  out->c = c;
  out->h = h;
  out->w = w;
  for (int ti = 0; ti < n; ti++)
    for (int ci = 0; ci < c; ci++)
      memcpy (out->data + ((gsize) ti * c + ci) * hw,
              raw + (ncthw ? ((gsize) ci * n + ti) : ((gsize) ti * c + ci)) * hw,
              hw * sizeof (float));
  return TRUE;
}

/* A u8 [T, H, W, 3] tensor. */
static const guint8 *
ref_u8 (VaeSafetensors *st, const char *name, int *t, int *h, int *w, GError **error)
{
  const VaeTensorView *v = ref_view (st, name, 4, error);
  if (!v)
    return NULL;
  if (v->dtype != VAE_DTYPE_U8 || v->shape[3] != 3) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "%s: '%s' is not u8 [T,H,W,3]",
                 vae_safetensors_path (st), name);
    return NULL;
  }
  *t = (int) v->shape[0];
  *h = (int) v->shape[1];
  *w = (int) v->shape[2];
  return v->data;
}

/* ------------------------------------------------------------ the coder */

typedef struct {
  GArray *data;                /* float, frames as they come */
  int n, c, h, w;
} Frames;

static void
frames_init (Frames *f)
{
  memset (f, 0, sizeof *f);
  f->data = g_array_new (FALSE, FALSE, sizeof (float));
}

static void
frames_clear (Frames *f)
{
  if (f->data)
    g_array_unref (f->data);
  f->data = NULL;
}

static float *
frames_at (const Frames *f, int i)
{
  return &g_array_index (f->data, float, (gsize) i * f->c * f->h * f->w);
}

static gboolean
collect (const float *frame, int index, int c, int h, int w, gpointer user_data,
         GError **error)
{
  Frames *f = user_data;
  if (index != f->n || (f->n && (c != f->c || h != f->h || w != f->w))) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ENGINE,
                 "output frame %d (%dx%dx%d) after %d frames of %dx%dx%d", index, c, w, h,
                 f->n, f->c, f->w, f->h);
    return FALSE;
  }
  f->c = c;
  f->h = h;
  f->w = w;
  g_array_append_vals (f->data, frame, (guint) ((gsize) c * h * w));
  f->n++;
  return TRUE;
}

/* One clip of N frames of FRAME_FLOATS through a coder whose callback
 * collects into the Frames it was made with (reset to empty first). */
static gboolean
coder_clip (VaeVideoCoder *vc, Frames *sink, const float *in, int n, gsize frame_floats,
            int limit, GError **error)
{
  g_array_set_size (sink->data, 0);
  sink->n = 0;
  if (limit >= 0)
    vae_video_coder_set_output_limit (vc, limit);
  for (int i = 0; i < n; i++)
    if (!vae_video_coder_push (vc, in + (gsize) i * frame_floats, error))
      return FALSE;
  return vae_video_coder_finish (vc, error);
}

/* Encode a clip in a fresh coder. */
static gboolean
encode_clip (VaeEngine *e, const float *in, int n, int h, int w, Frames *out, GError **error)
{
  frames_init (out);
  g_autoptr (VaeVideoCoder) vc = vae_video_coder_new (e, VAE_DIRECTION_ENCODE, h, w, collect,
                                                      out, error);
  return vc && coder_clip (vc, out, in, n, (gsize) e->model->image_channels * h * w, -1, error);
}

static gboolean
decode_clip (VaeEngine *e, const float *in, int n, int h, int w, int limit, Frames *out,
             GError **error)
{
  frames_init (out);
  g_autoptr (VaeVideoCoder) vc = vae_video_coder_new (e, VAE_DIRECTION_DECODE, h, w, collect,
                                                      out, error);
  return vc && coder_clip (vc, out, in, n, (gsize) e->model->latent_channels * h * w, limit,
                           error);
}

/* The first Z channels of each encoder output frame: [n, Z, h, w]. */
static float *
means_of (const VaeModel *m, const Frames *enc)
{
  const gsize plane = (gsize) enc->h * enc->w, z = (gsize) m->latent_channels * plane;
  float *out = g_new (float, MAX ((gsize) enc->n * z, 1));
  for (int i = 0; i < enc->n; i++)
    memcpy (out + i * z, frames_at (enc, i), z * sizeof (float));
  return out;
}

/* --------------------------------------------------------------- cases */

typedef struct {
  Cmp px_in, px_out, latent, norm, dec, dec_n, u8, own, reset, split;
  char *note;
} Row;

/* Runs STEPS chunks (frame counts) of IN through a fresh stream into one
 * output array (all frames the stream gives, nothing dropped). */
static float *
stream_split (VaeEngine *e, VaeDirection dir, int h, int w, const float *in, gsize frame,
              const int *steps, int n_steps, int *out_frames, gsize *out_frame, GError **error)
{
  g_autoptr (VaeStream) s = vae_stream_new (e, dir, h, w, error);
  if (!s)
    return NULL;
  g_autoptr (GArray) out = g_array_new (FALSE, FALSE, sizeof (float));
  int at = 0;
  *out_frames = 0;
  for (int i = 0; i < n_steps; i++) {
    int c, oh, ow;
    int ot = vae_stream_output_shape (s, steps[i], &c, &oh, &ow);
    if (ot < 0) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT, "a chunk of %d frames does not fit",
                   steps[i]);
      return NULL;
    }
    *out_frame = (gsize) c * oh * ow;
    guint len = out->len;
    g_array_set_size (out, len + (guint) (ot * *out_frame));
    if (!vae_stream_run (s, in + (gsize) at * frame, steps[i], &g_array_index (out, float, len),
                         error))
      return NULL;
    at += steps[i];
    *out_frames += ot;
  }
  return (float *) g_array_free (g_steal_pointer (&out), FALSE);
}

static gboolean
split_checks (VaeEngine *e, const Clip *input, const Clip *lat, Row *r, const char *file,
              const char *label, GError **error)
{
  const VaeModel *m = e->model;
  const int first = m->encode_first_frames;
  const gsize frame = clip_frame (input);
  /* Encode: [first, 4, 4] vs [first, 8] over first + 8 frames (the clip's,
   * its last repeated where it is shorter). */
  const int n = first + 2 * m->encode_chunk_frames;
  g_autofree float *in = g_new (float, (gsize) n * frame);
  for (int i = 0; i < n; i++)
    memcpy (in + i * frame, input->data + (gsize) MIN (i, input->t - 1) * frame,
            frame * sizeof (float));
  const int a[] = { first, m->encode_chunk_frames, m->encode_chunk_frames };
  const int b[] = { first, 2 * m->encode_chunk_frames };
  int na, nb;
  gsize fa, fb;
  g_autofree float *ea = stream_split (e, VAE_DIRECTION_ENCODE, input->h, input->w, in, frame, a,
                                       3, &na, &fa, error);
  if (!ea)
    return FALSE;
  g_autofree float *eb = stream_split (e, VAE_DIRECTION_ENCODE, input->h, input->w, in, frame, b,
                                       2, &nb, &fb, error);
  if (!eb)
    return FALSE;
  if (na != nb || fa != fb) {
    fail ("%s / %s: split encode: %d vs %d frames", file, label, na, nb);
    return TRUE;
  }
  check (&r->split, compare (eb, ea, (gsize) na * fa, SPLIT_TOL, 1), file, label,
         "encode [first,4,4] vs [first,8]");
  /* Decode: 3 latents as [1,1,1] vs [1,2]. */
  if (lat->t >= 3) {
    const int c[] = { 1, 1, 1 }, d[] = { 1, 2 };
    int nc, nd;
    gsize fc, fd;
    g_autofree float *dc = stream_split (e, VAE_DIRECTION_DECODE, lat->h, lat->w, lat->data,
                                         clip_frame (lat), c, 3, &nc, &fc, error);
    if (!dc)
      return FALSE;
    g_autofree float *dd = stream_split (e, VAE_DIRECTION_DECODE, lat->h, lat->w, lat->data,
                                         clip_frame (lat), d, 2, &nd, &fd, error);
    if (!dd)
      return FALSE;
    if (nc != nd || fc != fd) {
      fail ("%s / %s: split decode: %d vs %d frames", file, label, nc, nd);
      return TRUE;
    }
    check (&r->split, compare (dd, dc, (gsize) nc * fc, SPLIT_TOL, 1), file, label,
           "decode [1,1,1] vs [1,2]");
  }
  return TRUE;
}

static gboolean
run_case (VaeEngine *e, const char *label, const char *file, VaeSafetensors *ref, Row *r,
          GError **error)
{
  const VaeModel *m = e->model;
  const char *layout = vae_safetensors_metadata (ref, "layout");
  const gboolean ncthw = !layout || !g_str_equal (layout, "NTCHW");
  const gboolean ref_norm = !golden_video_builtin_norm (label);
  g_auto (Clip) input = { 0 }, lat = { 0 }, norm = { 0 }, dec = { 0 };
  int ft, fh, fw, ut, uh, uw;
  const guint8 *frames_u8 = ref_u8 (ref, "frames", &ft, &fh, &fw, error);
  const guint8 *dec_u8 = frames_u8 ? ref_u8 (ref, "decoded_u8", &ut, &uh, &uw, error) : NULL;
  if (!dec_u8 || !ref_clip (ref, "input", ncthw, &input, error)
      || !ref_clip (ref, "latent_mean", ncthw, &lat, error)
      || !ref_clip (ref, "latent_normalized", ncthw, &norm, error)
      || !ref_clip (ref, "decoded", ncthw, &dec, error))
    return FALSE;
  const int T = input.t, H = input.h, W = input.w, Z = m->latent_channels;
  if (input.c != m->image_channels || lat.c != Z || dec.c != m->image_channels || ft != T
      || fh != H || fw != W || ut != dec.t || uh != H || uw != W) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "shapes: input %dx%dx%dx%d, latent %d channels, model %d/%d", T, input.c, H,
                 W, lat.c, m->image_channels, Z);
    return FALSE;
  }
  const gsize fpx = clip_frame (&input), flat = clip_frame (&lat), fdec = clip_frame (&dec);
  const gsize npix = (gsize) H * W * 3;

  /* ---- pixels: 8-bit to the model's range and back ---- */
  {
    g_autofree float *px = g_new (float, fpx);
    for (int t = 0; t < T; t++) {
      vae_pixels_from_rgb8 (m, frames_u8 + t * npix, W, H, W * 3, 3, px, H, W);
      check (&r->px_in, compare (px, input.data + t * fpx, fpx, 1e-6, 1e-6), file, label,
             "vae_pixels_from_rgb8 (frames) vs input");
    }
    g_autofree guint8 *rgb = g_new (guint8, npix);
    for (int t = 0; t < dec.t; t++) {
      vae_pixels_to_rgb8 (m, dec.data + t * fdec, H, W, rgb, W, H, W * 3, 3);
      check (&r->px_out, compare_u8 (rgb, dec_u8 + t * npix, npix), file, label,
             "vae_pixels_to_rgb8 (decoded) vs decoded_u8");
    }
  }

  /* ---- encode ---- */
  Frames enc;
  frames_init (&enc);
  g_autoptr (VaeVideoCoder) ec = vae_video_coder_new (e, VAE_DIRECTION_ENCODE, H, W, collect,
                                                      &enc, error);
  if (!ec || !coder_clip (ec, &enc, input.data, T, fpx, -1, error)) {
    frames_clear (&enc);
    return FALSE;
  }
  const int LT = enc.n;
  if (LT != vae_video_latent_frames (m, T) || LT < lat.t || enc.h != lat.h || enc.w != lat.w
      || enc.c < Z) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ENGINE,
                 "%d frames gave %d latents (%d channels, %dx%d); expected %d, the reference "
                 "%d of %dx%d", T, LT, enc.c, enc.w, enc.h, vae_video_latent_frames (m, T),
                 lat.t, lat.w, lat.h);
    frames_clear (&enc);
    return FALSE;
  }
  if (LT > lat.t)
    r->note = g_strdup_printf ("%d latents (reference %d: its prefix), %d frames decoded "
                               "(reference %d: their prefix)", LT, lat.t, T, dec.t);
  g_autofree float *means = means_of (m, &enc);
  check (&r->latent, compare_f32 (means, lat.data, (gsize) lat.t * flat), file, label,
         "latent_mean");
  g_autofree float *ours_norm = g_new (float, (gsize) LT * flat);
  for (int k = 0; k < LT; k++)
    vae_latents_from_encoder (m, frames_at (&enc, k), enc.h, enc.w, VAE_LATENT_MODE, NULL,
                              m->scaling_factor, m->shift_factor, ours_norm + k * flat);
  if (ref_norm)
    check (&r->norm, compare_f32 (ours_norm, norm.data, (gsize) lat.t * flat), file, label,
           "latent_normalized");

  /* reset: another clip (the frames backwards, 3 of them), then this one
   * again in the same coder: bit-identical. */
  {
    g_autofree float *first_run = g_memdup2 (enc.data->data, enc.data->len * sizeof (float));
    const guint first_len = enc.data->len;
    g_autofree float *back = g_new (float, 3 * fpx);
    for (int i = 0; i < 3; i++)
      memcpy (back + i * fpx, input.data + (gsize) (T - 1 - MIN (i, T - 1)) * fpx,
              fpx * sizeof (float));
    if (!coder_clip (ec, &enc, back, 3, fpx, -1, error)
        || !coder_clip (ec, &enc, input.data, T, fpx, -1, error)) {
      frames_clear (&enc);
      return FALSE;
    }
    if (enc.data->len != first_len)
      fail ("%s / %s: encode after reset: %u floats, first run %u", file, label, enc.data->len,
            first_len);
    else
      check (&r->reset, compare_exact ((float *) enc.data->data, first_run, first_len), file,
             label, "encode after another clip vs the first run (bit-exact)");
  }
  frames_clear (&enc);

  /* ---- decode the reference latents ---- */
  Frames d;
  frames_init (&d);
  g_autoptr (VaeVideoCoder) dc = vae_video_coder_new (e, VAE_DIRECTION_DECODE, lat.h, lat.w,
                                                      collect, &d, error);
  if (!dc || !coder_clip (dc, &d, lat.data, lat.t, flat, -1, error)) {
    frames_clear (&d);
    return FALSE;
  }
  if (d.n != dec.t || d.c != dec.c || d.h != H || d.w != W) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ENGINE,
                 "decoding %d latents gave %d frames of %dx%d; the reference %d of %dx%d",
                 lat.t, d.n, d.w, d.h, dec.t, W, H);
    frames_clear (&d);
    return FALSE;
  }
  check (&r->dec, compare_f32 (frames_at (&d, 0), dec.data, (gsize) dec.t * fdec), file, label,
         "decoded (from latent_mean)");
  {
    g_autofree guint8 *rgb = g_new (guint8, npix);
    for (int t = 0; t < d.n; t++) {
      vae_pixels_to_rgb8 (m, frames_at (&d, t), H, W, rgb, W, H, W * 3, 3);
      check (&r->u8, compare_u8 (rgb, dec_u8 + t * npix, npix), file, label, "decoded_u8");
    }
  }
  /* reset: the same latents again, after one latent of another clip. */
  {
    g_autofree float *first_run = g_memdup2 (d.data->data, d.data->len * sizeof (float));
    const guint first_len = d.data->len;
    if (!coder_clip (dc, &d, lat.data + (gsize) (lat.t - 1) * flat, 1, flat, -1, error)
        || !coder_clip (dc, &d, lat.data, lat.t, flat, -1, error)) {
      frames_clear (&d);
      return FALSE;
    }
    if (d.data->len != first_len)
      fail ("%s / %s: decode after reset: %u floats, first run %u", file, label, d.data->len,
            first_len);
    else
      check (&r->reset, compare_exact ((float *) d.data->data, first_run, first_len), file,
             label, "decode after another clip vs the first run (bit-exact)");
  }

  /* ---- the pipeline's path from latent_normalized (Wan) ---- */
  g_autofree float *dec_in = g_new (float, (gsize) LT * flat);
  if (m->latents_mean && ref_norm) {
    for (int k = 0; k < lat.t; k++)
      vae_latents_to_decoder_frame (m, norm.data + k * flat, lat.h, lat.w, m->scaling_factor,
                                    m->shift_factor, dec_in + k * flat);
    if (!coder_clip (dc, &d, dec_in, lat.t, flat, -1, error)) {
      frames_clear (&d);
      return FALSE;
    }
    if (d.n != dec.t)
      fail ("%s / %s: decoding latent_normalized gave %d frames, not %d", file, label, d.n,
            dec.t);
    else
      check (&r->dec_n, compare_f32 (frames_at (&d, 0), dec.data, (gsize) dec.t * fdec), file,
             label, "decoded (from latent_normalized)");
  }

  /* ---- our own latents, round trip, cut to T frames ---- */
  for (int k = 0; k < LT; k++)
    vae_latents_to_decoder_frame (m, ours_norm + k * flat, lat.h, lat.w, m->scaling_factor,
                                  m->shift_factor, dec_in + k * flat);
  if (!coder_clip (dc, &d, dec_in, LT, flat, T, error)) {
    frames_clear (&d);
    return FALSE;
  }
  if (d.n != T)
    fail ("%s / %s: %d latents cut to %d frames gave %d", file, label, LT, T, d.n);
  else
    check (&r->own, compare_f32 (frames_at (&d, 0), dec.data, (gsize) dec.t * fdec), file, label,
           "own latents decoded, first frames vs decoded");
  frames_clear (&d);

  /* ---- chunk sizes ---- */
  if (T >= 9 && !split_checks (e, &input, &lat, r, file, label, error))
    return FALSE;
  return TRUE;
}

/* ---------------------------------------------------- streaming evidence */

typedef struct {
  Cmp latent, prefix, causal, dec, dprefix, dcausal, streaming;
} SRow;

static gboolean
run_streaming (VaeEngine *e, const char *label, const char *file, VaeSafetensors *ref, SRow *r,
               GError **error)
{
  const VaeModel *m = e->model;
  const char *layout = vae_safetensors_metadata (ref, "layout");
  const gboolean ncthw = !layout || !g_str_equal (layout, "NTCHW");
  const gboolean taehv = m->family == VAE_FAMILY_TAEHV;
  int T, H, W;
  const guint8 *u8 = ref_u8 (ref, "frames", &T, &H, &W, error);
  g_auto (Clip) full = { 0 }, dfull = { 0 };
  if (!u8 || !ref_clip (ref, "latent_full", ncthw, &full, error)
      || !ref_clip (ref, "decoded_full", ncthw, &dfull, error))
    return FALSE;
  const gsize fpx = (gsize) 3 * H * W, flat = clip_frame (&full), fdec = clip_frame (&dfull);
  g_autofree float *px = g_new (float, (gsize) T * fpx);
  for (int t = 0; t < T; t++)
    vae_pixels_from_rgb8 (m, u8 + t * fpx, W, H, W * 3, 3, px + t * fpx, H, W);

  /* The whole clip. */
  Frames all;
  if (!encode_clip (e, px, T, H, W, &all, error)) {
    frames_clear (&all);
    return FALSE;
  }
  g_autofree float *all_m = means_of (m, &all);
  const int all_n = all.n;
  frames_clear (&all);
  if (all_n < full.t) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ENGINE, "%d latents, the reference %d", all_n,
                 full.t);
    return FALSE;
  }
  check (&r->latent, compare_f32 (all_m, full.data, (gsize) full.t * flat), file, label,
         "latent_full");

  /* Prefixes: (frames, tensor, latents that equal the whole clip's). */
  const struct {
    int frames;
    const char *name;
    int same;
  } wan[] = { { 1, "latent_prefix1", 1 }, { 5, "latent_prefix5", 2 } },
    tae[] = { { 8, "latent_prefix8", 2 }, { 5, "latent_prefix5", 1 } };
  for (int i = 0; i < 2; i++) {
    const int frames = taehv ? tae[i].frames : wan[i].frames;
    const char *name = taehv ? tae[i].name : wan[i].name;
    const int same = taehv ? tae[i].same : wan[i].same;
    g_auto (Clip) want = { 0 };
    if (!ref_clip (ref, name, ncthw, &want, error))
      return FALSE;
    Frames p;
    if (!encode_clip (e, px, frames, H, W, &p, error)) {
      frames_clear (&p);
      return FALSE;
    }
    g_autofree float *pm = means_of (m, &p);
    const int pn = p.n;
    frames_clear (&p);
    if (pn < want.t) {
      fail ("%s / %s: %d frames gave %d latents, the reference %d", file, label, frames, pn,
            want.t);
      continue;
    }
    g_autofree char *what = g_strdup_printf ("%s (%d frames)", name, frames);
    check (&r->prefix, compare_f32 (pm, want.data, (gsize) want.t * flat), file, label, what);
    g_autofree char *what2 = g_strdup_printf ("%d frames: first %d latents vs the whole clip's "
                                              "(bit-exact)", frames, same);
    check (&r->causal, compare_exact (pm, all_m, (gsize) same * flat), file, label, what2);
  }

  /* Decoding: the whole latent_full, then its first 1 (Wan) and 2 latents. */
  Frames d;
  if (!decode_clip (e, full.data, full.t, full.h, full.w, -1, &d, error)) {
    frames_clear (&d);
    return FALSE;
  }
  g_autofree float *dall = g_memdup2 (d.data->data, d.data->len * sizeof (float));
  const int dn = d.n;
  frames_clear (&d);
  if (dn != dfull.t) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ENGINE, "%d frames decoded, the reference %d", dn,
                 dfull.t);
    return FALSE;
  }
  check (&r->dec, compare_f32 (dall, dfull.data, (gsize) dn * fdec), file, label,
         "decoded_full");
  for (int k = taehv ? 2 : 1; k <= 2; k++) {
    g_autofree char *name = g_strdup_printf ("decoded_prefix%d", k);
    g_auto (Clip) want = { 0 };
    if (!ref_clip (ref, name, ncthw, &want, error))
      return FALSE;
    if (!decode_clip (e, full.data, k, full.h, full.w, -1, &d, error)) {
      frames_clear (&d);
      return FALSE;
    }
    if (d.n != want.t)
      fail ("%s / %s: %d latents decoded to %d frames, the reference %d", file, label, k, d.n,
            want.t);
    else {
      check (&r->dprefix, compare_f32 (frames_at (&d, 0), want.data, (gsize) d.n * fdec), file,
             label, name);
      g_autofree char *what = g_strdup_printf ("%d latents: frames vs the whole decode's "
                                               "(bit-exact)", k);
      check (&r->dcausal, compare_exact (frames_at (&d, 0), dall, (gsize) d.n * fdec), file,
             label, what);
    }
    frames_clear (&d);
  }

  /* TAEHV: StreamingTAEHV's outputs (decoded clamped to [0, 1]). */
  if (taehv) {
    g_auto (Clip) ls = { 0 }, ds = { 0 };
    if (!ref_clip (ref, "latent_streaming", ncthw, &ls, error)
        || !ref_clip (ref, "decoded_streaming", ncthw, &ds, error))
      return FALSE;
    check (&r->streaming, compare_f32 (all_m, ls.data, (gsize) ls.t * flat), file, label,
           "latent_streaming");
    for (gsize i = 0; i < (gsize) dn * fdec; i++)
      dall[i] = CLAMP (dall[i], 0.0f, 1.0f);
    check (&r->streaming, compare_f32 (dall, ds.data, (gsize) ds.t * fdec), file, label,
           "decoded_streaming (clamped)");
  }
  return TRUE;
}

/* ---------------------------------------------------------------- errors */

static void
expect_error (GError *error, const char *what, const char *const *words)
{
  if (!error) {
    fail ("error case '%s': accepted", what);
    return;
  }
  for (int i = 0; words[i]; i++)
    if (!strstr (error->message, words[i])) {
      fail ("error case '%s': message \"%s\" does not say '%s'", what, error->message,
            words[i]);
      return;
    }
  printf ("  ok   %-44s %s\n", what, error->message);
  n_pass++;
}

static void
error_cases (const char *models_dir, VaeEngine *video_cpu)
{
  printf ("\nerrors:\n");
  const VaeModel *vm = video_cpu->model;
  /* Engines without streams refuse video models. */
  for (const char *const *b = vae_engine_backends (); *b; b++) {
    if (g_str_equal (*b, "cpu"))
      continue;
    g_autoptr (GError) error = NULL;
    const char *settings[] = { "url=http://127.0.0.1:1", NULL };
    VaeEngineOptions o = VAE_ENGINE_OPTIONS_INIT;
    if (g_str_equal (*b, "remote"))
      o.settings = settings;
    g_autoptr (VaeEngine) e = vae_engine_new (*b, vm, &o, &error);
    g_autofree char *what = g_strdup_printf ("video model on backend '%s'", *b);
    const char *words[] = { "video model", *b, NULL };
    if (e) {
      fail ("%s: accepted", what);
      continue;
    }
    /* A module that cannot open here fails first, for its own reason. */
    if (!strstr (error->message, "video")) {
      VaeEngineInfo info;
      if (vae_engine_backend_info (*b, &info) && !info.module && !info.builtin) {
        printf ("  --   %-44s not checked: %s\n", what, error->message);
        continue;
      }
    }
    expect_error (error, what, words);
  }
  /* An image model has no streams. */
  {
    g_autofree char *path = g_build_filename (models_dir, "tiny-sd-random", NULL);
    g_autoptr (GError) error = NULL;
    g_autoptr (VaeModel) im = vae_model_load (path, NULL, &error);
    if (!im) {
      fail ("loading %s: %s", path, error->message);
    } else {
      g_autoptr (VaeEngine) e = vae_engine_new ("cpu", im, NULL, &error);
      if (!e) {
        fail ("cpu engine for %s: %s", path, error->message);
      } else {
        const char *words[] = { "image model", "stream", NULL };
        g_autoptr (VaeStream) s = vae_stream_new (e, VAE_DIRECTION_ENCODE, 64, 64, &error);
        expect_error (s ? NULL : error, "vae_stream_new on an image model", words);
      }
    }
  }
  /* Frame sizes the encoder cannot take (callers pad: codec.h). */
  {
    g_autoptr (GError) error = NULL;
    Frames f;
    frames_init (&f);
    const int sf = vm->spatial_factor;
    g_autoptr (VaeVideoCoder) vc = vae_video_coder_new (video_cpu, VAE_DIRECTION_ENCODE, 2 * sf,
                                                        2 * sf + 3, collect, &f, &error);
    g_autofree char *factor = g_strdup_printf ("%d", sf);
    const char *words[] = { "multiple", factor, NULL };
    expect_error (vc ? NULL : error, "coder: frame width not a multiple", words);
    frames_clear (&f);
  }
  /* Decode with latents of another channel count: the stream's frames are
   * the model's; vae-tool checks files (test-vae-tool-video.py). */
}

/* ------------------------------------------------------------------ main */

/* Frames of a reference file name (<...>x<T>.safetensors). */
static int
name_frames (const char *name)
{
  const char *x = strrchr (name, 'x');
  return x ? atoi (x + 1) : 0;
}

typedef struct {
  VaeModel *model;
  VaeEngine *engine;
} Loaded;

static void
loaded_free (Loaded *l)
{
  vae_engine_free (l->engine);
  vae_model_free (l->model);
  g_free (l);
}

static Loaded *
get_model (GHashTable *cache, const char *models_dir, const char *label, GError **error)
{
  Loaded *l = g_hash_table_lookup (cache, label);
  if (l)
    return l;
  g_autofree char *path = g_build_filename (models_dir, label, NULL);
  VaeModel *m = vae_model_load (path, NULL, error);
  if (!m)
    return NULL;
  VaeEngine *e = vae_engine_new ("cpu", m, NULL, error);
  if (!e) {
    vae_model_free (m);
    return NULL;
  }
  l = g_new0 (Loaded, 1);
  l->model = m;
  l->engine = e;
  g_hash_table_insert (cache, g_strdup (label), l);
  return l;
}

int
main (int argc, char **argv)
{
  failures = g_string_new (NULL);
  const char *testdata = g_getenv ("VAE_TESTDATA");
  g_autofree char *ref_dir = testdata ? g_build_filename (testdata, "reference-video", NULL) : NULL;
  g_autofree char *stream_dir = testdata ? g_build_filename (ref_dir, "streaming", NULL) : NULL;
  g_autofree char *models_dir = testdata ? g_build_filename (testdata, "models", NULL) : NULL;
  g_autoptr (GPtrArray) names = golden_list_references (ref_dir);
  if (names->len == 0) {
    g_autofree char *why = !testdata ? g_strdup ("VAE_TESTDATA is not set")
                                     : g_strdup_printf ("no reference files in %s", ref_dir);
    golden_report_skip ("test-video-golden", "VIDEO GOLDEN TESTS (cpu engine)", why,
                        "golden-skipped.marker");
    return 77;
  }
  g_autoptr (GPtrArray) snames = golden_list_references (stream_dir);
  g_autoptr (GHashTable) cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                        (GDestroyNotify) loaded_free);
  if (REDUCED)
    printf ("AddressSanitizer build: T = 1 and T = 5 files only, no streaming files\n");
  printf ("cells: max|diff|/rel L2 (float32: <= %.0e / %.0e); u8: max level diff (%% of values "
          "off)\n\n", MAX_ABS_TOL, REL_L2_TOL);
  printf ("%-32s %-44s %-6s %-17s %-17s %-17s %-17s %-13s %-17s %-17s %-17s %s\n", "model",
          "file", "result", "latent_mean", "normalized", "decoded", "dec(norm)", "decoded_u8",
          "own(cut to T)", "reset", "split", "time");
  for (guint i = 0; i < names->len; i++) {
    const char *name = g_ptr_array_index (names, i);
    const int T = name_frames (name);
    if (REDUCED && T != 1 && T != 5)
      continue;
    g_autofree char *ref_model = g_strndup (name, strstr (name, "__") - name);
    const char *const *paths = golden_video_models (ref_model);
    if (!paths) {
      fail ("%s: no model for '%s' in this test's list", name, ref_model);
      continue;
    }
    g_autofree char *ref_path = g_build_filename (ref_dir, name, NULL);
    g_autofree char *stem = g_strndup (name, strlen (name) - strlen (".safetensors"));
    for (guint p = 0; paths[p]; p++) {
      const char *label = paths[p];
      if (!golden_selected (argc, argv, name, label))
        continue;
      gint64 t0 = g_get_monotonic_time ();
      g_autoptr (GError) error = NULL;
      Row r = { 0 };
      const int fails0 = n_fail;
      Loaded *l = get_model (cache, models_dir, label, &error);
      g_autoptr (VaeSafetensors) ref = l ? vae_safetensors_open (ref_path, &error) : NULL;
      if (!ref || !run_case (l->engine, label, stem, ref, &r, &error))
        fail ("%s / %s: %s", stem, label, error->message);
      const gboolean ok = n_fail == fails0;
      if (ok)
        n_pass++;
      g_autofree char *c1 = fmt_cmp (&r.latent, FALSE), *c2 = fmt_cmp (&r.norm, FALSE),
                      *c3 = fmt_cmp (&r.dec, FALSE), *c4 = fmt_cmp (&r.dec_n, FALSE),
                      *c5 = fmt_cmp (&r.u8, TRUE), *c6 = fmt_cmp (&r.own, FALSE),
                      *c7 = fmt_cmp (&r.reset, FALSE), *c8 = fmt_cmp (&r.split, FALSE);
      printf ("%-32s %-44s %-6s %-17s %-17s %-17s %-17s %-13s %-17s %-17s %-17s %.1fs%s%s\n",
              label, stem, ok ? "PASS" : "FAIL", c1, c2, c3, c4, c5, c6, c7, c8,
              (g_get_monotonic_time () - t0) / 1e6, r.note ? "  " : "", r.note ? r.note : "");
      g_autofree char *px1 = fmt_cmp (&r.px_in, FALSE), *px2 = fmt_cmp (&r.px_out, TRUE);
      printf ("%-32s %-44s        pixels: from_rgb8 vs input %s, to_rgb8 (decoded) vs "
              "decoded_u8 %s%s\n", "", "", px1, px2,
              golden_video_builtin_norm (label)
              ? "; normalized: n/a (built-in real Wan 2.1 statistics)" : "");
      fflush (stdout);
      g_free (r.note);
    }
  }

  if (!REDUCED && snames->len) {
    printf ("\nreference-video/streaming (prefix evidence):\n");
    printf ("%-32s %-44s %-6s %-17s %-17s %-17s %-17s %-17s %-17s %-17s\n", "model", "file",
            "result", "latent_full", "latent_prefix", "prefix==full", "decoded_full",
            "decoded_prefix", "dprefix==full", "streaming");
    for (guint i = 0; i < snames->len; i++) {
      const char *name = g_ptr_array_index (snames, i);
      g_autofree char *ref_model = g_strndup (name, strstr (name, "__") - name);
      const char *const *paths = golden_video_models (ref_model);
      if (!paths) {
        fail ("streaming/%s: no model for '%s'", name, ref_model);
        continue;
      }
      g_autofree char *ref_path = g_build_filename (stream_dir, name, NULL);
      g_autofree char *stem = g_strdup_printf ("streaming/%.*s", (int) (strlen (name) - 12),
                                               name);
      for (guint p = 0; paths[p]; p++) {
        const char *label = paths[p];
        if (!golden_selected (argc, argv, stem, label))
          continue;
        gint64 t0 = g_get_monotonic_time ();
        g_autoptr (GError) error = NULL;
        SRow r = { 0 };
        const int fails0 = n_fail;
        Loaded *l = get_model (cache, models_dir, label, &error);
        g_autoptr (VaeSafetensors) ref = l ? vae_safetensors_open (ref_path, &error) : NULL;
        if (!ref || !run_streaming (l->engine, label, stem, ref, &r, &error))
          fail ("%s / %s: %s", stem, label, error->message);
        const gboolean ok = n_fail == fails0;
        if (ok)
          n_pass++;
        g_autofree char *c1 = fmt_cmp (&r.latent, FALSE), *c2 = fmt_cmp (&r.prefix, FALSE),
                        *c3 = fmt_cmp (&r.causal, FALSE), *c4 = fmt_cmp (&r.dec, FALSE),
                        *c5 = fmt_cmp (&r.dprefix, FALSE), *c6 = fmt_cmp (&r.dcausal, FALSE),
                        *c7 = fmt_cmp (&r.streaming, FALSE);
        printf ("%-32s %-44s %-6s %-17s %-17s %-17s %-17s %-17s %-17s %-17s %.1fs\n", label,
                stem, ok ? "PASS" : "FAIL", c1, c2, c3, c4, c5, c6, c7,
                (g_get_monotonic_time () - t0) / 1e6);
        fflush (stdout);
      }
    }
  }

  if (argc < 2) {
    g_autoptr (GError) error = NULL;
    Loaded *l = get_model (cache, models_dir, "taew2_1-random.safetensors", &error);
    if (!l)
      fail ("errors: %s", error->message);
    else
      error_cases (models_dir, l->engine);
  }

  if (failures->len)
    printf ("\n%s", failures->str);
  printf ("\n%d passed, %d failed (bounds: max|diff| <= %.0e, rel L2 <= %.0e, u8 <= %d "
          "level; split <= %.0e)\n", n_pass, n_fail, MAX_ABS_TOL, REL_L2_TOL, U8_TOL, SPLIT_TOL);
  g_string_free (failures, TRUE);
  return n_fail ? 1 : n_pass ? 0 : 77;
}
