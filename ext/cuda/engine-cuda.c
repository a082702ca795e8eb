/* gst-vae CUDA engine (backend "cuda"): cuDNN convolutions and the engine's
 * own kernels in NHWC, float16 by default (bfloat16 and float32 as options;
 * float32 runs without TF32, for checking against float32 references).
 *
 * Weights are uploaded once per engine, when a graph that uses them first
 * runs (a vaeencode never uploads the decoder; graphs sharing a weight
 * share its upload: weight-cache.h); plans are built the
 * first time a (graph, n, h, w) is seen, the three most recently used kept
 * per direction (plan-cache.c) and replayed as CUDA graphs.  Batches are
 * queued on the engine's stream in submit; wait hands them back in order.
 *
 * Environment: VAE_CUDA_WORKSPACE_MB (most workspace one convolution may
 * use, default 256), VAE_CUDA_FIND=0 (cuDNN heuristics instead of measured
 * algorithms), VAE_CUDA_GRAPH=0 (no CUDA graphs). */
#include <string.h>

#include "engine.h"
#include "cuda-private.h"
#include "plan-cache.h"

/* A submitted batch: its pinned host copies and events.  Reused once
 * waited for (kept in the engine's spare list). */
typedef struct {
  VaeBatch *batch;
  float *pin_in, *pin_out;
  size_t in_cap, out_cap, out_bytes;
  cudaEvent_t start, stop, done;
  gboolean queued;             /* on the GPU; FALSE: finished inside submit */
} Flight;

typedef struct {
  VaeEngine parent;
  CudaCtx ctx;
  CudaWeights *weights[2];     /* by VaeDirection */
  /* A few plans per direction (plan-cache.h): callers alternate batch
   * sizes, and a batch split into sub-batches needs two. */
  VaePlanCache plans[2];
  void *blas_workspace;
  double last_ms;
  GQueue pending;              /* Flight, in submission order */
  GQueue spare;                /* Flight, reusable */
} CudaEngine;

/* ---- errors and memory ---- */

gboolean
cuda_check (cudaError_t e, const char *what, GError **error)
{
  if (e == cudaSuccess)
    return TRUE;
  /* Device or pinned host memory running out is "too large for this
   * machine" (VAE_ERROR_NO_MEMORY: tiles help), not an engine fault. */
  g_set_error (error, VAE_ERROR,
               e == cudaErrorMemoryAllocation ? VAE_ERROR_NO_MEMORY : VAE_ERROR_ENGINE,
               "cuda: %s: %s (%s)", what, cudaGetErrorString (e), cudaGetErrorName (e));
  return FALSE;
}

gboolean
cudnn_check (cudnnStatus_t s, const char *what, GError **error)
{
  if (s == CUDNN_STATUS_SUCCESS)
    return TRUE;
  g_set_error (error, VAE_ERROR,
               s == CUDNN_STATUS_ALLOC_FAILED ? VAE_ERROR_NO_MEMORY : VAE_ERROR_ENGINE,
               "cuda: %s: cuDNN: %s", what, cudnnGetErrorString (s));
  return FALSE;
}

gboolean
cublas_check (cublasStatus_t s, const char *what, GError **error)
{
  if (s == CUBLAS_STATUS_SUCCESS)
    return TRUE;
  g_set_error (error, VAE_ERROR,
               s == CUBLAS_STATUS_ALLOC_FAILED ? VAE_ERROR_NO_MEMORY : VAE_ERROR_ENGINE,
               "cuda: %s: cuBLAS: %s", what, cublasGetStatusString (s));
  return FALSE;
}

void *
cuda_alloc (CudaCtx *ctx, size_t bytes, const char *what, GError **error)
{
  void *p = NULL;
  cudaError_t e = cudaMalloc (&p, MAX (bytes, 1));
  if (e != cudaSuccess) {
    cudaGetLastError ();
    g_set_error (error, VAE_ERROR,
                 e == cudaErrorMemoryAllocation ? VAE_ERROR_NO_MEMORY : VAE_ERROR_ENGINE,
                 "cuda: cannot allocate %.1f MiB of GPU memory for %s (%.1f MiB held): %s",
                 bytes / 1048576.0, what, ctx->bytes_now / 1048576.0,
                 cudaGetErrorString (e));
    return NULL;
  }
  g_hash_table_insert (ctx->sizes, p, GSIZE_TO_POINTER (MAX (bytes, 1)));
  ctx->bytes_now += MAX (bytes, 1);
  ctx->bytes_peak = MAX (ctx->bytes_peak, ctx->bytes_now);
  return p;
}

void
cuda_free (CudaCtx *ctx, void *p)
{
  if (!p)
    return;
  ctx->bytes_now -= GPOINTER_TO_SIZE (g_hash_table_lookup (ctx->sizes, p));
  g_hash_table_remove (ctx->sizes, p);
  cudaFree (p);
}

/* ---- weights ---- */

/* Float32 host data to a new device array in DT (via a float32 upload). */
static void *
upload (CudaCtx *ctx, const float *host, size_t count, VaeCudaDtype dt, GError **error)
{
  void *dst = cuda_alloc (ctx, count * vae_cuda_dtype_size (dt), "weights", error);
  if (!dst)
    return NULL;
  if (dt == VAE_CUDA_F32) {
    if (cuda_check (cudaMemcpy (dst, host, count * sizeof (float), cudaMemcpyHostToDevice),
                    "weight upload", error))
      return dst;
    cuda_free (ctx, dst);
    return NULL;
  }
  float *tmp = cuda_alloc (ctx, count * sizeof (float), "weight upload", error);
  gboolean ok = tmp
      && cuda_check (cudaMemcpy (tmp, host, count * sizeof (float), cudaMemcpyHostToDevice),
                     "weight upload", error)
      && cuda_check (vae_cuda_f32_to_dtype (tmp, dst, dt, count, ctx->stream),
                     "weight conversion", error)
      && cuda_check (cudaStreamSynchronize (ctx->stream), "weight conversion", error);
  cuda_free (ctx, tmp);
  if (!ok) {
    cuda_free (ctx, dst);
    return NULL;
  }
  return dst;
}

/* OIHW float32 -> KRSC with both channel counts padded with zeros. */
static float *
conv_filter_krsc (const VaeOp *op, size_t *count)
{
  const int k = op->out_channels, c = op->in_channels, r = op->kernel;
  const int kp = cuda_stored_channels (k), cp = cuda_stored_channels (c);
  *count = (size_t) kp * r * r * cp;
  float *f = g_new0 (float, *count);
  for (int o = 0; o < k; o++)
    for (int i = 0; i < c; i++)
      for (int y = 0; y < r; y++)
        for (int x = 0; x < r; x++)
          f[(((size_t) o * r + y) * r + x) * cp + i] = op->weight[(((size_t) o * c + i) * r + y) * r + x];
  return f;
}

static void
cache_free (gpointer data, gpointer ctx)
{
  cuda_free (ctx, data);
}

static void
layout_key (CudaWeightLayout *key, VaeCudaDtype dt, int out_channels, int in_channels,
            int kernel)
{
  memset (key, 0, sizeof *key);   /* compared as bytes */
  key->dtype = dt;
  key->out_channels = out_channels;
  key->in_channels = in_channels;
  key->kernel = kernel;
}

/* OP's filter on the device (KRSC, padded, ctx->dt): the engine's copy, or
 * uploaded now and kept. */
static void *
filter_for (CudaCtx *ctx, const VaeOp *op, GError **error)
{
  CudaWeightLayout key;
  layout_key (&key, ctx->dt, op->out_channels, op->in_channels, op->kernel);
  void *dev = vae_weight_cache_lookup (ctx->filters, op->weight, &key);
  if (dev)
    return dev;
  size_t count;
  g_autofree float *krsc = conv_filter_krsc (op, &count);
  if ((dev = upload (ctx, krsc, count, ctx->dt, error)))
    vae_weight_cache_insert (ctx->filters, op->weight, &key, dev);
  return dev;
}

/* COUNT floats of HOST as float32 on the device, zero-padded to PADDED:
 * the engine's copy, or uploaded now and kept. */
static float *
vector_for (CudaCtx *ctx, const float *host, int count, int padded, GError **error)
{
  CudaWeightLayout key;
  layout_key (&key, VAE_CUDA_F32, padded, count, 0);
  float *dev = vae_weight_cache_lookup (ctx->vectors, host, &key);
  if (dev)
    return dev;
  g_autofree float *b = g_new0 (float, padded);
  memcpy (b, host, count * sizeof (float));
  if ((dev = upload (ctx, b, padded, VAE_CUDA_F32, error)))
    vae_weight_cache_insert (ctx->vectors, host, &key, dev);
  return dev;
}

CudaWeights *
cuda_weights_upload (CudaCtx *ctx, const VaeGraph *graph, GError **error)
{
  CudaWeights *w = g_new0 (CudaWeights, 1);
  w->graph = graph;
  w->params = g_new0 (CudaOpParams, graph->ops->len);
  for (guint i = 0; i < graph->ops->len; i++) {
    const VaeOp *op = vae_graph_op (graph, i);
    CudaOpParams *p = &w->params[i];
    if (op->kind == VAE_OP_CONV2D) {
      if (!(p->weight = filter_for (ctx, op, error)))
        goto fail;
      if (op->bias && !(p->bias = vector_for (ctx, op->bias, op->out_channels,
                                              cuda_stored_channels (op->out_channels), error)))
        goto fail;
    } else if (op->kind == VAE_OP_GROUP_NORM) {
      if (!(p->gamma = vector_for (ctx, op->gamma, op->in_channels, op->in_channels, error))
          || !(p->bias = vector_for (ctx, op->beta, op->in_channels, op->in_channels, error)))
        goto fail;
    }
  }
  return w;
fail:
  g_prefix_error (error, "uploading the weights: ");
  cuda_weights_free (ctx, w);
  return NULL;
}

/* The device arrays stay: they are the caches' (freed at close). */
void
cuda_weights_free (CudaCtx *ctx, CudaWeights *w)
{
  if (!w)
    return;
  g_free (w->params);
  g_free (w);
}

/* ---- the engine ---- */

/* Usable when the runtime sees a device; "auto" prefers it to the cpu. */
static int
cuda_probe (GError **error)
{
  int n = 0;
  cudaError_t st = cudaGetDeviceCount (&n);
  if (st != cudaSuccess) {
    cudaGetLastError ();
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "no usable CUDA device (cudaGetDeviceCount: %s)", cudaGetErrorString (st));
    return -1;
  }
  if (n < 1) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED, "no CUDA device");
    return -1;
  }
  return VAE_ENGINE_RANK_GPU;
}

#define BLAS_WORKSPACE_BYTES ((size_t) 32 << 20)

static void cuda_close (VaeEngine *engine);

static gboolean
cuda_open_inner (VaeEngine *engine, GError **error)
{
  CudaEngine *self = (CudaEngine *) engine;
  CudaCtx *ctx = &self->ctx;
  g_queue_init (&self->pending);
  g_queue_init (&self->spare);
  ctx->sizes = g_hash_table_new (NULL, NULL);
  ctx->algos = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  ctx->filters = vae_weight_cache_new (sizeof (CudaWeightLayout), NULL, cache_free, ctx);
  /* Once a filter is on the device, its float32 original may leave memory. */
  vae_weight_cache_release_originals (ctx->filters, engine->model->weights);
  ctx->vectors = vae_weight_cache_new (sizeof (CudaWeightLayout), NULL, cache_free, ctx);
  self->last_ms = -1;

  switch (engine->options.precision) {
  case VAE_PRECISION_F32:
    ctx->dt = VAE_CUDA_F32;
    ctx->cudnn_dt = CUDNN_DATA_FLOAT;
    ctx->strict_f32 = TRUE;
    break;
  case VAE_PRECISION_BF16:
    ctx->dt = VAE_CUDA_BF16;
    ctx->cudnn_dt = CUDNN_DATA_BFLOAT16;
    break;
  default:
    ctx->dt = VAE_CUDA_F16;
    ctx->cudnn_dt = CUDNN_DATA_HALF;
    break;
  }
  const char *ws = g_getenv ("VAE_CUDA_WORKSPACE_MB");
  ctx->workspace_limit = (size_t) (ws ? g_ascii_strtoull (ws, NULL, 10) : 256) << 20;

  int count = 0;
  cudaError_t e = cudaGetDeviceCount (&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError ();
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "the cuda backend needs an NVIDIA GPU: %s",
                 e != cudaSuccess ? cudaGetErrorString (e) : "no CUDA device found");
    return FALSE;
  }
  if (engine->options.device_id < 0 || engine->options.device_id >= count) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "device-id %d does not exist (this machine has %d CUDA device%s)",
                 engine->options.device_id, count, count == 1 ? "" : "s");
    return FALSE;
  }
  ctx->device = engine->options.device_id;
  if (!cuda_check (cudaSetDevice (ctx->device), "selecting the device", error)
      || !cuda_check (cudaStreamCreateWithFlags (&ctx->stream, cudaStreamNonBlocking),
                      "stream creation", error)
      || !cudnn_check (cudnnCreate (&ctx->cudnn), "cuDNN initialisation", error)
      || !cudnn_check (cudnnSetStream (ctx->cudnn, ctx->stream), "cuDNN stream", error)
      || !cublas_check (cublasCreate (&ctx->cublas), "cuBLAS initialisation", error)
      || !cublas_check (cublasSetStream (ctx->cublas, ctx->stream), "cuBLAS stream", error))
    return FALSE;
  /* A workspace of our own keeps cuBLAS from allocating during a CUDA graph
   * capture; float32 mode keeps TF32 off. */
  if (!(self->blas_workspace = cuda_alloc (ctx, BLAS_WORKSPACE_BYTES, "cuBLAS workspace",
                                           error))
      || !cublas_check (cublasSetWorkspace (ctx->cublas, self->blas_workspace,
                                            BLAS_WORKSPACE_BYTES), "cuBLAS workspace", error)
      || !cublas_check (cublasSetMathMode (ctx->cublas, ctx->strict_f32
                                           ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH),
                        "cuBLAS math mode", error))
    return FALSE;

  /* Weights are uploaded on first use of a direction: a vaeencode holds
   * only the encoder's, a vaedecode only the decoder's. */
  return TRUE;
}

/* The core frees a failed engine without close: undo a partial open here. */
static gboolean
cuda_open (VaeEngine *engine, GError **error)
{
  if (cuda_open_inner (engine, error))
    return TRUE;
  cuda_close (engine);
  return FALSE;
}

/* The plan for (graph, n, h, w): a kept one, else a new one in place of
 * the least recently used. */
static CudaPlan *
plan_for (CudaEngine *self, VaeDirection dir, int n, int h, int w, GError **error)
{
  CudaCtx *ctx = &self->ctx;
  const CudaWeights *weights = self->weights[dir];
  VaePlanCache *cache = &self->plans[dir];
  CudaPlan *plan = vae_plan_cache_find (cache, weights->graph, n, h, w);
  if (plan)
    return plan;
  CudaPlan *old = vae_plan_cache_evict (cache);
  /* Batches in flight may be using the plan that goes. */
  if (old) {
    gboolean idle = cuda_check (cudaStreamSynchronize (ctx->stream),
                                "finishing earlier batches", error);
    cuda_plan_free (ctx, old);
    if (!idle)
      return NULL;
  }
  plan = cuda_plan_new (ctx, weights, n, h, w, error);
  if (plan)
    vae_plan_cache_put (cache, weights->graph, n, h, w, plan);
  return plan;
}

/* cuDNN and the kernels index a tensor with 32-bit ints: the most frames of
 * H x W whose largest activation stays under 2^31 elements. */
static int
max_frames_per_pass (const VaeGraph *g, int h, int w)
{
  const guint nv = g->values->len;
  g_autofree int *vh = g_new (int, nv), *vw = g_new (int, nv);
  vae_graph_infer_sizes (g, h, w, vh, vw);
  guint64 largest = 1;
  for (guint v = 0; v < nv; v++)
    largest = MAX (largest, (guint64) (vh[v] + 1) * (vw[v] + 1)
                            * cuda_stored_channels (vae_graph_channels (g, v)));
  return (int) MIN ((guint64) G_MAXINT32 / largest, (guint64) G_MAXINT);
}

/* Pinned host memory of at least BYTES in *BUF (capacity *CAP). */
static gboolean
ensure_pinned (float **buf, size_t *cap, size_t bytes, GError **error)
{
  if (*cap >= bytes)
    return TRUE;
  if (*buf)
    cudaFreeHost (*buf);
  *buf = NULL;
  *cap = 0;
  g_autofree char *size = vae_format_bytes (bytes);
  g_autofree char *what = g_strdup_printf ("allocating %s of pinned host memory", size);
  if (!cuda_check (cudaHostAlloc ((void **) buf, bytes, cudaHostAllocDefault), what, error))
    return FALSE;
  *cap = bytes;
  return TRUE;
}

/* Queues F's batch on the GPU (F->queued) or, for batches split into
 * sub-batches and while profiling, runs it to the end. */
static gboolean
start_batch (CudaEngine *self, Flight *f, GError **error)
{
  VaeEngine *engine = &self->parent;
  CudaCtx *ctx = &self->ctx;
  VaeBatch *batch = f->batch;
  const VaeGraph *graph = batch->direction == VAE_DIRECTION_ENCODE
      ? engine->model->encoder : engine->model->decoder;
  if (!graph) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED, "model '%s' has no %s",
                 engine->model->name,
                 batch->direction == VAE_DIRECTION_ENCODE ? "encoder" : "decoder");
    return FALSE;
  }
  if (!cuda_check (cudaSetDevice (ctx->device), "selecting the device", error))
    return FALSE;
  if (!self->weights[batch->direction]
      && !(self->weights[batch->direction] = cuda_weights_upload (ctx, graph, error)))
    return FALSE;
  const CudaWeights *w = self->weights[batch->direction];
  const int most = max_frames_per_pass (w->graph, batch->h, batch->w);
  if (most < 1) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "a %dx%d frame is too large for one pass of the cuda backend (a "
                 "tensor would pass 2^31 elements): use tiles (tile-size)",
                 batch->w, batch->h);
    return FALSE;
  }

  if (batch->n <= most) {
    CudaPlan *plan = plan_for (self, batch->direction, batch->n, batch->h, batch->w, error);
    if (!plan)
      return FALSE;
    if (cuda_plan_profiling (plan))
      return cuda_plan_run (ctx, plan, batch->input, batch->output, &self->last_ms, error);
    /* Pinned copies make the transfers asynchronous: the caller prepares
     * its next batch while this one runs. */
    const size_t in_bytes = cuda_plan_input_bytes (plan);
    f->out_bytes = cuda_plan_output_bytes (plan);
    if (!ensure_pinned (&f->pin_in, &f->in_cap, in_bytes, error)
        || !ensure_pinned (&f->pin_out, &f->out_cap, f->out_bytes, error))
      return FALSE;
    memcpy (f->pin_in, batch->input, in_bytes);
    if (!cuda_plan_enqueue (ctx, plan, f->pin_in, f->pin_out, f->start, f->stop, error)
        || !cuda_check (cudaEventRecord (f->done, ctx->stream), "event", error))
      return FALSE;
    f->queued = TRUE;
    return TRUE;
  }

  /* Equal sub-batches where the whole batch would pass that limit, one
   * after the other. */
  const int passes = (batch->n + most - 1) / most;
  const int per = (batch->n + passes - 1) / passes;
  const int oc = vae_engine_output_channels (engine->model, batch->direction);
  const int ic = vae_graph_channels (w->graph, 0);
  const int f8 = engine->model->spatial_factor;
  const int oh = batch->direction == VAE_DIRECTION_ENCODE ? batch->h / f8 : batch->h * f8;
  const int ow = batch->direction == VAE_DIRECTION_ENCODE ? batch->w / f8 : batch->w * f8;
  double total_ms = 0;
  for (int first = 0; first < batch->n; first += per) {
    const int m = MIN (per, batch->n - first);
    CudaPlan *plan = plan_for (self, batch->direction, m, batch->h, batch->w, error);
    double ms = 0;
    if (!plan
        || !cuda_plan_run (ctx, plan, batch->input + (gsize) first * ic * batch->h * batch->w,
                           batch->output + (gsize) first * oc * oh * ow, &ms, error))
      return FALSE;
    total_ms += ms;
  }
  self->last_ms = total_ms;
  return TRUE;
}

static Flight *
flight_take (CudaEngine *self, GError **error)
{
  Flight *f = g_queue_pop_head (&self->spare);
  if (f)
    return f;
  f = g_new0 (Flight, 1);
  if (!cuda_check (cudaSetDevice (self->ctx.device), "selecting the device", error)
      || !cuda_check (cudaEventCreate (&f->start), "event", error)
      || !cuda_check (cudaEventCreate (&f->stop), "event", error)
      || !cuda_check (cudaEventCreateWithFlags (&f->done, cudaEventDisableTiming), "event",
                      error)) {
    g_queue_push_tail (&self->spare, f);   /* freed with the engine */
    return NULL;
  }
  return f;
}

static void
flight_free (Flight *f)
{
  if (f->start)
    cudaEventDestroy (f->start);
  if (f->stop)
    cudaEventDestroy (f->stop);
  if (f->done)
    cudaEventDestroy (f->done);
  if (f->pin_in)
    cudaFreeHost (f->pin_in);
  if (f->pin_out)
    cudaFreeHost (f->pin_out);
  g_free (f);
}

static gboolean
cuda_submit (VaeEngine *engine, VaeBatch *batch, GError **error)
{
  CudaEngine *self = (CudaEngine *) engine;
  Flight *f = flight_take (self, error);
  if (!f)
    return FALSE;
  f->batch = batch;
  f->queued = FALSE;
  start_batch (self, f, &batch->error);
  g_queue_push_tail (&self->pending, f);
  return TRUE;
}

static VaeBatch *
cuda_wait (VaeEngine *engine)
{
  CudaEngine *self = (CudaEngine *) engine;
  Flight *f = g_queue_pop_head (&self->pending);
  if (!f)
    return NULL;
  VaeBatch *batch = f->batch;
  if (f->queued) {
    cudaSetDevice (self->ctx.device);
    if (cuda_check (cudaEventSynchronize (f->done), "running the forward pass",
                    &batch->error)) {
      float ms = 0;
      memcpy (batch->output, f->pin_out, f->out_bytes);
      if (cudaEventElapsedTime (&ms, f->start, f->stop) == cudaSuccess)
        self->last_ms = ms;
    }
  }
  f->batch = NULL;
  f->queued = FALSE;
  g_queue_push_tail (&self->spare, f);
  return batch;
}

static int
cuda_preferred_batch (VaeEngine *engine)
{
  /* Enough frames to fill the GPU at common sizes; the plan is per batch
   * size, so the element keeps it fixed. */
  return 8;
}

/* The preferred batch fills the GPU with frames of up to 512x512 image
 * pixels; larger frames (a tiler's large tiles) fill it in fewer, so a
 * batch holds about the activations of that many 512x512 frames. */
static int
cuda_batch_for_size (VaeEngine *engine, VaeDirection direction, int h, int w)
{
  const int preferred = cuda_preferred_batch (engine);
  const int f = direction == VAE_DIRECTION_DECODE ? MAX (engine->model->spatial_factor, 1) : 1;
  const double px = (double) h * f * w * f;
  return CLAMP ((int) (preferred * (512.0 * 512.0) / MAX (px, 1.0)), 1, preferred);
}

static void
cuda_stats (VaeEngine *engine, VaeEngineStats *stats)
{
  CudaEngine *self = (CudaEngine *) engine;
  stats->device_bytes_peak = self->ctx.bytes_peak;
  stats->last_device_ms = self->last_ms;
  stats->weights_prepared = self->ctx.filters ? vae_weight_cache_count (self->ctx.filters) : 0;
}

static void
free_plan (gpointer plan, gpointer ctx)
{
  cuda_plan_free (ctx, plan);
}

static void
cuda_close (VaeEngine *engine)
{
  CudaEngine *self = (CudaEngine *) engine;
  CudaCtx *ctx = &self->ctx;
  if (ctx->stream) {
    cudaSetDevice (ctx->device);
    cudaStreamSynchronize (ctx->stream);   /* nothing may still write pinned memory */
  }
  Flight *f;
  while ((f = g_queue_pop_head (&self->pending)))
    flight_free (f);
  while ((f = g_queue_pop_head (&self->spare)))
    flight_free (f);
  for (int d = 0; d < 2; d++) {
    vae_plan_cache_clear (&self->plans[d], free_plan, ctx);
    cuda_weights_free (ctx, self->weights[d]);
  }
  /* After the plans and the per-graph tables that borrow from them; before
   * the accounting table, which cuda_free updates. */
  vae_weight_cache_free (ctx->filters);
  vae_weight_cache_free (ctx->vectors);
  ctx->filters = ctx->vectors = NULL;
  cuda_free (ctx, self->blas_workspace);
  if (ctx->cublas)
    cublasDestroy (ctx->cublas);
  if (ctx->cudnn)
    cudnnDestroy (ctx->cudnn);
  if (ctx->stream)
    cudaStreamDestroy (ctx->stream);
  if (ctx->sizes)
    g_hash_table_unref (ctx->sizes);
  if (ctx->algos)
    g_hash_table_unref (ctx->algos);
}

const VaeEngineVTable vae_engine_cuda = {
  .name = "cuda",
  .instance_size = sizeof (CudaEngine),
  .open = cuda_open,
  .submit = cuda_submit,
  .wait = cuda_wait,
  .preferred_batch = cuda_preferred_batch,
  .close = cuda_close,
  .stats = cuda_stats,
  .probe = cuda_probe,
  .batch_for_size = cuda_batch_for_size,
};
