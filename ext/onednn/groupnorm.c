/* gst-vae CPU engine: GroupNorm (+ SiLU/ReLU) without leaving oneDNN's layout.
 *
 * oneDNN 2.6 has no group normalisation, so per-channel sums are gathered
 * here, straight from the blocked layout, and the normalisation becomes a
 * per-channel affine map y = act(x * a_c + b_c), run by oneDNN's binary
 * primitive with an add and the activation as post-ops: one JIT pass. */
#include "onednn-private.h"
#include <math.h>
#include <string.h>

/* Where one image's channels live: N_BLOCKS runs of CB channels, run b at
 * b * S_C, position (y, x) of a run at y * S_H + x * S_W; within a run the
 * channels are contiguous.  Covers nChw16c (runs are the blocks), nhwc
 * (runs of 16 adjacent channels) and nchw (runs of one channel). */
typedef struct {
  int n_blocks, cb, channels, h, w;
  gint64 s_c, s_h, s_w;
} ChannelRuns;

typedef float v16f __attribute__ ((vector_size (64)));
typedef guint16 v16h __attribute__ ((vector_size (32)));
typedef guint32 v16u __attribute__ ((vector_size (64)));
typedef float v8f __attribute__ ((vector_size (32)));
typedef guint16 v8h __attribute__ ((vector_size (16)));
typedef guint32 v8u __attribute__ ((vector_size (32)));

static inline v16f
load16_f32 (const float *p)
{
  v16f v;
  memcpy (&v, p, sizeof v);
  return v;
}

static inline v16f
load16_bf16 (const guint16 *p)
{
  v16h h;
  memcpy (&h, p, sizeof h);
  v16u u = __builtin_convertvector (h, v16u) << 16;
  return (v16f) u;
}

static inline v8f
load8_f32 (const float *p)
{
  v8f v;
  memcpy (&v, p, sizeof v);
  return v;
}

static inline v8f
load8_bf16 (const guint16 *p)
{
  v8h h;
  memcpy (&h, p, sizeof h);
  v8u u = __builtin_convertvector (h, v8u) << 16;
  return (v8f) u;
}

static inline float
load1_f32 (const float *p)
{
  return *p;
}

static inline float
load1_bf16 (const guint16 *p)
{
  union { guint32 u; float f; } bits = { .u = (guint32) *p << 16 };
  return bits.f;
}

/* Shifted sums per channel of one image: sum (x - k_c) and sum (x - k_c)^2
 * with k_c the channel's first value, so the variance does not cancel.
 * Rows are summed in float (16 lanes), images in double.  One copy per
 * activation type; target clones give the wide-vector versions. */
#define DEFINE_CHANNEL_SUMS(NAME, TYPE, LOAD16, LOAD8, LOAD1)                     \
  __attribute__ ((target_clones ("avx512f", "avx2", "default")))              \
  static void                                                                 \
  NAME (const TYPE *x, const ChannelRuns *r, double *s1, double *s2,          \
        float *shift)                                                         \
  {                                                                           \
    _Pragma ("omp parallel for schedule(static)")                             \
    for (int b = 0; b < r->n_blocks; b++) {                                   \
      const TYPE *base = x + b * r->s_c;                                      \
      int cb = MIN (r->cb, r->channels - b * r->cb);                          \
      float k[16] = { 0 };                                                    \
      double a1[16] = { 0 }, a2[16] = { 0 };                                  \
      for (int i = 0; i < cb; i++)                                            \
        k[i] = LOAD1 (base + i);                                              \
      for (int y = 0; y < r->h; y++) {                                        \
        const TYPE *row = base + y * r->s_h;                                  \
        float f1[16], f2[16];                                                 \
        if (cb == 16) {                                                       \
          v16f kv, r1 = { 0 }, r2 = { 0 };                                    \
          memcpy (&kv, k, sizeof kv);                                         \
          for (int xx = 0; xx < r->w; xx++) {                                 \
            v16f d = LOAD16 (row + xx * r->s_w) - kv;                         \
            r1 += d;                                                          \
            r2 += d * d;                                                      \
          }                                                                   \
          memcpy (f1, &r1, sizeof f1);                                        \
          memcpy (f2, &r2, sizeof f2);                                        \
        } else if (cb == 8) {    /* nChw8c, the AVX2 machines' layout */     \
          v8f kv, r1 = { 0 }, r2 = { 0 };                                     \
          memcpy (&kv, k, sizeof kv);                                         \
          for (int xx = 0; xx < r->w; xx++) {                                 \
            v8f d = LOAD8 (row + xx * r->s_w) - kv;                           \
            r1 += d;                                                          \
            r2 += d * d;                                                      \
          }                                                                   \
          memcpy (f1, &r1, sizeof r1);                                        \
          memcpy (f2, &r2, sizeof r2);                                        \
        } else {                                                              \
          for (int i = 0; i < cb; i++)                                        \
            f1[i] = f2[i] = 0;                                                \
          for (int xx = 0; xx < r->w; xx++)                                   \
            for (int i = 0; i < cb; i++) {                                    \
              float d = LOAD1 (row + xx * r->s_w + i) - k[i];                 \
              f1[i] += d;                                                     \
              f2[i] += d * d;                                                 \
            }                                                                 \
        }                                                                     \
        for (int i = 0; i < cb; i++) {                                        \
          a1[i] += f1[i];                                                     \
          a2[i] += f2[i];                                                     \
        }                                                                     \
      }                                                                       \
      for (int i = 0; i < cb; i++) {                                          \
        s1[b * r->cb + i] = a1[i];                                            \
        s2[b * r->cb + i] = a2[i];                                            \
        shift[b * r->cb + i] = k[i];                                          \
      }                                                                       \
    }                                                                         \
  }

DEFINE_CHANNEL_SUMS (channel_sums_f32, float, load16_f32, load8_f32, load1_f32)
DEFINE_CHANNEL_SUMS (channel_sums_bf16, guint16, load16_bf16, load8_bf16, load1_bf16)

/* The channel runs of a layout, or FALSE for one we do not read. */
static gboolean
channel_runs (const dnnl_memory_desc_t *md, ChannelRuns *r)
{
  const dnnl_blocking_desc_t *blk = &md->format_desc.blocking;
  r->channels = md->dims[1];
  r->h = md->dims[2];
  r->w = md->dims[3];
  r->s_h = blk->strides[2];
  r->s_w = blk->strides[3];
  if (md->format_kind != dnnl_blocked
      || (md->data_type != dnnl_f32 && md->data_type != dnnl_bf16))
    return FALSE;
  if (blk->inner_nblks == 1 && blk->inner_idxs[0] == 1 && blk->inner_blks[0] <= 16) {
    r->cb = blk->inner_blks[0];               /* nChw16c, nChw8c */
    r->s_c = blk->strides[1];
  } else if (blk->inner_nblks == 0 && blk->strides[1] == 1) {
    r->cb = MIN (16, r->channels);            /* nhwc */
    r->s_c = r->cb;
  } else if (blk->inner_nblks == 0) {
    r->cb = 1;                                /* nchw and other plain */
    r->s_c = blk->strides[1];
  } else {
    return FALSE;
  }
  r->n_blocks = (r->channels + r->cb - 1) / r->cb;
  return TRUE;
}

OnednnGroupNorm *
onednn_group_norm_new (const OnednnCtx *ctx, const VaeOp *op,
                       const dnnl_memory_desc_t *md, const dnnl_memory_desc_t *dst_md,
                       const void *src, void *dst,
                       GError **error)
{
  ChannelRuns runs;
  if (!channel_runs (md, &runs)) {
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
  /* Padded to a whole block: in the blocked layout the vectors are too. */
  gn->scale = g_aligned_alloc0 ((op->in_channels + 15) / 16 * 16, sizeof (float), 64);
  gn->shift = g_aligned_alloc0 ((op->in_channels + 15) / 16 * 16, sizeof (float), 64);

  /* The per-channel vectors in the activation's own blocking (C in order,
   * padded): oneDNN has JIT code for that pairing only; a plain vector
   * against a blocked tensor falls back to its reference code. */
  dnnl_format_tag_t vec_tag = dnnl_abcd;
  if (runs.cb == 16 && runs.s_w == 16)
    vec_tag = dnnl_nChw16c;
  else if (runs.cb == 8 && runs.s_w == 8)
    vec_tag = dnnl_nChw8c;
  dnnl_memory_desc_init_by_tag (&vec_md, 4, vd, dnnl_f32, vec_tag);
  DNNL_TRY (dnnl_binary_desc_init (&desc, dnnl_binary_mul, &gn->image_md, &vec_md,
                                   &gn->image_dst_md), "binary", op->name);
  DNNL_TRY (onednn_attr_new (&attr), "attributes", op->name);
  DNNL_TRY (dnnl_post_ops_create (&po), "post-ops", op->name);
  DNNL_TRY (dnnl_post_ops_append_binary (po, dnnl_binary_add, &vec_md), "add post-op", op->name);
  if (op->act != VAE_ACT_NONE)
    DNNL_TRY (onednn_append_activation (po, op->act), "activation post-op", op->name);
  DNNL_TRY (dnnl_primitive_attr_set_post_ops (attr, po), "post-ops", op->name);
  DNNL_TRY (dnnl_primitive_desc_create (&pd, &desc, attr, ctx->engine, NULL),
            "group norm apply", op->name);
  DNNL_TRY (onednn_primitive_create (ctx, &gn->apply.prim, pd), "group norm apply", op->name);
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
  int channels = op->in_channels;
  ChannelRuns runs;
  channel_runs (&gn->image_md, &runs);
  int per_group = channels / op->groups;
  double hw = (double) gn->h * gn->w;
  g_autofree double *s1 = g_new (double, channels);
  g_autofree double *s2 = g_new (double, channels);
  g_autofree float *k = g_new (float, channels);

  for (int n = 0; n < gn->n; n++) {
    const guint8 *x = gn->src + n * gn->image_bytes;
    if (gn->image_md.data_type == dnnl_bf16)
      channel_sums_bf16 ((const guint16 *) x, &runs, s1, s2, k);
    else
      channel_sums_f32 ((const float *) x, &runs, s1, s2, k);
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
