/* gst-vae CUDA engine: one forward pass of a graph for a (n, h, w).
 *
 * Planned once, run many times.  Activations get device buffers from a pool
 * by liveness (a buffer is reused as soon as the value in it is dead), a
 * convolution with a residual that dies there accumulates into the
 * residual's buffer (cuDNN's beta = 1) instead of a separate add, and
 * GroupNorm/tanh run in place over dead inputs.  Convolution algorithms are
 * measured on the plan's own buffers.  After a first direct run the device
 * part (layout conversion in, every op, conversion out) is captured as a
 * CUDA graph and replayed (VAE_CUDA_GRAPH=0 turns that off). */
#include <string.h>

#include "cuda-private.h"
#include "cuda-profile.h"
#include "buffer-plan.h"

typedef struct {
  size_t size;
  void *ptr;
} PoolBuffer;

typedef struct {
  const VaeOp *op;
  const CudaOpParams *p;
  int in, in2, in3, res, out, pad;   /* pool buffer indices, -1 = none */
  int h, w, oh, ow;                  /* input and output sizes */
  float beta;                        /* conv: 1 when accumulating into out */
  gboolean bias_in_norm;             /* conv: its bias is added by the GroupNorms
                                        that read its output */
  const float *in_bias;              /* GROUP_NORM: that bias, or NULL */
  CudaConv conv;
} Step;

struct _CudaPlan {
  const VaeGraph *graph;
  int n, h, w;
  GArray *pool;                      /* PoolBuffer */
  Step *steps;
  guint n_steps;
  int in_buf, out_buf;               /* pool buffers of the graph's input/output */
  int in_c, out_c, out_h, out_w;
  float *in_f32, *out_f32;           /* device staging, NCHW float32 */
  void *scratch;                     /* conv workspace / attention scores */
  size_t scratch_size;
  void *gn_stats;
  cudaEvent_t start, stop;
  cudaGraphExec_t exec;
  gboolean ran_once, no_graph;
  CudaProfile *profile;              /* VAE_CUDA_PROFILE=1, else NULL */
};

static size_t
value_bytes (const CudaCtx *ctx, const VaeGraph *g, int v, int n, const int *vh,
             const int *vw)
{
  return (size_t) n * vh[v] * vw[v] * cuda_stored_channels (vae_graph_channels (g, v))
         * vae_cuda_dtype_size (ctx->dt);
}

static void *
buf (const CudaPlan *plan, int i)
{
  return i >= 0 ? g_array_index (plan->pool, PoolBuffer, i).ptr : NULL;
}

/* A convolution whose output only GroupNorms read (a ResNet block's first
 * convolution) leaves its bias to them: one pass over the activation fewer
 * (VAE_CUDA_FOLD_BIAS=0 turns that off). */
static void
fold_biases (CudaPlan *plan)
{
  const VaeGraph *g = plan->graph;
  const char *env = g_getenv ("VAE_CUDA_FOLD_BIAS");
  if (env && g_str_equal (env, "0"))
    return;
  for (guint i = 0; i < plan->n_steps; i++) {
    Step *s = &plan->steps[i];
    const VaeOp *op = s->op;
    if (op->kind != VAE_OP_CONV2D || !s->p->bias || op->residual >= 0
        || op->act != VAE_ACT_NONE || op->out == g->output)
      continue;
    gboolean only_norms = TRUE, any = FALSE;
    for (guint j = i + 1; j < plan->n_steps && only_norms; j++) {
      const VaeOp *r = plan->steps[j].op;
      if (r->in2 == op->out || r->in3 == op->out || r->residual == op->out)
        only_norms = FALSE;
      else if (r->in == op->out) {
        only_norms = r->kind == VAE_OP_GROUP_NORM;
        any = TRUE;
      }
    }
    if (!only_norms || !any)
      continue;
    s->bias_in_norm = TRUE;
    for (guint j = i + 1; j < plan->n_steps; j++)
      if (plan->steps[j].op->in == op->out)
        plan->steps[j].in_bias = s->p->bias;
  }
}

/* What the core planner needs to know of step I: its reads and output, its
 * explicit-padding scratch, and what may be written in place (a residual
 * that dies there is accumulated into by cuDNN; GroupNorm and tanh
 * overwrite a dying input). */
static void
describe_step (const CudaCtx *ctx, const CudaPlan *plan, guint i, VaePlanStep *ps)
{
  const VaeOp *op = vae_graph_op (plan->graph, i);
  const Step *s = &plan->steps[i];
  vae_plan_step_from_op (op, ps);
  switch (op->kind) {
    case VAE_OP_CONV2D:
      if (op->residual >= 0 && op->residual != op->in)
        ps->inplace = op->residual;
      if (s->conv.explicit_pad)
        ps->scratch_bytes = (size_t) plan->n * s->conv.pad_h * s->conv.pad_w
                            * cuda_stored_channels (op->in_channels)
                            * vae_cuda_dtype_size (ctx->dt);
      break;
    case VAE_OP_GROUP_NORM:
    case VAE_OP_TANH_CLAMP:
      if (op->in2 != op->in && op->in3 != op->in && op->residual != op->in)
        ps->inplace = op->in;
      break;
    case VAE_OP_ATTENTION:
    case VAE_OP_UPSAMPLE2X:
      break;
    VAE_OP_CASES_VIDEO:
      break;   /* engine-cuda.c refuses video models at open */
  }
}

/* Assigns buffers to values and steps (gst/vae/core/buffer-plan.c);
 * nothing is allocated yet. */
static gboolean
plan_buffers (CudaCtx *ctx, CudaPlan *plan, const CudaWeights *weights, GError **error)
{
  const VaeGraph *g = plan->graph;
  const guint n_values = g->values->len;
  g_autofree int *vh = g_new (int, n_values), *vw = g_new (int, n_values);
  g_autofree gsize *bytes = g_new (gsize, n_values);
  g_autofree VaePlanStep *psteps = g_new (VaePlanStep, MAX (plan->n_steps, 1));
  vae_graph_infer_sizes (g, plan->h, plan->w, vh, vw);
  for (guint v = 0; v < n_values; v++)
    bytes[v] = value_bytes (ctx, g, v, plan->n, vh, vw);

  for (guint i = 0; i < plan->n_steps; i++) {
    const VaeOp *op = vae_graph_op (g, i);
    Step *s = &plan->steps[i];
    s->op = op;
    s->p = &weights->params[i];
    s->h = vh[op->in];
    s->w = vw[op->in];
    s->oh = vh[op->out];
    s->ow = vw[op->out];
    if (op->kind == VAE_OP_GROUP_NORM
        && vae_graph_channels (g, op->in) % CUDA_CHANNEL_ALIGN != 0) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                   "%s: GroupNorm over %d channels (the cuda backend needs a multiple "
                   "of %d)", op->name, vae_graph_channels (g, op->in), CUDA_CHANNEL_ALIGN);
      return FALSE;
    }
    if (op->kind == VAE_OP_CONV2D
        && !cuda_conv_init (ctx, &s->conv, op, plan->n, s->h, s->w, s->oh, s->ow, error))
      return FALSE;
    describe_step (ctx, plan, i, &psteps[i]);
  }

  g_autoptr (VaeBufferPlan) bp = vae_buffer_plan_new (n_values, bytes, plan->n_steps, psteps,
                                                      0, g->output);
  for (int k = 0; k < bp->n_slots; k++) {
    PoolBuffer b = { bp->slot_bytes[k], NULL };
    g_array_append_val (plan->pool, b);
  }
  const int *where = bp->value_slot;
  plan->in_buf = where[0];
  for (guint i = 0; i < plan->n_steps; i++) {
    const VaeOp *op = vae_graph_op (g, i);
    Step *s = &plan->steps[i];
    s->in = where[op->in];
    s->in2 = op->in2 >= 0 ? where[op->in2] : -1;
    s->in3 = op->in3 >= 0 ? where[op->in3] : -1;
    s->res = op->residual >= 0 ? where[op->residual] : -1;
    s->out = where[op->out];
    s->pad = bp->scratch_slot[i];
    if (op->kind == VAE_OP_CONV2D && s->res >= 0 && s->res == s->out) {
      /* out = conv(in) + residual, written over the dying residual. */
      s->res = -1;
      s->beta = 1.0f;
    }
  }
  plan->out_buf = where[g->output];
  plan->out_h = vh[g->output];
  plan->out_w = vw[g->output];
  fold_biases (plan);
  return TRUE;
}

static gboolean
run_step (CudaCtx *ctx, const CudaPlan *plan, const Step *s, GError **error)
{
  const VaeOp *op = s->op;
  const int n = plan->n;
  const VaeGraph *g = plan->graph;
  switch (op->kind) {
  case VAE_OP_CONV2D: {
    const void *x = buf (plan, s->in);
    if (s->conv.explicit_pad) {
      if (!cuda_check (vae_cuda_pad (x, buf (plan, s->pad), ctx->dt, n, s->h, s->w,
                                     cuda_stored_channels (op->in_channels), op->pad_top,
                                     op->pad_left, op->pad_bottom, op->pad_right,
                                     ctx->stream), op->name, error))
        return FALSE;
      x = buf (plan, s->pad);
      cuda_profile_mark (plan->profile, ctx->stream, CUDA_PROFILE_PAD);
    }
    if (!cuda_conv_run (ctx, &s->conv, x, s->p->weight, buf (plan, s->out), s->beta,
                        plan->scratch, error))
      return FALSE;
    cuda_profile_mark (plan->profile, ctx->stream, op->kernel == 1 ? CUDA_PROFILE_CONV1X1
                       : CUDA_PROFILE_CONV);
    const float *bias = s->bias_in_norm ? NULL : s->p->bias;
    if (bias || s->res >= 0 || op->act != VAE_ACT_NONE)
      return cuda_check (vae_cuda_bias_act (buf (plan, s->out), buf (plan, s->res),
                                            bias, ctx->dt, (size_t) n * s->oh * s->ow,
                                            cuda_stored_channels (op->out_channels),
                                            (VaeCudaAct) op->act, ctx->stream),
                         op->name, error);
    return TRUE;
  }
  case VAE_OP_GROUP_NORM:
    return cuda_check (vae_cuda_bias_group_norm (buf (plan, s->in), s->in_bias,
                                                 buf (plan, s->out), ctx->dt, n,
                                                 s->h * s->w, op->in_channels, op->groups,
                                                 op->eps, s->p->gamma, s->p->bias,
                                                 (VaeCudaAct) op->act, plan->gn_stats,
                                                 ctx->stream), op->name, error);
  case VAE_OP_ATTENTION:
    return cuda_attention_run (ctx, buf (plan, s->in), buf (plan, s->in2),
                               buf (plan, s->in3), buf (plan, s->out), n, s->h * s->w,
                               vae_graph_channels (g, op->in), plan->scratch, error);
  case VAE_OP_UPSAMPLE2X:
    return cuda_check (vae_cuda_upsample2x (buf (plan, s->in), buf (plan, s->out), ctx->dt,
                                            n, s->h, s->w,
                                            cuda_stored_channels (vae_graph_channels (g, op->in)),
                                            ctx->stream), op->name, error);
  case VAE_OP_TANH_CLAMP: {
    const size_t count = (size_t) n * s->h * s->w
                         * cuda_stored_channels (vae_graph_channels (g, op->in));
    if (s->out != s->in
        && !cuda_check (cudaMemcpyAsync (buf (plan, s->out), buf (plan, s->in),
                                         count * vae_cuda_dtype_size (ctx->dt),
                                         cudaMemcpyDeviceToDevice, ctx->stream),
                        op->name, error))
      return FALSE;
    return cuda_check (vae_cuda_tanh_clamp (buf (plan, s->out), ctx->dt, count, op->clamp,
                                            ctx->stream), op->name, error);
  }
  VAE_OP_CASES_VIDEO:
    break;     /* refused at open */
  }
  g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED, "%s: op kind %d is not known",
               op->name, op->kind);
  return FALSE;
}

/* The device part of a run: staging in -> every op -> staging out. */
static gboolean
run_device (CudaCtx *ctx, const CudaPlan *plan, GError **error)
{
  const VaeGraph *g = plan->graph;
  cuda_profile_begin (plan->profile);
  if (!cuda_check (vae_cuda_nchw_f32_to_nhwc (plan->in_f32, buf (plan, plan->in_buf),
                                              ctx->dt, plan->n, plan->in_c, plan->h,
                                              plan->w, cuda_stored_channels (plan->in_c),
                                              ctx->stream), "input conversion", error))
    return FALSE;
  cuda_profile_mark (plan->profile, ctx->stream, CUDA_PROFILE_LAYOUT);
  for (guint i = 0; i < plan->n_steps; i++) {
    if (!run_step (ctx, plan, &plan->steps[i], error))
      return FALSE;
    cuda_profile_mark (plan->profile, ctx->stream, cuda_profile_kind (plan->steps[i].op));
  }
  return cuda_check (vae_cuda_nhwc_to_nchw_f32 (buf (plan, plan->out_buf), ctx->dt,
                                                plan->out_f32, plan->n, plan->out_c,
                                                plan->out_h, plan->out_w,
                                                cuda_stored_channels (vae_graph_channels (g, g->output)),
                                                ctx->stream), "output conversion", error);
}

CudaPlan *
cuda_plan_new (CudaCtx *ctx, const CudaWeights *weights, int n, int h, int w,
               GError **error)
{
  CudaPlan *plan = g_new0 (CudaPlan, 1);
  const VaeGraph *g = weights->graph;
  plan->graph = g;
  plan->n = n;
  plan->h = h;
  plan->w = w;
  plan->pool = g_array_new (FALSE, TRUE, sizeof (PoolBuffer));
  plan->n_steps = g->ops->len;
  plan->steps = g_new0 (Step, plan->n_steps);
  plan->in_c = vae_graph_channels (g, 0);
  plan->out_c = vae_graph_channels (g, g->output);

  if (!plan_buffers (ctx, plan, weights, error))
    goto fail;

  for (guint i = 0; i < plan->pool->len; i++) {
    PoolBuffer *b = &g_array_index (plan->pool, PoolBuffer, i);
    if (!(b->ptr = cuda_alloc (ctx, b->size, "activations", error)))
      goto fail;
  }
  plan->in_f32 = cuda_alloc (ctx, (size_t) n * plan->in_c * h * w * sizeof (float),
                             "input staging", error);
  plan->out_f32 = plan->in_f32 ? cuda_alloc (ctx, (size_t) n * plan->out_c * plan->out_h
                                             * plan->out_w * sizeof (float),
                                             "output staging", error) : NULL;
  int max_groups = 1;
  for (guint i = 0; i < plan->n_steps; i++)
    if (plan->steps[i].op->kind == VAE_OP_GROUP_NORM)
      max_groups = MAX (max_groups, plan->steps[i].op->groups);
  plan->gn_stats = plan->out_f32 ? cuda_alloc (ctx, vae_cuda_group_norm_stats_size (n, max_groups),
                                               "GroupNorm statistics", error) : NULL;
  if (!plan->gn_stats)
    goto fail;

  /* Measure convolution algorithms with the largest workspace allowed, then
   * keep only what the chosen ones (and attention) need. */
  size_t need = 0;
  for (guint i = 0; i < plan->n_steps; i++) {
    const Step *s = &plan->steps[i];
    if (s->op->kind == VAE_OP_ATTENTION)
      need = MAX (need, cuda_attention_scratch_size (ctx, n, s->h * s->w));
  }
  void *trial = cuda_alloc (ctx, ctx->workspace_limit, "convolution workspace", error);
  if (!trial)
    goto fail;
  for (guint i = 0; i < plan->n_steps; i++) {
    Step *s = &plan->steps[i];
    if (s->op->kind != VAE_OP_CONV2D)
      continue;
    const void *x = s->conv.explicit_pad ? buf (plan, s->pad) : buf (plan, s->in);
    if (!cuda_conv_choose (ctx, &s->conv, x, s->p->weight, buf (plan, s->out), trial,
                           ctx->workspace_limit, error)) {
      cuda_free (ctx, trial);
      g_prefix_error (error, "%s: ", s->op->name);
      goto fail;
    }
    need = MAX (need, s->conv.workspace);
  }
  cuda_free (ctx, trial);
  plan->scratch_size = need;
  if (need && !(plan->scratch = cuda_alloc (ctx, need, "workspace", error)))
    goto fail;

  if (!cuda_check (cudaEventCreate (&plan->start), "event", error)
      || !cuda_check (cudaEventCreate (&plan->stop), "event", error))
    goto fail;
  const char *graphs = g_getenv ("VAE_CUDA_GRAPH");
  plan->no_graph = graphs && g_str_equal (graphs, "0");
  plan->profile = cuda_profile_new (g_getenv ("VAE_CUDA_PROFILE"), 4 * plan->n_steps + 8);
  size_t pool_bytes = 0;
  for (guint i = 0; i < plan->pool->len; i++)
    pool_bytes += g_array_index (plan->pool, PoolBuffer, i).size;
  g_debug ("cuda: plan for batch %d of %dx%d: %u activation buffers, %.1f MiB; "
           "workspace %.1f MiB; %.1f MiB held in all", n, w, h, plan->pool->len,
           pool_bytes / 1048576.0, need / 1048576.0, ctx->bytes_now / 1048576.0);
  if (plan->profile)
    plan->no_graph = TRUE;   /* ops are timed one by one */
  return plan;

fail:
  cuda_plan_free (ctx, plan);
  return NULL;
}

/* Captures the device part as a CUDA graph; FALSE (and direct launches
 * from then on) when some library call cannot be captured. */
static void
capture (CudaCtx *ctx, CudaPlan *plan)
{
  cudaGraph_t graph = NULL;
  g_autoptr (GError) error = NULL;
  if (cudaStreamBeginCapture (ctx->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
    plan->no_graph = TRUE;
    cudaGetLastError ();
    return;
  }
  gboolean ok = run_device (ctx, plan, &error);
  cudaError_t e = cudaStreamEndCapture (ctx->stream, &graph);
  if (ok && e == cudaSuccess && graph
      && cudaGraphInstantiate (&plan->exec, graph, 0) == cudaSuccess) {
    cudaGraphDestroy (graph);
    g_debug ("cuda: batch %d of %dx%d captured as a CUDA graph", plan->n, plan->w, plan->h);
    return;
  }
  if (graph)
    cudaGraphDestroy (graph);
  plan->exec = NULL;
  plan->no_graph = TRUE;
  cudaGetLastError ();
  g_debug ("cuda: running without a CUDA graph (capture failed: %s)",
           error ? error->message : cudaGetErrorString (e));
}

size_t
cuda_plan_input_bytes (const CudaPlan *plan)
{
  return (size_t) plan->n * plan->in_c * plan->h * plan->w * sizeof (float);
}

size_t
cuda_plan_output_bytes (const CudaPlan *plan)
{
  return (size_t) plan->n * plan->out_c * plan->out_h * plan->out_w * sizeof (float);
}

gboolean
cuda_plan_enqueue (CudaCtx *ctx, CudaPlan *plan, const float *input, float *output,
                   cudaEvent_t start, cudaEvent_t stop, GError **error)
{
  if (!cuda_check (cudaMemcpyAsync (plan->in_f32, input, cuda_plan_input_bytes (plan),
                                    cudaMemcpyHostToDevice, ctx->stream),
                   "input upload", error))
    return FALSE;
  if (plan->ran_once && !plan->exec && !plan->no_graph)
    capture (ctx, plan);
  if (!cuda_check (cudaEventRecord (start, ctx->stream), "event", error))
    return FALSE;
  if (plan->exec) {
    if (!cuda_check (cudaGraphLaunch (plan->exec, ctx->stream), "CUDA graph launch", error))
      return FALSE;
  } else if (!run_device (ctx, plan, error)) {
    return FALSE;
  }
  if (!cuda_check (cudaEventRecord (stop, ctx->stream), "event", error)
      || !cuda_check (cudaMemcpyAsync (output, plan->out_f32, cuda_plan_output_bytes (plan),
                                       cudaMemcpyDeviceToHost, ctx->stream),
                      "output download", error))
    return FALSE;
  /* The first pass ran the ops directly; the next one is captured. */
  plan->ran_once = TRUE;
  return TRUE;
}

gboolean
cuda_plan_profiling (const CudaPlan *plan)
{
  return plan->profile != NULL;
}

gboolean
cuda_plan_run (CudaCtx *ctx, CudaPlan *plan, const float *input, float *output,
               double *device_ms, GError **error)
{
  if (!cuda_plan_enqueue (ctx, plan, input, output, plan->start, plan->stop, error)
      || !cuda_check (cudaStreamSynchronize (ctx->stream), "running the forward pass", error))
    return FALSE;
  float ms = 0;
  cudaEventElapsedTime (&ms, plan->start, plan->stop);
  *device_ms = ms;
  cuda_profile_collect (plan->profile, plan->start, plan->stop);
  return TRUE;
}

void
cuda_plan_free (CudaCtx *ctx, CudaPlan *plan)
{
  if (!plan)
    return;
  if (plan->exec)
    cudaGraphExecDestroy (plan->exec);
  cuda_profile_report (plan->profile, plan->n, plan->h, plan->w);
  cuda_profile_free (plan->profile);
  if (plan->start)
    cudaEventDestroy (plan->start);
  if (plan->stop)
    cudaEventDestroy (plan->stop);
  for (guint i = 0; i < plan->n_steps; i++)
    cuda_conv_clear (&plan->steps[i].conv);
  for (guint i = 0; i < plan->pool->len; i++)
    cuda_free (ctx, g_array_index (plan->pool, PoolBuffer, i).ptr);
  cuda_free (ctx, plan->in_f32);
  cuda_free (ctx, plan->out_f32);
  cuda_free (ctx, plan->scratch);
  cuda_free (ctx, plan->gn_stats);
  g_array_free (plan->pool, TRUE);
  g_free (plan->steps);
  g_free (plan);
}
