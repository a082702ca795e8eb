/* Pointwise kernels: convolution epilogue (bias + residual + activation)
 * and the tanh clamp.  Grid-stride loops over 16-byte vectors where the
 * channel count and pointers allow, single elements otherwise. */
#include "kernels-common.cuh"

using namespace vae_cuda;

namespace {

constexpr unsigned kThreads = 256;

/* Y viewed as NVEC vectors of V elements, CV vectors per row of C = CV * V
 * channels.  Each block takes kUnroll * kThreads consecutive vectors, each
 * thread kUnroll of them kThreads apart, all loads in flight at once.  The
 * channel (vector) index needs one 64-bit division per thread; after that
 * it advances by a constant step. */
constexpr int kUnroll = 4;

template <typename T, int V, int ACT>
__global__ void __launch_bounds__ (kThreads)
bias_act_kernel (T *__restrict__ y, const T *__restrict__ res, const float *__restrict__ bias,
                 size_t nvec, unsigned cv)
{
  const size_t i0 = (size_t) blockIdx.x * (kUnroll * kThreads) + threadIdx.x;
  const unsigned jstep = kThreads % cv;
  unsigned j = (unsigned) (i0 % cv);
  float v[kUnroll][V];
  unsigned ju[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; u++) {
    ju[u] = j;
    j += jstep;
    if (j >= cv)
      j -= cv;
    const size_t i = i0 + u * kThreads;
    if (i < nvec)
      load_vec<T, V> (y + i * V, v[u]);
  }
  if (res) {
#pragma unroll
    for (int u = 0; u < kUnroll; u++) {
      const size_t i = i0 + u * kThreads;
      if (i < nvec) {
        float r[V];
        load_vec<T, V> (res + i * V, r);
#pragma unroll
        for (int k = 0; k < V; k++)
          v[u][k] += r[k];
      }
    }
  }
#pragma unroll
  for (int u = 0; u < kUnroll; u++) {
    const size_t i = i0 + u * kThreads;
    if (i < nvec) {
      if (bias) {
        if constexpr (V % 4 == 0) {
          /* float4: scalar loads of 8 floats 32 bytes apart per lane cost
           * several L1 wavefronts each (measured ~15% at c = 512). */
          const float4 *b4 = reinterpret_cast<const float4 *> (bias + (size_t) ju[u] * V);
#pragma unroll
          for (int q = 0; q < V / 4; q++) {
            const float4 b = __ldg (b4 + q);
            v[u][4 * q] += b.x;
            v[u][4 * q + 1] += b.y;
            v[u][4 * q + 2] += b.z;
            v[u][4 * q + 3] += b.w;
          }
        } else {
#pragma unroll
          for (int k = 0; k < V; k++)
            v[u][k] += __ldg (bias + (size_t) ju[u] * V + k);
        }
      }
#pragma unroll
      for (int k = 0; k < V; k++)
        v[u][k] = apply_act<ACT, T> (v[u][k]);
      store_vec<T, V> (y + i * V, v[u]);
    }
  }
}

/* COUNT elements: NVEC = COUNT / V vectors in the grid-stride loop, then
 * the COUNT % V last ones one per thread. */
template <typename T, int V>
__global__ void __launch_bounds__ (kThreads)
tanh_clamp_kernel (T *__restrict__ x, size_t count, float clamp, float inv_clamp)
{
  const size_t nvec = count / V;
  const size_t first = (size_t) blockIdx.x * blockDim.x + threadIdx.x;
  const size_t stride = (size_t) gridDim.x * blockDim.x;
  for (size_t i = first; i < nvec; i += stride) {
    float v[V];
    load_vec<T, V> (x + i * V, v);
#pragma unroll
    for (int k = 0; k < V; k++)
      v[k] = clamp * tanhf (v[k] * inv_clamp);
    store_vec<T, V> (x + i * V, v);
  }
  const size_t tail = nvec * V + first;
  if (tail < count)
    x[tail] = from_f<T> (clamp * tanhf (to_f (x[tail]) * inv_clamp));
}

template <typename T, int ACT>
cudaError_t
launch_bias_act (T *y, const T *res, const float *bias, size_t rows, int c, cudaStream_t stream)
{
  constexpr int V = VecWidth<T>::value;
  const size_t count = rows * (size_t) c;
  if (c % V == 0 && vae_cuda_aligned (y, 16) && (!res || vae_cuda_aligned (res, 16))
      && (!bias || vae_cuda_aligned (bias, 16))) {
    const size_t nvec = count / V;
    bias_act_kernel<T, V, ACT><<<(unsigned) vae_cuda_div_up (nvec, kUnroll * kThreads), kThreads,
                                 0, stream>>> (y, res, bias, nvec, (unsigned) (c / V));
  } else {
    bias_act_kernel<T, 1, ACT><<<(unsigned) vae_cuda_div_up (count, kUnroll * kThreads), kThreads,
                                 0, stream>>> (y, res, bias, count, (unsigned) c);
  }
  return cudaGetLastError ();
}

} // namespace

extern "C" cudaError_t
vae_cuda_bias_act (void *y, const void *residual, const float *bias, VaeCudaDtype dt,
                   size_t rows, int c, VaeCudaAct act, cudaStream_t stream)
{
  if (c <= 0 || !y)
    return cudaErrorInvalidValue;
  if (rows == 0)
    return cudaSuccess;
  if (vae_cuda_div_up (rows * (size_t) c, kUnroll * kThreads) > 0x7fffffffu)
    return cudaErrorInvalidValue;
  if (!residual && !bias && act == VAE_CUDA_ACT_NONE)
    return cudaSuccess;
  VAE_CUDA_DISPATCH (dt, T,
    VAE_CUDA_DISPATCH_ACT (act, A,
      return launch_bias_act<T, A> ((T *) y, (const T *) residual, bias, rows, c, stream)));
  return cudaSuccess;
}

extern "C" cudaError_t
vae_cuda_tanh_clamp (void *x, VaeCudaDtype dt, size_t count, float clamp, cudaStream_t stream)
{
  if (!x || !(clamp > 0.0f))
    return cudaErrorInvalidValue;
  if (count == 0)
    return cudaSuccess;
  VAE_CUDA_DISPATCH (dt, T, {
    constexpr int V = VecWidth<T>::value;
    if (vae_cuda_aligned (x, 16))
      tanh_clamp_kernel<T, V><<<vae_cuda_grid_for (count / V + 1, kThreads, 8), kThreads, 0,
                                stream>>> ((T *) x, count, clamp, 1.0f / clamp);
    else
      tanh_clamp_kernel<T, 1><<<vae_cuda_grid_for (count, kThreads, 8), kThreads, 0, stream>>> (
          (T *) x, count, clamp, 1.0f / clamp);
    return cudaGetLastError ();
  });
  return cudaSuccess;
}
