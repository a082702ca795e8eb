/* Unit tests for allocations that can fail (vae-error.h) and for their use
 * where buffers follow the input: a size that overflows or that no machine
 * has must come back as VAE_ERROR_NO_MEMORY, not end the process.
 *
 * - the helpers, on sizes that overflow and on 2^48 bytes (more than the
 *   47-bit user address space of x86-64 and AArch64 Linux, so the
 *   allocation fails everywhere without a limit); under ASan this needs
 *   allocator_may_return_null=1, which meson sets for this test;
 * - vae_format_bytes, which messages and HTTP bodies use;
 * - the safetensors writer's copy of a tensor;
 * - the cpu engine on a frame too large for an address-space limit set in a
 *   subprocess (setrlimit (RLIMIT_AS)).  ASan's shadow memory alone is
 *   larger than any such limit: there ASan's cap on one allocation
 *   (max_allocation_size_mb, which meson sets too) stands in for it, and
 *   the case is skipped, saying so, when the cap is not set. */
#include <glib.h>
#include <string.h>
#include <sys/resource.h>
#include "engine.h"
#include "model.h"
#include "safetensors.h"
#include "vae-error.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#define HUGE_BYTES ((gsize) 1 << 48)

static void
test_overflow (void)
{
  const gsize half = G_MAXSIZE / 2 + 1;
  GError *err = NULL;

  g_assert_null (vae_try_alloc0 (half, 2, "an overflowing buffer", &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_NO_MEMORY);
  g_assert_nonnull (strstr (err->message, "an overflowing buffer"));
  g_assert_nonnull (strstr (err->message, "overflows"));
  g_clear_error (&err);

  g_assert_null (vae_try_alloc (2, half, "x", &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_NO_MEMORY);
  g_clear_error (&err);

  g_assert_null (vae_try_aligned_alloc0 (half, 4, 64, "x", &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_NO_MEMORY);
  g_clear_error (&err);

  g_assert_null (vae_try_aligned_alloc (half, 4, 64, "x", &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_NO_MEMORY);
  g_clear_error (&err);

  /* Rounding up to the alignment overflows, the product does not. */
  g_assert_null (vae_try_aligned_alloc0 (1, G_MAXSIZE - 10, 64, "rounded", &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_NO_MEMORY);
  g_assert_nonnull (strstr (err->message, "rounded"));
  g_clear_error (&err);

  /* No error location: still NULL, no crash. */
  g_assert_null (vae_try_alloc0 (half, 2, NULL, NULL));
}

static void
test_huge (void)
{
  GError *err = NULL;

  g_assert_null (vae_try_alloc0 (HUGE_BYTES / 4, 4, "activations for a test", &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_NO_MEMORY);
  /* The message names the buffer and its size (2^48 bytes = 281.5 TB). */
  g_assert_nonnull (strstr (err->message, "activations for a test"));
  g_assert_nonnull (strstr (err->message, "281.5 TB"));
  g_clear_error (&err);

  g_assert_null (vae_try_alloc (1, HUGE_BYTES, "x", &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_NO_MEMORY);
  g_clear_error (&err);

  g_assert_null (vae_try_aligned_alloc0 (HUGE_BYTES / 64, 64, 64, "x", &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_NO_MEMORY);
  g_clear_error (&err);

  g_assert_null (vae_try_aligned_alloc (HUGE_BYTES, 1, 4096, "x", &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_NO_MEMORY);
  g_clear_error (&err);
}

static void
test_small (void)
{
  GError *err = NULL;

  guint8 *p = vae_try_aligned_alloc0 (3, 7, 64, "small", &err);
  g_assert_no_error (err);
  g_assert_nonnull (p);
  g_assert_cmpuint ((guintptr) p % 64, ==, 0);
  for (int i = 0; i < 21; i++)
    g_assert_cmpuint (p[i], ==, 0);
  vae_aligned_free (p);

  float *f = vae_try_alloc0 (100, sizeof (float), "small", &err);
  g_assert_no_error (err);
  for (int i = 0; i < 100; i++)
    g_assert_cmpfloat (f[i], ==, 0.0f);
  vae_free (f);

  /* Zero bytes is a valid, freeable allocation. */
  p = vae_try_alloc (0, 8, "empty", &err);
  g_assert_no_error (err);
  g_assert_nonnull (p);
  vae_free (p);
  p = vae_try_aligned_alloc (0, 8, 32, "empty", &err);
  g_assert_no_error (err);
  g_assert_nonnull (p);
  vae_aligned_free (p);
}

static void
test_format_bytes (void)
{
  /* A plain space between value and unit: GLib's no-break space turns into
   * '?' or worse when a message is printed in the C locale. */
  g_autofree char *a = vae_format_bytes (17179869184u);
  g_assert_cmpstr (a, ==, "17.2 GB");
  g_autofree char *b = vae_format_bytes (512);
  g_assert_cmpstr (b, ==, "512 bytes");
}

static void
test_writer_copy (void)
{
  /* The writer copies what it is given; a tensor that cannot be copied is
   * an error (the data is never read when the copy cannot be made). */
  g_autoptr (VaeSafetensorsWriter) w = vae_safetensors_writer_new ();
  const gint64 shape[1] = { (gint64) (HUGE_BYTES / 4) };
  float data[4] = { 0 };
  GError *err = NULL;

  g_assert_false (vae_safetensors_writer_add (w, "latents", VAE_DTYPE_F32, 1, shape, data,
                                              HUGE_BYTES, &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_NO_MEMORY);
  g_assert_nonnull (strstr (err->message, "latents"));
  g_clear_error (&err);

  /* The writer is still usable. */
  const gint64 small[1] = { 4 };
  g_assert_true (vae_safetensors_writer_add (w, "latents", VAE_DTYPE_F32, 1, small, data,
                                             sizeof data, &err));
  g_assert_no_error (err);
  g_autoptr (GBytes) bytes = vae_safetensors_writer_serialize (w, &err);
  g_assert_no_error (err);
  g_assert_nonnull (bytes);
}

/* The address space this process uses now (VmSize), in bytes. */
static guint64
address_space_now (void)
{
  g_autofree char *status = NULL;
  guint64 kb = 0;
  if (g_file_get_contents ("/proc/self/status", &status, NULL, NULL)) {
    const char *v = strstr (status, "VmSize:");
    if (v)
      kb = g_ascii_strtoull (v + strlen ("VmSize:"), NULL, 10);
  }
  return kb * 1024;
}

/* An 8192x8192 encode with TAEF2 needs about 50 GB of activations: under a
 * limit of what the process holds plus 3 GB (room for the 0.8 GB input and
 * the plan's bookkeeping) the engine must say VAE_ERROR_NO_MEMORY; before
 * it did, g_aligned_alloc0 aborted the process. */
static void
engine_child (const char *model_path, gboolean set_limit)
{
  GError *err = NULL;
  g_autoptr (VaeModel) model = vae_model_load (model_path, NULL, &err);
  g_assert_no_error (err);
  VaeEngineOptions eo = VAE_ENGINE_OPTIONS_INIT;
  eo.threads = 1;
  g_autoptr (VaeEngine) engine = vae_engine_new ("cpu", model, &eo, &err);
  g_assert_no_error (err);

  const int side = 8192, f = model->spatial_factor;
  const int oc = vae_engine_output_channels (model, VAE_DIRECTION_ENCODE);
  if (set_limit) {
    const guint64 now = address_space_now ();
    g_assert_cmpuint (now, >, 0);
    struct rlimit lim = { now + ((guint64) 3 << 30), now + ((guint64) 3 << 30) };
    g_assert_cmpint (setrlimit (RLIMIT_AS, &lim), ==, 0);
  }

  /* calloc: zero pages, taken lazily; the plan fails before reading them. */
  g_autofree float *in = vae_try_alloc0 ((gsize) 3 * side * side, sizeof (float), "input", &err);
  g_assert_no_error (err);
  g_autofree float *out = vae_try_alloc0 ((gsize) oc * (side / f) * (side / f), sizeof (float),
                                          "output", &err);
  g_assert_no_error (err);
  VaeBatch batch = { VAE_DIRECTION_ENCODE, 1, side, side, in, out, NULL, NULL };
  g_assert_false (vae_engine_run (engine, &batch, &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_NO_MEMORY);
  g_print ("engine error: %s\n", err->message);
  g_clear_error (&err);

  /* The engine stays usable for frames that fit (small: the reference
   * kernels of machines without AVX-512 are slow). */
  VaeBatch small = { VAE_DIRECTION_ENCODE, 1, 16, 16, in, out, NULL, NULL };
  g_assert_true (vae_engine_run (engine, &small, &err));
  g_assert_no_error (err);
}

static void
test_engine_limit (gconstpointer data)
{
  const char *model_path = data;
  gboolean set_limit = TRUE;
#ifdef UNDER_ASAN
  if (!strstr (g_getenv ("ASAN_OPTIONS") ?: "", "max_allocation_size_mb=")) {
    g_test_skip ("ASan build: an address-space limit (RLIMIT_AS) cannot be used (ASan's "
                 "shadow memory alone is larger) and ASAN_OPTIONS sets no "
                 "max_allocation_size_mb to stand in for it");
    return;
  }
  set_limit = FALSE;
#endif
  if (!model_path) {
    g_test_skip ("VAE_TESTDATA/models/taef2 is missing (../shared/testdata)");
    return;
  }
  if (g_test_subprocess ()) {
    engine_child (model_path, set_limit);
    return;
  }
  g_test_trap_subprocess (NULL, 120 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stdout ("*engine error: *oneDNN activations of a [1,3,8192,8192] input*");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_autofree char *taef2 = NULL;
  const char *env = g_getenv ("VAE_TESTDATA");
  if (env) {
    taef2 = g_build_filename (env, "models", "taef2", NULL);
    if (!g_file_test (taef2, G_FILE_TEST_IS_DIR))
      g_clear_pointer (&taef2, g_free);
  }

  g_test_add_func ("/alloc/overflow", test_overflow);
  g_test_add_func ("/alloc/huge", test_huge);
  g_test_add_func ("/alloc/small", test_small);
  g_test_add_func ("/alloc/format-bytes", test_format_bytes);
  g_test_add_func ("/alloc/writer-copy", test_writer_copy);
  g_test_add_data_func ("/alloc/engine-limit", taef2, test_engine_limit);
  return g_test_run ();
}
