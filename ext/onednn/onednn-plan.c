/* gst-vae CPU engine: turns a graph at one batch shape into a list of
 * oneDNN steps over buffers allocated once.
 *
 * bf16 option: weights and convolution inputs are bfloat16, accumulation
 * and everything else (the residual stream, normalisation statistics,
 * attention) float32.  A value is stored as bf16 only when convolutions
 * (or an upsample feeding one) are its only readers; a float32 value that
 * a convolution reads gets a bf16 shadow copy, cast once.
 *
 * Activations stay in one layout (see ACTIVATION_LAYOUT) from the first op
 * to the last; only the graph's input and output are plain NCHW.  Bias,
 * residual adds (sum post-op) and activations are fused into the
 * convolutions; buffers are reused as soon as a value is dead, and residual
 * adds write in place into the dying residual.
 *
 * float32 3x3 convolutions run as Winograd F(4x4, 3x3) (oneDNN's
 * jit_wino_4x3) where the ISA has it: 2.4x to 4.6x the throughput of
 * direct convolution on these shapes, within the float32 tolerances of the
 * golden tests.  The engine setting winograd=off (or VAE_ONEDNN_WINOGRAD=0)
 * turns it off (for comparisons).
 *
 * onednn_plan_new runs four jobs, in order (see there): fusions (what
 * folds into what: onednn-fuse.c), values (each value's own shape, frame
 * count included, and memory descriptor), buffers (buffer-plan slots,
 * allocated) and primitives (the steps). */
#include "onednn-private.h"
#include "buffer-plan.h"
#include <stdlib.h>
#include <string.h>

/* Every activation is in one blocked layout, nChw16c with AVX-512, nChw8c
 * with AVX2 (onednn_activation_layout): what oneDNN 2.6's Winograd and
 * direct convolutions take on that ISA, what its binary primitive
 * (GroupNorm's apply) runs JIT code on, and GroupNorm statistics read a
 * block at a time from it. */
#define ACTIVATION_LAYOUT onednn_activation_layout ()

/* One value of the plan: its own shape (frame count included: values of
 * one plan may differ in it), layout, buffer and memory. */
typedef struct {
  int n, c, h, w;              /* batch (frames), channels, height, width */
  dnnl_memory_desc_t md;
  int buffer;                  /* index into plan->buffers, -1: none */
  int shadow;                  /* bf16 copy read by convolutions, or -1 */
  gboolean cast_done;          /* the shadow's cast step is emitted */
  dnnl_memory_t mem;
} PlanValue;

typedef struct {
  gsize size;
  void *data;
} PlanBuffer;

struct _OnednnPlan {
  const VaeGraph *graph;
  VaeOp *ops;                  /* the graph's ops as this plan runs them */
  guint n_ops;
  gboolean *skip;              /* upsamples folded into the next conv */
  gboolean *upconv;            /* convs that do those upsamples (upconv.c) */
  gboolean *wino;              /* convs our Winograd kernel runs (winograd.c) */
  guint8 *phases;              /* scratch for the upconvs' phase outputs */
  GPtrArray *phase_mems;       /* dnnl_memory_t views into it */
  int n, h, w;                 /* the input's; each value has its own */
  dnnl_data_type_t dt;         /* activations */
  PlanValue *values;           /* the graph's values, then shadows */
  guint n_values;
  GArray *buffers;             /* PlanBuffer */
  GArray *steps;               /* OnednnStep */
  GPtrArray *owned;            /* the phase scratch, g_aligned_free'd (the
                                * weights are the engine's: ctx->weights) */
  dnnl_memory_desc_t in_md, out_md;
  dnnl_memory_t in_mem;        /* user input, handle set per run */
  dnnl_memory_t out_mem;       /* user output, handle set per run */
  OnednnPrim from_input;       /* float32 input -> activation type */
  OnednnPrim to_output;
  int n_slots;                 /* the graph's state slots (video) */
  gsize *slot_bytes;           /* [n_slots]: what the causal steps keep, 0: unused */
};

void
onednn_set_error (GError **error, dnnl_status_t status, const char *what, const char *layer)
{
  if (status == dnnl_out_of_memory)
    g_set_error (error, VAE_ERROR, VAE_ERROR_NO_MEMORY, "oneDNN: %s for '%s': out of memory",
                 what, layer ? layer : "?");
  else
    g_set_error (error, VAE_ERROR, VAE_ERROR_ENGINE, "oneDNN: %s failed for '%s' (status %d)",
                 what, layer ? layer : "?", (int) status);
}

void
onednn_prim_clear (OnednnPrim *p)
{
  if (p->prim)
    dnnl_primitive_destroy (p->prim);
  p->prim = NULL;
}

dnnl_status_t
onednn_attr_new (dnnl_primitive_attr_t *attr)
{
  dnnl_status_t st = dnnl_primitive_attr_create (attr);
  if (st == dnnl_success)
    st = dnnl_primitive_attr_set_scratchpad_mode (*attr, dnnl_scratchpad_mode_user);
  return st;
}

dnnl_status_t
onednn_primitive_create (const OnednnCtx *ctx, dnnl_primitive_t *prim,
                         const_dnnl_primitive_desc_t pd)
{
  const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md (pd, dnnl_query_scratchpad_md, 0);
  if (md)
    ctx->scratch->needed = MAX (ctx->scratch->needed, dnnl_memory_desc_get_size (md));
  return dnnl_primitive_create (prim, pd);
}

dnnl_status_t
onednn_execute (const OnednnCtx *ctx, dnnl_primitive_t prim, int nargs,
                const dnnl_exec_arg_t *args)
{
  OnednnScratch *s = ctx->scratch;
  dnnl_exec_arg_t all[16];
  g_assert (nargs < (int) G_N_ELEMENTS (all));
  if (s->needed > s->size) {
    /* Plans reserve it when they are built; this covers primitives run
     * while a plan is being built (weight reorders). */
    GError *err = NULL;
    if (!onednn_scratch_reserve (ctx, &err)) {
      dnnl_status_t st = g_error_matches (err, VAE_ERROR, VAE_ERROR_NO_MEMORY)
          ? dnnl_out_of_memory : dnnl_runtime_error;
      g_error_free (err);
      return st;
    }
  }
  memcpy (all, args, nargs * sizeof *args);
  all[nargs].arg = DNNL_ARG_SCRATCHPAD;
  all[nargs].memory = s->mem;
  return dnnl_primitive_execute (prim, ctx->stream, nargs + (s->mem ? 1 : 0), all);
}

gboolean
onednn_scratch_reserve (const OnednnCtx *ctx, GError **error)
{
  OnednnScratch *s = ctx->scratch;
  dnnl_memory_desc_t md;

  if (s->needed <= s->size)
    return TRUE;
  onednn_scratch_free (s);
  s->data = vae_try_aligned_alloc0 (1, s->needed, 64, "the oneDNN scratchpad", error);
  if (!s->data)
    return FALSE;
  s->size = s->needed;
  dnnl_dims_t dims = { (dnnl_dim_t) s->size };
  dnnl_memory_desc_init_by_tag (&md, 1, dims, dnnl_u8, dnnl_a);
  DNNL_TRY (dnnl_memory_create (&s->mem, &md, ctx->engine, s->data), "memory", "scratchpad");
  return TRUE;
fail:
  onednn_scratch_free (s);
  return FALSE;
}

void
onednn_scratch_free (OnednnScratch *s)
{
  if (s->mem)
    dnnl_memory_destroy (s->mem);
  g_aligned_free (s->data);
  s->mem = NULL;
  s->data = NULL;
  s->size = 0;
}

gboolean
onednn_prim_run (const OnednnCtx *ctx, OnednnPrim *p, const char *layer, GError **error)
{
  DNNL_TRY (onednn_execute (ctx, p->prim, p->nargs, p->args), "execute", layer);
  return TRUE;
fail:
  return FALSE;
}

static void
prim_arg (OnednnPrim *p, int arg, dnnl_memory_t mem)
{
  g_assert (p->nargs < (int) G_N_ELEMENTS (p->args));
  p->args[p->nargs].arg = arg;
  p->args[p->nargs].memory = mem;
  p->nargs++;
}

static gboolean
prim_from_pd (const OnednnCtx *ctx, OnednnPrim *p, dnnl_primitive_desc_t pd,
              const char *layer, GError **error)
{
  DNNL_TRY (onednn_primitive_create (ctx, &p->prim, pd), "primitive creation", layer);
  return TRUE;
fail:
  return FALSE;
}

gboolean
onednn_reorder_init (const OnednnCtx *ctx, OnednnPrim *p,
                     const dnnl_memory_desc_t *src_md, dnnl_memory_t src,
                     const dnnl_memory_desc_t *dst_md, dnnl_memory_t dst,
                     const char *layer, GError **error)
{
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_attr_t attr = NULL;
  DNNL_TRY (onednn_attr_new (&attr), "attributes", layer);
  dnnl_status_t st = dnnl_reorder_primitive_desc_create (&pd, src_md, ctx->engine, dst_md,
                                                         ctx->engine, attr);
  dnnl_primitive_attr_destroy (attr);
  DNNL_TRY (st, "reorder", layer);
  gboolean ok = prim_from_pd (ctx, p, pd, layer, error);
  dnnl_primitive_desc_destroy (pd);
  if (!ok)
    return FALSE;
  prim_arg (p, DNNL_ARG_FROM, src);
  prim_arg (p, DNNL_ARG_TO, dst);
  return TRUE;
fail:
  return FALSE;
}

static void
md_4d (dnnl_memory_desc_t *md, int n, int c, int h, int w, dnnl_data_type_t dt,
       dnnl_format_tag_t tag)
{
  dnnl_dims_t dims = { n, c, h, w };
  dnnl_memory_desc_init_by_tag (md, 4, dims, dt, tag);
}

dnnl_status_t
onednn_append_activation (dnnl_post_ops_t po, VaeActivation act)
{
  if (act == VAE_ACT_SILU)
    return dnnl_post_ops_append_eltwise (po, 1.0f, dnnl_eltwise_swish, 1.0f, 0.0f);
  return dnnl_post_ops_append_eltwise (po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
}

/* The convolution's primitive descriptor: weights and destination in the
 * layout oneDNN prefers for this source, bias/residual/act fused. */
gboolean
onednn_conv_pd (const OnednnCtx *ctx, const VaeOp *op, const dnnl_memory_desc_t *src_md,
         int n, int oh, int ow, dnnl_data_type_t dt, dnnl_primitive_desc_t *pd,
         GError **error)
{
  dnnl_memory_desc_t w_md, b_md, d_md;
  dnnl_dims_t wd = { op->out_channels, op->in_channels, op->kernel, op->kernel };
  dnnl_dims_t bd = { op->out_channels };
  dnnl_dims_t dd = { n, op->out_channels, oh, ow };
  dnnl_dims_t strides = { op->stride, op->stride };
  dnnl_dims_t pad_l = { op->pad_top, op->pad_left };
  dnnl_dims_t pad_r = { op->pad_bottom, op->pad_right };
  dnnl_convolution_desc_t desc;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  gboolean ok = FALSE;

  dnnl_memory_desc_init_by_tag (&w_md, 4, wd, src_md->data_type, dnnl_format_tag_any);
  dnnl_memory_desc_init_by_tag (&b_md, 1, bd, dnnl_f32, dnnl_a);
  dnnl_memory_desc_init_by_tag (&d_md, 4, dd, dt, ACTIVATION_LAYOUT);
  DNNL_TRY (onednn_attr_new (&attr), "attributes", op->name);
  DNNL_TRY (dnnl_post_ops_create (&po), "post-ops", op->name);
  if (op->residual >= 0)
    DNNL_TRY (dnnl_post_ops_append_sum (po, 1.0f), "sum post-op", op->name);
  if (op->act != VAE_ACT_NONE)
    DNNL_TRY (onednn_append_activation (po, op->act), "activation post-op", op->name);
  DNNL_TRY (dnnl_primitive_attr_set_post_ops (attr, po), "post-ops", op->name);
  /* Winograd where it applies and oneDNN has it, else direct. */
  gboolean wino = onednn_fuse_winograd (ctx, op, src_md->data_type);
  for (int attempt = wino ? 0 : 1; attempt < 2; attempt++) {
    dnnl_alg_kind_t alg = attempt == 0 ? dnnl_convolution_winograd : dnnl_convolution_direct;
    DNNL_TRY (dnnl_convolution_forward_desc_init (&desc, dnnl_forward_inference, alg,
                src_md, &w_md, op->bias ? &b_md : NULL, &d_md, strides, pad_l, pad_r),
              "convolution descriptor", op->name);
    dnnl_status_t st = dnnl_primitive_desc_create (pd, &desc, attr, ctx->engine, NULL);
    if (st == dnnl_success)
      break;
    if (attempt == 1)
      DNNL_TRY (st, "convolution", op->name);
  }
  ok = TRUE;
fail:
  if (po)
    dnnl_post_ops_destroy (po);
  if (attr)
    dnnl_primitive_attr_destroy (attr);
  return ok;
}

static gboolean
upsample_pd (const OnednnCtx *ctx, const VaeOp *op, const dnnl_memory_desc_t *src_md,
             int n, int oh, int ow, dnnl_primitive_desc_t *pd, GError **error)
{
  dnnl_resampling_desc_t desc;
  dnnl_memory_desc_t d_md;
  dnnl_dims_t dd = { n, op->out_channels, oh, ow };
  dnnl_memory_desc_init_by_tag (&d_md, 4, dd, src_md->data_type, dnnl_format_tag_any);
  dnnl_primitive_attr_t attr = NULL;
  DNNL_TRY (dnnl_resampling_forward_desc_init (&desc, dnnl_forward_inference,
              dnnl_resampling_nearest, NULL, src_md, &d_md), "resampling", op->name);
  DNNL_TRY (onednn_attr_new (&attr), "attributes", op->name);
  DNNL_TRY (dnnl_primitive_desc_create (pd, &desc, attr, ctx->engine, NULL),
            "resampling", op->name);
  dnnl_primitive_attr_destroy (attr);
  return TRUE;
fail:
  if (attr)
    dnnl_primitive_attr_destroy (attr);
  return FALSE;
}

gboolean
onednn_prim_from_desc (const OnednnCtx *ctx, OnednnPrim *p, const_dnnl_op_desc_t desc,
                       const char *what, const char *layer, GError **error)
{
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_attr_t attr = NULL;
  DNNL_TRY (onednn_attr_new (&attr), "attributes", layer);
  dnnl_status_t st = dnnl_primitive_desc_create (&pd, desc, attr, ctx->engine, NULL);
  dnnl_primitive_attr_destroy (attr);
  DNNL_TRY (st, what, layer);
  gboolean ok = prim_from_pd (ctx, p, pd, layer, error);
  dnnl_primitive_desc_destroy (pd);
  return ok;
fail:
  return FALSE;
}

gboolean
onednn_eltwise_init (const OnednnCtx *ctx, OnednnPrim *p, dnnl_alg_kind_t alg, float alpha,
                     const dnnl_memory_desc_t *md, dnnl_memory_t src, dnnl_memory_t dst,
                     const char *layer, GError **error)
{
  dnnl_eltwise_desc_t desc;
  DNNL_TRY (dnnl_eltwise_forward_desc_init (&desc, dnnl_forward_inference, alg, md,
                                            alpha, 0.0f), "eltwise", layer);
  if (!onednn_prim_from_desc (ctx, p, &desc, "eltwise", layer, error))
    return FALSE;
  prim_arg (p, DNNL_ARG_SRC, src);
  prim_arg (p, DNNL_ARG_DST, dst);
  return TRUE;
fail:
  return FALSE;
}

gboolean
onednn_activation_init (const OnednnCtx *ctx, OnednnPrim *p, VaeActivation act,
                        const dnnl_memory_desc_t *md, dnnl_memory_t mem, const char *layer,
                        GError **error)
{
  /* swish with alpha 1 is x * sigmoid(x); relu's alpha is its negative slope */
  return onednn_eltwise_init (ctx, p, act == VAE_ACT_SILU ? dnnl_eltwise_swish
                              : dnnl_eltwise_relu, act == VAE_ACT_SILU ? 1.0f : 0.0f,
                              md, mem, mem, layer, error);
}

static gboolean
eltwise_step (const OnednnCtx *ctx, OnednnPlan *plan, const VaeOp *op,
              dnnl_alg_kind_t alg, float alpha, dnnl_memory_t src, dnnl_memory_t dst,
              const dnnl_memory_desc_t *md, GError **error)
{
  OnednnStep step = { STEP_PRIM, op };
  if (!onednn_eltwise_init (ctx, &step.prim, alg, alpha, md, src, dst, op->name, error))
    return FALSE;
  g_array_append_val (plan->steps, step);
  return TRUE;
}

/* The value a convolution reads: the shadow copy when there is one. */
static int
conv_src (const OnednnPlan *plan, const VaeOp *op)
{
  int s = plan->values[op->in].shadow;
  return op->kind == VAE_OP_CONV2D && s >= 0 ? s : op->in;
}

/* The read value whose buffer OP may write its output over when OP is the
 * value's last reader (onednn_fuse_inplace says which), only when both are
 * laid out alike; never the graph input (value 0, reordered from the
 * caller's). */
static int
inplace_candidate (const OnednnPlan *plan, const VaeOp *op)
{
  int cand = onednn_fuse_inplace (op, conv_src (plan, op));
  if (cand <= 0)
    return -1;
  const dnnl_memory_desc_t *in = &plan->values[cand].md, *out = &plan->values[op->out].md;
  if (op->kind == VAE_OP_FRAMES_TO_CHANNELS || op->kind == VAE_OP_CHANNELS_TO_FRAMES)
    return onednn_reshape_is_copy (op, in, out) ? cand : -1;
  return dnnl_memory_desc_equal (in, out) ? cand : -1;
}

/* Buffers for every value (gst/vae/core/buffer-plan.c): the graph's values
 * and the shadows, folded upsamples left out (their outputs are never
 * written).  Sizes only; allocated by the caller. */
static void
assign_buffers (OnednnPlan *plan)
{
  const guint n_all = 2 * plan->n_values;
  g_autofree gsize *bytes = g_new0 (gsize, n_all);
  for (guint v = 0; v < n_all; v++)
    if (plan->values[v].md.ndims > 0)
      bytes[v] = dnnl_memory_desc_get_size (&plan->values[v].md);
  g_autofree VaePlanStep *steps = g_new (VaePlanStep, MAX (plan->n_ops, 1));
  guint n_steps = 0;
  for (guint i = 0; i < plan->n_ops; i++) {
    const VaeOp *op = &plan->ops[i];
    if (plan->skip[i])
      continue;
    VaePlanStep *ps = &steps[n_steps++];
    vae_plan_step_from_op (op, ps);
    int src = conv_src (plan, op);
    if (src != op->in) {
      /* The convolution reads its input's shadow, cast by the first
       * convolution that reads it. */
      int r = 0;
      while (ps->reads[r] >= 0)
        r++;
      ps->reads[r] = src;
      ps->aux = src;
    }
    ps->inplace = inplace_candidate (plan, op);
  }
  g_autoptr (VaeBufferPlan) bp = vae_buffer_plan_new (n_all, bytes, n_steps, steps, 0,
                                                      plan->graph->output);
  for (int k = 0; k < bp->n_slots; k++) {
    PlanBuffer b = { bp->slot_bytes[k], NULL };
    g_array_append_val (plan->buffers, b);
  }
  for (guint v = 0; v < n_all; v++)
    plan->values[v].buffer = bp->value_slot[v];
  g_debug ("onednn plan %dx%dx%d: %d activation buffers, %.1f MiB", plan->n, plan->w,
           plan->h, bp->n_slots, vae_buffer_plan_total (bp) / 1048576.0);
}

static gboolean
weight_layout_equal (gconstpointer a, gconstpointer b)
{
  const OnednnWeightLayout *x = a, *y = b;
  return x->variant == y->variant && dnnl_memory_desc_equal (&x->md, &y->md);
}

static void
weight_free (gpointer data, gpointer user_data)
{
  g_aligned_free (data);
}

VaeWeightCache *
onednn_weight_cache_new (void)
{
  return vae_weight_cache_new (sizeof (OnednnWeightLayout), weight_layout_equal,
                               weight_free, NULL);
}

/* OP's filter (PHASE < 0) or upconv phase PHASE's, reordered into W_MD:
 * the engine's copy when an earlier plan (of this graph or another over
 * the same weight) made it, else made now and kept in the engine's cache.
 * Why per engine: a plan per batch shape, and graphs sharing weights,
 * would otherwise each hold a copy of every weight. */
void *
onednn_prepared_weight (const OnednnCtx *ctx, const VaeOp *op, int phase,
                 const dnnl_memory_desc_t *w_md, GError **error)
{
  OnednnWeightLayout key;
  memset (&key, 0, sizeof key);
  key.variant = phase + 1;
  key.md = *w_md;
  void *wdata = vae_weight_cache_lookup (ctx->weights, op->weight, &key);
  if (wdata)
    return wdata;

  const gboolean causal = op->kind == VAE_OP_CAUSAL_CONV3D;
  const int kernel = phase < 0 || causal ? op->kernel : 2;
  dnnl_memory_desc_t user_w;
  dnnl_dims_t wd = { op->out_channels, op->in_channels, kernel, kernel };
  dnnl_memory_t wmem = NULL, umem = NULL;
  OnednnPrim wr = { 0 };
  /* A phase's 2x2 taps, summed from the 3x3, or a causal conv's time tap
   * (needed only for the reorder). */
  float *phase_w = NULL;       /* g_aligned_free'd below */
  if (causal)
    phase_w = onednn_causal_tap_weights (op, phase);
  else if (phase >= 0)
    phase_w = onednn_upconv_phase_weights (op, phase / 2, phase % 2);
  const float *src = phase >= 0 ? phase_w : op->weight;

  dnnl_memory_desc_init_by_tag (&user_w, 4, wd, dnnl_f32, dnnl_oihw);
  wdata = vae_try_aligned_alloc0 (1, dnnl_memory_desc_get_size (w_md), 64,
                                  "reordered weights", error);
  if (!wdata)
    goto out;
  gboolean ok = dnnl_memory_create (&umem, &user_w, ctx->engine, (void *) src) == dnnl_success
      && dnnl_memory_create (&wmem, w_md, ctx->engine, wdata) == dnnl_success;
  if (!ok)
    g_set_error (error, VAE_ERROR, VAE_ERROR_ENGINE, "oneDNN: memory failed for '%s'", op->name);
  ok = ok && onednn_reorder_init (ctx, &wr, &user_w, umem, w_md, wmem, op->name, error)
      && onednn_prim_run (ctx, &wr, op->name, error);
  onednn_prim_clear (&wr);
  if (umem)
    dnnl_memory_destroy (umem);
  if (wmem)
    dnnl_memory_destroy (wmem);
  if (!ok) {
    g_aligned_free (wdata);
    wdata = NULL;
    goto out;
  }
  vae_weight_cache_insert (ctx->weights, op->weight, &key, wdata);
out:
  g_aligned_free (phase_w);
  return wdata;
}

/* A convolution step: OP's weights (PHASE < 0) or upconv phase PHASE's in
 * the primitive's layout (prepared_weight), bias as is. */
static gboolean
conv_step_add (const OnednnCtx *ctx, OnednnPlan *plan, const VaeOp *op,
               dnnl_primitive_desc_t pd, int phase, dnnl_memory_t src,
               dnnl_memory_t dst, GError **error)
{
  const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md (pd, dnnl_query_weights_md, 0);
  dnnl_memory_desc_t b_md;
  dnnl_dims_t bd = { op->out_channels };
  dnnl_memory_t wmem = NULL, bmem = NULL;
  OnednnStep step = { STEP_PRIM, op };

  void *wdata = onednn_prepared_weight (ctx, op, phase, w_md, error);
  if (!wdata)
    return FALSE;
  dnnl_memory_desc_init_by_tag (&b_md, 1, bd, dnnl_f32, dnnl_a);
  gboolean ok = dnnl_memory_create (&wmem, w_md, ctx->engine, wdata) == dnnl_success
      && (!op->bias || dnnl_memory_create (&bmem, &b_md, ctx->engine, op->bias) == dnnl_success);
  if (!ok)
    g_set_error (error, VAE_ERROR, VAE_ERROR_ENGINE, "oneDNN: memory failed for '%s'", op->name);
  ok = ok && prim_from_pd (ctx, &step.prim, pd, op->name, error);
  if (!ok) {
    if (wmem)
      dnnl_memory_destroy (wmem);
    if (bmem)
      dnnl_memory_destroy (bmem);
    return FALSE;
  }
  prim_arg (&step.prim, DNNL_ARG_SRC, src);
  prim_arg (&step.prim, DNNL_ARG_WEIGHTS, wmem);
  if (bmem)
    prim_arg (&step.prim, DNNL_ARG_BIAS, bmem);
  prim_arg (&step.prim, DNNL_ARG_DST, dst);
  g_array_append_val (plan->steps, step);
  return TRUE;
}

static void
memory_destroy (gpointer mem)
{
  dnnl_memory_destroy (mem);
}

static void
free_pds (dnnl_primitive_desc_t *pds, dnnl_primitive_desc_t (*phase_pds)[4], guint n)
{
  for (guint i = 0; i < n; i++) {
    if (pds[i])
      dnnl_primitive_desc_destroy (pds[i]);
    for (int p = 0; p < 4; p++)
      if (phase_pds[i][p])
        dnnl_primitive_desc_destroy (phase_pds[i][p]);
  }
  g_free (pds);
  g_free (phase_pds);
}

/* What building a plan passes from one job to the next and the plan does
 * not keep. */
typedef struct {
  const OnednnCtx *ctx;
  OnednnPlan *plan;
  dnnl_primitive_desc_t *pds;             /* [n_ops]: convs, upsamples */
  dnnl_primitive_desc_t (*phase_pds)[4];  /* [n_ops]: an upconv's phases */
  gboolean *conv_only;                    /* [n_values]: stored in dt (bf16) */
  gsize phases_size;                      /* the upconvs' phase outputs */
  char *what;                             /* the activations, for messages */
} PlanBuild;

/* Job 1, fusions: which ops run and in what form.  First, because folding
 * an upsample into its convolution removes a value and changes what the
 * convolution reads, and the bf16 choice decides every value's type. */
static void
plan_fusions (PlanBuild *b)
{
  OnednnPlan *plan = b->plan;
  const VaeGraph *graph = plan->graph;
  plan->n_ops = graph->ops->len;
  plan->ops = g_new (VaeOp, MAX (plan->n_ops, 1));
  plan->skip = g_new0 (gboolean, MAX (plan->n_ops, 1));
  plan->upconv = g_new0 (gboolean, MAX (plan->n_ops, 1));
  plan->wino = g_new0 (gboolean, MAX (plan->n_ops, 1));
  for (guint i = 0; i < plan->n_ops; i++)
    plan->ops[i] = *vae_graph_op (graph, i);
  onednn_fuse_upsamples (b->ctx, graph, plan->dt, plan->ops, plan->skip, plan->upconv);
  onednn_fuse_bf16_values (graph, plan->dt, plan->ops, plan->skip, b->conv_only);
}

/* Job 2a, value shapes: every value's own (n, c, h, w), shadows alike.
 * Why per value: the frame count is the plan's for every value today, but
 * ops over time (video) give values frame counts of their own; everything
 * after this reads a value's n from here, never the plan's. */
static gboolean
plan_value_shapes (PlanBuild *b, GError **error)
{
  OnednnPlan *plan = b->plan;
  const VaeGraph *graph = plan->graph;
  g_autofree int *ts = g_new (int, plan->n_values);
  g_autofree int *hs = g_new (int, plan->n_values);
  g_autofree int *ws = g_new (int, plan->n_values);
  if (!vae_graph_infer_shapes (graph, plan->n, plan->h, plan->w, ts, hs, ws)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "a chunk of %d frames does not fit this graph", plan->n);
    return FALSE;
  }
  for (guint v = 0; v < plan->n_values; v++) {
    PlanValue *pv = &plan->values[v], *shadow = &plan->values[plan->n_values + v];
    pv->n = ts[v];
    pv->c = vae_graph_channels (graph, v);
    pv->h = hs[v];
    pv->w = ws[v];
    shadow->n = pv->n;
    shadow->c = pv->c;
    shadow->h = pv->h;
    shadow->w = pv->w;
  }
  for (guint i = 0; i < plan->n_ops; i++) {
    const PlanValue *out = &plan->values[plan->ops[i].out];
    if (!plan->skip[i] && (out->h < 1 || out->w < 1)) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                   "input %dx%d is too small for layer '%s'", plan->w, plan->h,
                   plan->ops[i].name);
      return FALSE;
    }
  }
  return TRUE;
}

/* Job 2b, layouts: every value's memory descriptor, from the primitive that
 * writes it (so the convolutions' and upsamples' primitive descriptors are
 * made here, kept in B for job 4), and the bf16 shadows convolutions read. */
static gboolean
plan_layouts (PlanBuild *b, GError **error)
{
  const OnednnCtx *ctx = b->ctx;
  OnednnPlan *plan = b->plan;
  const VaeGraph *graph = plan->graph;
  const dnnl_data_type_t dt = plan->dt;
  PlanValue *in0 = &plan->values[0], *res = &plan->values[graph->output];

  md_4d (&plan->in_md, in0->n, in0->c, in0->h, in0->w, dnnl_f32, dnnl_nchw);
  md_4d (&in0->md, in0->n, in0->c, in0->h, in0->w, b->conv_only[0] ? dt : dnnl_f32,
         /* Pixels (3 channels): plain, which the first-layer kernels take;
          * latents: the activation layout, as every later op wants. */
         in0->c <= 4 ? dnnl_nchw : ACTIVATION_LAYOUT);
  for (guint i = 0; i < plan->n_ops; i++) {
    const VaeOp *op = &plan->ops[i];
    if (plan->skip[i])
      continue;
    const dnnl_memory_desc_t *src_md = &plan->values[op->in].md;
    PlanValue *in = &plan->values[op->in], *out = &plan->values[op->out];
    switch (op->kind) {
      case VAE_OP_CONV2D:
      {
        gboolean bf16 = onednn_fuse_conv_bf16 (graph, op, dt);
        dnnl_data_type_t want = bf16 ? dt : dnnl_f32;
        if (src_md->data_type != want) {
          if (in->shadow < 0) {
            in->shadow = plan->n_values + op->in;
            plan->values[in->shadow].md = in->md;
            plan->values[in->shadow].md.data_type = want;
          }
          src_md = &plan->values[in->shadow].md;
        }
        dnnl_data_type_t out_dt = bf16 && b->conv_only[op->out] ? dt : dnnl_f32;
        /* Our Winograd, the upsample folded in or not; else oneDNN (the
         * upconv's four phases, or one convolution). */
        if ((plan->upconv[i] ? onednn_wino_applies_upsampled (ctx, op)
             : onednn_wino_applies (ctx, op)) && onednn_wino_layout_ok (src_md)) {
          md_4d (&out->md, out->n, out->c, out->h, out->w, dnnl_f32, ACTIVATION_LAYOUT);
          if (onednn_wino_layout_ok (&out->md)) {
            plan->wino[i] = TRUE;
            break;
          }
        }
        if (plan->upconv[i]) {
          for (int p = 0; p < 4; p++) {
            VaeOp phase = onednn_upconv_phase_op (op, p / 2, p % 2);
            if (!onednn_conv_pd (ctx, &phase, src_md, out->n, in->h, in->w, out_dt,
                          &b->phase_pds[i][p], error))
              return FALSE;
          }
          md_4d (&out->md, out->n, out->c, out->h, out->w, out_dt, ACTIVATION_LAYOUT);
          b->phases_size = MAX (b->phases_size, dnnl_memory_desc_get_size (&out->md));
          break;
        }
        if (!onednn_conv_pd (ctx, op, src_md, out->n, out->h, out->w, out_dt, &b->pds[i], error))
          return FALSE;
        out->md = *dnnl_primitive_desc_query_md (b->pds[i], dnnl_query_dst_md, 0);
        break;
      }
      case VAE_OP_GROUP_NORM:
        /* float32 out: oneDNN 2.6's binary has no JIT code for a float32
         * to bf16 apply on blocked layouts; convolutions cast it once. */
        out->md = *src_md;
        out->md.data_type = dnnl_f32;
        break;
      case VAE_OP_UPSAMPLE2X:
        if (!upsample_pd (ctx, op, src_md, out->n, out->h, out->w, &b->pds[i], error))
          return FALSE;
        out->md = *dnnl_primitive_desc_query_md (b->pds[i], dnnl_query_dst_md, 0);
        break;
      case VAE_OP_CAUSAL_CONV3D:
        if (op->time_passthrough)
          out->md = *src_md;
        else   /* the layout onednn_conv_pd asks its taps for */
          md_4d (&out->md, out->n, out->c, out->h, out->w, dnnl_f32, ACTIVATION_LAYOUT);
        break;
      case VAE_OP_RMS_NORM:
        out->md = *src_md;
        break;
      case VAE_OP_ADD:
        /* The first input's layout; oneDNN's binary reads the second in
         * its own (a plain graph input next to a blocked activation). */
        out->md = *src_md;
        break;
      case VAE_OP_FRAMES_TO_CHANNELS:
      case VAE_OP_CHANNELS_TO_FRAMES:
      case VAE_OP_SPACE_TO_CHANNELS:
      case VAE_OP_CHANNELS_TO_SPACE:
      case VAE_OP_AVG_DOWN3D:
      case VAE_OP_DUP_UP3D:
        /* A few channels as the graph's output (the pixels a patchified
         * decoder unshuffles): plain, what the caller gets, rather than
         * 8 or 16 channels of which most are padding. */
        md_4d (&out->md, out->n, out->c, out->h, out->w, dnnl_f32,
               (int) op->out == graph->output && out->c <= 4 ? dnnl_nchw : ACTIVATION_LAYOUT);
        break;
      case VAE_OP_ATTENTION:
      case VAE_OP_TANH_CLAMP:
        out->md = *src_md;
        break;
    }
  }
  md_4d (&plan->out_md, res->n, res->c, res->h, res->w, dnnl_f32, dnnl_nchw);
  return TRUE;
}

/* Job 3, buffers: slots from the buffer planner, allocated, touched, and a
 * oneDNN memory per value over its slot.  All slots are allocated before
 * any is touched: a frame too large for memory then fails here, as an
 * error naming the size, without first taking physical memory for the
 * buffers that did fit. */
static gboolean
plan_buffers (PlanBuild *b, GError **error)
{
  const OnednnCtx *ctx = b->ctx;
  OnednnPlan *plan = b->plan;
  const PlanValue *in0 = &plan->values[0];

  assign_buffers (plan);
  guint64 total = b->phases_size;
  for (guint i = 0; i < plan->buffers->len; i++)
    total += g_array_index (plan->buffers, PlanBuffer, i).size;
  char *total_text = vae_format_bytes (total);
  b->what = g_strdup_printf ("oneDNN activations of a [%d,%d,%d,%d] input (%s in all)",
                             in0->n, in0->c, in0->h, in0->w, total_text);
  g_free (total_text);
  for (guint i = 0; i < plan->buffers->len; i++) {
    PlanBuffer *buf = &g_array_index (plan->buffers, PlanBuffer, i);
    buf->data = vae_try_aligned_alloc (1, buf->size, 64, b->what, error);
    if (!buf->data)
      return FALSE;
  }
  if (b->phases_size) {
    plan->phases = vae_try_aligned_alloc (1, b->phases_size, 64, b->what, error);
    if (!plan->phases)
      return FALSE;
    g_ptr_array_add (plan->owned, plan->phases);
  }
  /* Touch every page now so runs never pay for fresh page faults (and the
   * padding of blocked layouts reads as zeros). */
  for (guint i = 0; i < plan->buffers->len; i++) {
    PlanBuffer *buf = &g_array_index (plan->buffers, PlanBuffer, i);
    memset (buf->data, 0, buf->size);
  }
  if (b->phases_size)
    memset (plan->phases, 0, b->phases_size);
  DNNL_TRY (dnnl_memory_create (&plan->in_mem, &plan->in_md, ctx->engine, NULL),
            "memory", "input");
  for (guint v = 0; v < 2 * plan->n_values; v++) {
    PlanValue *pv = &plan->values[v];
    if (pv->md.ndims == 0)
      continue;   /* no shadow, or a folded upsample's output */
    void *data = pv->buffer < 0 ? NULL : g_array_index (plan->buffers, PlanBuffer, pv->buffer).data;
    DNNL_TRY (dnnl_memory_create (&pv->mem, &pv->md, ctx->engine, data), "memory", "value");
  }
  DNNL_TRY (dnnl_memory_create (&plan->out_mem, &plan->out_md, ctx->engine, NULL),
            "memory", "output");
  return TRUE;
fail:
  return FALSE;
}

static void *
value_data (const OnednnPlan *plan, const PlanValue *pv)
{
  return pv->buffer < 0 ? NULL : g_array_index (plan->buffers, PlanBuffer, pv->buffer).data;
}

/* Job 4, primitives: a convolution's steps.  The sum post-op adds into the
 * destination, so a residual not already there is copied in first; a
 * float32 input read in bf16 is cast once, by its first convolution; an
 * upconv is four phase convolutions into scratch, then one interleave. */
static gboolean
conv_steps (PlanBuild *b, guint i, GError **error)
{
  const OnednnCtx *ctx = b->ctx;
  OnednnPlan *plan = b->plan;
  const VaeOp *op = &plan->ops[i];
  PlanValue *in = &plan->values[op->in], *out = &plan->values[op->out];
  OnednnStep step = { STEP_PRIM, op };

  if (op->residual >= 0 && plan->values[op->residual].buffer != out->buffer) {
    OnednnStep copy = { STEP_PRIM, op };
    PlanValue *res = &plan->values[op->residual];
    if (!onednn_reorder_init (ctx, &copy.prim, &res->md, res->mem, &out->md,
                              out->mem, op->name, error))
      return FALSE;
    g_array_append_val (plan->steps, copy);
  }
  PlanValue *src = &plan->values[conv_src (plan, op)];
  if (src != in && !in->cast_done) {
    OnednnStep cast = { STEP_PRIM, op };
    if (!onednn_reorder_init (ctx, &cast.prim, &in->md, in->mem, &src->md,
                              src->mem, op->name, error))
      return FALSE;
    g_array_append_val (plan->steps, cast);
    in->cast_done = TRUE;
  }
  if (plan->wino[i]) {
    step.kind = STEP_WINOGRAD;
    step.wino.src = src->mem;
    step.wino.dst = out->mem;
    step.wino.accumulate = op->residual >= 0;
    step.wino.conv = plan->upconv[i]
        ? onednn_wino_new_upsampled (ctx, op, out->n, in->h, in->w, error)
        : onednn_wino_new (ctx, op, out->n, out->h, out->w, error);
    if (!step.wino.conv)
      return FALSE;
    g_array_append_val (plan->steps, step);
    return TRUE;
  }
  if (!plan->upconv[i])
    return conv_step_add (ctx, plan, op, b->pds[i], -1, src->mem, out->mem, error);

  gsize phase_bytes = dnnl_memory_desc_get_size (&out->md) / 4;
  for (int p = 0; p < 4; p++) {
    const dnnl_memory_desc_t *pmd = dnnl_primitive_desc_query_md (b->phase_pds[i][p],
                                                                  dnnl_query_dst_md, 0);
    dnnl_memory_t pmem = NULL;
    DNNL_TRY (dnnl_memory_create (&pmem, pmd, ctx->engine, plan->phases + p * phase_bytes),
              "memory", op->name);
    g_ptr_array_add (plan->phase_mems, pmem);
    if (!conv_step_add (ctx, plan, op, b->phase_pds[i][p], p, src->mem, pmem, error))
      return FALSE;
  }
  step.kind = STEP_INTERLEAVE;
  step.interleave.phases = plan->phases;
  step.interleave.dst = value_data (plan, out);
  /* Blocked: planes of (image, channel block), a block a pixel. */
  step.interleave.planes = out->n * (out->md.padded_dims[1] / onednn_channel_block ());
  step.interleave.h = in->h;
  step.interleave.w = in->w;
  step.interleave.pixel_bytes = phase_bytes / ((gsize) step.interleave.planes * in->h * in->w);
  g_array_append_val (plan->steps, step);
  return TRUE;
fail:
  return FALSE;
}

/* Job 4, primitives: a causal convolution (causal-conv.c), after copying
 * its residual into the destination as conv_steps does; notes the bytes its
 * state slot holds. */
static gboolean
causal_steps (PlanBuild *b, guint i, GError **error)
{
  OnednnPlan *plan = b->plan;
  const VaeOp *op = &plan->ops[i];
  PlanValue *in = &plan->values[op->in], *out = &plan->values[op->out];
  if (op->residual >= 0 && plan->values[op->residual].buffer != out->buffer) {
    OnednnStep copy = { STEP_PRIM, op };
    PlanValue *res = &plan->values[op->residual];
    if (!onednn_reorder_init (b->ctx, &copy.prim, &res->md, res->mem, &out->md,
                              out->mem, op->name, error))
      return FALSE;
    g_array_append_val (plan->steps, copy);
  }
  OnednnStep step = { STEP_CAUSAL, op };
  step.causal = onednn_causal_new (b->ctx, op, &in->md, value_data (plan, in), &out->md,
                                   value_data (plan, out), out->mem, op->residual >= 0, error);
  if (!step.causal)
    return FALSE;
  g_array_append_val (plan->steps, step);
  int slot = onednn_causal_slot (step.causal);
  if (slot >= 0) {
    g_assert (slot < plan->n_slots);
    gsize bytes = onednn_causal_slot_bytes (step.causal);
    if (plan->slot_bytes[slot] && plan->slot_bytes[slot] != bytes) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL,
                   "state slot %d is used by layers of different sizes ('%s')", slot, op->name);
      return FALSE;
    }
    plan->slot_bytes[slot] = bytes;
  }
  return TRUE;
}

/* Job 4, primitives: out = in + in2, oneDNN's binary add. */
static gboolean
add_step (const OnednnCtx *ctx, OnednnPlan *plan, const VaeOp *op, GError **error)
{
  PlanValue *a = &plan->values[op->in], *bv = &plan->values[op->in2];
  PlanValue *out = &plan->values[op->out];
  dnnl_binary_desc_t desc;
  OnednnStep step = { STEP_PRIM, op };
  DNNL_TRY (dnnl_binary_desc_init (&desc, dnnl_binary_add, &a->md, &bv->md, &out->md),
            "binary add", op->name);
  if (!onednn_prim_from_desc (ctx, &step.prim, &desc, "binary add", op->name, error))
    return FALSE;
  prim_arg (&step.prim, DNNL_ARG_SRC_0, a->mem);
  prim_arg (&step.prim, DNNL_ARG_SRC_1, bv->mem);
  prim_arg (&step.prim, DNNL_ARG_DST, out->mem);
  g_array_append_val (plan->steps, step);
  return TRUE;
fail:
  return FALSE;
}

/* Job 4, primitives: the steps of every op that runs, in graph order, and
 * the reorders from the caller's input and to its output. */
static gboolean
plan_primitives (PlanBuild *b, GError **error)
{
  const OnednnCtx *ctx = b->ctx;
  OnednnPlan *plan = b->plan;
  const VaeGraph *graph = plan->graph;

  if (!onednn_reorder_init (ctx, &plan->from_input, &plan->in_md, plan->in_mem,
                            &plan->values[0].md, plan->values[0].mem, "input", error))
    return FALSE;
  for (guint i = 0; i < plan->n_ops; i++) {
    const VaeOp *op = &plan->ops[i];
    if (plan->skip[i])
      continue;
    PlanValue *in = &plan->values[op->in], *out = &plan->values[op->out];
    OnednnStep step = { STEP_PRIM, op };
    switch (op->kind) {
      case VAE_OP_CONV2D:
        if (!conv_steps (b, i, error))
          return FALSE;
        break;
      case VAE_OP_UPSAMPLE2X:
        if (!prim_from_pd (ctx, &step.prim, b->pds[i], op->name, error))
          return FALSE;
        prim_arg (&step.prim, DNNL_ARG_SRC, in->mem);
        prim_arg (&step.prim, DNNL_ARG_DST, out->mem);
        g_array_append_val (plan->steps, step);
        break;
      case VAE_OP_GROUP_NORM: {
        void *src = value_data (plan, in);
        if (!src) {
          g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                       "group norm '%s' on the graph input is not supported", op->name);
          return FALSE;
        }
        step.kind = STEP_GROUP_NORM;
        step.gn = onednn_group_norm_new (ctx, op, &in->md, &out->md, src,
                                         value_data (plan, out), error);
        if (!step.gn)
          return FALSE;
        g_array_append_val (plan->steps, step);
        break;
      }
      case VAE_OP_ATTENTION:
        step.kind = STEP_ATTENTION;
        step.attn = onednn_attention_new (ctx, op, &in->md, in->mem,
                                          plan->values[op->in2].mem,
                                          plan->values[op->in3].mem, out->mem, error);
        if (!step.attn)
          return FALSE;
        g_array_append_val (plan->steps, step);
        break;
      case VAE_OP_TANH_CLAMP:
        /* clamp * tanh(x / clamp) as three in-place eltwise passes over a
         * latent-sized tensor. */
        if (!eltwise_step (ctx, plan, op, dnnl_eltwise_linear, 1.0f / op->clamp,
                           in->mem, out->mem, &in->md, error)
            || !eltwise_step (ctx, plan, op, dnnl_eltwise_tanh, 0.0f, out->mem,
                              out->mem, &out->md, error)
            || !eltwise_step (ctx, plan, op, dnnl_eltwise_linear, op->clamp,
                              out->mem, out->mem, &out->md, error))
          return FALSE;
        break;
      case VAE_OP_CAUSAL_CONV3D:
        if (!causal_steps (b, i, error))
          return FALSE;
        break;
      case VAE_OP_RMS_NORM:
        step.kind = STEP_RMS_NORM;
        step.rms = onednn_rms_norm_new (ctx, op, &in->md, value_data (plan, in),
                                        value_data (plan, out), out->mem, error);
        if (!step.rms)
          return FALSE;
        g_array_append_val (plan->steps, step);
        break;
      case VAE_OP_ADD:
        if (!add_step (ctx, plan, op, error))
          return FALSE;
        break;
      case VAE_OP_FRAMES_TO_CHANNELS:
      case VAE_OP_CHANNELS_TO_FRAMES:
      case VAE_OP_SPACE_TO_CHANNELS:
      case VAE_OP_CHANNELS_TO_SPACE:
      case VAE_OP_AVG_DOWN3D:
      case VAE_OP_DUP_UP3D:
        step.kind = STEP_RESHAPE;
        step.reshape = onednn_reshape_new (ctx, op, &in->md, in->mem, value_data (plan, in),
                                           &out->md, out->mem, value_data (plan, out), error);
        if (!step.reshape)
          return FALSE;
        g_array_append_val (plan->steps, step);
        break;
    }
  }
  return onednn_reorder_init (ctx, &plan->to_output, &plan->values[graph->output].md,
                              plan->values[graph->output].mem, &plan->out_md,
                              plan->out_mem, "output", error);
}

/* A plan is built by four jobs in order: fusions (which ops run, in what
 * form, values in which type), values (each value's shape and layout),
 * buffers (slots from the buffer planner, allocated), primitives (the
 * steps).  Each reads only what the jobs before it decided. */
OnednnPlan *
onednn_plan_new (const OnednnCtx *ctx, const VaeGraph *graph, int n, int h, int w,
                 dnnl_data_type_t dt, GError **error)
{
  OnednnPlan *plan = g_new0 (OnednnPlan, 1);
  guint n_ops = graph->ops->len;
  PlanBuild b = { ctx, plan };
  /* What the scratchpad had to be before this plan: a plan that fails must
   * not leave its primitives' needs behind for the plans that follow. */
  const gsize scratch_needed = ctx->scratch->needed;

  plan->graph = graph;
  plan->n = n;
  plan->h = h;
  plan->w = w;
  plan->dt = dt;
  plan->n_values = graph->values->len;
  /* Room for one shadow per value. */
  plan->values = g_new0 (PlanValue, 2 * plan->n_values);
  for (guint v = 0; v < 2 * plan->n_values; v++)
    plan->values[v].shadow = plan->values[v].buffer = -1;
  plan->n_slots = graph->n_states;
  plan->slot_bytes = g_new0 (gsize, MAX (plan->n_slots, 1));
  plan->buffers = g_array_new (FALSE, TRUE, sizeof (PlanBuffer));
  plan->steps = g_array_new (FALSE, TRUE, sizeof (OnednnStep));
  plan->owned = g_ptr_array_new_with_free_func (g_aligned_free);
  plan->phase_mems = g_ptr_array_new_with_free_func (memory_destroy);
  b.pds = g_new0 (dnnl_primitive_desc_t, MAX (n_ops, 1));
  b.phase_pds = g_malloc0_n (MAX (n_ops, 1), sizeof *b.phase_pds);
  b.conv_only = g_new0 (gboolean, MAX (plan->n_values, 1));

  plan_fusions (&b);
  gboolean ok = plan_value_shapes (&b, error)
      && plan_layouts (&b, error)
      && plan_buffers (&b, error)
      && plan_primitives (&b, error)
      && onednn_scratch_reserve (ctx, error);

  free_pds (b.pds, b.phase_pds, n_ops);
  g_free (b.conv_only);
  g_free (b.what);
  if (!ok) {
    onednn_plan_free (plan);
    ctx->scratch->needed = scratch_needed;
    return NULL;
  }
  return plan;
}

/* VAE_ONEDNN_PROFILE=1: time spent per op kind, printed after each run;
 * =2: also every step, with the kind of step that ran it. */
static const char *
step_kind_name (int kind)
{
  switch (kind) {
    case STEP_PRIM: return "onednn";
    case STEP_GROUP_NORM: return "gnorm";
    case STEP_ATTENTION: return "attn";
    case STEP_INTERLEAVE: return "interlv";
    case STEP_CAUSAL: return "causal";
    case STEP_RMS_NORM: return "rmsnorm";
    case STEP_RESHAPE: return "reshape";
    case STEP_WINOGRAD: return "wino";
  }
  return "?";
}

static void
profile_report (const double *t, double total)
{
  GString *s = g_string_new ("onednn profile:");
  for (int k = 0; k < VAE_OP_COUNT; k++)
    g_string_append_printf (s, " %s=%.3fs", vae_op_kind_name ((VaeOpKind) k), t[k]);
  g_string_append_printf (s, " total=%.3fs", total);
  g_printerr ("%s\n", s->str);
  g_string_free (s, TRUE);
}

gsize
onednn_plan_slot_bytes (const OnednnPlan *plan, int slot)
{
  return slot >= 0 && slot < plan->n_slots ? plan->slot_bytes[slot] : 0;
}

gboolean
onednn_plan_run (const OnednnCtx *ctx, OnednnPlan *plan, const float *input,
                 float *output, GError **error)
{
  if (plan->n_slots > 0) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "a video graph's plan runs in a stream (it keeps state)");
    return FALSE;
  }
  return onednn_plan_run_stream (ctx, plan, input, output, NULL, FALSE, error);
}

/* The memories' handles are read per run: the graph input's is the
 * caller's buffer. */
static gboolean
wino_step_run (const OnednnCtx *ctx, OnednnWinoStep *s, GError **error)
{
  void *src = NULL, *dst = NULL;
  dnnl_memory_get_data_handle (s->src, &src);
  dnnl_memory_get_data_handle (s->dst, &dst);
  return onednn_wino_run (ctx, s->conv, NULL, src, dst, s->accumulate, error);
}

gboolean
onednn_plan_run_stream (const OnednnCtx *ctx, OnednnPlan *plan, const float *input,
                        float *output, guint8 *const *slots, gboolean at_start,
                        GError **error)
{
  static int profile = -1;
  double times[VAE_OP_COUNT] = { 0 }, start = g_get_monotonic_time () / 1e6;
  if (profile < 0)
    profile = atoi (g_getenv ("VAE_ONEDNN_PROFILE") ?: "0");
  if (plan->in_mem) {
    dnnl_memory_set_data_handle (plan->in_mem, (void *) input);
    if (!onednn_prim_run (ctx, &plan->from_input, "input", error))
      return FALSE;
  } else {
    dnnl_memory_set_data_handle (plan->values[0].mem, (void *) input);
  }
  dnnl_memory_set_data_handle (plan->out_mem, output);
  for (guint i = 0; i < plan->steps->len; i++) {
    OnednnStep *s = &g_array_index (plan->steps, OnednnStep, i);
    double t0 = profile ? g_get_monotonic_time () / 1e6 : 0;
    gboolean ok = TRUE;
    switch (s->kind) {
      case STEP_PRIM: ok = onednn_prim_run (ctx, &s->prim, "step", error); break;
      case STEP_GROUP_NORM: ok = onednn_group_norm_run (ctx, s->gn, error); break;
      case STEP_ATTENTION: ok = onednn_attention_run (ctx, s->attn, error); break;
      case STEP_INTERLEAVE: onednn_interleave_run (&s->interleave); break;
      case STEP_CAUSAL: ok = onednn_causal_run (ctx, s->causal, slots, at_start, error); break;
      case STEP_RMS_NORM: ok = onednn_rms_norm_run (ctx, s->rms, error); break;
      case STEP_RESHAPE: ok = onednn_reshape_run (ctx, s->reshape, error); break;
      case STEP_WINOGRAD: ok = wino_step_run (ctx, &s->wino, error); break;
    }
    if (!ok)
      return FALSE;
    if (profile) {
      double dt = g_get_monotonic_time () / 1e6 - t0;
      times[s->op->kind] += dt;
      if (profile > 1)
        g_printerr ("  step %3u %-40s %-8s %8.3f ms\n", i, s->op->name,
                    step_kind_name (s->kind), dt * 1e3);
    }
  }
  if (!onednn_prim_run (ctx, &plan->to_output, "output", error))
    return FALSE;
  dnnl_stream_wait (ctx->stream);
  if (profile)
    profile_report (times, g_get_monotonic_time () / 1e6 - start);
  return TRUE;
}

void
onednn_plan_free (OnednnPlan *plan)
{
  if (!plan)
    return;
  if (plan->steps) {
    for (guint i = 0; i < plan->steps->len; i++) {
      OnednnStep *s = &g_array_index (plan->steps, OnednnStep, i);
      if (s->kind == STEP_PRIM) {
        /* Weight and bias memories are referenced only by their step. */
        for (int a = 0; a < s->prim.nargs; a++)
          if (s->prim.args[a].arg == DNNL_ARG_WEIGHTS || s->prim.args[a].arg == DNNL_ARG_BIAS)
            dnnl_memory_destroy (s->prim.args[a].memory);
        onednn_prim_clear (&s->prim);
      }
      onednn_group_norm_free (s->gn);
      onednn_attention_free (s->attn);
      onednn_causal_free (s->causal);
      onednn_rms_norm_free (s->rms);
      onednn_reshape_free (s->reshape);
      onednn_wino_free (s->wino.conv);
    }
    g_array_unref (plan->steps);
  }
  onednn_prim_clear (&plan->to_output);
  onednn_prim_clear (&plan->from_input);
  if (plan->in_mem)
    dnnl_memory_destroy (plan->in_mem);
  if (plan->out_mem)
    dnnl_memory_destroy (plan->out_mem);
  for (guint v = 0; v < 2 * plan->n_values; v++)
    if (plan->values && plan->values[v].mem)
      dnnl_memory_destroy (plan->values[v].mem);
  g_free (plan->values);
  if (plan->buffers) {
    for (guint b = 0; b < plan->buffers->len; b++)
      g_aligned_free (g_array_index (plan->buffers, PlanBuffer, b).data);
    g_array_unref (plan->buffers);
  }
  if (plan->owned)
    g_ptr_array_unref (plan->owned);
  if (plan->phase_mems)
    g_ptr_array_unref (plan->phase_mems);
  g_free (plan->ops);
  g_free (plan->skip);
  g_free (plan->upconv);
  g_free (plan->wino);
  g_free (plan->slot_bytes);
  g_free (plan);
}
