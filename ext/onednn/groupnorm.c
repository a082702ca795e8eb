/* gst-vae CPU engine: GroupNorm (+ SiLU/ReLU) without leaving oneDNN's layout.
 *
 * oneDNN 2.6 has no group normalisation, so per-channel sums are gathered
 * here, straight from the blocked layout, and the normalisation becomes a
 * per-channel affine map y = act(x * a_c + b_c), run by oneDNN's binary
 * primitive with an add and the activation as post-ops: one JIT pass. */
#include "onednn-private.h"
#include <math.h>

#define MAX_BLOCK 16

/* Shifted sums per channel of one image: sum (x - k_c) and sum (x - k_c)^2
 * with k_c the channel's first value, so the variance does not cancel.
 * Rows are summed in float (vectorised), images in double.  One copy per
 * activation type: LOAD widens an element to float. */
#define DEFINE_CHANNEL_SUMS(NAME, TYPE, LOAD)                                 \
  __attribute__ ((target_clones ("avx512f", "avx2", "default")))              \
  static void                                                                 \
  NAME (const TYPE *x, int n_blocks, int cb, int channels, gint64 s_c,        \
        gint64 s_h, gint64 s_w, int h, int w, double *s1, double *s2,         \
        float *shift)                                                         \
  {                                                                           \
    _Pragma ("omp parallel for schedule(static)")                             \
    for (int b = 0; b < n_blocks; b++) {                                      \
      const TYPE *base = x + b * s_c;                                         \
      float k[MAX_BLOCK];                                                     \
      double a1[MAX_BLOCK] = { 0 }, a2[MAX_BLOCK] = { 0 };                    \
      for (int i = 0; i < cb; i++)                                            \
        k[i] = LOAD (base[i]);                                                \
      for (int y = 0; y < h; y++) {                                           \
        float r1[MAX_BLOCK] = { 0 }, r2[MAX_BLOCK] = { 0 };                   \
        const TYPE *row = base + y * s_h;                                     \
        if (cb == MAX_BLOCK && s_w == MAX_BLOCK) {                            \
          for (int xx = 0; xx < w; xx++) {                                    \
            const TYPE *p = row + xx * MAX_BLOCK;                             \
            _Pragma ("omp simd")                                              \
            for (int i = 0; i < MAX_BLOCK; i++) {                             \
              float d = LOAD (p[i]) - k[i];                                   \
              r1[i] += d;                                                     \
              r2[i] += d * d;                                                 \
            }                                                                 \
          }                                                                   \
        } else {                                                              \
          for (int xx = 0; xx < w; xx++) {                                    \
            const TYPE *p = row + xx * s_w;                                   \
            for (int i = 0; i < cb; i++) {                                    \
              float d = LOAD (p[i]) - k[i];                                   \
              r1[i] += d;                                                     \
              r2[i] += d * d;                                                 \
            }                                                                 \
          }                                                                   \
        }                                                                     \
        for (int i = 0; i < cb; i++) {                                        \
          a1[i] += r1[i];                                                     \
          a2[i] += r2[i];                                                     \
        }                                                                     \
      }                                                                       \
      for (int i = 0; i < cb; i++) {                                          \
        int c = b * cb + i;                                                   \
        if (c < channels) {                                                   \
          s1[c] = a1[i];                                                      \
          s2[c] = a2[i];                                                      \
          shift[c] = k[i];                                                    \
        }                                                                     \
      }                                                                       \
    }                                                                         \
  }

static inline float
load_f32 (float v)
{
  return v;
}

static inline float
load_bf16 (guint16 v)
{
  union { guint32 u; float f; } bits = { .u = (guint32) v << 16 };
  return bits.f;
}

DEFINE_CHANNEL_SUMS (channel_sums_f32, float, load_f32)
DEFINE_CHANNEL_SUMS (channel_sums_bf16, guint16, load_bf16)

OnednnGroupNorm *
onednn_group_norm_new (const OnednnCtx *ctx, const VaeOp *op,
                       const dnnl_memory_desc_t *md, const dnnl_memory_desc_t *dst_md,
                       const void *src, void *dst,
                       GError **error)
{
  const dnnl_blocking_desc_t *blk = &md->format_desc.blocking;
  if ((md->data_type != dnnl_f32 && md->data_type != dnnl_bf16)
      || md->format_kind != dnnl_blocked
      || !(blk->inner_nblks == 0 || (blk->inner_nblks == 1 && blk->inner_idxs[0] == 1
                                     && blk->inner_blks[0] <= MAX_BLOCK))) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "group norm '%s': activation layout not supported", op->name);
    return NULL;
  }
  OnednnGroupNorm *gn = g_new0 (OnednnGroupNorm, 1);
  dnnl_memory_desc_t vec_md;
  dnnl_dims_t vd = { 1, op->in_channels, 1, 1 };
  dnnl_binary_desc_t desc;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  dnnl_memory_t scale_mem = NULL, shift_mem = NULL;

  gn->op = op;
  gn->src = src;
  gn->dst = dst;
  gn->n = md->dims[0];
  gn->h = md->dims[2];
  gn->w = md->dims[3];
  gn->image_md = *md;
  gn->image_md.dims[0] = 1;
  gn->image_md.padded_dims[0] = 1;
  gn->image_bytes = dnnl_memory_desc_get_size (&gn->image_md);
  gn->image_dst_md = *dst_md;
  gn->image_dst_md.dims[0] = 1;
  gn->image_dst_md.padded_dims[0] = 1;
  gn->image_dst_bytes = dnnl_memory_desc_get_size (&gn->image_dst_md);
  gn->scale = g_aligned_alloc0 (op->in_channels, sizeof (float), 64);
  gn->shift = g_aligned_alloc0 (op->in_channels, sizeof (float), 64);

  dnnl_memory_desc_init_by_tag (&vec_md, 4, vd, dnnl_f32, dnnl_abcd);
  DNNL_TRY (dnnl_binary_desc_init (&desc, dnnl_binary_mul, &gn->image_md, &vec_md,
                                   &gn->image_dst_md), "binary", op->name);
  DNNL_TRY (dnnl_primitive_attr_create (&attr), "attributes", op->name);
  DNNL_TRY (dnnl_post_ops_create (&po), "post-ops", op->name);
  DNNL_TRY (dnnl_post_ops_append_binary (po, dnnl_binary_add, &vec_md), "add post-op", op->name);
  if (op->act != VAE_ACT_NONE)
    DNNL_TRY (onednn_append_activation (po, op->act), "activation post-op", op->name);
  DNNL_TRY (dnnl_primitive_attr_set_post_ops (attr, po), "post-ops", op->name);
  DNNL_TRY (dnnl_primitive_desc_create (&pd, &desc, attr, ctx->engine, NULL),
            "group norm apply", op->name);
  DNNL_TRY (dnnl_primitive_create (&gn->apply.prim, pd), "group norm apply", op->name);
  DNNL_TRY (dnnl_memory_create (&gn->src_mem, &gn->image_md, ctx->engine, NULL), "memory", op->name);
  DNNL_TRY (dnnl_memory_create (&gn->dst_mem, &gn->image_dst_md, ctx->engine, NULL), "memory", op->name);
  DNNL_TRY (dnnl_memory_create (&scale_mem, &vec_md, ctx->engine, gn->scale), "memory", op->name);
  DNNL_TRY (dnnl_memory_create (&shift_mem, &vec_md, ctx->engine, gn->shift), "memory", op->name);
  gn->apply.args[0] = (dnnl_exec_arg_t) { DNNL_ARG_SRC_0, gn->src_mem };
  gn->apply.args[1] = (dnnl_exec_arg_t) { DNNL_ARG_SRC_1, scale_mem };
  gn->apply.args[2] = (dnnl_exec_arg_t) { DNNL_ARG_ATTR_MULTIPLE_POST_OP (0) | DNNL_ARG_SRC_1, shift_mem };
  gn->apply.args[3] = (dnnl_exec_arg_t) { DNNL_ARG_DST, gn->dst_mem };
  gn->apply.nargs = 4;
  scale_mem = shift_mem = NULL;

  dnnl_primitive_desc_destroy (pd);
  dnnl_post_ops_destroy (po);
  dnnl_primitive_attr_destroy (attr);
  return gn;

fail:
  if (scale_mem)
    dnnl_memory_destroy (scale_mem);
  if (shift_mem)
    dnnl_memory_destroy (shift_mem);
  if (pd)
    dnnl_primitive_desc_destroy (pd);
  if (po)
    dnnl_post_ops_destroy (po);
  if (attr)
    dnnl_primitive_attr_destroy (attr);
  onednn_group_norm_free (gn);
  return NULL;
}

gboolean
onednn_group_norm_run (const OnednnCtx *ctx, OnednnGroupNorm *gn, GError **error)
{
  const VaeOp *op = gn->op;
  const dnnl_blocking_desc_t *blk = &gn->image_md.format_desc.blocking;
  int channels = op->in_channels;
  int cb = blk->inner_nblks ? (int) blk->inner_blks[0] : 1;
  int n_blocks = (channels + cb - 1) / cb;
  int per_group = channels / op->groups;
  double hw = (double) gn->h * gn->w;
  g_autofree double *s1 = g_new (double, channels);
  g_autofree double *s2 = g_new (double, channels);
  g_autofree float *k = g_new (float, channels);

  for (int n = 0; n < gn->n; n++) {
    const guint8 *x = gn->src + n * gn->image_bytes;
    if (gn->image_md.data_type == dnnl_bf16)
      channel_sums_bf16 ((const guint16 *) x, n_blocks, cb, channels, blk->strides[1],
                         blk->strides[2], blk->strides[3], gn->h, gn->w, s1, s2, k);
    else
      channel_sums_f32 ((const float *) x, n_blocks, cb, channels, blk->strides[1],
                        blk->strides[2], blk->strides[3], gn->h, gn->w, s1, s2, k);
    for (int g = 0; g < op->groups; g++) {
      double sum = 0, sumsq = 0, count = hw * per_group;
      for (int c = g * per_group; c < (g + 1) * per_group; c++) {
        sum += s1[c] + k[c] * hw;
        sumsq += s2[c] + 2.0 * k[c] * s1[c] + (double) k[c] * k[c] * hw;
      }
      double mean = sum / count;
      double var = MAX (sumsq / count - mean * mean, 0.0);
      double rstd = 1.0 / sqrt (var + op->eps);
      for (int c = g * per_group; c < (g + 1) * per_group; c++) {
        double a = op->gamma[c] * rstd;
        gn->scale[c] = (float) a;
        gn->shift[c] = (float) (op->beta[c] - mean * a);
      }
    }
    dnnl_memory_set_data_handle (gn->src_mem, (void *) x);
    dnnl_memory_set_data_handle (gn->dst_mem, gn->dst + n * gn->image_dst_bytes);
    if (!onednn_prim_run (ctx, &gn->apply, op->name, error))
      return FALSE;
  }
  return TRUE;
}

void
onednn_group_norm_free (OnednnGroupNorm *gn)
{
  if (!gn)
    return;
  onednn_prim_clear (&gn->apply);
  if (gn->src_mem)
    dnnl_memory_destroy (gn->src_mem);
  if (gn->dst_mem)
    dnnl_memory_destroy (gn->dst_mem);
  for (int i = 1; i <= 2; i++)
    if (gn->apply.args[i].memory)
      dnnl_memory_destroy (gn->apply.args[i].memory);
  g_aligned_free (gn->scale);
  g_aligned_free (gn->shift);
  g_free (gn);
}
