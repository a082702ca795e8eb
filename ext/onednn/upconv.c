/* gst-vae CPU engine: nearest 2x upsampling folded into the 3x3 convolution
 * that follows it.
 *
 * Each output pixel (2y+py, 2x+px) of conv3x3(upsample2x(X)) only ever sees
 * two distinct rows and two distinct columns of X, so the pair is four 2x2
 * convolutions over X (one per phase py, px) whose taps are sums of the 3x3
 * taps.  That is 4/9 of the multiply-adds and no upsampled tensor; the
 * phases are then interleaved into the output. */
#include "onednn-private.h"
#include <string.h>

/* For phase P and 2x2 tap A: the 3x3 taps it sums (inclusive range).
 * Phase 0 reads rows y-1 (tap 0) and y (taps 1, 2); phase 1 reads y (taps
 * 0, 1) and y+1 (tap 2). */
static const int phase_taps[2][2][2] = {
  { { 0, 0 }, { 1, 2 } },
  { { 0, 1 }, { 2, 2 } },
};

float *
onednn_upconv_phase_weights (const VaeOp *op, int py, int px)
{
  int oc = op->out_channels, ic = op->in_channels;
  float *w = g_aligned_alloc0 ((gsize) oc * ic * 4, sizeof (float), 64);
  for (int o = 0; o < oc; o++)
    for (int i = 0; i < ic; i++) {
      const float *k = op->weight + ((gsize) o * ic + i) * 9;
      float *dst = w + ((gsize) o * ic + i) * 4;
      for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
          double sum = 0;
          for (int ky = phase_taps[py][a][0]; ky <= phase_taps[py][a][1]; ky++)
            for (int kx = phase_taps[px][b][0]; kx <= phase_taps[px][b][1]; kx++)
              sum += k[ky * 3 + kx];
          dst[a * 2 + b] = (float) sum;
        }
    }
  return w;
}

VaeOp
onednn_upconv_phase_op (const VaeOp *op, int py, int px)
{
  VaeOp phase = *op;
  phase.kernel = 2;
  phase.stride = 1;
  phase.pad_top = py == 0;
  phase.pad_bottom = py == 1;
  phase.pad_left = px == 0;
  phase.pad_right = px == 1;
  return phase;
}

gboolean
onednn_upconv_foldable (const VaeOp *up, const VaeOp *conv, int up_readers)
{
  return up->kind == VAE_OP_UPSAMPLE2X && conv->kind == VAE_OP_CONV2D
      && conv->in == up->out && up_readers == 1 && conv->kernel == 3
      && conv->stride == 1 && conv->pad_top == 1 && conv->pad_left == 1
      && conv->pad_bottom == 1 && conv->pad_right == 1 && conv->residual < 0;
}

void
onednn_interleave_run (const OnednnInterleave *il)
{
  const gsize pb = il->pixel_bytes;
  const gsize phase_bytes = (gsize) il->planes * il->h * il->w * pb;
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < il->planes; n++)
    for (int y = 0; y < il->h; y++)
      for (int p = 0; p < 4; p++) {
        const guint8 *src = il->phases + p * phase_bytes
            + (((gsize) n * il->h + y) * il->w) * pb;
        guint8 *dst = il->dst
            + (((gsize) n * 2 * il->h + 2 * y + p / 2) * 2 * il->w + p % 2) * pb;
        for (int x = 0; x < il->w; x++)
          memcpy (dst + (gsize) x * 2 * pb, src + (gsize) x * pb, pb);
      }
}
