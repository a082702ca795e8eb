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
