/* gst-vae op tests: double-precision reference ops (see ref-ops.h).
 *
 * Written for clarity, not speed: plain loops in the order the definitions
 * read.  The shapes the tests use are small. */
#include "ref-ops.h"
#include <math.h>
#include <string.h>

/* A new op kind must get a reference here: without a case in the switch of
 * ref_graph_run the build fails (and test-ops fails at run time for a kind
 * it has no case for). */
#pragma GCC diagnostic error "-Wswitch"
#pragma GCC diagnostic error "-Wswitch-enum"

double
ref_activation (VaeActivation act, double x)
{
  switch (act) {
    case VAE_ACT_NONE:
      return x;
    case VAE_ACT_RELU:
      return x > 0 ? x : 0;
    case VAE_ACT_SILU:
      return x / (1.0 + exp (-x));
  }
  g_error ("ref_activation: unknown activation %d", (int) act);
}

void
ref_conv2d (const double *in, int n, int ic, int h, int w,
            const float *weight, const float *bias, int oc, int kernel, int stride,
            int pad_top, int pad_left, int pad_bottom, int pad_right,
            const double *residual, VaeActivation act,
            double *out, int oh, int ow)
{
  g_assert (oh == (h + pad_top + pad_bottom - kernel) / stride + 1);
  g_assert (ow == (w + pad_left + pad_right - kernel) / stride + 1);
  for (int b = 0; b < n; b++)
    for (int o = 0; o < oc; o++)
      for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
          double acc = bias ? bias[o] : 0.0;
          for (int i = 0; i < ic; i++)
            for (int ky = 0; ky < kernel; ky++) {
              int iy = y * stride + ky - pad_top;
              if (iy < 0 || iy >= h)
                continue;
              for (int kx = 0; kx < kernel; kx++) {
                int ix = x * stride + kx - pad_left;
                if (ix < 0 || ix >= w)
                  continue;
                acc += (double) weight[((gsize) (o * ic + i) * kernel + ky) * kernel + kx]
                       * in[(((gsize) b * ic + i) * h + iy) * w + ix];
              }
            }
          gsize at = (((gsize) b * oc + o) * oh + y) * ow + x;
          if (residual)
            acc += residual[at];
          out[at] = ref_activation (act, acc);
        }
}

void
ref_group_norm (const double *in, int n, int c, int h, int w, int groups,
                double eps, const float *gamma, const float *beta,
                VaeActivation act, double *out)
{
  g_assert (c % groups == 0);
  const int per = c / groups;
  const gsize plane = (gsize) h * w, count = per * plane;
  for (int b = 0; b < n; b++)
    for (int g = 0; g < groups; g++) {
      const double *x = in + ((gsize) b * c + g * per) * plane;
      double *y = out + ((gsize) b * c + g * per) * plane;
      /* Two passes: the mean, then the variance around it. */
      double mean = 0, var = 0;
      for (gsize i = 0; i < count; i++)
        mean += x[i];
      mean /= count;
      for (gsize i = 0; i < count; i++)
        var += (x[i] - mean) * (x[i] - mean);
      var /= count;
      const double rstd = 1.0 / sqrt (var + eps);
      for (int ch = 0; ch < per; ch++) {
        const int cc = g * per + ch;
        for (gsize p = 0; p < plane; p++) {
          double v = (x[ch * plane + p] - mean) * rstd * gamma[cc] + beta[cc];
          y[ch * plane + p] = ref_activation (act, v);
        }
      }
    }
}

void
ref_attention (const double *q, const double *k, const double *v,
               int n, int c, int h, int w, double *out)
{
  const gsize len = (gsize) h * w;
  const double scale = 1.0 / sqrt ((double) c);
  g_autofree double *s = g_new (double, len);
  for (int b = 0; b < n; b++) {
    const double *qb = q + (gsize) b * c * len, *kb = k + (gsize) b * c * len;
    const double *vb = v + (gsize) b * c * len;
    double *ob = out + (gsize) b * c * len;
    for (gsize p = 0; p < len; p++) {
      double most = -INFINITY, sum = 0;
      for (gsize j = 0; j < len; j++) {
        double d = 0;
        for (int ch = 0; ch < c; ch++)
          d += qb[ch * len + p] * kb[ch * len + j];
        s[j] = d * scale;
        most = MAX (most, s[j]);
      }
      for (gsize j = 0; j < len; j++) {
        s[j] = exp (s[j] - most);
        sum += s[j];
      }
      for (int ch = 0; ch < c; ch++) {
        double acc = 0;
        for (gsize j = 0; j < len; j++)
          acc += s[j] * vb[ch * len + j];
        ob[ch * len + p] = acc / sum;
      }
    }
  }
}

void
ref_upsample2x (const double *in, int n, int c, int h, int w, double *out)
{
  for (gsize plane = 0; plane < (gsize) n * c; plane++)
    for (int y = 0; y < 2 * h; y++)
      for (int x = 0; x < 2 * w; x++)
        out[(plane * 2 * h + y) * 2 * w + x] = in[(plane * h + y / 2) * w + x / 2];
}

void
ref_tanh_clamp (const double *in, gsize count, double clamp, double *out)
{
  for (gsize i = 0; i < count; i++)
    out[i] = clamp * tanh (in[i] / clamp);
}

/* One frame of a 5-D weight's tap TAU as a 4-D [oc, ic, k, k] array. */
static float *
tap_weights (const VaeOp *op, int tau)
{
  const int k2 = op->kernel * op->kernel;
  float *w = g_new (float, (gsize) op->out_channels * op->in_channels * k2);
  for (int o = 0; o < op->out_channels; o++)
    for (int i = 0; i < op->in_channels; i++)
      memcpy (w + ((gsize) o * op->in_channels + i) * k2,
              op->weight + (((gsize) o * op->in_channels + i) * op->kt + tau) * k2,
              k2 * sizeof (float));
  return w;
}

void
ref_causal_conv3d (const VaeOp *op, double *history, const double *in, int t, int h,
                   int w, const double *residual, double *out, int oh, int ow)
{
  const int K = vae_op_history_frames (op), ic = op->in_channels, oc = op->out_channels;
  const gsize in_frame = (gsize) ic * h * w, out_frame = (gsize) oc * oh * ow;
  /* x = [history | in]: frame f of x. */
#define X_FRAME(f) ((f) < K ? history + (gsize) (f) * in_frame : in + (gsize) ((f) - K) * in_frame)
  if (op->time_passthrough) {
    g_assert (oh == h && ow == w && oc == ic);
    memcpy (out, in, (gsize) t * in_frame * sizeof (double));
  } else {
    const int tout = (K + t - op->kt) / op->time_stride + 1;
    g_autofree double *tmp = g_new (double, out_frame);
    memset (out, 0, (gsize) tout * out_frame * sizeof (double));
    for (int tau = 0; tau < op->kt; tau++) {
      g_autofree float *wt = tap_weights (op, tau);
      for (int o = 0; o < tout; o++) {
        int f = o * op->time_stride + tau;
        ref_conv2d (X_FRAME (f), 1, ic, h, w, wt, NULL, oc, op->kernel, op->stride,
                    op->pad_top, op->pad_left, op->pad_bottom, op->pad_right, NULL,
                    VAE_ACT_NONE, tmp, oh, ow);
        double *dst = out + (gsize) o * out_frame;
        for (gsize j = 0; j < out_frame; j++)
          dst[j] += tmp[j];
      }
    }
    for (int o = 0; o < tout; o++)
      for (int c = 0; c < oc; c++)
        for (gsize p = 0; p < (gsize) oh * ow; p++) {
          gsize at = (gsize) o * out_frame + (gsize) c * oh * ow + p;
          double v = out[at] + (op->bias ? op->bias[c] : 0.0);
          if (residual)
            v += residual[at];
          out[at] = ref_activation (op->act, v);
        }
  }
  /* The slot keeps the last K frames of x. */
  if (K > 0) {
    g_autofree double *next = g_new (double, (gsize) K * in_frame);
    for (int f = 0; f < K; f++)
      memcpy (next + (gsize) f * in_frame, X_FRAME (t + f), in_frame * sizeof (double));
    memcpy (history, next, (gsize) K * in_frame * sizeof (double));
  }
#undef X_FRAME
}

void
ref_rms_norm (const double *in, int n, int c, int h, int w, const float *gamma,
              VaeActivation act, double *out)
{
  const gsize plane = (gsize) h * w;
  for (int b = 0; b < n; b++)
    for (gsize p = 0; p < plane; p++) {
      const double *x = in + (gsize) b * c * plane + p;
      double ss = 0;
      for (int ch = 0; ch < c; ch++)
        ss += x[ch * plane] * x[ch * plane];
      const double scale = sqrt ((double) c) / MAX (sqrt (ss), 1e-12);
      for (int ch = 0; ch < c; ch++)
        out[(gsize) b * c * plane + ch * plane + p]
            = ref_activation (act, x[ch * plane] * scale * gamma[ch]);
    }
}

void
ref_frames_to_channels (const double *in, int t, int c, int h, int w, int s, double *out)
{
  const gsize plane = (gsize) h * w;
  for (int o = 0; o < t / s; o++)
    for (int j = 0; j < s; j++)
      for (int ch = 0; ch < c; ch++)
        memcpy (out + (((gsize) o * s * c) + j * c + ch) * plane,
                in + (((gsize) (o * s + j) * c) + ch) * plane, plane * sizeof (double));
}

void
ref_channels_to_frames (const double *in, int t, int c, int h, int w, int s, double *out)
{
  const gsize plane = (gsize) h * w;   /* c: the output's channels */
  for (int o = 0; o < t; o++)
    for (int j = 0; j < s; j++)
      for (int ch = 0; ch < c; ch++)
        memcpy (out + (((gsize) (o * s + j) * c) + ch) * plane,
                in + (((gsize) o * s * c) + j * c + ch) * plane, plane * sizeof (double));
}

/* The channel of space_to_channels' output that holds sub-pixel (dy, dx). */
static int
sub_channel (int c, int p, int dy, int dx, gboolean column_major)
{
  return c * p * p + (column_major ? dx * p + dy : dy * p + dx);
}

void
ref_space_to_channels (const double *in, int n, int c, int h, int w, int p,
                       gboolean column_major, double *out)
{
  const int oh = h / p, ow = w / p;
  /* Sizes that p does not divide floor (graph.c): the last rows and
   * columns are left out (they used to be written past the output). */
  for (int b = 0; b < n; b++)
    for (int ch = 0; ch < c; ch++)
      for (int y = 0; y < oh * p; y++)
        for (int x = 0; x < ow * p; x++) {
          int oc = sub_channel (ch, p, y % p, x % p, column_major);
          out[(((gsize) b * c * p * p + oc) * oh + y / p) * ow + x / p]
              = in[(((gsize) b * c + ch) * h + y) * w + x];
        }
}

void
ref_channels_to_space (const double *in, int n, int c, int h, int w, int p,
                       gboolean column_major, double *out)
{
  /* c: the output's channels; h, w: the input's size. */
  const int oh = h * p, ow = w * p;
  for (int b = 0; b < n; b++)
    for (int ch = 0; ch < c; ch++)
      for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
          int ic = sub_channel (ch, p, y % p, x % p, column_major);
          out[(((gsize) b * c + ch) * oh + y) * ow + x]
              = in[(((gsize) b * c * p * p + ic) * h + y / p) * w + x / p];
        }
}

void
ref_avg_down3d (const double *in, int t, int cin, int h, int w, int cout, int ft,
                int fs, double *out)
{
  const int pad = (ft - t % ft) % ft, tout = (t + pad) / ft, oh = h / fs, ow = w / fs;
  const int F = ft * fs * fs, g = cin * F / cout;
  for (int o = 0; o < tout; o++)
    for (int y = 0; y < oh; y++)
      for (int x = 0; x < ow; x++)
        for (int oc = 0; oc < cout; oc++) {
          double acc = 0;
          for (int k = oc * g; k < oc * g + g; k++) {
            int c = k / F, r = k % F, it = r / (fs * fs), ih = (r / fs) % fs, iw = r % fs;
            int f = o * ft + it - pad;   /* frame of the unpadded input */
            if (f >= 0)
              acc += in[(((gsize) f * cin + c) * h + y * fs + ih) * w + x * fs + iw];
          }
          out[(((gsize) o * cout + oc) * oh + y) * ow + x] = acc / g;
        }
}

void
ref_dup_up3d (const double *in, int t, int cin, int h, int w, int cout, int ft, int fs,
              gboolean drop_first, double *out)
{
  const int F = ft * fs * fs, r = cout * F / cin, oh = h * fs, ow = w * fs;
  const int skip = drop_first ? ft - 1 : 0;
  for (int ti = 0; ti < t; ti++)
    for (int it = 0; it < ft; it++) {
      int of = ti * ft + it - skip;
      if (of < 0)
        continue;
      for (int oc = 0; oc < cout; oc++)
        for (int y = 0; y < h; y++)
          for (int ih = 0; ih < fs; ih++)
            for (int x = 0; x < w; x++)
              for (int iw = 0; iw < fs; iw++) {
                int c = (oc * F + it * fs * fs + ih * fs + iw) / r;
                out[(((gsize) of * cout + oc) * oh + y * fs + ih) * ow + x * fs + iw]
                    = in[(((gsize) ti * cin + c) * h + y) * w + x];
              }
    }
}

RefState *
ref_state_new (const VaeGraph *graph, int h, int w)
{
  RefState *st = g_new0 (RefState, 1);
  st->n = graph->n_states;
  st->slots = g_new0 (double *, MAX (st->n, 1));
  st->sizes = g_new0 (gsize, MAX (st->n, 1));
  const guint n_values = graph->values->len;
  g_autofree int *hs = g_new (int, n_values);
  g_autofree int *ws = g_new (int, n_values);
  vae_graph_infer_sizes (graph, h, w, hs, ws);
  for (guint i = 0; i < graph->ops->len; i++) {
    const VaeOp *op = vae_graph_op (graph, i);
    if (op->kind != VAE_OP_CAUSAL_CONV3D || op->state < 0)
      continue;
    gsize size = (gsize) vae_op_history_frames (op) * op->in_channels * hs[op->in] * ws[op->in];
    g_assert (!st->slots[op->state] || st->sizes[op->state] == size);
    if (!st->slots[op->state]) {
      st->slots[op->state] = g_new0 (double, size);
      st->sizes[op->state] = size;
    }
  }
  return st;
}

void
ref_state_free (RefState *st)
{
  if (!st)
    return;
  for (int i = 0; i < st->n; i++)
    g_free (st->slots[i]);
  g_free (st->slots);
  g_free (st->sizes);
  g_free (st);
}

double *
ref_graph_run_stream (const VaeGraph *graph, RefState *state, int t, int h, int w,
                      const float *input, double perturb, int *out_t, int *out_c,
                      int *out_h, int *out_w)
{
  const guint n_values = graph->values->len;
  g_autofree int *ts = g_new (int, n_values);
  g_autofree int *hs = g_new (int, n_values);
  g_autofree int *ws = g_new (int, n_values);
  if (!vae_graph_infer_shapes (graph, t, h, w, ts, hs, ws))
    g_error ("ref_graph_run_stream: %d frames do not fit the graph", t);
  double **vals = g_new0 (double *, n_values);

  gsize size0 = (gsize) t * vae_graph_channels (graph, 0) * h * w;
  vals[0] = g_new (double, size0);
  for (gsize i = 0; i < size0; i++)
    vals[0][i] = input[i];

  for (guint i = 0; i < graph->ops->len; i++) {
    const VaeOp *op = vae_graph_op (graph, i);
    const int ic = vae_graph_channels (graph, op->in), oc = vae_graph_channels (graph, op->out);
    const int it = ts[op->in], ih = hs[op->in], iw = ws[op->in];
    const int ot = ts[op->out], oh = hs[op->out], ow = ws[op->out];
    const int n = it;   /* frames are the batch of the 2-D ops */
    const gsize out_count = (gsize) ot * oc * oh * ow;
    g_assert (vals[op->in] && !vals[op->out]);
    double *out = g_new (double, out_count);
    switch (op->kind) {
      case VAE_OP_CONV2D:
        ref_conv2d (vals[op->in], n, ic, ih, iw, op->weight, op->bias, oc, op->kernel,
                    op->stride, op->pad_top, op->pad_left, op->pad_bottom, op->pad_right,
                    op->residual >= 0 ? vals[op->residual] : NULL, op->act, out, oh, ow);
        break;
      case VAE_OP_GROUP_NORM:
        ref_group_norm (vals[op->in], n, ic, ih, iw, op->groups, op->eps, op->gamma,
                        op->beta, op->act, out);
        break;
      case VAE_OP_ATTENTION:
        ref_attention (vals[op->in], vals[op->in2], vals[op->in3], n, ic, ih, iw, out);
        break;
      case VAE_OP_UPSAMPLE2X:
        ref_upsample2x (vals[op->in], n, ic, ih, iw, out);
        break;
      case VAE_OP_TANH_CLAMP:
        ref_tanh_clamp (vals[op->in], out_count, op->clamp, out);
        break;
      case VAE_OP_CAUSAL_CONV3D: {
        g_assert (op->state < 0 || (state && op->state < state->n));
        double *hist = op->state >= 0 ? state->slots[op->state] : NULL;
        ref_causal_conv3d (op, hist, vals[op->in], it, ih, iw,
                           op->residual >= 0 ? vals[op->residual] : NULL, out, oh, ow);
        break;
      }
      case VAE_OP_RMS_NORM:
        ref_rms_norm (vals[op->in], n, ic, ih, iw, op->gamma, op->act, out);
        break;
      case VAE_OP_FRAMES_TO_CHANNELS:
        ref_frames_to_channels (vals[op->in], it, ic, ih, iw, op->factor, out);
        break;
      case VAE_OP_CHANNELS_TO_FRAMES:
        ref_channels_to_frames (vals[op->in], it, oc, ih, iw, op->factor, out);
        break;
      case VAE_OP_SPACE_TO_CHANNELS:
        ref_space_to_channels (vals[op->in], n, ic, ih, iw, op->factor, op->column_major, out);
        break;
      case VAE_OP_CHANNELS_TO_SPACE:
        ref_channels_to_space (vals[op->in], n, oc, ih, iw, op->factor, op->column_major, out);
        break;
      case VAE_OP_AVG_DOWN3D:
        ref_avg_down3d (vals[op->in], it, ic, ih, iw, oc, op->time_factor, op->factor, out);
        break;
      case VAE_OP_DUP_UP3D:
        ref_dup_up3d (vals[op->in], it, ic, ih, iw, oc, op->time_factor, op->factor,
                      op->drop_first, out);
        break;
      case VAE_OP_ADD:
        for (gsize j = 0; j < out_count; j++)
          out[j] = vals[op->in][j] + vals[op->in2][j];
        break;
    }
    if (perturb != 0)
      for (gsize j = 0; j < out_count; j++)
        out[j] *= 1.0 + perturb;
    vals[op->out] = out;
  }

  double *result = vals[graph->output];
  vals[graph->output] = NULL;
  for (guint v = 0; v < n_values; v++)
    g_free (vals[v]);
  g_free (vals);
  if (out_t)
    *out_t = ts[graph->output];
  *out_c = vae_graph_channels (graph, graph->output);
  *out_h = hs[graph->output];
  *out_w = ws[graph->output];
  return result;
}

double *
ref_graph_run (const VaeGraph *graph, int n, int h, int w, const float *input,
               double perturb, int *out_c, int *out_h, int *out_w)
{
  RefState *st = ref_state_new (graph, h, w);
  double *out = ref_graph_run_stream (graph, st, n, h, w, input, perturb, NULL, out_c,
                                      out_h, out_w);
  ref_state_free (st);
  return out;
}
