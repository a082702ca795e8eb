/* gst-vae golden tests: one case of an image golden program (golden-run.h). */
#include "golden-run.h"

float *
golden_ref_f32 (const char *label, const VaeSafetensors *st, const char *name, gsize n)
{
  g_autoptr (GError) error = NULL;
  const VaeTensorView *t = vae_safetensors_lookup (st, name);
  if (!t) {
    g_test_fail_printf ("%s: reference has no tensor '%s'", label, name);
    return NULL;
  }
  if (t->n_elements != n) {
    g_test_fail_printf ("%s: reference tensor '%s' has %" G_GUINT64_FORMAT
                        " elements, %zu expected", label, name, t->n_elements, (size_t) n);
    return NULL;
  }
  float *v = g_new (float, n);
  if (!vae_tensor_view_to_f32 (t, v, &error)) {
    g_test_fail_printf ("%s: %s", label, error->message);
    g_free (v);
    return NULL;
  }
  return v;
}

const guint8 *
golden_ref_u8 (const char *label, const VaeSafetensors *st, const char *name, gsize n)
{
  const VaeTensorView *t = vae_safetensors_lookup (st, name);
  if (!t || t->dtype != VAE_DTYPE_U8 || t->n_elements != n) {
    g_test_fail_printf ("%s: reference tensor '%s' is missing or not U8 of %zu elements",
                        label, name, (size_t) n);
    return NULL;
  }
  return t->data;
}

gboolean
golden_run (const char *label, VaeEngine *engine, VaeDirection dir, int h, int w,
            const float *in, float *out)
{
  g_autoptr (GError) error = NULL;
  VaeBatch batch = { dir, 1, h, w, in, out, NULL, NULL };
  const char *what = dir == VAE_DIRECTION_ENCODE ? "encode" : "decode";
  gint64 t0 = g_get_monotonic_time ();
  if (!vae_engine_run (engine, &batch, &error)) {
    g_test_fail_printf ("%s: %s failed: %s", label, what, error->message);
    return FALSE;
  }
  g_test_message ("%s: %s %dx%d took %.3f s", label, what, w, h,
                  (g_get_monotonic_time () - t0) / 1e6);
  return TRUE;
}
