/* Golden tests for FLUX.2's AutoencoderKLFlux2: the engine (VAE_GOLDEN_BACKEND,
 * default cpu, float32) against $VAE_TESTDATA/reference-flux2 (diffusers
 * v0.40 AutoencoderKLFlux2 and the FLUX.2 pipeline's latent code; see
 * ../shared/testdata/README.md, FLUX.2 section).
 *
 * One case per reference file, /golden-flux2/<model>/<image>_<W>x<H>, plus
 * /golden-flux2/flux2-mini-original/... running flux2-mini's references
 * against Black Forest Labs' single-file layout of the same weights.  Each
 * case checks:
 *   - encode(input) == latent_mean, and its clamped logvar == latent_logvar;
 *   - the codec's NORMALIZED format of that mode (2x2 patches, channel
 *     c*4 + dy*2 + dx, then (x - running_mean) / sqrt(running_var + eps))
 *     == latent_normalized, and the format's channels / factor == the
 *     reference's normalized_channels / normalized_spatial_factor;
 *   - decode(latent_mean) == decoded;
 *   - the inverse: to_decoder(from_encoder(mode)) == mode (float rounding);
 *   - the pixel path: image (u8) -> encode -> NORMALIZED -> back -> decode
 *     -> u8 == decoded_from_normalized_u8, and the RAW path -> decoded_u8,
 *     both within one level.
 * Float tensors: max |diff| <= 1e-3 and relative L2 <= 1e-4.
 *
 * Without the test data every case is skipped loudly, the program exits 77
 * and writes the marker ($VAE_GOLDEN_SKIP_MARKER, else
 * ./golden-flux2-skipped.marker) that makes CI refuse the run. */
#include <glib.h>
#include <math.h>
#include <string.h>

#include "golden-diff.h"
#include "golden-run.h"
#include "golden-util.h"
#include "codec.h"
#include "engine.h"
#include "model.h"
#include "safetensors.h"
#include "vae-error.h"

#define MAX_ABS_TOL 1e-3
#define REL_L2_TOL 1e-4
#define U8_TOL 1
#define INVERSE_REL_TOL 1e-6

static const char *backend = "cpu";

static void
compare_f32 (const GoldenCase *gc, const char *what, const float *got, const float *want,
             gsize n, double abs_tol, double rel_tol)
{
  const GoldenDiff d = golden_diff_f32 (got, want, n);
  /* One line a tensor, for the golden error table of docs/testing.md. */
  g_printerr ("# %-34s %-22s max|diff| %.3g  rel L2 %.3g\n", gc->label, what,
              d.max_diff, d.rel);
  if (d.nan || !(d.max_diff <= abs_tol) || !(d.rel <= rel_tol))
    g_test_fail_printf ("%s: %s differs: max|diff| = %.3g (tolerance %.0e), rel L2 = "
                        "%.3g (tolerance %.0e)%s", gc->label, what, d.max_diff, abs_tol,
                        d.rel, rel_tol, d.nan ? ", NaN present" : "");
}

static void
compare_u8 (const GoldenCase *gc, const char *what, const guint8 *got, const guint8 *want,
            gsize n)
{
  const GoldenDiffU8 d = golden_diff_u8 (got, want, n);
  g_printerr ("# %-34s %-22s max level diff %d, %zu of %zu values differ\n", gc->label,
              what, d.max_diff, (size_t) d.off, (size_t) n);
  if (d.max_diff > U8_TOL)
    g_test_fail_printf ("%s: %s is off by %d levels (tolerance %d)", gc->label, what,
                        d.max_diff, U8_TOL);
}

static int
meta_int (const VaeSafetensors *st, const char *key)
{
  const char *v = vae_safetensors_metadata (st, key);
  return v ? atoi (v) : -1;
}

static void
test_case (gconstpointer data)
{
  const GoldenCase *gc = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (VaeSafetensors) ref = vae_safetensors_open (gc->ref_path, &error);
  if (!ref) {
    g_test_fail_printf ("%s: %s", gc->label, error->message);
    return;
  }
  VaeModelOptions mo = VAE_MODEL_OPTIONS_INIT;
  mo.norm_groups = gc->norm_groups;
  g_autoptr (VaeModel) model = vae_model_load (gc->model_path, &mo, &error);
  if (!model) {
    g_test_fail_printf ("%s: cannot load the model: %s", gc->label, error->message);
    return;
  }
  g_autoptr (VaeEngine) engine = vae_engine_new (backend, model, NULL, &error);
  if (!engine) {
    g_test_fail_printf ("%s: cannot open the %s engine: %s", gc->label, backend,
                        error->message);
    return;
  }
  const VaeLatentFormat norm = VAE_LATENT_FORMAT_NORMALIZED, raw = VAE_LATENT_FORMAT_RAW;
  const VaeTensorView *tin = vae_safetensors_lookup (ref, "input");
  if (!tin || tin->ndim != 4) {
    g_test_fail_printf ("%s: reference lacks 'input'", gc->label);
    return;
  }
  const int H = (int) tin->shape[2], W = (int) tin->shape[3];
  const int C = model->latent_channels, f = model->spatial_factor;
  const int h = H / f, w = W / f;
  const int CN = vae_latent_format_channels (model, norm);
  const int fn = vae_latent_format_factor (model, norm);

  /* The latent layout the reference describes. */
  g_assert_cmpstr (model->variant, ==, "flux2");
  g_assert_cmpint (C, ==, meta_int (ref, "latent_channels"));
  g_assert_cmpint (f, ==, meta_int (ref, "spatial_factor"));
  g_assert_cmpint (CN, ==, meta_int (ref, "normalized_channels"));
  g_assert_cmpint (fn, ==, meta_int (ref, "normalized_spatial_factor"));
  g_assert_cmpint (model->latent_patch, ==, meta_int (ref, "patch_size"));
  g_assert_cmpfloat_with_epsilon (model->batch_norm_eps,
                                  g_ascii_strtod (vae_safetensors_metadata (ref, "batch_norm_eps"),
                                                  NULL), 1e-12);
  g_assert_cmpint (vae_latent_format_channels (model, raw), ==, C);
  g_assert_cmpint (vae_latent_format_factor (model, raw), ==, f);
  g_assert_cmpstr (vae_latent_normalization_name (model, norm), ==, "patch2x2-batch-norm");

  const gsize n_pix = (gsize) 3 * H * W, n_lat = (gsize) C * h * w;
  g_autofree float *input = golden_ref_f32 (gc->label, ref, "input", n_pix);
  g_autofree float *mean = golden_ref_f32 (gc->label, ref, "latent_mean", n_lat);
  g_autofree float *logvar = golden_ref_f32 (gc->label, ref, "latent_logvar", n_lat);
  g_autofree float *normalized = golden_ref_f32 (gc->label, ref, "latent_normalized", n_lat);
  g_autofree float *decoded = golden_ref_f32 (gc->label, ref, "decoded", n_pix);
  const guint8 *image = golden_ref_u8 (gc->label, ref, "image", n_pix);
  const guint8 *decoded_u8 = golden_ref_u8 (gc->label, ref, "decoded_u8", n_pix);
  const guint8 *from_norm_u8 = golden_ref_u8 (gc->label, ref, "decoded_from_normalized_u8", n_pix);
  if (!input || !mean || !logvar || !normalized || !decoded || !image || !decoded_u8
      || !from_norm_u8)
    return;

  g_autofree float *enc = g_new (float, 2 * n_lat);
  g_autofree float *lat = g_new (float, 2 * n_lat);
  g_autofree float *back = g_new (float, n_lat);
  g_autofree float *dec = g_new (float, n_pix);
  g_autofree guint8 *rgb = g_new (guint8, n_pix);

  /* 1. encode(input): the moments, and their normalised form. */
  if (golden_run (gc->label, engine, VAE_DIRECTION_ENCODE, H, W, input, enc)) {
    compare_f32 (gc, "latent_mean", enc, mean, n_lat, MAX_ABS_TOL, REL_L2_TOL);
    vae_latents_from_encoder_format (model, norm, enc, h, w, VAE_LATENT_DISTRIBUTION, NULL,
                                     1.0, 0.0, lat);
    compare_f32 (gc, "latent_normalized", lat, normalized, n_lat, MAX_ABS_TOL, REL_L2_TOL);
    g_autofree float *lv = g_new (float, n_lat);
    for (gsize i = 0; i < n_lat; i++)
      lv[i] = CLAMP (enc[n_lat + i], -30.0f, 20.0f);
    compare_f32 (gc, "latent_logvar", lv, logvar, n_lat, MAX_ABS_TOL, REL_L2_TOL);
    /* The distribution's logvar half: the same values in 2x2 patches
     * (channel c*4 + dy*2 + dx at (y, x) holds (c, 2y+dy, 2x+dx)). */
    g_autofree float *lv_patched = g_new (float, n_lat);
    const int hp = h / 2, wp = w / 2;
    for (int c = 0; c < C; c++)
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
          lv_patched[((gsize) (c * 4 + (y % 2) * 2 + x % 2) * hp + y / 2) * wp + x / 2] =
              lv[((gsize) c * h + y) * w + x];
    compare_f32 (gc, "distribution logvar", lat + n_lat, lv_patched, n_lat, 0, 0);

    /* The inverse of the normalisation, to float rounding. */
    vae_latents_to_decoder_format (model, norm, lat, h, w, 1.0, 0.0, back);
    compare_f32 (gc, "normalized->mode", back, enc, n_lat, INVERSE_REL_TOL * 10,
                 INVERSE_REL_TOL);
  }

  /* 2. decode(latent_mean). */
  if (golden_run (gc->label, engine, VAE_DIRECTION_DECODE, h, w, mean, dec))
    compare_f32 (gc, "decoded", dec, decoded, n_pix, MAX_ABS_TOL, REL_L2_TOL);

  /* 3. The pixel paths, as vae-tool and the elements take them. */
  g_autofree float *pix = g_new (float, n_pix);
  vae_pixels_from_rgb8 (model, image, W, H, W * 3, 3, pix, H, W);
  if (!golden_run (gc->label, engine, VAE_DIRECTION_ENCODE, H, W, pix, enc))
    return;
  static const struct { VaeLatentFormat format; const char *what; } paths[] = {
    { VAE_LATENT_FORMAT_NORMALIZED, "decoded_from_normalized_u8" },
    { VAE_LATENT_FORMAT_RAW, "decoded_u8" },
  };
  for (guint p = 0; p < G_N_ELEMENTS (paths); p++) {
    vae_latents_from_encoder_format (model, paths[p].format, enc, h, w, VAE_LATENT_MODE,
                                     NULL, model->scaling_factor, model->shift_factor, lat);
    vae_latents_to_decoder_format (model, paths[p].format, lat, h, w,
                                   model->scaling_factor, model->shift_factor, back);
    if (golden_run (gc->label, engine, VAE_DIRECTION_DECODE, h, w, back, dec)) {
      vae_pixels_to_rgb8 (model, dec, H, W, rgb, W, H, W * 3, 3);
      compare_u8 (gc, paths[p].what, rgb, p == 0 ? from_norm_u8 : decoded_u8, n_pix);
    }
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (g_getenv ("VAE_GOLDEN_BACKEND") && *g_getenv ("VAE_GOLDEN_BACKEND"))
    backend = g_getenv ("VAE_GOLDEN_BACKEND");
  g_autoptr (GError) unusable = NULL;
  if (!g_str_equal (backend, "cpu") && !vae_engine_backend_check (backend, &unusable)) {
    g_printerr ("test-golden-flux2: %s: skipped\n", unusable->message);
    return 77;
  }
  const char *testdata = g_getenv ("VAE_TESTDATA");
  g_autofree char *ref_dir = testdata ? g_build_filename (testdata, "reference-flux2", NULL)
                                      : NULL;
  /* flux2-mini's references also run against BFL's layout of the same
   * weights.  Its module tree hard-codes GroupNorm(32) and the file cannot
   * say otherwise, so the test model's 16 groups are given as an option (as
   * vae-tool --norm-groups). */
  g_autoptr (GPtrArray) cases = golden_list_cases (testdata, ref_dir, "flux2-mini",
                                                   "flux2-mini-original.safetensors", 16);
  if (cases->len == 0) {
    g_autofree char *why = !testdata ? g_strdup ("VAE_TESTDATA is not set")
        : g_strdup_printf ("no reference files in %s", ref_dir);
    return golden_skip_all ("test-golden-flux2", "FLUX.2 GOLDEN TESTS", why,
                            "golden-flux2-skipped.marker", "/golden-flux2/skipped");
  }
  for (guint i = 0; i < cases->len; i++) {
    GoldenCase *c = g_ptr_array_index (cases, i);
    g_autofree char *path = g_strdup_printf ("/golden-flux2/%s", c->label);
    g_test_add_data_func (path, c, test_case);
  }
  return g_test_run ();
}
