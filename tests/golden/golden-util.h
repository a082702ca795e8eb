/* gst-vae golden tests: what every golden program shares, the cases it
 * runs (reference files, name filter) and what it says when it runs
 * none. */
#pragma once
#include <glib.h>
#include "engine.h"

G_BEGIN_DECLS

/* Says loudly that the golden tests of PROGRAM (WHAT: "GOLDEN TESTS",
 * "VIDEO GOLDEN TESTS", ...) were skipped because of WHY, and writes the
 * marker file ($VAE_GOLDEN_SKIP_MARKER, else DEFAULT_MARKER) that lets
 * .ci/run refuse a run that skipped them. */
void golden_report_skip (const char *program, const char *what, const char *why,
                         const char *default_marker);

/* For a GTest program that found no reference files: golden_report_skip,
 * then one skipped test case at PATH (so that the TAP output says why);
 * returns 77, the exit status that meson counts as a skip. */
int golden_skip_all (const char *program, const char *what, const char *why,
                     const char *default_marker, const char *path);

/* TRUE when no filter was given (ARGC < 2) or one of ARGV[1..] is a
 * substring of A or B (a reference file name, a model). */
gboolean golden_selected (int argc, char **argv, const char *a, const char *b);

/* The reference files in DIR, <model>__<what>.safetensors, sorted by name
 * (free with g_ptr_array_unref; empty when DIR is not there). */
GPtrArray *golden_list_references (const char *dir);

/* The model files (relative to models/, NULL-terminated) that the video
 * references of REF_MODEL (the <model> of their name) run against; NULL
 * for a name the table does not have. */
const char *const *golden_video_models (const char *ref_model);

/* TRUE for the model files whose latents_mean / latents_std are not the
 * ones the reference used: single files carry no config, so the builder
 * uses the real Wan values (their normalised latents differ). */
gboolean golden_video_builtin_norm (const char *model_file);

/* One reference file against one model, run with the given options. */
typedef struct {
  char *label;              /* <model>/<image>_<W>x<H> */
  char *ref_path;
  char *model_path;
  int norm_groups;          /* VaeModelOptions.norm_groups */
  VaePrecision precision;   /* VaeEngineOptions.precision */
} GoldenCase;

void golden_case_free (gpointer gc);

/* The cases of the reference files of REF_DIR (golden_list_references),
 * each against TESTDATA/models/<model>; those of SAME_AS also against
 * TESTDATA/models/OTHER_FILE, the same weights in another layout in a
 * .safetensors file (labelled with its name without .safetensors, run
 * with OTHER_NORM_GROUPS).
 * Free with g_ptr_array_unref; empty when there are no reference files. */
GPtrArray *golden_list_cases (const char *testdata, const char *ref_dir, const char *same_as,
                              const char *other_file, int other_norm_groups);

G_END_DECLS
