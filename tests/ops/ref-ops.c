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

double *
ref_graph_run (const VaeGraph *graph, int n, int h, int w, const float *input,
               double perturb, int *out_c, int *out_h, int *out_w)
{
  const guint n_values = graph->values->len;
  g_autofree int *hs = g_new (int, n_values);
  g_autofree int *ws = g_new (int, n_values);
  double **vals = g_new0 (double *, n_values);
  vae_graph_infer_sizes (graph, h, w, hs, ws);

  gsize size0 = (gsize) n * vae_graph_channels (graph, 0) * h * w;
  vals[0] = g_new (double, size0);
  for (gsize i = 0; i < size0; i++)
    vals[0][i] = input[i];

  for (guint i = 0; i < graph->ops->len; i++) {
    const VaeOp *op = vae_graph_op (graph, i);
    const int ic = vae_graph_channels (graph, op->in), oc = vae_graph_channels (graph, op->out);
    const int ih = hs[op->in], iw = ws[op->in], oh = hs[op->out], ow = ws[op->out];
    const gsize out_count = (gsize) n * oc * oh * ow;
    g_assert (vals[op->in] && !vals[op->out]);
    double *out = g_new (double, out_count);
    switch (op->kind) {
      case VAE_OP_CONV2D:
        g_assert (op->residual < 0 || (hs[op->residual] == oh && ws[op->residual] == ow));
        ref_conv2d (vals[op->in], n, ic, ih, iw, op->weight, op->bias, oc, op->kernel,
                    op->stride, op->pad_top, op->pad_left, op->pad_bottom, op->pad_right,
                    op->residual >= 0 ? vals[op->residual] : NULL, op->act, out, oh, ow);
        break;
      case VAE_OP_GROUP_NORM:
        ref_group_norm (vals[op->in], n, ic, ih, iw, op->groups, op->eps, op->gamma,
                        op->beta, op->act, out);
        break;
      case VAE_OP_ATTENTION:
        g_assert (hs[op->in2] == ih && hs[op->in3] == ih && ws[op->in2] == iw
                  && ws[op->in3] == iw);
        ref_attention (vals[op->in], vals[op->in2], vals[op->in3], n, ic, ih, iw, out);
        break;
      case VAE_OP_UPSAMPLE2X:
        ref_upsample2x (vals[op->in], n, ic, ih, iw, out);
        break;
      case VAE_OP_TANH_CLAMP:
        ref_tanh_clamp (vals[op->in], out_count, op->clamp, out);
        break;
      default:
        g_error ("ref_graph_run: op '%s' has kind %d, which has no reference", op->name,
                 (int) op->kind);
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
  *out_c = vae_graph_channels (graph, graph->output);
  *out_h = hs[graph->output];
  *out_w = ws[graph->output];
  return result;
}
