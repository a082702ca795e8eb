/* gst-vae golden tests: the cases and the skips of the golden programs
 * (golden-util.h). */
#include "golden-util.h"
#include <string.h>

void
golden_report_skip (const char *program, const char *what, const char *why,
                    const char *default_marker)
{
  const char *marker = g_getenv ("VAE_GOLDEN_SKIP_MARKER");
  if (!marker || !*marker)
    marker = default_marker;
  g_autofree char *text = g_strdup_printf ("%s: %s\n", program, why);
  g_autoptr (GError) error = NULL;
  if (!g_file_set_contents (marker, text, -1, &error))
    g_printerr ("%s: cannot write skip marker %s: %s\n", program, marker, error->message);
  g_printerr ("\n"
              "************************************************************\n"
              "** %s SKIPPED: %s\n"
              "** Nothing was checked against the reference outputs.\n"
              "** Put the test data at ../shared/testdata (or set\n"
              "** VAE_TESTDATA / meson -Dtestdata=PATH).\n"
              "** Marker written: %s\n"
              "************************************************************\n\n",
              what, why, marker);
}

static const char *skip_reason;

static void
test_skipped (void)
{
  g_test_skip (skip_reason);
}

int
golden_skip_all (const char *program, const char *what, const char *why,
                 const char *default_marker, const char *path)
{
  golden_report_skip (program, what, why, default_marker);
  skip_reason = why;
  g_test_add_func (path, test_skipped);
  g_test_run ();
  return 77;
}

gboolean
golden_selected (int argc, char **argv, const char *a, const char *b)
{
  if (argc < 2)
    return TRUE;
  for (int i = 1; i < argc; i++)
    if (strstr (a, argv[i]) || strstr (b, argv[i]))
      return TRUE;
  return FALSE;
}

/* g_ptr_array_sort hands over pointers to the elements. */
static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

GPtrArray *
golden_list_references (const char *dir)
{
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GDir) d = dir ? g_dir_open (dir, 0, NULL) : NULL;
  const char *name;
  while (d && (name = g_dir_read_name (d)))
    if (g_str_has_suffix (name, ".safetensors") && strstr (name, "__"))
      g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, compare_names);
  return names;
}

/* test-video-ref and test-video-golden run the same references against the
 * same models. */
static const struct {
  const char *ref_model;
  const char *paths[3];
} video_models[] = {
  { "wan21-mini", { "wan21-mini", "wan21-mini-original.safetensors", NULL } },
  { "wan22-mini", { "wan22-mini", NULL } },
  { "taew2_1-random", { "taew2_1-random.safetensors", NULL } },
  { "taew2_2-random", { "taew2_2-random.safetensors", NULL } },
};

static const char *const builtin_norm_models[] = { "wan21-mini-original.safetensors", NULL };

const char *const *
golden_video_models (const char *ref_model)
{
  for (guint i = 0; i < G_N_ELEMENTS (video_models); i++)
    if (g_str_equal (video_models[i].ref_model, ref_model))
      return video_models[i].paths;
  return NULL;
}

gboolean
golden_video_builtin_norm (const char *model_file)
{
  return g_strv_contains (builtin_norm_models, model_file);
}

void
golden_case_free (gpointer p)
{
  GoldenCase *gc = p;
  g_free (gc->label);
  g_free (gc->ref_path);
  g_free (gc->model_path);
  g_free (gc);
}

static GoldenCase *
case_new (char *label, const char *ref_path, char *model_path, int norm_groups)
{
  GoldenCase *gc = g_new0 (GoldenCase, 1);
  gc->label = label;
  gc->ref_path = g_strdup (ref_path);
  gc->model_path = model_path;
  gc->norm_groups = norm_groups;
  return gc;
}

GPtrArray *
golden_list_cases (const char *testdata, const char *ref_dir, const char *same_as,
                   const char *other_file, int other_norm_groups)
{
  g_autoptr (GPtrArray) names = golden_list_references (ref_dir);
  GPtrArray *cases = g_ptr_array_new_with_free_func (golden_case_free);
  g_assert_true (g_str_has_suffix (other_file, ".safetensors"));
  g_autofree char *other = g_strndup (other_file, strlen (other_file) - strlen (".safetensors"));
  for (guint i = 0; i < names->len; i++) {
    const char *name = g_ptr_array_index (names, i);
    const char *sep = strstr (name, "__");
    g_autofree char *model = g_strndup (name, sep - name);
    g_autofree char *stem = g_strndup (sep + 2, strlen (sep + 2) - strlen (".safetensors"));
    g_autofree char *ref_path = g_build_filename (ref_dir, name, NULL);
    g_ptr_array_add (cases, case_new (g_strdup_printf ("%s/%s", model, stem), ref_path,
                                      g_build_filename (testdata, "models", model, NULL), 0));
    if (g_str_equal (model, same_as))
      g_ptr_array_add (cases, case_new (g_strdup_printf ("%s/%s", other, stem), ref_path,
                                        g_build_filename (testdata, "models", other_file,
                                                          NULL), other_norm_groups));
  }
  return cases;
}
