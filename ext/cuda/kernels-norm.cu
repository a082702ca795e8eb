/* GroupNorm (stats + fused apply) and row softmax. */
#include "kernels-common.cuh"

#include <math.h>

using namespace vae_cuda;

namespace {

/* ---- GroupNorm ----
 * Both passes give each thread one fixed column j of 16-byte vectors (or
 * single elements) of a pixel's C channels and a stride of RPS rows:
 * a block of RPS * COLS threads covers RPS whole pixels per step, so loads
 * are contiguous, and a thread's channels never change (the stats pass keeps
 * per-channel sums in registers, the apply pass per-channel scale/shift).
 * Blocks split hw into chunks (grid.x) per image (grid.y), so that even
 * n = 1 fills the GPU. */

constexpr unsigned kNormMaxThreads = 512;
constexpr int kNormMaxC = 2048;
/* Rows a thread sums in float in the stats pass. */
constexpr int kMaxRowsPerThread = 64;

struct NormShape {
  unsigned threads;   /* rps * cols */
  unsigned cols;      /* vectors per pixel */
  unsigned rps;       /* pixels per block step */
};

static NormShape
norm_shape (unsigned cols)
{
  NormShape s;
  s.cols = cols;
  unsigned target = cols <= 256 ? 256 : kNormMaxThreads;
  s.rps = target / cols;
  s.threads = s.rps * cols;
  return s;
}

template <typename T, int V>
__global__ void __launch_bounds__ (kNormMaxThreads)
gn_stats_kernel (const T *__restrict__ x, const float *__restrict__ in_bias,
                 double *__restrict__ stats, size_t hw, int c, int groups, unsigned cols,
                 unsigned rps, size_t rows_per_block)
{
  __shared__ double red_s[kNormMaxThreads], red_q[kNormMaxThreads];
  __shared__ double ch_s[kNormMaxC], ch_q[kNormMaxC];

  const size_t n = blockIdx.y;
  const size_t r0 = (size_t) blockIdx.x * rows_per_block;
  const size_t r1 = min (hw, r0 + rows_per_block);
  const unsigned t = threadIdx.x;
  const unsigned j = t % cols;
  const unsigned rr = t / cols;

  /* Float sums over at most kMaxRowsPerThread rows (the launch sizes the
   * chunks for that), so rounding stays ~sqrt(64) ulp of a partial sum;
   * everything after is double. */
  float fs[V], fq[V];
#pragma unroll
  for (int k = 0; k < V; k++)
    fs[k] = fq[k] = 0.0f;

  const T *base = x + n * hw * (size_t) c + (size_t) j * V;
  size_t r = r0 + rr;
  /* Four rows at a time keeps four loads in flight per thread. */
  for (; r + 3 * (size_t) rps < r1; r += 4 * (size_t) rps) {
    float v[4][V];
#pragma unroll
    for (int u = 0; u < 4; u++)
      load_vec<T, V> (base + (r + u * (size_t) rps) * c, v[u]);
#pragma unroll
    for (int u = 0; u < 4; u++)
#pragma unroll
      for (int k = 0; k < V; k++) {
        fs[k] += v[u][k];
        fq[k] = fmaf (v[u][k], v[u][k], fq[k]);
      }
  }
  for (; r < r1; r += rps) {
    float v[V];
    load_vec<T, V> (base + r * c, v);
#pragma unroll
    for (int k = 0; k < V; k++) {
      fs[k] += v[k];
      fq[k] = fmaf (v[k], v[k], fq[k]);
    }
  }

  /* Per channel over the block's RPS row slots, then per group. */
#pragma unroll
  for (int k = 0; k < V; k++) {
    red_s[t] = fs[k];
    red_q[t] = fq[k];
    __syncthreads ();
    if (t < cols) {
      double a = 0.0, b = 0.0;
      for (unsigned q = 0; q < rps; q++) {
        a += red_s[t + q * cols];
        b += red_q[t + q * cols];
      }
      if (in_bias) {
        /* Sums of x + bias from those of x, in double: the producing
         * convolution then needs no separate bias pass. */
        const double bb = in_bias[t * V + k], cnt = (double) (r1 > r0 ? r1 - r0 : 0);
        b += 2.0 * bb * a + cnt * bb * bb;
        a += cnt * bb;
      }
      ch_s[t * V + k] = a;
      ch_q[t * V + k] = b;
    }
    __syncthreads ();
  }
  const int cpg = c / groups;
  for (int g = t; g < groups; g += blockDim.x) {
    double a = 0.0, b = 0.0;
    for (int i = 0; i < cpg; i++) {
      a += ch_s[g * cpg + i];
      b += ch_q[g * cpg + i];
    }
    double *st = stats + 2 * (n * groups + g);
    atomicAdd (st, a);
    atomicAdd (st + 1, b);
  }
}

/* X and Y may alias (in place): each element is read and then written by
 * the same thread, so no __restrict__ on them. */
template <typename T, int V, int ACT>
__global__ void __launch_bounds__ (kNormMaxThreads)
gn_apply_kernel (const T *x, T *y, const float *__restrict__ in_bias,
                 const double *__restrict__ stats,
                 const float *__restrict__ gamma, const float *__restrict__ beta, size_t hw,
                 int c, int groups, unsigned cols, unsigned rps, size_t rows_per_block,
                 float eps, double inv_count)
{
  const size_t n = blockIdx.y;
  const size_t r0 = (size_t) blockIdx.x * rows_per_block;
  const size_t r1 = min (hw, r0 + rows_per_block);
  const unsigned t = threadIdx.x;
  const unsigned j = t % cols;
  const unsigned rr = t / cols;
  const int cpg = c / groups;

  /* y = (x - mean) * (rstd * gamma) + beta per channel. */
  float mean[V], scale[V], shift[V];
#pragma unroll
  for (int k = 0; k < V; k++) {
    const int ch = j * V + k;
    const double *st = stats + 2 * (n * groups + ch / cpg);
    const double m = st[0] * inv_count;
    const double var = fmax (st[1] * inv_count - m * m, 0.0);
    /* (x + bias - m) = (x - (m - bias)): the bias costs nothing here. */
    mean[k] = (float) (in_bias ? m - (double) in_bias[ch] : m);
    scale[k] = (float) (gamma[ch] / sqrt (var + (double) eps));
    shift[k] = beta[ch];
  }

  const size_t off = n * hw * (size_t) c + (size_t) j * V;
  const T *xb = x + off;
  T *yb = y + off;
  size_t r = r0 + rr;
  for (; r + 3 * (size_t) rps < r1; r += 4 * (size_t) rps) {
    float v[4][V];
#pragma unroll
    for (int u = 0; u < 4; u++)
      load_vec<T, V> (xb + (r + u * (size_t) rps) * c, v[u]);
#pragma unroll
    for (int u = 0; u < 4; u++) {
#pragma unroll
      for (int k = 0; k < V; k++)
        v[u][k] = apply_act<ACT, T> (fmaf (v[u][k] - mean[k], scale[k], shift[k]));
      store_vec<T, V> (yb + (r + u * (size_t) rps) * c, v[u]);
    }
  }
  for (; r < r1; r += rps) {
    float v[V];
    load_vec<T, V> (xb + r * c, v);
#pragma unroll
    for (int k = 0; k < V; k++)
      v[k] = apply_act<ACT, T> (fmaf (v[k] - mean[k], scale[k], shift[k]));
    store_vec<T, V> (yb + r * c, v);
  }
}

template <typename T, int V>
cudaError_t
launch_group_norm (const T *x, const float *in_bias, T *y, int n, size_t hw, int c,
                   int groups, float eps, const float *gamma, const float *beta,
                   VaeCudaAct act, double *stats, cudaStream_t stream)
{
  const NormShape s = norm_shape ((unsigned) (c / V));
  const size_t sms = (size_t) vae_cuda_sm_count ();

  /* Stats: at least 4 blocks per SM in all, at most kMaxRowsPerThread rows
   * per thread. */
  size_t chunks = vae_cuda_div_up (sms * 4, (size_t) n);
  const size_t min_chunks = vae_cuda_div_up (hw, (size_t) s.rps * kMaxRowsPerThread);
  const size_t max_chunks = vae_cuda_div_up (hw, (size_t) s.rps * 4);
  if (chunks > max_chunks)
    chunks = max_chunks;
  if (chunks < min_chunks)
    chunks = min_chunks;
  size_t rpb = vae_cuda_div_up (vae_cuda_div_up (hw, chunks), s.rps) * s.rps;
  dim3 grid ((unsigned) vae_cuda_div_up (hw, rpb), (unsigned) n);
  gn_stats_kernel<T, V><<<grid, s.threads, 0, stream>>> (x, in_bias, stats, hw, c, groups,
                                                         s.cols, s.rps, rpb);
  cudaError_t err = cudaGetLastError ();
  if (err != cudaSuccess)
    return err;

  /* Apply: 16 steps per thread, many blocks. */
  rpb = (size_t) s.rps * 16;
  grid = dim3 ((unsigned) vae_cuda_div_up (hw, rpb), (unsigned) n);
  const double inv_count = 1.0 / ((double) hw * (double) (c / groups));
  VAE_CUDA_DISPATCH_ACT (act, A, {
    gn_apply_kernel<T, V, A><<<grid, s.threads, 0, stream>>> (
        x, y, in_bias, stats, gamma, beta, hw, c, groups, s.cols, s.rps, rpb, eps, inv_count);
  });
  return cudaGetLastError ();
}

/* ---- Softmax ---- */

__device__ __forceinline__ float
warp_max (float v)
{
#pragma unroll
  for (int o = 16; o > 0; o /= 2)
    v = fmaxf (v, __shfl_xor_sync (0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float
warp_sum (float v)
{
#pragma unroll
  for (int o = 16; o > 0; o /= 2)
    v += __shfl_xor_sync (0xffffffffu, v, o);
  return v;
}

/* Short rows (cols <= 32 * ITEMS): one warp per row, the row held in
 * registers (element lane + 32 i), so it is read once and written once. */
template <typename T, int ITEMS>
__global__ void __launch_bounds__ (256)
softmax_warp_kernel (T *s, size_t rows, int cols)
{
  const size_t row = ((size_t) blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows)
    return;
  T *p = s + row * (size_t) cols;
  float v[ITEMS];
  float m = -INFINITY;
#pragma unroll
  for (int i = 0; i < ITEMS; i++) {
    const int idx = lane + 32 * i;
    v[i] = idx < cols ? to_f (p[idx]) : -INFINITY;
    m = fmaxf (m, v[i]);
  }
  m = warp_max (m);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < ITEMS; i++) {
    const int idx = lane + 32 * i;
    v[i] = idx < cols ? expf (v[i] - m) : 0.0f;
    sum += v[i];
  }
  sum = warp_sum (sum);
  const float inv = 1.0f / sum;
#pragma unroll
  for (int i = 0; i < ITEMS; i++) {
    const int idx = lane + 32 * i;
    if (idx < cols)
      p[idx] = from_f<T> (v[i] * inv);
  }
}

/* Running (max, sum of exp(x - max)) pairs. */
__device__ __forceinline__ void
ms_combine (float &m, float &s, float m2, float s2)
{
  const float mm = fmaxf (m, m2);
  if (mm == -INFINITY)
    return;   /* both empty */
  s = s * expf (m - mm) + s2 * expf (m2 - mm);
  m = mm;
}

/* Long rows: one block per row.  Pass 1 reads the row once for the max and
 * the sum together (online rescaling, once per vector); pass 2 reads it
 * again (mostly from L2) and writes the result in place. */
template <typename T, int V>
__global__ void __launch_bounds__ (1024)
softmax_block_kernel (T *s, int cols)
{
  __shared__ float sh_m[32], sh_s[32];
  __shared__ float fin_m, fin_inv;
  T *p = s + (size_t) blockIdx.x * cols;
  const int nvec = cols / V;
  float m = -INFINITY, sum = 0.0f;
  for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
    float v[V];
    load_vec<T, V> (p + (size_t) i * V, v);
    float lm = v[0];
#pragma unroll
    for (int k = 1; k < V; k++)
      lm = fmaxf (lm, v[k]);
    const float nm = fmaxf (m, lm);
    float ls = 0.0f;
#pragma unroll
    for (int k = 0; k < V; k++)
      ls += expf (v[k] - nm);
    sum = (m == -INFINITY ? 0.0f : sum * expf (m - nm)) + ls;
    m = nm;
  }
#pragma unroll
  for (int o = 16; o > 0; o /= 2) {
    const float m2 = __shfl_xor_sync (0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync (0xffffffffu, sum, o);
    ms_combine (m, sum, m2, s2);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int nwarps = blockDim.x / 32;
  if (lane == 0) {
    sh_m[warp] = m;
    sh_s[warp] = sum;
  }
  __syncthreads ();
  if (warp == 0) {
    m = lane < nwarps ? sh_m[lane] : -INFINITY;
    sum = lane < nwarps ? sh_s[lane] : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o /= 2) {
      const float m2 = __shfl_xor_sync (0xffffffffu, m, o);
      const float s2 = __shfl_xor_sync (0xffffffffu, sum, o);
      ms_combine (m, sum, m2, s2);
    }
    if (lane == 0) {
      fin_m = m;
      fin_inv = 1.0f / sum;
    }
  }
  __syncthreads ();
  const float fm = fin_m, inv = fin_inv;
  for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
    float v[V];
    load_vec<T, V> (p + (size_t) i * V, v);
#pragma unroll
    for (int k = 0; k < V; k++)
      v[k] = expf (v[k] - fm) * inv;
    store_vec<T, V> (p + (size_t) i * V, v);
  }
}

/* Block-wide max (MAX) or sum of V; SH holds 33 floats.  Safe to call
 * back to back: slot 32 is only rewritten after the barrier that follows
 * every read of slots 0..31. */
template <bool MAX>
__device__ __forceinline__ float
block_reduce (float v, float *sh)
{
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int nwarps = (blockDim.x + 31) / 32;
  v = MAX ? warp_max (v) : warp_sum (v);
  if (lane == 0)
    sh[warp] = v;
  __syncthreads ();
  if (warp == 0) {
    v = lane < nwarps ? sh[lane] : (MAX ? -INFINITY : 0.0f);
    v = MAX ? warp_max (v) : warp_sum (v);
    if (lane == 0)
      sh[32] = v;
  }
  __syncthreads ();
  return sh[32];
}

/* Medium rows (nvec <= VPT * blockDim): one block per row, each thread's
 * VPT vectors held in registers: one read, one write, exact max first. */
template <typename T, int V, int VPT>
__global__ void __launch_bounds__ (256)
softmax_cached_kernel (T *s, int cols)
{
  __shared__ float sh[33];
  T *p = s + (size_t) blockIdx.x * cols;
  const int nvec = cols / V;
  float v[VPT][V];
  float m = -INFINITY;
#pragma unroll
  for (int u = 0; u < VPT; u++) {
    const int i = threadIdx.x + u * blockDim.x;
    if (i < nvec) {
      load_vec<T, V> (p + (size_t) i * V, v[u]);
#pragma unroll
      for (int k = 0; k < V; k++)
        m = fmaxf (m, v[u][k]);
    }
  }
  m = block_reduce<true> (m, sh);
  float sum = 0.0f;
#pragma unroll
  for (int u = 0; u < VPT; u++) {
    const int i = threadIdx.x + u * blockDim.x;
    if (i < nvec) {
#pragma unroll
      for (int k = 0; k < V; k++) {
        v[u][k] = expf (v[u][k] - m);
        sum += v[u][k];
      }
    }
  }
  const float inv = 1.0f / block_reduce<false> (sum, sh);
#pragma unroll
  for (int u = 0; u < VPT; u++) {
    const int i = threadIdx.x + u * blockDim.x;
    if (i < nvec) {
#pragma unroll
      for (int k = 0; k < V; k++)
        v[u][k] *= inv;
      store_vec<T, V> (p + (size_t) i * V, v[u]);
    }
  }
}

/* Rows of NVEC vectors: the register-cached kernel with the fewest vectors
 * per thread that covers a row with 256 threads, else the two-pass kernel
 * (a 512-thread cached block, one per SM at this register count, measured
 * slower than two passes through L2). */
template <typename T, int V, int VPT>
cudaError_t
launch_softmax_long (T *s, size_t rows, int cols, cudaStream_t stream)
{
  const unsigned nvec = (unsigned) (cols / V);
  /* Register budget: 32 floats (16 for single elements, whose per-element
   * addressing costs more registers). */
  constexpr int kMaxFloats = V == 1 ? 16 : 32;
  if constexpr (VPT * V <= kMaxFloats) {
    if (nvec <= VPT * 256u) {
      const unsigned threads = (unsigned) vae_cuda_div_up (vae_cuda_div_up (nvec, VPT), 32) * 32;
      softmax_cached_kernel<T, V, VPT><<<(unsigned) rows, threads, 0, stream>>> (s, cols);
      return cudaGetLastError ();
    }
    if constexpr (VPT * V * 2 <= kMaxFloats)
      return launch_softmax_long<T, V, VPT * 2> (s, rows, cols, stream);
  }
  const unsigned threads = cols > 8192 ? 1024 : 512;
  softmax_block_kernel<T, V><<<(unsigned) rows, threads, 0, stream>>> (s, cols);
  return cudaGetLastError ();
}

template <typename T, int ITEMS>
cudaError_t
launch_softmax_warp (T *s, size_t rows, int cols, cudaStream_t stream)
{
  const size_t blocks = vae_cuda_div_up (rows, 8);
  softmax_warp_kernel<T, ITEMS><<<(unsigned) blocks, 256, 0, stream>>> (s, rows, cols);
  return cudaGetLastError ();
}

} // namespace

extern "C" size_t
vae_cuda_group_norm_stats_size (int n, int groups)
{
  if (n <= 0 || groups <= 0)
    return 0;
  return (size_t) n * groups * 2 * sizeof (double);
}

extern "C" cudaError_t
vae_cuda_bias_group_norm (const void *x, const float *in_bias, void *y, VaeCudaDtype dt,
                          int n, int hw, int c, int groups, float eps, const float *gamma,
                          const float *beta, VaeCudaAct act, void *stats,
                          cudaStream_t stream)
{
  if (n < 0 || hw < 0 || c <= 0 || groups <= 0 || c % groups != 0 || c > kNormMaxC
      || n > 65535 || !gamma || !beta || !stats)
    return cudaErrorInvalidValue;
  if (n == 0 || hw == 0)
    return cudaSuccess;
  cudaError_t err = cudaMemsetAsync (stats, 0, vae_cuda_group_norm_stats_size (n, groups), stream);
  if (err != cudaSuccess)
    return err;
  VAE_CUDA_DISPATCH (dt, T, {
    constexpr int V = VecWidth<T>::value;
    if (c % V == 0 && (unsigned) (c / V) <= kNormMaxThreads && vae_cuda_aligned (x, 16)
        && vae_cuda_aligned (y, 16))
      return launch_group_norm<T, V> ((const T *) x, in_bias, (T *) y, n, (size_t) hw, c, groups, eps,
                                      gamma, beta, act, (double *) stats, stream);
    if ((unsigned) c > kNormMaxThreads)
      return cudaErrorInvalidValue;
    return launch_group_norm<T, 1> ((const T *) x, in_bias, (T *) y, n, (size_t) hw, c, groups, eps,
                                    gamma, beta, act, (double *) stats, stream);
  });
  return cudaSuccess;
}

extern "C" cudaError_t
vae_cuda_group_norm (const void *x, void *y, VaeCudaDtype dt, int n, int hw, int c, int groups,
                     float eps, const float *gamma, const float *beta, VaeCudaAct act,
                     void *stats, cudaStream_t stream)
{
  return vae_cuda_bias_group_norm (x, NULL, y, dt, n, hw, c, groups, eps, gamma, beta, act,
                                   stats, stream);
}

extern "C" cudaError_t
vae_cuda_softmax_rows (void *s, VaeCudaDtype dt, size_t rows, int cols, cudaStream_t stream)
{
  if (!s || cols <= 0)
    return cudaErrorInvalidValue;
  if (rows == 0)
    return cudaSuccess;
  VAE_CUDA_DISPATCH (dt, T, {
    if (cols <= 1024) {
      if (vae_cuda_div_up (rows, 8) > 0x7fffffffu)
        return cudaErrorInvalidValue;
      if (cols <= 32) return launch_softmax_warp<T, 1> ((T *) s, rows, cols, stream);
      if (cols <= 64) return launch_softmax_warp<T, 2> ((T *) s, rows, cols, stream);
      if (cols <= 128) return launch_softmax_warp<T, 4> ((T *) s, rows, cols, stream);
      if (cols <= 256) return launch_softmax_warp<T, 8> ((T *) s, rows, cols, stream);
      if (cols <= 512) return launch_softmax_warp<T, 16> ((T *) s, rows, cols, stream);
      return launch_softmax_warp<T, 32> ((T *) s, rows, cols, stream);
    }
    if (rows > 0x7fffffffu)
      return cudaErrorInvalidValue;
    constexpr int V = VecWidth<T>::value;
    if (cols % V == 0 && vae_cuda_aligned (s, 16))
      return launch_softmax_long<T, V, 1> ((T *) s, rows, cols, stream);
    return launch_softmax_long<T, 1, 1> ((T *) s, rows, cols, stream);
  });
  return cudaSuccess;
}
