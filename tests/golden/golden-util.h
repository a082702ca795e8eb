/* gst-vae golden tests: what every golden program shares. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

/* Says loudly that the golden tests of PROGRAM (WHAT: "GOLDEN TESTS",
 * "VIDEO GOLDEN TESTS", ...) were skipped because of WHY, and writes the
 * marker file ($VAE_GOLDEN_SKIP_MARKER, else DEFAULT_MARKER) that lets
 * .ci/run refuse a run that skipped them. */
void golden_report_skip (const char *program, const char *what, const char *why,
                         const char *default_marker);

/* TRUE when no filter was given (ARGC < 2) or one of ARGV[1..] is a
 * substring of A or B (a reference file name, a model). */
gboolean golden_selected (int argc, char **argv, const char *a, const char *b);

G_END_DECLS
