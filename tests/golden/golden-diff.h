/* gst-vae golden tests: how far an output is from its reference tensor.
 * Every golden program measures that the same way, so the loops live here
 * once; what counts as close enough stays with each program (their bounds
 * differ). */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

/* The largest |got - want| and where it is, the relative L2 norm of the
 * difference (||got - want|| / ||want||; the plain norm when want is all
 * zeros), and whether a difference is NaN (NaNs are left out of the other
 * two, so NAN must be checked on its own). */
typedef struct {
  double max_diff;
  gsize at;
  double rel;
  gboolean nan;
} GoldenDiff;

GoldenDiff golden_diff_f32 (const float *got, const float *want, gsize n);

/* The same for outputs computed in double precision (test-video-ref). */
GoldenDiff golden_diff_f64 (const double *got, const float *want, gsize n);

/* The largest |got - want| in levels and where it is, how many values
 * differ, and the PSNR (INFINITY when none do). */
typedef struct {
  int max_diff;
  gsize at;
  gsize off;
  double psnr;
} GoldenDiffU8;

GoldenDiffU8 golden_diff_u8 (const guint8 *got, const guint8 *want, gsize n);

G_END_DECLS
