/* gst-vae CUDA engine: the engine's own kernels (kernels-*.cu), callable
 * from C.
 *
 * Activations live on the GPU in NHWC ("channels last": element
 * ((n * H + y) * W + x) * C + c) in the engine's dtype; statistics and
 * accumulation are always float32 (or double for GroupNorm sums).  Every
 * function only enqueues work on STREAM (no allocation, no synchronisation,
 * so that a forward pass can be captured as a CUDA graph) and returns the
 * launch error, cudaSuccess when none. */
#pragma once
#include <stddef.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  VAE_CUDA_F32,
  VAE_CUDA_F16,
  VAE_CUDA_BF16,
} VaeCudaDtype;

/* Bytes per element of DT. */
size_t vae_cuda_dtype_size (VaeCudaDtype dt);

/* Float32 array -> DT (weights, any layout), COUNT elements. */
cudaError_t vae_cuda_f32_to_dtype (const float *src, void *dst, VaeCudaDtype dt,
                                   size_t count, cudaStream_t stream);

/* Limits of the layout kernels: n <= 65535 for the two NCHW conversions;
 * n * h (rows) < 2^31 for upsample2x and pad. */

/* Host-layout frames in: SRC float32 NCHW [n, c, h, w] -> DST NHWC
 * [n, h, w, c_dst] in DT, channels c..c_dst-1 set to zero (c_dst >= c pads
 * the channel count for tensor-core friendly convolutions). */
cudaError_t vae_cuda_nchw_f32_to_nhwc (const float *src, void *dst, VaeCudaDtype dt,
                                       int n, int c, int h, int w, int c_dst,
                                       cudaStream_t stream);
/* Frames out: SRC NHWC [n, h, w, c_src] in DT -> DST float32 NCHW
 * [n, c, h, w] (the first c of c_src channels). */
cudaError_t vae_cuda_nhwc_to_nchw_f32 (const void *src, VaeCudaDtype dt, float *dst,
                                       int n, int c, int h, int w, int c_src,
                                       cudaStream_t stream);

typedef enum {
  VAE_CUDA_ACT_NONE = 0,   /* same values as VaeActivation in graph.h */
  VAE_CUDA_ACT_RELU = 1,
  VAE_CUDA_ACT_SILU = 2,
} VaeCudaAct;

/* Convolution epilogue, in place over Y (NHWC, ROWS = n*h*w rows of C):
 * y = act(y + bias[c] + residual).  BIAS (float32 [c]) and RESIDUAL (same
 * shape and dtype as Y) may be NULL. */
cudaError_t vae_cuda_bias_act (void *y, const void *residual, const float *bias,
                               VaeCudaDtype dt, size_t rows, int c, VaeCudaAct act,
                               cudaStream_t stream);

/* GroupNorm over NHWC X [n, hw, c] with GROUPS groups of c/groups adjacent
 * channels: y = act((x - mean) / sqrt(var + eps) * gamma[c] + beta[c]),
 * mean/var per (n, group) over hw * c/groups values (biased variance, as
 * torch.nn.GroupNorm).  GAMMA/BETA float32 [c].  STATS is a scratch area of
 * at least vae_cuda_group_norm_stats_size (n, groups) bytes on the device
 * (double sums; the call zeroes it on STREAM itself).  Y may equal X (in
 * place).  Limits: c % groups == 0, c <= 2048, n <= 65535 (else
 * cudaErrorInvalidValue). */
size_t vae_cuda_group_norm_stats_size (int n, int groups);
cudaError_t vae_cuda_group_norm (const void *x, void *y, VaeCudaDtype dt, int n, int hw,
                                 int c, int groups, float eps, const float *gamma,
                                 const float *beta, VaeCudaAct act, void *stats,
                                 cudaStream_t stream);

/* The same over x + IN_BIAS[c] (float32 [c], NULL: none), without that sum
 * ever being stored: the bias of the convolution that produced X, whose own
 * bias pass is then skipped. */
cudaError_t vae_cuda_bias_group_norm (const void *x, const float *in_bias, void *y,
                                      VaeCudaDtype dt, int n, int hw, int c, int groups,
                                      float eps, const float *gamma, const float *beta,
                                      VaeCudaAct act, void *stats, cudaStream_t stream);

/* Nearest-neighbour 2x: X NHWC [n, h, w, c] -> Y [n, 2h, 2w, c]. */
cudaError_t vae_cuda_upsample2x (const void *x, void *y, VaeCudaDtype dt, int n, int h,
                                 int w, int c, cudaStream_t stream);

/* Zero padding: X NHWC [n, h, w, c] -> Y [n, h+top+bottom, w+left+right, c]. */
cudaError_t vae_cuda_pad (const void *x, void *y, VaeCudaDtype dt, int n, int h, int w,
                          int c, int top, int left, int bottom, int right,
                          cudaStream_t stream);

/* Row softmax in place: S is ROWS x COLS (row-major, leading dimension COLS)
 * in DT; max and sum in float32.  ROWS < 2^31 once COLS > 1024. */
cudaError_t vae_cuda_softmax_rows (void *s, VaeCudaDtype dt, size_t rows, int cols,
                                   cudaStream_t stream);

/* x = clamp * tanh(x / clamp), in place, COUNT elements. */
cudaError_t vae_cuda_tanh_clamp (void *x, VaeCudaDtype dt, size_t count, float clamp,
                                 cudaStream_t stream);

#ifdef __cplusplus
}
#endif
