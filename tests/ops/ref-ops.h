/* gst-vae op tests: the one double-precision reference of every op kind in
 * graph.h, and of whole (small) graphs built from them.
 *
 * Tensors are NCHW doubles.  Weights are the graph's float32 arrays, taken
 * exactly (widened to double), so the reference differs from an engine only
 * by the engine's own rounding. */
#pragma once
#include <glib.h>
#include "graph.h"

G_BEGIN_DECLS

double ref_activation (VaeActivation act, double x);

/* out [n, oc, oh, ow] = act(conv(in) + bias + residual); BIAS and RESIDUAL
 * may be NULL.  OH, OW follow from the pads and stride as in graph.c. */
void ref_conv2d (const double *in, int n, int ic, int h, int w,
                 const float *weight, const float *bias, int oc, int kernel, int stride,
                 int pad_top, int pad_left, int pad_bottom, int pad_right,
                 const double *residual, VaeActivation act,
                 double *out, int oh, int ow);

/* out = act((x - mean_g) / sqrt(var_g + eps) * gamma_c + beta_c), with the
 * biased variance over each group's channels and positions. */
void ref_group_norm (const double *in, int n, int c, int h, int w, int groups,
                     double eps, const float *gamma, const float *beta,
                     VaeActivation act, double *out);

/* out[b, :, p] = sum_j softmax_j (q_p . k_j / sqrt(c)) v_j over the h*w
 * positions of image b. */
void ref_attention (const double *q, const double *k, const double *v,
                    int n, int c, int h, int w, double *out);

/* out [n, c, 2h, 2w], nearest neighbour. */
void ref_upsample2x (const double *in, int n, int c, int h, int w, double *out);

/* out = clamp * tanh(in / clamp) over COUNT values. */
void ref_tanh_clamp (const double *in, gsize count, double clamp, double *out);

/* CAUSAL_CONV3D over T frames of IN [t, ic, h, w] with HISTORY (the K
 * frames of its slot, updated; NULL when K = 0). */
void ref_causal_conv3d (const VaeOp *op, double *history, const double *in, int t, int h,
                        int w, const double *residual, double *out, int oh, int ow);
/* x / max(||x||, 1e-12) * sqrt(c) * gamma over channels, then ACT. */
void ref_rms_norm (const double *in, int n, int c, int h, int w, const float *gamma,
                   VaeActivation act, double *out);
/* C: the input's channels. */
void ref_frames_to_channels (const double *in, int t, int c, int h, int w, int s, double *out);
/* T: the input's frames; C: the output's channels. */
void ref_channels_to_frames (const double *in, int t, int c, int h, int w, int s, double *out);
void ref_space_to_channels (const double *in, int n, int c, int h, int w, int p,
                            gboolean column_major, double *out);
/* C: the output's channels; H, W: the input's size. */
void ref_channels_to_space (const double *in, int n, int c, int h, int w, int p,
                            gboolean column_major, double *out);
void ref_avg_down3d (const double *in, int t, int cin, int h, int w, int cout, int ft,
                     int fs, double *out);
void ref_dup_up3d (const double *in, int t, int cin, int h, int w, int cout, int ft, int fs,
                   gboolean drop_first, double *out);

/* A stream's state slots (zero at the start), for the graphs of one model
 * at one input size H x W. */
typedef struct {
  int n;
  double **slots;
  gsize *sizes;
} RefState;
RefState *ref_state_new (const VaeGraph *graph, int h, int w);
void ref_state_free (RefState *st);

/* One chunk of T frames through GRAPH with STATE (may be NULL for a graph
 * without slots); the output has OUT_T frames. */
double *ref_graph_run_stream (const VaeGraph *graph, RefState *state, int t, int h, int w,
                              const float *input, double perturb, int *out_t, int *out_c,
                              int *out_h, int *out_w);

/* Runs GRAPH on INPUT [n, channels of value 0, h, w] (float32, widened).
 * Returns the output (g_free), its shape in OUT_C, OUT_H, OUT_W.
 * PERTURB != 0 scales every op's output by (1 + PERTURB): a deliberately
 * wrong reference, for checking that the comparisons have teeth. */
double *ref_graph_run (const VaeGraph *graph, int n, int h, int w, const float *input,
                       double perturb, int *out_c, int *out_h, int *out_w);

G_END_DECLS
