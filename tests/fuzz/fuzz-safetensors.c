/* gst-vae: libFuzzer target for the safetensors reader.
 *
 * Parses the input as a safetensors file; on success walks every tensor,
 * widens the float ones, reads the metadata, and writes the whole thing back
 * out with the writer, which must parse again to the same tensors. */
#include "safetensors.h"
#include "vae-error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONVERT_ELEMENTS (1u << 20)

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      g_printerr ("fuzz-safetensors: check failed: %s (%s:%d)\n", #cond,       \
                  __FILE__, __LINE__);                                         \
      abort ();                                                                \
    }                                                                          \
  } while (0)

static const char LABEL[] = "fuzz.safetensors";

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  /* a g_return_if_fail inside the reader is a bug too */
  g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
  return 0;
}

static gboolean
is_float (VaeDType d)
{
  return d == VAE_DTYPE_F32 || d == VAE_DTYPE_F16 || d == VAE_DTYPE_BF16
      || d == VAE_DTYPE_F64;
}

/* Every property a successfully parsed file must have. */
static void
walk (const VaeSafetensors *st, const guint8 *base, gsize size)
{
  guint n = vae_safetensors_n_tensors (st);
  const guint8 *prev_data = NULL;

  for (guint i = 0; i < n; i++) {
    const VaeTensorView *t = vae_safetensors_tensor_at (st, i);
    CHECK (t != NULL && t->name != NULL);
    CHECK (vae_safetensors_lookup (st, t->name) == t);
    CHECK (vae_dtype_name (t->dtype) != NULL);
    CHECK (t->ndim >= 0 && t->ndim <= VAE_SAFETENSORS_MAX_DIMS);
    guint64 n_el = 1;
    for (int d = 0; d < t->ndim; d++) {
      CHECK (t->shape[d] >= 0);
      n_el *= (guint64) t->shape[d];
    }
    CHECK (n_el == t->n_elements);
    CHECK (t->n_bytes == t->n_elements * vae_dtype_size (t->dtype));
    /* the view lies inside the input, in offset order */
    if (size > 0) {
      CHECK (t->data >= base && t->data <= base + size);
      CHECK (t->n_bytes <= (gsize) (base + size - t->data));
    }
    CHECK (prev_data == NULL || t->data >= prev_data);
    prev_data = t->data;

    CHECK (vae_tensor_view_check_shape (t, LABEL, t->ndim, t->shape, NULL));
    gint64 other[VAE_SAFETENSORS_MAX_DIMS + 1];
    memcpy (other, t->shape, sizeof t->shape);
    other[t->ndim] = 1;
    GError *error = NULL;
    CHECK (!vae_tensor_view_check_shape (t, LABEL, t->ndim + 1, other, &error));
    CHECK (error != NULL && g_error_matches (error, VAE_ERROR, VAE_ERROR_MODEL));
    g_error_free (error);

    if (t->n_elements <= MAX_CONVERT_ELEMENTS) {
      float *dst = g_new (float, t->n_elements ? t->n_elements : 1);
      error = NULL;
      gboolean ok = vae_tensor_view_to_f32 (t, dst, &error);
      CHECK (ok == is_float (t->dtype));
      CHECK (ok == (error == NULL));
      g_clear_error (&error);
      g_free (dst);
    }
  }

  const char **keys = vae_safetensors_metadata_keys (st);
  CHECK (keys != NULL);
  for (const char **k = keys; *k; k++)
    CHECK (vae_safetensors_metadata (st, *k) != NULL);
  g_free (keys);
}

/* Writes ST back out; the result must parse to the same tensors. */
static void
round_trip (const VaeSafetensors *st)
{
  VaeSafetensorsWriter *w = vae_safetensors_writer_new ();
  guint n = vae_safetensors_n_tensors (st);
  for (guint i = 0; i < n; i++) {
    const VaeTensorView *t = vae_safetensors_tensor_at (st, i);
    GError *error = NULL;
    gboolean ok = vae_safetensors_writer_add (w, t->name, t->dtype, t->ndim, t->shape,
                                              t->data, t->n_bytes, &error);
    if (!ok)
      g_printerr ("writer_add: %s\n", error->message);
    CHECK (ok);
  }
  const char **keys = vae_safetensors_metadata_keys (st);
  for (const char **k = keys; *k; k++)
    vae_safetensors_writer_set_metadata (w, *k, vae_safetensors_metadata (st, *k));

  GBytes *bytes = vae_safetensors_writer_to_bytes (w);
  GError *error = NULL;
  VaeSafetensors *st2 = vae_safetensors_new_from_bytes (bytes, "rewritten", &error);
  if (st2 == NULL)
    g_printerr ("re-parse: %s\n", error->message);
  CHECK (st2 != NULL);
  CHECK (vae_safetensors_n_tensors (st2) == n);
  for (guint i = 0; i < n; i++) {
    const VaeTensorView *a = vae_safetensors_tensor_at (st, i);
    const VaeTensorView *b = vae_safetensors_lookup (st2, a->name);
    CHECK (b != NULL);
    CHECK (a->dtype == b->dtype && a->ndim == b->ndim && a->n_bytes == b->n_bytes);
    CHECK (memcmp (a->shape, b->shape, sizeof (gint64) * (gsize) a->ndim) == 0);
    CHECK (a->n_bytes == 0 || memcmp (a->data, b->data, a->n_bytes) == 0);
  }
  for (const char **k = keys; *k; k++)
    CHECK (g_strcmp0 (vae_safetensors_metadata (st, *k),
                      vae_safetensors_metadata (st2, *k)) == 0);
  g_free (keys);
  vae_safetensors_free (st2);
  g_bytes_unref (bytes);
  vae_safetensors_writer_free (w);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GBytes *bytes = g_bytes_new_static (data, size);
  GError *error = NULL;
  VaeSafetensors *st = vae_safetensors_new_from_bytes (bytes, LABEL, &error);

  if (st == NULL) {
    CHECK (error != NULL);
    CHECK (error->domain == VAE_ERROR && error->code == VAE_ERROR_FORMAT);
    CHECK (g_str_has_prefix (error->message, "fuzz.safetensors: "));
    g_error_free (error);
  } else {
    CHECK (error == NULL);
    walk (st, g_bytes_get_data (bytes, NULL), size);
    round_trip (st);
    vae_safetensors_free (st);
  }
  g_bytes_unref (bytes);
  return 0;
}
