/* gst-vae unit tests: what the model loading tests share, the test models
 * of $VAE_TESTDATA and broken copies of them, with the checks of the
 * errors those fail to load with.  test-model.c (image models) and
 * test-model-wan.c (video models) find and break models the same way, so
 * that lives here once; test-model-taehv.c writes its own models and
 * shares the clean-up. */
#pragma once
#include <glib.h>
#include "model.h"

G_BEGIN_DECLS

/* $VAE_TESTDATA, when it holds the test models; NULL otherwise. */
extern char *model_testdata;

/* g_test_init, and sets model_testdata when $VAE_TESTDATA has the folder
 * models/PROBE (a model the tests need; PROBE NULL: models/ itself). */
void model_test_init (int *argc, char ***argv, const char *probe);

/* In a test function: skips the test (and returns) without the models. */
#define REQUIRE_TESTDATA()                                                   \
  G_STMT_START {                                                             \
    if (!model_testdata) {                                                   \
      g_test_skip ("VAE_TESTDATA is not set or lacks the test models: the "  \
                   "model tests need ../shared/testdata");                   \
      return;                                                                \
    }                                                                        \
  } G_STMT_END

/* model_testdata/models/REL (free with g_free). */
char *model_path (const char *rel);

/* Removes PATH, a folder with all in it or a file. */
void model_test_remove_tree (const char *path);

/* How model_copy_write () changes the tensors it copies (all zero: none). */
typedef struct {
  const char *drop;            /* leave this tensor out */
  const char *reshape;         /* give this tensor NEW_SHAPE (zeros) */
  int new_ndim;
  gint64 new_shape[5];
  const char *prefix;          /* put in front of every name */
  gboolean add_foreign;        /* add tensors of another model */
  const char *add;             /* add a small tensor of this name */
} ModelCopySpec;

/* Writes the safetensors file SRC to DST, changed by SPEC. */
void model_copy_write (const char *src, const char *dst, const ModelCopySpec *spec);

/* Writes the diffusers folder FOLDER (made if need be) from the folder
 * SRC: config.json with the text CONFIG (NULL: SRC's), the weights
 * changed by SPEC (NULL: unchanged). */
void model_copy_folder (const char *src, const char *folder, const char *config,
                        const ModelCopySpec *spec);

/* The fixture of the tests that write copies: a temporary folder, named
 * after the program, removed with all in it after the test. */
typedef struct {
  char *dir;
} ModelCopyTmp;

/* Adds TEST at PATH (g_test_add) with a ModelCopyTmp of its own. */
void model_copy_add_test (const char *path, void (*test) (ModelCopyTmp *t,
                                                          gconstpointer data));

/* Loads PATH with OPTIONS, asserting that it fails with a VAE_ERROR;
 * returns that error for the caller to check further and free. */
GError *model_load_fails (const char *path, const VaeModelOptions *options);

/* Asserts that ERROR's message contains NEEDLE, both with blanks removed,
 * so that shapes match whether written [64,64,3,3] or [64, 64, 3, 3]. */
void model_assert_message_has (const GError *error, const char *needle);

G_END_DECLS
