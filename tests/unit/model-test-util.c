/* gst-vae unit tests: the test models and broken copies of them
 * (model-test-util.h). */
#include "model-test-util.h"

#include <glib/gstdio.h>
#include <string.h>
#include "safetensors.h"
#include "vae-error.h"

char *model_testdata;

void
model_test_init (int *argc, char ***argv, const char *probe)
{
  g_test_init (argc, argv, NULL);
  const char *env = g_getenv ("VAE_TESTDATA");
  if (env && g_file_test (env, G_FILE_TEST_IS_DIR)) {
    g_autofree char *models = g_build_filename (env, "models", probe, NULL);
    if (g_file_test (models, G_FILE_TEST_IS_DIR))
      model_testdata = g_strdup (env);
  }
}

char *
model_path (const char *rel)
{
  return g_build_filename (model_testdata, "models", rel, NULL);
}

void
model_copy_write (const char *src, const char *dst, const ModelCopySpec *spec)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VaeSafetensors) st = vae_safetensors_open (src, &error);
  g_assert_no_error (error);
  g_autoptr (VaeSafetensorsWriter) w = vae_safetensors_writer_new ();
  for (guint i = 0; i < vae_safetensors_n_tensors (st); i++) {
    const VaeTensorView *t = vae_safetensors_tensor_at (st, i);
    if (spec->drop && strcmp (t->name, spec->drop) == 0)
      continue;
    g_autofree char *name = g_strconcat (spec->prefix ? spec->prefix : "", t->name, NULL);
    if (spec->reshape && strcmp (t->name, spec->reshape) == 0) {
      gsize n = vae_dtype_size (t->dtype);
      for (int d = 0; d < spec->new_ndim; d++)
        n *= spec->new_shape[d];
      g_autofree guint8 *zeros = g_malloc0 (n);
      vae_safetensors_writer_add (w, name, t->dtype, spec->new_ndim, spec->new_shape,
                                  zeros, n, &error);
    } else {
      vae_safetensors_writer_add (w, name, t->dtype, t->ndim, t->shape, t->data,
                                  t->n_bytes, &error);
    }
    g_assert_no_error (error);
  }
  if (spec->add_foreign || spec->add) {
    float v[4] = { 1, 2, 3, 4 };
    gint64 shape[1] = { 4 };
    if (spec->add_foreign) {
      vae_safetensors_writer_add (w, "model.diffusion_model.input_blocks.0.0.weight",
                                  VAE_DTYPE_F32, 1, shape, v, sizeof v, &error);
      g_assert_no_error (error);
      vae_safetensors_writer_add (w, "cond_stage_model.transformer.encoder.conv_in.weightx",
                                  VAE_DTYPE_F32, 1, shape, v, sizeof v, &error);
      g_assert_no_error (error);
    }
    if (spec->add) {
      vae_safetensors_writer_add (w, spec->add, VAE_DTYPE_F32, 1, shape, v, sizeof v, &error);
      g_assert_no_error (error);
    }
  }
  vae_safetensors_writer_save (w, dst, &error);
  g_assert_no_error (error);
}

void
model_copy_folder (const char *src, const char *folder, const char *config,
                   const ModelCopySpec *spec)
{
  g_autoptr (GError) error = NULL;
  g_assert_cmpint (g_mkdir_with_parents (folder, 0755), ==, 0);
  g_autofree char *src_cfg = g_build_filename (src, "config.json", NULL);
  g_autofree char *src_w = g_build_filename (src, "diffusion_pytorch_model.safetensors", NULL);
  g_autofree char *dst_cfg = g_build_filename (folder, "config.json", NULL);
  g_autofree char *dst_w = g_build_filename (folder, "diffusion_pytorch_model.safetensors",
                                             NULL);
  g_autofree char *original = NULL;
  if (!config) {
    g_file_get_contents (src_cfg, &original, NULL, &error);
    g_assert_no_error (error);
    config = original;
  }
  g_file_set_contents (dst_cfg, config, -1, &error);
  g_assert_no_error (error);
  ModelCopySpec none = { 0 };
  model_copy_write (src_w, dst_w, spec ? spec : &none);
}

void
model_test_remove_tree (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
    g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
    const char *e;
    while (d && (e = g_dir_read_name (d))) {
      g_autofree char *child = g_build_filename (path, e, NULL);
      model_test_remove_tree (child);
    }
  }
  g_remove (path);
}

static void
tmp_setup (ModelCopyTmp *t, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  /* g_test_init sets the program name from argv[0], which may be a path. */
  g_autofree char *program = g_path_get_basename (g_get_prgname ());
  g_autofree char *tmpl = g_strdup_printf ("%s-XXXXXX", program);
  t->dir = g_dir_make_tmp (tmpl, &error);
  g_assert_no_error (error);
}

static void
tmp_teardown (ModelCopyTmp *t, gconstpointer data)
{
  model_test_remove_tree (t->dir);
  g_free (t->dir);
}

void
model_copy_add_test (const char *path, void (*test) (ModelCopyTmp *t, gconstpointer data))
{
  g_test_add (path, ModelCopyTmp, NULL, tmp_setup, test, tmp_teardown);
}

GError *
model_load_fails (const char *path, const VaeModelOptions *options)
{
  GError *error = NULL;
  VaeModel *m = vae_model_load (path, options, &error);
  if (m)
    g_error ("%s loaded although it is broken", path);
  g_assert_nonnull (error);
  g_assert_true (error->domain == VAE_ERROR);
  if (g_test_verbose ())
    g_printerr ("  expected error: %s\n", error->message);
  return error;
}

void
model_assert_message_has (const GError *error, const char *needle)
{
  g_autoptr (GString) msg = g_string_new (NULL), want = g_string_new (NULL);
  for (const char *p = error->message; *p; p++)
    if (*p != ' ')
      g_string_append_c (msg, *p);
  for (const char *p = needle; *p; p++)
    if (*p != ' ')
      g_string_append_c (want, *p);
  if (!strstr (msg->str, want->str))
    g_error ("error message \"%s\" does not mention \"%s\"", error->message, needle);
}
