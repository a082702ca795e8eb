/* Golden test of the video model builders (Wan 2.1 / 2.2, TAEHV) against the
 * peers' reference outputs in $VAE_TESTDATA/reference-video (diffusers
 * AutoencoderKLWan and taehv.py; see ../shared/testdata/README.md).
 *
 * The executor is the double-precision reference of tests/ops/ref-ops.c
 * (ref_graph_run_stream with a RefState), so this checks the graphs a
 * builder makes - ops, weights, state slots, first-chunk graphs, chunking -
 * independently of any engine.
 *
 * For each reference file <model>__<photo>_<W>x<H>x<T>.safetensors and each
 * model file that holds <model>'s weights (wan21-mini: the diffusers folder
 * and the original-layout single file):
 *   encode: `input` chunk by chunk through one stream: the first chunk of
 *     model->encode_first_frames frames through encoder_first (encoder when
 *     NULL), then chunks of encode_chunk_frames through encoder.  Wan drops
 *     the frames beyond the last full chunk (T = 7 -> frames 0-4), as
 *     diffusers does; TAEHV pads the end with copies of the last frame.
 *     The first latent_channels channels of the output (the mean, for
 *     models whose encoder outputs moments) == latent_mean, and normalised
 *     with the model's latents_mean/latents_std (or scaling/shift) ==
 *     latent_normalized.
 *   decode: the reference latent_mean one latent per call (the first
 *     through decoder_first), the stream's first decode_drop_frames frames
 *     dropped, == decoded (before the clamp).
 * Bounds: max |diff| <= 1e-3 and relative L2 <= 1e-4 (the float32 ones).
 * Layouts: Wan files are NCTHW, TAEHV files NTCHW (metadata "layout"); the
 * graphs are frame-major [T, C, H, W].
 *
 * A model whose builder has not landed yet (the load fails with
 * VAE_ERROR_UNSUPPORTED and the model is not in required_models) is a SKIP
 * with the reason, not a pass.  Without the test data the program skips
 * loudly, writes the golden skip marker and exits 77.
 *
 * VAE_VIDEO_REF_PERTURB=x scales every op's output by 1 + x (ref-ops'
 * perturbation): every case must then FAIL, which shows that the
 * comparisons have teeth.
 *
 * Arguments: substrings; only files or model paths containing one of them
 * run (e.g. `test-video-ref wan22`). */
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "golden-diff.h"
#include "golden-util.h"
#include "model.h"
#include "ref-ops.h"
#include "safetensors.h"
#include "vae-error.h"

#define MAX_ABS_TOL 1e-3
#define REL_L2_TOL 1e-4

/* Models whose builder must load them: a load failure is a FAIL. */
static const char *const required_models[] = {
  "wan21-mini", "wan21-mini-original.safetensors", "wan22-mini",
  "taew2_1-random.safetensors", "taew2_2-random.safetensors", NULL,
};

typedef struct {
  double max_diff, rel;
  gboolean ok, nan;
} Cmp;

static Cmp
compare (const double *got, const float *want, gsize n)
{
  const GoldenDiff d = golden_diff_f64 (got, want, n);
  Cmp c = { d.max_diff, d.rel, FALSE, d.nan };
  c.ok = !c.nan && c.max_diff <= MAX_ABS_TOL && c.rel <= REL_L2_TOL;
  return c;
}

/* A float32 tensor of the reference file, checked for its element count. */
static float *
ref_tensor (VaeSafetensors *st, const char *name, int ndim_want, gint64 *shape,
            GError **error)
{
  const VaeTensorView *t = vae_safetensors_lookup (st, name);
  if (!t) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "%s: no tensor '%s'",
                 vae_safetensors_path (st), name);
    return NULL;
  }
  if (t->ndim != ndim_want) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "%s: tensor '%s' has %d dims, not %d",
                 vae_safetensors_path (st), name, t->ndim, ndim_want);
    return NULL;
  }
  for (int i = 0; i < t->ndim; i++)
    shape[i] = t->shape[i];
  float *data = g_new (float, MAX (t->n_elements, 1));
  if (!vae_tensor_view_to_f32 (t, data, error)) {
    g_free (data);
    return NULL;
  }
  return data;
}

/* [1, C, T, H, W] (NCTHW) <-> frame-major [T, C, H, W]; NTCHW is already
 * frame-major. */
static float *
to_frame_major (const float *src, gboolean ncthw, int c, int t, int hw)
{
  float *dst = g_new (float, (gsize) c * t * hw);
  for (int ti = 0; ti < t; ti++)
    for (int ci = 0; ci < c; ci++)
      memcpy (dst + ((gsize) ti * c + ci) * hw,
              src + (ncthw ? ((gsize) ci * t + ti) * hw : ((gsize) ti * c + ci) * hw),
              (gsize) hw * sizeof (float));
  return dst;
}

typedef struct {
  char *status;        /* PASS / FAIL / SKIP */
  char *note;
  Cmp latent, normalized, decoded;
  gboolean has_latent, has_normalized, has_decoded;
} Result;

/* One reference file through one model.  FALSE with ERROR when the run
 * could not be made (bad reference file, frame counts that do not fit). */
static double perturb;

static gboolean
run_case (const VaeModel *m, const char *model_label, VaeSafetensors *ref, Result *r,
          GError **error)
{
  const char *layout = vae_safetensors_metadata (ref, "layout");
  const gboolean ncthw = !layout || !g_str_equal (layout, "NTCHW");
  gint64 ishape[5], lshape[5], dshape[5];
  g_autofree float *input = ref_tensor (ref, "input", 5, ishape, error);
  if (!input)
    return FALSE;
  g_autofree float *lat_ref = ref_tensor (ref, "latent_mean", 5, lshape, error);
  if (!lat_ref)
    return FALSE;
  g_autofree float *dec_ref = ref_tensor (ref, "decoded", 5, dshape, error);
  if (!dec_ref)
    return FALSE;
  g_autoptr (GError) no_norm = NULL;
  gint64 nshape[5];
  g_autofree float *norm_ref = ref_tensor (ref, "latent_normalized", 5, nshape, &no_norm);

  /* Sizes: NCTHW [1, C, T, H, W] or NTCHW [1, T, C, H, W]. */
#define DIM_C(s) ((int) (ncthw ? (s)[1] : (s)[2]))
#define DIM_T(s) ((int) (ncthw ? (s)[2] : (s)[1]))
  const int C = DIM_C (ishape), T = DIM_T (ishape), H = (int) ishape[3], W = (int) ishape[4];
  const int Z = DIM_C (lshape), LT = DIM_T (lshape), LH = (int) lshape[3], LW = (int) lshape[4];
  const int DC = DIM_C (dshape), DT = DIM_T (dshape);
#undef DIM_C
#undef DIM_T
  if (C != m->image_channels || Z != m->latent_channels || DC != m->image_channels) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "channels: reference image %d / latent %d, model %d / %d", C, Z,
                 m->image_channels, m->latent_channels);
    return FALSE;
  }
  if (!m->encoder || !m->decoder) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL, "%s: the model lacks a half",
                 model_label);
    return FALSE;
  }
  g_autofree float *frames = to_frame_major (input, ncthw, C, T, H * W);
  g_autofree float *lat_fm = to_frame_major (lat_ref, ncthw, Z, LT, LH * LW);
  g_autofree float *dec_fm = to_frame_major (dec_ref, ncthw, DC, DT, H * W);
  g_autofree float *norm_fm = norm_ref ? to_frame_major (norm_ref, ncthw, Z, LT, LH * LW) : NULL;

  /* ---- encode ---- */
  const int first = MAX (m->encode_first_frames, 1), chunk = MAX (m->encode_chunk_frames, 1);
  const gboolean pad_end = m->family == VAE_FAMILY_TAEHV;
  int n_frames;   /* frames fed, after dropping or padding */
  if (T <= first)
    n_frames = pad_end ? first : (T == first ? first : 0);
  else if (pad_end)
    n_frames = first + (T - first + chunk - 1) / chunk * chunk;
  else
    n_frames = first + (T - first) / chunk * chunk;
  if (n_frames == 0) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT, "%d frames: fewer than the first chunk", T);
    return FALSE;
  }
  const gsize frame_size = (gsize) C * H * W;
  g_autofree float *fed = g_new (float, (gsize) n_frames * frame_size);
  for (int f = 0; f < n_frames; f++)
    memcpy (fed + f * frame_size, frames + (gsize) MIN (f, T - 1) * frame_size,
            frame_size * sizeof (float));

  RefState *est = ref_state_new (m->encoder, H, W);
  g_autoptr (GArray) lat = g_array_new (FALSE, FALSE, sizeof (double));
  int got_lt = 0, got_lh = 0, got_lw = 0;
  for (int at = 0, call = 0; at < n_frames; call++) {
    const VaeGraph *g = call == 0 && m->encoder_first ? m->encoder_first : m->encoder;
    const int t = call == 0 ? first : chunk;
    int ot, oc, oh, ow;
    double *out = ref_graph_run_stream (g, est, t, H, W, fed + (gsize) at * frame_size, perturb,
                                        &ot, &oc, &oh, &ow);
    if (oc < Z) {
      g_free (out);
      ref_state_free (est);
      g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL, "encoder gives %d channels", oc);
      return FALSE;
    }
    for (int f = 0; f < ot; f++)
      g_array_append_vals (lat, out + (gsize) f * oc * oh * ow, (guint) ((gsize) Z * oh * ow));
    got_lt += ot;
    got_lh = oh;
    got_lw = ow;
    g_free (out);
    at += t;
  }
  ref_state_free (est);
  if (got_lt != LT || got_lh != LH || got_lw != LW) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL,
                 "encoder gave %d latents of %dx%d; the reference has %d of %dx%d",
                 got_lt, got_lw, got_lh, LT, LW, LH);
    return FALSE;
  }
  const gsize n_lat = (gsize) LT * Z * LH * LW;
  r->latent = compare ((double *) lat->data, lat_fm, n_lat);
  r->has_latent = TRUE;

  /* ---- normalised latents ---- */
  if (norm_fm && !golden_video_builtin_norm (model_label)) {
    g_autofree double *norm = g_new (double, n_lat);
    const gsize plane = (gsize) LH * LW;
    for (gsize i = 0; i < n_lat; i++) {
      int c = (int) ((i / plane) % Z);
      double x = ((double *) lat->data)[i];
      norm[i] = m->latents_mean
          ? (x - m->latents_mean[c]) / m->latents_std[c]
          : (x - m->shift_factor) * m->scaling_factor;
    }
    r->normalized = compare (norm, norm_fm, n_lat);
    r->has_normalized = TRUE;
  }

  /* ---- decode: the reference latents, one per call ---- */
  RefState *dst = ref_state_new (m->decoder, LH, LW);
  g_autoptr (GArray) dec = g_array_new (FALSE, FALSE, sizeof (double));
  const gsize lat_frame = (gsize) Z * LH * LW;
  int dropped = 0, got_dt = 0;
  for (int k = 0; k < LT; k++) {
    const VaeGraph *g = k == 0 && m->decoder_first ? m->decoder_first : m->decoder;
    int ot, oc, oh, ow;
    double *out = ref_graph_run_stream (g, dst, 1, LH, LW, lat_fm + k * lat_frame, perturb,
                                        &ot, &oc, &oh, &ow);
    if (oc != DC || oh != H || ow != W) {
      g_free (out);
      ref_state_free (dst);
      g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL,
                   "decoder gives %d channels of %dx%d; the reference %d of %dx%d", oc, ow,
                   oh, DC, W, H);
      return FALSE;
    }
    for (int f = 0; f < ot; f++) {
      if (dropped < m->decode_drop_frames) {
        dropped++;
        continue;
      }
      g_array_append_vals (dec, out + (gsize) f * oc * oh * ow, (guint) ((gsize) oc * oh * ow));
      got_dt++;
    }
    g_free (out);
  }
  ref_state_free (dst);
  if (got_dt != DT) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL,
                 "decoder gave %d frames; the reference has %d", got_dt, DT);
    return FALSE;
  }
  r->decoded = compare ((double *) dec->data, dec_fm, (gsize) DT * DC * H * W);
  r->has_decoded = TRUE;
  return TRUE;
}

static char *
fmt_cmp (const Cmp *c, gboolean present)
{
  if (!present)
    return g_strdup ("-");
  return g_strdup_printf ("%.2e/%.2e%s", c->max_diff, c->rel,
                          c->nan ? " NaN" : c->ok ? "" : " !");
}

int
main (int argc, char **argv)
{
  const char *testdata = g_getenv ("VAE_TESTDATA");
  if (g_getenv ("VAE_VIDEO_REF_PERTURB"))
    perturb = g_ascii_strtod (g_getenv ("VAE_VIDEO_REF_PERTURB"), NULL);
  g_autofree char *ref_dir = testdata ? g_build_filename (testdata, "reference-video", NULL) : NULL;
  g_autofree char *models_dir = testdata ? g_build_filename (testdata, "models", NULL) : NULL;
  g_autoptr (GPtrArray) names = golden_list_references (ref_dir);
#ifdef __SANITIZE_ADDRESS__
  /* The sanitizer tree checks the builders on single frames (every
   * first-chunk graph); the release tree and video-golden (the engine,
   * also under ASan) cover the clips.  The plain-loop reference is too
   * slow under ASan for all of them. */
  for (guint i = names->len; i-- > 0;)
    if (!g_str_has_suffix (g_ptr_array_index (names, i), "x1.safetensors"))
      g_ptr_array_remove_index (names, i);
#endif
  if (names->len == 0) {
    g_autofree char *why = !testdata ? g_strdup ("VAE_TESTDATA is not set")
                                     : g_strdup_printf ("no reference files in %s", ref_dir);
    golden_report_skip ("test-video-ref", "VIDEO GOLDEN TESTS", why, "golden-skipped.marker");
    return 77;
  }

  /* Models are loaded once each. */
  g_autoptr (GHashTable) models = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                         (GDestroyNotify) vae_model_free);
  g_autoptr (GHashTable) load_errors = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                              (GDestroyNotify) g_error_free);
  int n_pass = 0, n_fail = 0, n_skip = 0;
  printf ("%-44s %-34s %-6s %-20s %-20s %-20s\n", "reference file", "model", "result",
          "latent max/relL2", "normalized", "decoded");

  for (guint i = 0; i < names->len; i++) {
    const char *name = g_ptr_array_index (names, i);
    g_autofree char *ref_model = g_strndup (name, strstr (name, "__") - name);
    const char *const *paths = golden_video_models (ref_model);
    const char *fallback[2] = { ref_model, NULL };
    if (!paths)
      paths = fallback;

    g_autofree char *ref_path = g_build_filename (ref_dir, name, NULL);
    for (guint p = 0; paths[p]; p++) {
      const char *model_label = paths[p];
      if (!golden_selected (argc, argv, name, model_label))
        continue;
      Result r = { 0 };
      g_autoptr (GError) error = NULL;
      g_autofree char *model_path = g_build_filename (models_dir, model_label, NULL);
      VaeModel *m = g_hash_table_lookup (models, model_label);
      GError *load_error = g_hash_table_lookup (load_errors, model_label);
      if (!m && !load_error) {
        m = vae_model_load (model_path, NULL, &load_error);
        if (m)
          g_hash_table_insert (models, g_strdup (model_label), m);
        else
          g_hash_table_insert (load_errors, g_strdup (model_label), load_error);
      }
      gint64 t0 = g_get_monotonic_time ();
      if (!m) {
        gboolean required = g_strv_contains (required_models, model_label);
        if (!required && g_error_matches (load_error, VAE_ERROR, VAE_ERROR_UNSUPPORTED)) {
          r.status = g_strdup ("SKIP");
          r.note = g_strdup_printf ("builder not available (%s)", load_error->message);
        } else {
          r.status = g_strdup ("FAIL");
          r.note = g_strdup_printf ("load: %s", load_error->message);
        }
      } else {
        g_autoptr (VaeSafetensors) ref = vae_safetensors_open (ref_path, &error);
        if (!ref || !run_case (m, model_label, ref, &r, &error)) {
          r.status = g_strdup ("FAIL");
          r.note = g_strdup (error->message);
        } else {
          gboolean ok = r.latent.ok && r.decoded.ok && (!r.has_normalized || r.normalized.ok);
          r.status = g_strdup (ok ? "PASS" : "FAIL");
          if (!r.has_normalized)
            r.note = g_strdup ("normalized: n/a (the model's built-in normalisation)");
        }
      }
      g_autofree char *l = fmt_cmp (&r.latent, r.has_latent);
      g_autofree char *n = fmt_cmp (&r.normalized, r.has_normalized);
      g_autofree char *d = fmt_cmp (&r.decoded, r.has_decoded);
      g_autofree char *stem = g_strndup (name, strlen (name) - strlen (".safetensors"));
      printf ("%-44s %-34s %-6s %-20s %-20s %-20s %.1fs%s%s\n", stem, model_label, r.status,
              l, n, d, (g_get_monotonic_time () - t0) / 1e6, r.note ? "  " : "",
              r.note ? r.note : "");
      fflush (stdout);
      if (g_str_equal (r.status, "PASS"))
        n_pass++;
      else if (g_str_equal (r.status, "SKIP"))
        n_skip++;
      else
        n_fail++;
      g_free (r.status);
      g_free (r.note);
    }
  }
  printf ("\n%d passed, %d failed, %d skipped (bounds: max|diff| <= %.0e, rel L2 <= %.0e)\n",
          n_pass, n_fail, n_skip, MAX_ABS_TOL, REL_L2_TOL);
  if (n_fail)
    return 1;
  return n_pass ? 0 : 77;
}
