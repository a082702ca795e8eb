/* Layout kernels: dtype conversion, NCHW float32 <-> NHWC transposes,
 * nearest 2x upsampling and zero padding.  Upsampling and padding only move
 * bytes, so they work on "units" of 16, 8, 4 or 2 bytes, the largest that
 * divides a pixel's bytes and the pointers' alignment. */
#include "kernels-common.cuh"

using namespace vae_cuda;

namespace {

constexpr unsigned kThreads = 256;
constexpr int kTile = 32;   /* transpose tile: 32 pixels x 32 channels */

template <typename T>
__global__ void __launch_bounds__ (kThreads)
f32_to_dtype_kernel (const float *__restrict__ src, T *__restrict__ dst, size_t count)
{
  const size_t stride = (size_t) gridDim.x * blockDim.x;
  for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
    dst[i] = from_f<T> (src[i]);
}

/* NCHW float32 [n, c, hw] -> NHWC [n, hw, c_dst] in T.  Block (x: pixel tile
 * of 32, y: channel tile of 32, z: image).  Reads go along pixels; writes
 * go along the tile's flattened (pixel, channel) output, which is one
 * contiguous run when c_dst <= 32, so they stay coalesced even for 3 or 4
 * channels. */
template <typename T>
__global__ void __launch_bounds__ (kThreads)
nchw_to_nhwc_kernel (const float *__restrict__ src, T *__restrict__ dst, int c, size_t hw,
                     int c_dst)
{
  __shared__ float tile[kTile][kTile + 1];
  const size_t n = blockIdx.z;
  const size_t p0 = (size_t) blockIdx.x * kTile;
  const int c0 = blockIdx.y * kTile;
  const int tid = threadIdx.x;
  const int np = (int) min ((size_t) kTile, hw - p0);
  const int nc = min (kTile, c_dst - c0);

  /* Load: rows are channels (zero past c), columns pixels. */
  for (int e = tid; e < kTile * kTile; e += kThreads) {
    const int ch = e / kTile, p = e % kTile;
    float v = 0.0f;
    if (p < np && c0 + ch < c)
      v = src[(n * c + c0 + ch) * hw + p0 + p];
    tile[ch][p] = v;
  }
  __syncthreads ();
  T *out = dst + (n * hw + p0) * c_dst + c0;
  for (int e = tid; e < np * nc; e += kThreads) {
    const int p = e / nc, ch = e % nc;
    out[(size_t) p * c_dst + ch] = from_f<T> (tile[ch][p]);
  }
}

/* NHWC [n, hw, c_src] in T -> NCHW float32 [n, c, hw], the mirror image. */
template <typename T>
__global__ void __launch_bounds__ (kThreads)
nhwc_to_nchw_kernel (const T *__restrict__ src, float *__restrict__ dst, int c, size_t hw,
                     int c_src)
{
  __shared__ float tile[kTile][kTile + 1];
  const size_t n = blockIdx.z;
  const size_t p0 = (size_t) blockIdx.x * kTile;
  const int c0 = blockIdx.y * kTile;
  const int tid = threadIdx.x;
  const int np = (int) min ((size_t) kTile, hw - p0);
  const int nc = min (kTile, c - c0);

  const T *in = src + (n * hw + p0) * c_src + c0;
  for (int e = tid; e < np * nc; e += kThreads) {
    const int p = e / nc, ch = e % nc;
    tile[ch][p] = to_f (in[(size_t) p * c_src + ch]);
  }
  __syncthreads ();
  for (int e = tid; e < kTile * kTile; e += kThreads) {
    const int ch = e / kTile, p = e % kTile;
    if (p < np && ch < nc)
      dst[(n * c + c0 + ch) * hw + p0 + p] = tile[ch][p];
  }
}

/* One block per input row (n, y) of W pixels of CU units: each output unit
 * (2x + dx) of rows 2y and 2y+1 copies input unit x.  Thread per output
 * unit: stores coalesced, the input row is read twice but from L1/L2. */
template <typename U>
__global__ void __launch_bounds__ (kThreads)
upsample2x_kernel (const U *__restrict__ x, U *__restrict__ y, unsigned w, unsigned cu)
{
  const size_t row = blockIdx.x;              /* n * h + iy */
  const size_t in_units = (size_t) w * cu;
  const size_t out_units = 2 * in_units;
  const U *in = x + row * in_units;
  /* Output rows 2 * row and 2 * row + 1, because (n * h + iy) * 2 = n * 2h + 2 iy. */
  U *out0 = y + 2 * row * out_units;
  U *out1 = out0 + out_units;
  for (unsigned u = threadIdx.x; u < out_units; u += blockDim.x) {
    const unsigned xo = u / cu;
    const unsigned k = u - xo * cu;
    const U v = in[(size_t) (xo >> 1) * cu + k];
    out0[u] = v;
    out1[u] = v;
  }
}

/* One block per output row (n, yo) of WO pixels: rows above/below the
 * input and the left/right borders are zeros, the rest a shifted copy. */
template <typename U>
__global__ void __launch_bounds__ (kThreads)
pad_kernel (const U *__restrict__ x, U *__restrict__ y, int h, int ho, unsigned w, unsigned wo,
            unsigned cu, int top, unsigned left)
{
  const size_t row = blockIdx.x;              /* n * ho + yo */
  const size_t n = row / ho;
  const int yi = (int) (row - n * ho) - top;
  const unsigned out_units = wo * cu;
  const unsigned lo = left * cu, hi = (left + w) * cu;
  U *out = y + row * out_units;
  const U zero{};
  if (yi < 0 || yi >= h) {
    for (unsigned u = threadIdx.x; u < out_units; u += blockDim.x)
      out[u] = zero;
    return;
  }
  const U *in = x + (n * h + yi) * (size_t) w * cu;
  for (unsigned u = threadIdx.x; u < out_units; u += blockDim.x)
    out[u] = (u >= lo && u < hi) ? in[u - lo] : zero;
}

/* The widest unit dividing BYTES and both pointers' alignment. */
static int
copy_unit (size_t bytes, const void *a, const void *b)
{
  for (int s = 16; s > 1; s /= 2)
    if (bytes % s == 0 && vae_cuda_aligned (a, s) && vae_cuda_aligned (b, s))
      return s;
  return 1;
}

struct alignas (16) U16 { uint4 v; };
struct alignas (8) U8 { uint2 v; };

template <typename U>
cudaError_t
launch_upsample (const void *x, void *y, size_t rows, unsigned w, size_t pixel_bytes,
                 cudaStream_t stream)
{
  upsample2x_kernel<U><<<(unsigned) rows, kThreads, 0, stream>>> (
      (const U *) x, (U *) y, w, (unsigned) (pixel_bytes / sizeof (U)));
  return cudaGetLastError ();
}

template <typename U>
cudaError_t
launch_pad (const void *x, void *y, int n, int h, int ho, unsigned w, unsigned wo,
            size_t pixel_bytes, int top, unsigned left, cudaStream_t stream)
{
  pad_kernel<U><<<(unsigned) ((size_t) n * ho), kThreads, 0, stream>>> (
      (const U *) x, (U *) y, h, ho, w, wo, (unsigned) (pixel_bytes / sizeof (U)), top, left);
  return cudaGetLastError ();
}

} // namespace

extern "C" size_t
vae_cuda_dtype_size (VaeCudaDtype dt)
{
  switch (dt) {
  case VAE_CUDA_F32: return 4;
  case VAE_CUDA_F16: return 2;
  case VAE_CUDA_BF16: return 2;
  }
  return 0;
}

extern "C" cudaError_t
vae_cuda_f32_to_dtype (const float *src, void *dst, VaeCudaDtype dt, size_t count,
                       cudaStream_t stream)
{
  if (count == 0)
    return cudaSuccess;
  if (!src || !dst)
    return cudaErrorInvalidValue;
  VAE_CUDA_DISPATCH (dt, T, {
    f32_to_dtype_kernel<T><<<vae_cuda_grid_for (count, kThreads, 8), kThreads, 0, stream>>> (
        src, (T *) dst, count);
    return cudaGetLastError ();
  });
  return cudaSuccess;
}

extern "C" cudaError_t
vae_cuda_nchw_f32_to_nhwc (const float *src, void *dst, VaeCudaDtype dt, int n, int c, int h,
                           int w, int c_dst, cudaStream_t stream)
{
  if (n < 0 || c < 0 || h < 0 || w < 0 || c_dst < c || n > 65535)
    return cudaErrorInvalidValue;
  const size_t hw = (size_t) h * w;
  if (n == 0 || hw == 0 || c_dst == 0)
    return cudaSuccess;
  const dim3 grid ((unsigned) vae_cuda_div_up (hw, kTile), (unsigned) vae_cuda_div_up (c_dst, kTile),
                   (unsigned) n);
  if (grid.y > 65535 || vae_cuda_div_up (hw, kTile) > 0x7fffffffu)
    return cudaErrorInvalidValue;
  VAE_CUDA_DISPATCH (dt, T, {
    nchw_to_nhwc_kernel<T><<<grid, kThreads, 0, stream>>> (src, (T *) dst, c, hw, c_dst);
    return cudaGetLastError ();
  });
  return cudaSuccess;
}

extern "C" cudaError_t
vae_cuda_nhwc_to_nchw_f32 (const void *src, VaeCudaDtype dt, float *dst, int n, int c, int h,
                           int w, int c_src, cudaStream_t stream)
{
  if (n < 0 || c < 0 || h < 0 || w < 0 || c_src < c || n > 65535)
    return cudaErrorInvalidValue;
  const size_t hw = (size_t) h * w;
  if (n == 0 || hw == 0 || c == 0)
    return cudaSuccess;
  const dim3 grid ((unsigned) vae_cuda_div_up (hw, kTile), (unsigned) vae_cuda_div_up (c, kTile),
                   (unsigned) n);
  if (grid.y > 65535 || vae_cuda_div_up (hw, kTile) > 0x7fffffffu)
    return cudaErrorInvalidValue;
  VAE_CUDA_DISPATCH (dt, T, {
    nhwc_to_nchw_kernel<T><<<grid, kThreads, 0, stream>>> ((const T *) src, dst, c, hw, c_src);
    return cudaGetLastError ();
  });
  return cudaSuccess;
}

extern "C" cudaError_t
vae_cuda_upsample2x (const void *x, void *y, VaeCudaDtype dt, int n, int h, int w, int c,
                     cudaStream_t stream)
{
  const size_t es = vae_cuda_dtype_size (dt);
  if (es == 0 || n < 0 || h < 0 || w < 0 || c < 0)
    return cudaErrorInvalidValue;
  const size_t rows = (size_t) n * h;
  if (rows == 0 || w == 0 || c == 0)
    return cudaSuccess;
  const size_t pixel_bytes = (size_t) c * es;
  const int s = copy_unit (pixel_bytes, x, y);
  /* The kernel indexes a row's units with 32-bit integers. */
  if (rows > 0x7fffffffu || 2 * (size_t) w * (pixel_bytes / s) > 0xffffffffu)
    return cudaErrorInvalidValue;
  switch (s) {
  case 16: return launch_upsample<U16> (x, y, rows, (unsigned) w, pixel_bytes, stream);
  case 8: return launch_upsample<U8> (x, y, rows, (unsigned) w, pixel_bytes, stream);
  case 4: return launch_upsample<uint32_t> (x, y, rows, (unsigned) w, pixel_bytes, stream);
  default: return launch_upsample<uint16_t> (x, y, rows, (unsigned) w, pixel_bytes, stream);
  }
}

extern "C" cudaError_t
vae_cuda_pad (const void *x, void *y, VaeCudaDtype dt, int n, int h, int w, int c, int top,
              int left, int bottom, int right, cudaStream_t stream)
{
  const size_t es = vae_cuda_dtype_size (dt);
  if (es == 0 || n < 0 || h < 0 || w < 0 || c < 0 || top < 0 || left < 0 || bottom < 0
      || right < 0)
    return cudaErrorInvalidValue;
  const int ho = h + top + bottom;
  const size_t wo = (size_t) w + left + right;
  const size_t rows = (size_t) n * ho;
  if (rows == 0 || wo == 0 || c == 0)
    return cudaSuccess;
  const size_t pixel_bytes = (size_t) c * es;
  const int s = copy_unit (pixel_bytes, x, y);
  if (rows > 0x7fffffffu || wo * (pixel_bytes / s) > 0xffffffffu)
    return cudaErrorInvalidValue;
  switch (s) {
  case 16: return launch_pad<U16> (x, y, n, h, ho, w, (unsigned) wo, pixel_bytes, top, left, stream);
  case 8: return launch_pad<U8> (x, y, n, h, ho, w, (unsigned) wo, pixel_bytes, top, left, stream);
  case 4: return launch_pad<uint32_t> (x, y, n, h, ho, w, (unsigned) wo, pixel_bytes, top, left,
                                       stream);
  default: return launch_pad<uint16_t> (x, y, n, h, ho, w, (unsigned) wo, pixel_bytes, top, left,
                                        stream);
  }
}
