/* gst-vae CPU engine: the video ops that are not convolutions.
 *
 * RMS norm: the per-pixel statistics by hand, straight from the blocked
 * layout (a block of 8 or 16 channels is one vector), then the activation
 * as one oneDNN eltwise pass in place (JIT code for SiLU's exp).
 *
 * The weightless reshapes (frames <-> channels, space <-> channels, Wan
 * 2.2's AvgDown3D / DupUp3D): where a frame <-> channel reshape keeps
 * whole channel blocks, the blocked bytes are already the answer and the
 * step is one copy.  Space <-> channels (the patchify of TAEHV and Wan
 * 2.2, at the input and output pixels) moves each element once, straight
 * between the two layouts: through plain NCHW it took three passes, 4-5%
 * of a TAEW2.2 encode or decode.  The rest goes to plain NCHW (a oneDNN
 * reorder), is rearranged there by a loop that reads like graph.h's
 * definition, and comes back: they run on small tensors (shortcut
 * branches) next to convolutions that cost hundreds of times more. */
#include "onednn-private.h"
#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- layouts */

/* Channels per block of MD (1 for plain NCHW). */
static int
md_block (const dnnl_memory_desc_t *md)
{
  const dnnl_blocking_desc_t *bd = &md->format_desc.blocking;
  return bd->inner_nblks == 0 ? 1 : (int) bd->inner_blks[0];
}

gsize
onednn_frame_bytes (const dnnl_memory_desc_t *md)
{
  return dnnl_memory_desc_get_size (md) / (gsize) md->dims[0];
}

/* --------------------------------------------------------------- RMS norm */

OnednnRmsNorm *
onednn_rms_norm_new (const OnednnCtx *ctx, const VaeOp *op, const dnnl_memory_desc_t *md,
                     void *src, void *dst, dnnl_memory_t dst_mem, GError **error)
{
  if (md->data_type != dnnl_f32) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "rms norm '%s': float32 activations only", op->name);
    return NULL;
  }
  OnednnRmsNorm *r = g_new0 (OnednnRmsNorm, 1);
  r->op = op;
  r->src = src;
  r->dst = dst;
  r->n = md->dims[0];
  r->c = md->dims[1];
  r->h = md->dims[2];
  r->w = md->dims[3];
  r->block = md_block (md);
  r->c_stored = md->padded_dims[1];
  /* sqrt(C) folded into gamma; padded channels get 0 so they stay 0. */
  r->gamma = g_new0 (float, r->c_stored);
  for (int c = 0; c < r->c; c++)
    r->gamma[c] = op->gamma[c] * sqrtf ((float) r->c);
  if (op->act != VAE_ACT_NONE
      && !onednn_activation_init (ctx, &r->act, op->act, md, dst_mem, op->name, error))
    goto fail;
  return r;
fail:
  onednn_rms_norm_free (r);
  return NULL;
}

/* Pixels per parallel task: the sums of a task's pixels stay in cache. */
#define RMS_TILE 256

gboolean
onednn_rms_norm_run (const OnednnCtx *ctx, OnednnRmsNorm *r, GError **error)
{
  const int B = r->block, nb = r->c_stored / B;
  const gsize hw = (gsize) r->h * r->w;
  const gsize tiles = (hw + RMS_TILE - 1) / RMS_TILE;
  const float *gamma = r->gamma;
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < r->n; n++)
    for (gsize t = 0; t < tiles; t++) {
      const gsize p0 = t * RMS_TILE, p1 = MIN (hw, p0 + RMS_TILE);
      float ss[RMS_TILE] = { 0 };
      const float *x = r->src + (gsize) n * nb * hw * B;
      float *y = r->dst + (gsize) n * nb * hw * B;
      for (int b = 0; b < nb; b++)
        for (gsize p = p0; p < p1; p++) {
          const float *v = x + ((gsize) b * hw + p) * B;
          float acc = 0;
          for (int l = 0; l < B; l++)
            acc += v[l] * v[l];
          ss[p - p0] += acc;
        }
      for (gsize p = p0; p < p1; p++)
        ss[p - p0] = 1.0f / fmaxf (sqrtf (ss[p - p0]), 1e-12f);
      for (int b = 0; b < nb; b++)
        for (gsize p = p0; p < p1; p++) {
          const float *v = x + ((gsize) b * hw + p) * B;
          float *o = y + ((gsize) b * hw + p) * B;
          const float s = ss[p - p0];
          for (int l = 0; l < B; l++)
            o[l] = v[l] * s * gamma[b * B + l];
        }
    }
  if (r->act.prim)
    return onednn_prim_run (ctx, &r->act, r->op->name, error);
  return TRUE;
}

void
onednn_rms_norm_free (OnednnRmsNorm *r)
{
  if (!r)
    return;
  onednn_prim_clear (&r->act);
  g_free (r->gamma);
  g_free (r);
}

/* ------------------------------------------------------ weightless reshapes */

/* The channel of a space-to-channels output that holds sub-pixel (dy, dx). */
static inline int
sub_channel (int c, int p, int dy, int dx, gboolean column_major)
{
  return c * p * p + (column_major ? dx * p + dy : dy * p + dx);
}

/* graph.h's definitions over plain NCHW float32 (N = frames). */
static void
reshape_plain (const VaeOp *op, const float *in, int it, int ic, int ih, int iw,
               float *out, int ot, int oc, int oh, int ow)
{
  const gsize iplane = (gsize) ih * iw, oplane = (gsize) oh * ow;
  switch (op->kind) {
    case VAE_OP_FRAMES_TO_CHANNELS:
    case VAE_OP_CHANNELS_TO_FRAMES:
      /* Plain NCHW: the same bytes ([T, C] and [T/s, sC] frame-major). */
      memcpy (out, in, (gsize) it * ic * iplane * sizeof (float));
      return;
    case VAE_OP_SPACE_TO_CHANNELS: {
      const int p = op->factor;
#pragma omp parallel for collapse(2) schedule(static)
      for (int n = 0; n < it; n++)
        for (int c = 0; c < ic; c++)
          for (int y = 0; y < ih; y++)
            for (int x = 0; x < iw; x++)
              out[((gsize) n * oc + sub_channel (c, p, y % p, x % p, op->column_major))
                  * oplane + (gsize) (y / p) * ow + x / p]
                  = in[((gsize) n * ic + c) * iplane + (gsize) y * iw + x];
      return;
    }
    case VAE_OP_CHANNELS_TO_SPACE: {
      const int p = op->factor;
#pragma omp parallel for collapse(2) schedule(static)
      for (int n = 0; n < ot; n++)
        for (int c = 0; c < oc; c++)
          for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++)
              out[((gsize) n * oc + c) * oplane + (gsize) y * ow + x]
                  = in[((gsize) n * ic + sub_channel (c, p, y % p, x % p, op->column_major))
                       * iplane + (gsize) (y / p) * iw + x / p];
      return;
    }
    case VAE_OP_AVG_DOWN3D: {
      const int ft = op->time_factor, fs = op->factor, pad = (ft - it % ft) % ft;
      const int F = ft * fs * fs, g = ic * F / oc;
#pragma omp parallel for collapse(2) schedule(static)
      for (int t = 0; t < ot; t++)
        for (int o = 0; o < oc; o++)
          for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
              float acc = 0;
              for (int k = o * g; k < o * g + g; k++) {
                int c = k / F, r = k % F, tt = r / (fs * fs), dy = (r / fs) % fs, dx = r % fs;
                int f = t * ft + tt - pad;   /* front padding: zeros */
                if (f >= 0)
                  acc += in[((gsize) f * ic + c) * iplane + (gsize) (y * fs + dy) * iw
                            + x * fs + dx];
              }
              out[((gsize) t * oc + o) * oplane + (gsize) y * ow + x] = acc / g;
            }
      return;
    }
    case VAE_OP_DUP_UP3D: {
      const int ft = op->time_factor, fs = op->factor;
      const int F = ft * fs * fs, r = oc * F / ic, skip = op->drop_first ? ft - 1 : 0;
#pragma omp parallel for collapse(2) schedule(static)
      for (int t = 0; t < ot; t++)
        for (int o = 0; o < oc; o++) {
          const int src_t = (t + skip) / ft, tt = (t + skip) % ft;
          for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
              int c = (o * F + tt * fs * fs + (y % fs) * fs + x % fs) / r;
              out[((gsize) t * oc + o) * oplane + (gsize) y * ow + x]
                  = in[((gsize) src_t * ic + c) * iplane + (gsize) (y / fs) * iw + x / fs];
            }
        }
      return;
    }
    case VAE_OP_CONV2D:
    case VAE_OP_GROUP_NORM:
    case VAE_OP_ATTENTION:
    case VAE_OP_UPSAMPLE2X:
    case VAE_OP_TANH_CLAMP:
    case VAE_OP_CAUSAL_CONV3D:
    case VAE_OP_RMS_NORM:
    case VAE_OP_ADD:
      break;
  }
  g_assert_not_reached ();
}

/* MD as offsets, when it is plain NCHW or nChw{8,16}c float32. */
static gboolean
flat_layout (const dnnl_memory_desc_t *md, OnednnFlatLayout *l)
{
  const dnnl_blocking_desc_t *bd = &md->format_desc.blocking;
  if (md->ndims != 4 || md->data_type != dnnl_f32 || md->format_kind != dnnl_blocked
      || md->offset0 != 0)
    return FALSE;
  if (bd->inner_nblks > 1 || (bd->inner_nblks == 1 && bd->inner_idxs[0] != 1))
    return FALSE;
  l->block = md_block (md);
  for (int d = 0; d < 4; d++)
    l->stride[d] = (gsize) bd->strides[d];
  l->c_stored = (int) md->padded_dims[1];
  return TRUE;
}

static inline gsize
flat_at (const OnednnFlatLayout *l, int n, int c, int y, int x)
{
  return n * l->stride[0] + (gsize) (c / l->block) * l->stride[1] + y * l->stride[2]
      + x * l->stride[3] + c % l->block;
}

/* Space <-> channels from layout to layout, output row by output row; the
 * padding channels of the output's last block get zeros.  Both ways read
 * the sub-pixel order from sub_channel, as reshape_plain does. */
static void
space_direct (const OnednnReshape *r, const float *in, float *out)
{
  const VaeOp *op = r->op;
  const OnednnFlatLayout *li = &r->in_layout, *lo = &r->out_layout;
  const int p = op->factor, on = r->out_dims[0], oc = r->out_dims[1];
  const int oh = r->out_dims[2], ow = r->out_dims[3], ic = r->in_dims[1];
  const gsize is = li->stride[3], os = lo->stride[3];
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < on; n++)
    for (int y = 0; y < oh; y++) {
      for (int c = oc; c < lo->c_stored; c++) {
        float *o = out + flat_at (lo, n, c, y, 0);
        for (int x = 0; x < ow; x++)
          o[x * os] = 0;
      }
      if (op->kind == VAE_OP_SPACE_TO_CHANNELS) {
        /* input channel c's sub-pixel (dy, dx) of output row y */
        for (int c = 0; c < ic; c++)
          for (int dy = 0; dy < p; dy++)
            for (int dx = 0; dx < p; dx++) {
              float *o = out + flat_at (lo, n, sub_channel (c, p, dy, dx, op->column_major), y, 0);
              const float *i = in + flat_at (li, n, c, y * p + dy, 0);
              for (int x = 0; x < ow; x++)
                o[x * os] = i[(gsize) (x * p + dx) * is];
            }
      } else {
        /* output column x of channel c: input channel sub_channel (c, y % p, x % p) */
        for (int c = 0; c < oc; c++) {
          float *o = out + flat_at (lo, n, c, y, 0);
          for (int dx = 0; dx < p; dx++) {
            const float *i = in + flat_at (li, n, sub_channel (c, p, y % p, dx, op->column_major),
                                           y / p, 0);
            for (int x = dx; x < ow; x += p)
              o[x * os] = i[(gsize) (x / p) * is];
          }
        }
      }
    }
}

/* Whole blocks on both sides: the blocked bytes are the plain answer. */
gboolean
onednn_reshape_is_copy (const VaeOp *op, const dnnl_memory_desc_t *in_md,
                        const dnnl_memory_desc_t *out_md)
{
  const int B = md_block (in_md);
  return (op->kind == VAE_OP_FRAMES_TO_CHANNELS || op->kind == VAE_OP_CHANNELS_TO_FRAMES)
      && B == md_block (out_md) && in_md->data_type == out_md->data_type
      && in_md->dims[1] % B == 0 && out_md->dims[1] % B == 0
      && dnnl_memory_desc_get_size (in_md) == dnnl_memory_desc_get_size (out_md);
}

OnednnReshape *
onednn_reshape_new (const OnednnCtx *ctx, const VaeOp *op,
                    const dnnl_memory_desc_t *in_md, dnnl_memory_t in_mem, void *in_data,
                    const dnnl_memory_desc_t *out_md, dnnl_memory_t out_mem, void *out_data,
                    GError **error)
{
  OnednnReshape *r = g_new0 (OnednnReshape, 1);
  r->op = op;
  for (int d = 0; d < 4; d++) {
    r->in_dims[d] = in_md->dims[d];
    r->out_dims[d] = out_md->dims[d];
  }
  if (onednn_reshape_is_copy (op, in_md, out_md) && in_data && out_data) {
    r->copy_src = in_data;
    r->copy_dst = out_data;
    r->copy_bytes = dnnl_memory_desc_get_size (in_md);
    return r;
  }
  if ((op->kind == VAE_OP_SPACE_TO_CHANNELS || op->kind == VAE_OP_CHANNELS_TO_SPACE)
      && flat_layout (in_md, &r->in_layout) && flat_layout (out_md, &r->out_layout)) {
    r->direct = TRUE;
    r->in_mem = in_mem;
    r->out_mem = out_mem;
    return r;
  }
  dnnl_memory_desc_t pin, pout;
  dnnl_dims_t di = { in_md->dims[0], in_md->dims[1], in_md->dims[2], in_md->dims[3] };
  dnnl_dims_t dout = { out_md->dims[0], out_md->dims[1], out_md->dims[2], out_md->dims[3] };
  dnnl_memory_desc_init_by_tag (&pin, 4, di, dnnl_f32, dnnl_nchw);
  dnnl_memory_desc_init_by_tag (&pout, 4, dout, dnnl_f32, dnnl_nchw);
  r->a = vae_try_aligned_alloc0 (1, dnnl_memory_desc_get_size (&pin), 64,
                                 "a reshape's plain copy", error);
  r->b = r->a ? vae_try_aligned_alloc0 (1, dnnl_memory_desc_get_size (&pout), 64,
                                        "a reshape's plain copy", error) : NULL;
  if (!r->b)
    goto fail;
  DNNL_TRY (dnnl_memory_create (&r->a_mem, &pin, ctx->engine, r->a), "memory", op->name);
  DNNL_TRY (dnnl_memory_create (&r->b_mem, &pout, ctx->engine, r->b), "memory", op->name);
  if (!onednn_reorder_init (ctx, &r->to_plain, in_md, in_mem, &pin, r->a_mem, op->name, error)
      || !onednn_reorder_init (ctx, &r->from_plain, &pout, r->b_mem, out_md, out_mem,
                               op->name, error))
    goto fail;
  return r;
fail:
  onednn_reshape_free (r);
  return NULL;
}

gboolean
onednn_reshape_run (const OnednnCtx *ctx, OnednnReshape *r, GError **error)
{
  if (r->copy_bytes) {
    if (r->copy_dst != r->copy_src)
      memcpy (r->copy_dst, r->copy_src, r->copy_bytes);
    return TRUE;
  }
  if (r->direct) {
    void *in = NULL, *out = NULL;
    dnnl_memory_get_data_handle (r->in_mem, &in);
    dnnl_memory_get_data_handle (r->out_mem, &out);
    space_direct (r, in, out);
    return TRUE;
  }
  if (!onednn_prim_run (ctx, &r->to_plain, r->op->name, error))
    return FALSE;
  dnnl_stream_wait (ctx->stream);
  reshape_plain (r->op, r->a, r->in_dims[0], r->in_dims[1], r->in_dims[2], r->in_dims[3],
                 r->b, r->out_dims[0], r->out_dims[1], r->out_dims[2], r->out_dims[3]);
  return onednn_prim_run (ctx, &r->from_plain, r->op->name, error);
}

void
onednn_reshape_free (OnednnReshape *r)
{
  if (!r)
    return;
  onednn_prim_clear (&r->to_plain);
  onednn_prim_clear (&r->from_plain);
  if (r->a_mem)
    dnnl_memory_destroy (r->a_mem);
  if (r->b_mem)
    dnnl_memory_destroy (r->b_mem);
  g_aligned_free (r->a);
  g_aligned_free (r->b);
  g_free (r);
}
