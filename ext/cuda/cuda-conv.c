/* gst-vae CUDA engine: convolutions through cuDNN's convolution API, NHWC
 * activations and KRSC filters in the engine's dtype, float32 accumulation.
 *
 * The algorithm is measured, not guessed: cudnnFindConvolutionForwardAlgorithmEx
 * runs the candidates on the plan's own buffers within the workspace limit
 * (heuristics often pick a slower kernel for the large, thin-channel
 * activations of a VAE's outer blocks).  Results are cached per shape, so a
 * model's repeated layers and later plans of the same size pay nothing.
 * VAE_CUDA_FIND=0 uses cuDNN's heuristics instead. */
#include <string.h>

#include "cuda-private.h"

typedef struct {
  cudnnConvolutionFwdAlgo_t algo;
  cudnnMathType_t math;
  size_t workspace;
} CudaConvChoice;

static cudnnMathType_t
wanted_math (const CudaCtx *ctx)
{
  /* float32 mode is for checking against float32 references: TF32 would
   * round the inputs to 10 bits of mantissa. */
  return ctx->strict_f32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
}

gboolean
cuda_conv_init (CudaCtx *ctx, CudaConv *conv, const VaeOp *op, int n, int h, int w,
                int oh, int ow, GError **error)
{
  memset (conv, 0, sizeof *conv);
  const int cin = cuda_stored_channels (op->in_channels);
  const int cout = cuda_stored_channels (op->out_channels);
  int pad_h = op->pad_top, pad_w = op->pad_left;
  int in_h = h, in_w = w;
  /* cuDNN pads symmetrically; a Downsample's (0, 1, 0, 1) is done by
   * cuda_plan with a padding kernel, and the conv then pads nothing. */
  if (op->pad_top != op->pad_bottom || op->pad_left != op->pad_right) {
    conv->explicit_pad = TRUE;
    in_h = h + op->pad_top + op->pad_bottom;
    in_w = w + op->pad_left + op->pad_right;
    conv->pad_h = in_h;
    conv->pad_w = in_w;
    pad_h = pad_w = 0;
  }
  const char *what = op->name;
  if (!cudnn_check (cudnnCreateTensorDescriptor (&conv->x), what, error)
      || !cudnn_check (cudnnCreateTensorDescriptor (&conv->y), what, error)
      || !cudnn_check (cudnnCreateFilterDescriptor (&conv->w), what, error)
      || !cudnn_check (cudnnCreateConvolutionDescriptor (&conv->conv), what, error))
    return FALSE;
  if (!cudnn_check (cudnnSetTensor4dDescriptor (conv->x, CUDNN_TENSOR_NHWC, ctx->cudnn_dt,
                                                n, cin, in_h, in_w), what, error)
      || !cudnn_check (cudnnSetTensor4dDescriptor (conv->y, CUDNN_TENSOR_NHWC, ctx->cudnn_dt,
                                                   n, cout, oh, ow), what, error)
      || !cudnn_check (cudnnSetFilter4dDescriptor (conv->w, ctx->cudnn_dt, CUDNN_TENSOR_NHWC,
                                                   cout, cin, op->kernel, op->kernel),
                       what, error)
      || !cudnn_check (cudnnSetConvolution2dDescriptor (conv->conv, pad_h, pad_w,
                                                        op->stride, op->stride, 1, 1,
                                                        CUDNN_CROSS_CORRELATION,
                                                        CUDNN_DATA_FLOAT), what, error)
      || !cudnn_check (cudnnSetConvolutionMathType (conv->conv, wanted_math (ctx)),
                       what, error))
    return FALSE;

  /* The output size cuDNN computes must be the graph's. */
  int dn, dc, dh, dw;
  if (!cudnn_check (cudnnGetConvolution2dForwardOutputDim (conv->conv, conv->x, conv->w,
                                                           &dn, &dc, &dh, &dw), what, error))
    return FALSE;
  if (dn != n || dc != cout || dh != oh || dw != ow) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ENGINE,
                 "%s: cuDNN gives a %dx%dx%dx%d output where the graph has %dx%dx%dx%d",
                 what, dn, dc, dh, dw, n, cout, oh, ow);
    return FALSE;
  }
  return TRUE;
}

static char *
shape_key (const CudaCtx *ctx, const CudaConv *conv)
{
  cudnnDataType_t dt;
  cudnnTensorFormat_t fmt;
  int n, c, h, w, k, kc, kh, kw, ph, pw, sh, sw, dh, dw, yn, yc, yh, yw, xs[4];
  cudnnConvolutionMode_t mode;
  cudnnDataType_t cdt;
  cudnnGetTensor4dDescriptor (conv->x, &dt, &n, &c, &h, &w, &xs[0], &xs[1], &xs[2], &xs[3]);
  cudnnGetTensor4dDescriptor (conv->y, &dt, &yn, &yc, &yh, &yw, &xs[0], &xs[1], &xs[2],
                              &xs[3]);
  cudnnGetFilter4dDescriptor (conv->w, &dt, &fmt, &k, &kc, &kh, &kw);
  cudnnGetConvolution2dDescriptor (conv->conv, &ph, &pw, &sh, &sw, &dh, &dw, &mode, &cdt);
  return g_strdup_printf ("%d:%d,%d,%d,%d:%d,%d,%d:%d,%d,%d:%zu", (int) ctx->dt, n, c, h, w,
                          k, kh, kw, ph, pw, sh, ctx->workspace_limit);
}

static gboolean
acceptable (const CudaCtx *ctx, cudnnStatus_t status, cudnnMathType_t math, size_t ws)
{
  if (status != CUDNN_STATUS_SUCCESS || ws > ctx->workspace_limit)
    return FALSE;
  if (ctx->strict_f32 && (math == CUDNN_TENSOR_OP_MATH
                          || math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
    return FALSE;
  return TRUE;
}

gboolean
cuda_conv_choose (CudaCtx *ctx, CudaConv *conv, const void *x, const void *w, void *y,
                  void *workspace, size_t workspace_size, GError **error)
{
  g_autofree char *key = shape_key (ctx, conv);
  CudaConvChoice *choice = g_hash_table_lookup (ctx->algos, key);

  if (!choice) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int found = 0;
    const char *find = g_getenv ("VAE_CUDA_FIND");
    gboolean measure = !find || g_strcmp0 (find, "0") != 0;
    cudnnStatus_t s;
    if (measure)
      s = cudnnFindConvolutionForwardAlgorithmEx (ctx->cudnn, conv->x, x, conv->w, w,
                                                  conv->conv, conv->y, y,
                                                  CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found,
                                                  perf, workspace, workspace_size);
    else
      s = cudnnGetConvolutionForwardAlgorithm_v7 (ctx->cudnn, conv->x, conv->w, conv->conv,
                                                  conv->y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                                  &found, perf);
    if (!cudnn_check (s, "choosing a convolution algorithm", error))
      return FALSE;
    for (int i = 0; i < found && !choice; i++)
      if (acceptable (ctx, perf[i].status, perf[i].mathType, perf[i].memory)) {
        choice = g_new (CudaConvChoice, 1);
        choice->algo = perf[i].algo;
        choice->math = perf[i].mathType;
        choice->workspace = perf[i].memory;
      }
    if (!choice) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_ENGINE,
                   "cuDNN has no convolution algorithm for this layer within %zu MiB of "
                   "workspace (VAE_CUDA_WORKSPACE_MB)", ctx->workspace_limit >> 20);
      return FALSE;
    }
    g_hash_table_insert (ctx->algos, g_steal_pointer (&key), choice);
  }
  conv->algo = choice->algo;
  conv->workspace = choice->workspace;
  return cudnn_check (cudnnSetConvolutionMathType (conv->conv, choice->math),
                      "setting the convolution math type", error);
}

gboolean
cuda_conv_run (CudaCtx *ctx, const CudaConv *conv, const void *x, const void *w, void *y,
               float beta, void *workspace, GError **error)
{
  const float alpha = 1.0f;
  return cudnn_check (cudnnConvolutionForward (ctx->cudnn, &alpha, conv->x, x, conv->w, w,
                                               conv->conv, conv->algo, workspace,
                                               conv->workspace, &beta, conv->y, y),
                      "convolution", error);
}

void
cuda_conv_clear (CudaConv *conv)
{
  if (conv->x)
    cudnnDestroyTensorDescriptor (conv->x);
  if (conv->y)
    cudnnDestroyTensorDescriptor (conv->y);
  if (conv->w)
    cudnnDestroyFilterDescriptor (conv->w);
  if (conv->conv)
    cudnnDestroyConvolutionDescriptor (conv->conv);
  memset (conv, 0, sizeof *conv);
}
