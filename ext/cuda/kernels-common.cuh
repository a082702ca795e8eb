/* Device helpers shared by the kernels-*.cu files (internal to ext/cuda):
 * dtype load/store through float, 16-byte vectors, activations, launch
 * helpers.  Everything is header-only (templates and static inline). */
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stddef.h>
#include <stdint.h>
#include "cuda-kernels.h"

namespace vae_cuda {

/* Element <-> float. */
__device__ __forceinline__ float to_f (float v) { return v; }
__device__ __forceinline__ float to_f (__half v) { return __half2float (v); }
__device__ __forceinline__ float to_f (__nv_bfloat16 v) { return __bfloat162float (v); }

template <typename T> __device__ __forceinline__ T from_f (float v);
template <> __device__ __forceinline__ float from_f<float> (float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half> (float v) { return __float2half_rn (v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16> (float v)
{
  return __float2bfloat16_rn (v);
}

/* Elements per 16-byte vector: 4 for float, 8 for the 16-bit types. */
template <typename T> struct VecWidth { static constexpr int value = 16 / (int) sizeof (T); };

/* V elements of T moved as one 16-byte load/store (V = VecWidth<T>) or, with
 * V = 1, as one scalar. */
template <typename T, int V> struct alignas (sizeof (T) * V) Vec {
  T v[V];
};

template <typename T, int V>
__device__ __forceinline__ void load_vec (const T *p, float (&out)[V])
{
  Vec<T, V> r = *reinterpret_cast<const Vec<T, V> *> (p);
#pragma unroll
  for (int k = 0; k < V; k++)
    out[k] = to_f (r.v[k]);
}

template <typename T, int V>
__device__ __forceinline__ void store_vec (T *p, const float (&in)[V])
{
  Vec<T, V> r;
#pragma unroll
  for (int k = 0; k < V; k++)
    r.v[k] = from_f<T> (in[k]);
  *reinterpret_cast<Vec<T, V> *> (p) = r;
}

/* Activations (VaeCudaAct values).  SiLU = x * sigmoid(x): for float32
 * output expf and an IEEE division (a few ulp); for 16-bit outputs, whose
 * rounding (2^-11 or 2^-8) dwarfs their error, the fast intrinsics, since
 * the precise ones make the epilogues compute-bound. */
__device__ __forceinline__ float act_relu (float x) { return fmaxf (x, 0.0f); }

template <typename T> __device__ __forceinline__ float act_silu (float x)
{
  return __fdividef (x, 1.0f + __expf (-x));   /* x << 0: divisor > 2^126 gives 0 */
}
template <> __device__ __forceinline__ float act_silu<float> (float x)
{
  return x / (1.0f + expf (-x));
}

/* T: the dtype the result is stored in. */
template <int ACT, typename T> __device__ __forceinline__ float apply_act (float x)
{
  if (ACT == VAE_CUDA_ACT_RELU)
    return act_relu (x);
  if (ACT == VAE_CUDA_ACT_SILU)
    return act_silu<T> (x);
  return x;
}

} // namespace vae_cuda

/* Host side. */

static inline bool
vae_cuda_aligned (const void *p, size_t a)
{
  return ((uintptr_t) p % a) == 0;
}

static inline size_t
vae_cuda_div_up (size_t a, size_t b)
{
  return (a + b - 1) / b;
}

/* Multiprocessors of the current device (the launch sizes of the
 * grid-stride kernels; a host query, so graph capture is unaffected). */
static inline int
vae_cuda_sm_count (void)
{
  int dev = 0, sms = 0;
  if (cudaGetDevice (&dev) != cudaSuccess
      || cudaDeviceGetAttribute (&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess
      || sms <= 0)
    sms = 132;
  return sms;
}

/* Grid-stride launches: enough blocks of THREADS for BLOCKS_PER_SM per SM,
 * never more than there is work for. */
static inline unsigned
vae_cuda_grid_for (size_t work_items, unsigned threads, unsigned blocks_per_sm)
{
  size_t need = vae_cuda_div_up (work_items, threads);
  size_t cap = (size_t) vae_cuda_sm_count () * blocks_per_sm;
  size_t g = need < cap ? need : cap;
  return (unsigned) (g > 0 ? g : 1);
}

/* Calls F.template operator()<T>() with T the element type of DT; returns
 * cudaErrorInvalidValue for an unknown dtype. */
#define VAE_CUDA_DISPATCH(DT, T, ...)                                        \
  do {                                                                      \
    switch (DT) {                                                           \
    case VAE_CUDA_F32: { typedef float T; __VA_ARGS__; } break;             \
    case VAE_CUDA_F16: { typedef __half T; __VA_ARGS__; } break;            \
    case VAE_CUDA_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; } break;    \
    default: return cudaErrorInvalidValue;                                  \
    }                                                                       \
  } while (0)

#define VAE_CUDA_DISPATCH_ACT(ACT, A, ...)                                   \
  do {                                                                      \
    switch (ACT) {                                                          \
    case VAE_CUDA_ACT_NONE: { constexpr int A = VAE_CUDA_ACT_NONE; __VA_ARGS__; } break; \
    case VAE_CUDA_ACT_RELU: { constexpr int A = VAE_CUDA_ACT_RELU; __VA_ARGS__; } break; \
    case VAE_CUDA_ACT_SILU: { constexpr int A = VAE_CUDA_ACT_SILU; __VA_ARGS__; } break; \
    default: return cudaErrorInvalidValue;                                  \
    }                                                                       \
  } while (0)
