/* gst-vae CUDA engine: the VAE mid-block's single-head attention (head
 * dimension = channels, 512 for SD-size models) over all positions.
 *
 * The full score matrix of a 2048x2048 frame's mid block (256x256 = 65536
 * positions) would be 8 GiB in fp16, so queries go in chunks: for each chunk
 * S = Q_chunk K^T / sqrt(c) (cuBLAS, float32 accumulation), a row softmax in
 * place (float32 max and sum), O_chunk = P V (cuBLAS).  Chunks are as tall as
 * CUDA_ATTENTION_SCORE_BYTES allows, so small frames run in one chunk.
 *
 * cuBLAS is column-major: a row-major [rows, ld] activation is a column-major
 * ld x rows matrix, which is what the transposes below follow from. */
#include <math.h>

#include "cuda-private.h"

static cudaDataType_t
blas_type (VaeCudaDtype dt)
{
  switch (dt) {
  case VAE_CUDA_F16:
    return CUDA_R_16F;
  case VAE_CUDA_BF16:
    return CUDA_R_16BF;
  default:
    return CUDA_R_32F;
  }
}

static int
chunk_rows (const CudaCtx *ctx, int len)
{
  size_t row = (size_t) len * vae_cuda_dtype_size (ctx->dt);
  size_t rows = CUDA_ATTENTION_SCORE_BYTES / row;
  if (rows < 1)
    rows = 1;
  return rows > (size_t) len ? len : (int) rows;
}

size_t
cuda_attention_scratch_size (const CudaCtx *ctx, int n, int len)
{
  return (size_t) chunk_rows (ctx, len) * len * vae_cuda_dtype_size (ctx->dt);
}

gboolean
cuda_attention_run (CudaCtx *ctx, const void *q, const void *k, const void *v, void *o,
                    int n, int len, int c, void *scratch, GError **error)
{
  const size_t ds = vae_cuda_dtype_size (ctx->dt);
  const int ld = cuda_stored_channels (c);
  const int rows = chunk_rows (ctx, len);
  const cudaDataType_t t = blas_type (ctx->dt);
  const float scale = 1.0f / sqrtf ((float) c), one = 1.0f, zero = 0.0f;

  for (int b = 0; b < n; b++) {
    const char *qb = (const char *) q + (size_t) b * len * ld * ds;
    const char *kb = (const char *) k + (size_t) b * len * ld * ds;
    const char *vb = (const char *) v + (size_t) b * len * ld * ds;
    char *ob = (char *) o + (size_t) b * len * ld * ds;
    for (int r0 = 0; r0 < len; r0 += rows) {
      const int m = MIN (rows, len - r0);
      /* S^T (len x m, column-major) = K^T Q_chunk: row-major S [m, len]. */
      if (!cublas_check (cublasGemmEx (ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, len, m, ld,
                                       &scale, kb, t, ld, qb + (size_t) r0 * ld * ds, t,
                                       ld, &zero, scratch, t, len, CUBLAS_COMPUTE_32F,
                                       CUBLAS_GEMM_DEFAULT), "attention scores", error))
        return FALSE;
      if (!cuda_check (vae_cuda_softmax_rows (scratch, ctx->dt, m, len, ctx->stream),
                       "attention softmax", error))
        return FALSE;
      /* O_chunk (ld x m, column-major) = V P^T. */
      if (!cublas_check (cublasGemmEx (ctx->cublas, CUBLAS_OP_N, CUBLAS_OP_N, ld, m, len,
                                       &one, vb, t, ld, scratch, t, len, &zero,
                                       ob + (size_t) r0 * ld * ds, t, ld,
                                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                         "attention output", error))
        return FALSE;
    }
  }
  return TRUE;
}
