/* gst-vae CUDA engine: what its host files share.
 *
 * engine-cuda.c  the VaeEngine (open, weights, submit/wait, stats)
 * cuda-plan.c    one forward pass for a (graph, n, h, w): buffers planned
 *                by liveness, ops bound to them, replayed as a CUDA graph
 * cuda-conv.c    cuDNN convolutions (descriptors, algorithm choice)
 * cuda-attention.c  single-head attention in query chunks (cuBLAS + softmax)
 * kernels-*.cu   the engine's own kernels (cuda-kernels.h) */
#pragma once
#include <glib.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <cublas_v2.h>

#include "graph.h"
#include "cuda-kernels.h"
#include "vae-error.h"
#include "weight-cache.h"

/* Channels of every activation are stored rounded up to this, with the
 * extra channels kept at zero (zero weights and biases), so that tensor-core
 * convolutions see aligned channel counts (images have 3, SD latents 4). */
#define CUDA_CHANNEL_ALIGN 8

static inline int
cuda_stored_channels (int c)
{
  return (c + CUDA_CHANNEL_ALIGN - 1) / CUDA_CHANNEL_ALIGN * CUDA_CHANNEL_ALIGN;
}

typedef struct {
  int device;
  cudaStream_t stream;
  cudnnHandle_t cudnn;
  cublasHandle_t cublas;
  VaeCudaDtype dt;
  cudnnDataType_t cudnn_dt;
  gboolean strict_f32;        /* float32 mode: no TF32 anywhere */
  GHashTable *sizes;          /* device pointer -> its size (accounting) */
  guint64 bytes_now, bytes_peak;
  GHashTable *algos;          /* conv shape key -> CudaConvChoice */
  size_t workspace_limit;     /* most workspace one conv may use */
  /* Device copies of host weights, once per engine (weight-cache.h): keyed
   * by the host array and a CudaWeightLayout, freed at close.  Filters are
   * counted in the stats (weights_prepared); vectors are the biases, gammas
   * and betas. */
  VaeWeightCache *filters, *vectors;
} CudaCtx;

/* What a device copy of a host weight was made as (the cache's key). */
typedef struct {
  int dtype;                  /* VaeCudaDtype */
  int out_channels, in_channels, kernel;   /* vectors: count, 0, 0 */
} CudaWeightLayout;

/* Error helpers: set ERROR naming WHAT and the library's message. */
gboolean cuda_check (cudaError_t e, const char *what, GError **error);
gboolean cudnn_check (cudnnStatus_t s, const char *what, GError **error);
gboolean cublas_check (cublasStatus_t s, const char *what, GError **error);

/* Device memory with accounting (stats' device_bytes_peak). */
void *cuda_alloc (CudaCtx *ctx, size_t bytes, const char *what, GError **error);
void cuda_free (CudaCtx *ctx, void *p);

/* One graph's parameters on the device, in the ctx's dtype/layout.  The
 * arrays are borrowed from the ctx's caches: graphs sharing a weight share
 * its device copy. */
typedef struct {
  void *weight;      /* CONV2D: [Kp, kh, kw, Cp] (KRSC), padded with zeros */
  float *bias;       /* CONV2D: float32 [Kp] or NULL; GROUP_NORM: beta [C] */
  float *gamma;      /* GROUP_NORM */
} CudaOpParams;

typedef struct {
  const VaeGraph *graph;
  CudaOpParams *params;   /* one per op */
} CudaWeights;

CudaWeights *cuda_weights_upload (CudaCtx *ctx, const VaeGraph *graph, GError **error);
void cuda_weights_free (CudaCtx *ctx, CudaWeights *w);

/* ---- convolution ---- */

typedef struct {
  cudnnTensorDescriptor_t x, y;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  cudnnConvolutionFwdAlgo_t algo;
  size_t workspace;       /* bytes the algorithm needs */
  gboolean explicit_pad;  /* asymmetric padding: input padded by a kernel */
  int pad_h, pad_w;       /* the padded input's size when explicit_pad */
} CudaConv;

/* Describes OP on an input of N x H x W (output OH x OW).  The algorithm
 * is chosen later, by cuda_conv_choose, once buffers exist. */
gboolean cuda_conv_init (CudaCtx *ctx, CudaConv *conv, const VaeOp *op, int n, int h,
                         int w, int oh, int ow, GError **error);
/* Picks the fastest algorithm (cudnnFind on the real buffers, cached per
 * shape) within the ctx's workspace limit. */
gboolean cuda_conv_choose (CudaCtx *ctx, CudaConv *conv, const void *x, const void *w,
                           void *y, void *workspace, size_t workspace_size,
                           GError **error);
/* y = conv(x) + beta * y. */
gboolean cuda_conv_run (CudaCtx *ctx, const CudaConv *conv, const void *x, const void *w,
                        void *y, float beta, void *workspace, GError **error);
void cuda_conv_clear (CudaConv *conv);

/* ---- attention ---- */

/* Scores are computed for this many query rows at a time, so that at most
 * about this many bytes of scores exist. */
#define CUDA_ATTENTION_SCORE_BYTES ((size_t) 256 << 20)

size_t cuda_attention_scratch_size (const CudaCtx *ctx, int n, int len);
/* o = softmax(q k^T / sqrt(c)) v per frame; q, k, v, o NHWC [n, len, c]. */
gboolean cuda_attention_run (CudaCtx *ctx, const void *q, const void *k, const void *v,
                             void *o, int n, int len, int c, void *scratch,
                             GError **error);

/* ---- plans ---- */

typedef struct _CudaPlan CudaPlan;

CudaPlan *cuda_plan_new (CudaCtx *ctx, const CudaWeights *weights, int n, int h, int w,
                         GError **error);
/* Runs the plan on host NCHW float32 INPUT into host OUTPUT; *DEVICE_MS
 * gets the device time of the forward pass (copies excluded). */
gboolean cuda_plan_run (CudaCtx *ctx, CudaPlan *plan, const float *input, float *output,
                        double *device_ms, GError **error);
/* The same without waiting: upload, forward pass between events START and
 * STOP, download, all queued on the ctx's stream.  INPUT and OUTPUT should
 * be pinned host memory (pageable memory makes the copies synchronous) and
 * stay untouched until the stream has passed the download. */
gboolean cuda_plan_enqueue (CudaCtx *ctx, CudaPlan *plan, const float *input, float *output,
                            cudaEvent_t start, cudaEvent_t stop, GError **error);
size_t cuda_plan_input_bytes (const CudaPlan *plan);
size_t cuda_plan_output_bytes (const CudaPlan *plan);
/* VAE_CUDA_PROFILE=1: passes must run one at a time (cuda_plan_run). */
gboolean cuda_plan_profiling (const CudaPlan *plan);
void cuda_plan_free (CudaCtx *ctx, CudaPlan *plan);
