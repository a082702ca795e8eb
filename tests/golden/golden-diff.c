/* gst-vae golden tests: differences from the reference (golden-diff.h). */
#include "golden-diff.h"

#include <math.h>
#include <stdlib.h>

/* One loop for both: the outputs are GOT32 or GOT64 (the other NULL). */
static GoldenDiff
diff (const float *got32, const double *got64, const float *want, gsize n)
{
  GoldenDiff d = { 0 };
  double num = 0, den = 0;
  for (gsize i = 0; i < n; i++) {
    double e = (got32 ? (double) got32[i] : got64[i]) - (double) want[i];
    if (isnan (e)) {
      d.nan = TRUE;
      continue;
    }
    if (fabs (e) > d.max_diff) {
      d.max_diff = fabs (e);
      d.at = i;
    }
    num += e * e;
    den += (double) want[i] * want[i];
  }
  d.rel = sqrt (num) / (den > 0 ? sqrt (den) : 1.0);
  return d;
}

GoldenDiff
golden_diff_f32 (const float *got, const float *want, gsize n)
{
  return diff (got, NULL, want, n);
}

GoldenDiff
golden_diff_f64 (const double *got, const float *want, gsize n)
{
  return diff (NULL, got, want, n);
}

GoldenDiffU8
golden_diff_u8 (const guint8 *got, const guint8 *want, gsize n)
{
  GoldenDiffU8 d = { 0 };
  double sq = 0;
  for (gsize i = 0; i < n; i++) {
    int e = abs ((int) got[i] - (int) want[i]);
    if (e > 0)
      d.off++;
    if (e > d.max_diff) {
      d.max_diff = e;
      d.at = i;
    }
    sq += (double) e * e;
  }
  d.psnr = sq > 0 ? 10.0 * log10 (255.0 * 255.0 / (sq / n)) : INFINITY;
  return d;
}
