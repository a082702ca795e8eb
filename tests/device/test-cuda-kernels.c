/* Checks of the CUDA engine's own kernels (ext/cuda/cuda-kernels.h) against
 * CPU references in double precision, in every dtype, on random data with
 * awkward sizes; exits 77 (skip) without a CUDA device.
 *
 *   test-cuda-kernels          run the checks, one line per check
 *   test-cuda-kernels --bench  time group_norm, bias_act, upsample2x (and
 *                              pad, softmax) on large fp16 tensors, in GB/s
 *
 * Tolerances are |got - ref| <= atol + rtol * |ref| per element, with the
 * reference computed in double from the dtype-rounded inputs. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "cuda-kernels.h"

#define CHECK_CUDA(call)                                                            \
  do {                                                                              \
    cudaError_t err_ = (call);                                                      \
    if (err_ != cudaSuccess) {                                                      \
      fprintf (stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                \
               cudaGetErrorString (err_));                                          \
      exit (1);                                                                     \
    }                                                                               \
  } while (0)

static const VaeCudaDtype all_dtypes[] = { VAE_CUDA_F32, VAE_CUDA_F16, VAE_CUDA_BF16 };
static const char *const dtype_names[] = { "f32", "f16", "bf16" };
static const char *const act_names[] = { "none", "relu", "silu" };

static int n_checks, n_failed;

/* ---- host dtype conversion (round to nearest even) ---- */

static uint16_t
f32_to_f16 (float f)
{
  uint32_t x;
  memcpy (&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u)
    return (uint16_t) (sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
  if (ax >= 0x477ff000u)   /* rounds to >= 65520: infinity */
    return (uint16_t) (sign | 0x7c00u);
  if (ax < 0x38800000u) {  /* below 2^-14: subnormal (or the smallest normal) */
    float a;
    memcpy (&a, &ax, 4);
    return (uint16_t) (sign | (uint32_t) nearbyintf (a * 16777216.0f));
  }
  ax += 0xc8000fffu + ((ax >> 13) & 1u);   /* rebias exponent, round */
  return (uint16_t) (sign | (ax >> 13));
}

static float
f16_to_f32 (uint16_t h)
{
  int e = (h >> 10) & 0x1f;
  uint32_t m = h & 0x3ffu;
  float v;
  if (e == 0)
    v = ldexpf ((float) m, -24);
  else if (e == 31)
    v = m ? NAN : INFINITY;
  else
    v = ldexpf ((float) (m | 0x400u), e - 25);
  return (h & 0x8000u) ? -v : v;
}

static uint16_t
f32_to_bf16 (float f)
{
  uint32_t x;
  memcpy (&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t) ((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t) (x >> 16);
}

static float
bf16_to_f32 (uint16_t h)
{
  uint32_t x = (uint32_t) h << 16;
  float f;
  memcpy (&f, &x, 4);
  return f;
}

static void
put (void *buf, VaeCudaDtype dt, size_t i, float v)
{
  switch (dt) {
  case VAE_CUDA_F32: ((float *) buf)[i] = v; break;
  case VAE_CUDA_F16: ((uint16_t *) buf)[i] = f32_to_f16 (v); break;
  case VAE_CUDA_BF16: ((uint16_t *) buf)[i] = f32_to_bf16 (v); break;
  }
}

static float
get (const void *buf, VaeCudaDtype dt, size_t i)
{
  switch (dt) {
  case VAE_CUDA_F32: return ((const float *) buf)[i];
  case VAE_CUDA_F16: return f16_to_f32 (((const uint16_t *) buf)[i]);
  case VAE_CUDA_BF16: return bf16_to_f32 (((const uint16_t *) buf)[i]);
  }
  return NAN;
}

static float
round_dt (VaeCudaDtype dt, float v)
{
  uint16_t h;
  switch (dt) {
  case VAE_CUDA_F16: h = f32_to_f16 (v); return f16_to_f32 (h);
  case VAE_CUDA_BF16: h = f32_to_bf16 (v); return bf16_to_f32 (h);
  default: return v;
  }
}

/* ---- random data ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float
rnd (float lo, float hi)
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return lo + (hi - lo) * (float) ((rng_state >> 40) * (1.0 / 16777216.0));
}

/* Host buffer of COUNT dtype elements with random values in [lo, hi); VALS
 * (if not NULL) gets the rounded values as double. */
static void *
rand_buf (VaeCudaDtype dt, size_t count, float lo, float hi, double **vals)
{
  void *b = malloc (count * vae_cuda_dtype_size (dt) + 1);
  double *v = vals ? malloc (count * sizeof (double) + 1) : NULL;
  for (size_t i = 0; i < count; i++) {
    put (b, dt, i, rnd (lo, hi));
    if (v)
      v[i] = get (b, dt, i);
  }
  if (vals)
    *vals = v;
  return b;
}

static void *
to_dev (const void *h, size_t bytes)
{
  void *d = NULL;
  CHECK_CUDA (cudaMalloc (&d, bytes + 16));
  CHECK_CUDA (cudaMemcpy (d, h, bytes, cudaMemcpyHostToDevice));
  return d;
}

static void *
from_dev (const void *d, size_t bytes)
{
  void *h = malloc (bytes + 1);
  CHECK_CUDA (cudaDeviceSynchronize ());
  CHECK_CUDA (cudaMemcpy (h, d, bytes, cudaMemcpyDeviceToHost));
  return h;
}

/* ---- comparison ---- */

typedef struct {
  double atol, rtol;
} Tol;

static Tol
tol_for (VaeCudaDtype dt, double atol32, double rtol32)
{
  Tol t;
  switch (dt) {
  case VAE_CUDA_F16: t.atol = 2e-3; t.rtol = 1.5e-3; break;
  case VAE_CUDA_BF16: t.atol = 1.6e-2; t.rtol = 8e-3; break;
  default: t.atol = atol32; t.rtol = rtol32; break;
  }
  return t;
}

/* Compares COUNT device results (dtype DT, copied to host in GOT) with REF;
 * prints one line. */
static void
report (const char *what, const void *got, VaeCudaDtype dt, const double *ref, size_t count,
        Tol tol)
{
  double max_err = 0.0, max_rel = 0.0;
  size_t bad = 0, first_bad = (size_t) -1;
  for (size_t i = 0; i < count; i++) {
    double g = get (got, dt, i);
    double d = fabs (g - ref[i]);
    if (!(d <= tol.atol + tol.rtol * fabs (ref[i]))) {   /* NaN fails too */
      if (bad++ == 0)
        first_bad = i;
    }
    if (d > max_err || isnan (d))
      max_err = isnan (d) ? INFINITY : d;
    if (fabs (ref[i]) > 1e-3 && d / fabs (ref[i]) > max_rel)
      max_rel = d / fabs (ref[i]);
  }
  n_checks++;
  if (bad)
    n_failed++;
  printf ("%s %-58s max_abs=%.3g max_rel=%.3g (tol %.1g+%.1g|ref|)", bad ? "FAIL" : "ok  ",
          what, max_err, max_rel, tol.atol, tol.rtol);
  if (bad)
    printf (" %zu/%zu bad, first at %zu: got %.9g want %.9g", bad, count, first_bad,
            (double) get (got, dt, first_bad), ref[first_bad]);
  printf ("\n");
  fflush (stdout);
}

/* Copies COUNT results of dtype DT from the device at D and compares them
 * with REF exactly (report). */
static void
report_exact (const char *what, const void *d, VaeCudaDtype dt, const double *ref, size_t count)
{
  void *got = from_dev (d, count * vae_cuda_dtype_size (dt));
  Tol exact = { 0.0, 0.0 };
  report (what, got, dt, ref, count, exact);
  free (got);
}

/* Device memory for COUNT elements of ES bytes after OFFSET more (to shift
 * the pointer by: unaligned vectors), filled from H when H is given. */
static char *
dev_alloc_at (const void *h, size_t count, size_t es, int offset)
{
  char *d;
  CHECK_CUDA (cudaMalloc ((void **) &d, (count + offset) * es));
  if (h)
    CHECK_CUDA (cudaMemcpy (d + offset * es, h, count * es, cudaMemcpyHostToDevice));
  return d;
}

static void
report_launch (const char *what, cudaError_t err)
{
  if (err != cudaSuccess) {
    n_checks++;
    n_failed++;
    printf ("FAIL %s: launch returned %s\n", what, cudaGetErrorString (err));
  }
}

/* ---- checks ---- */

static void
check_f32_to_dtype (VaeCudaDtype dt, size_t count)
{
  char what[128];
  float *h = malloc (count * sizeof (float));
  double *ref = malloc (count * sizeof (double));
  for (size_t i = 0; i < count; i++) {
    h[i] = rnd (-60000.0f, 60000.0f) * (i % 3 == 0 ? 1e-6f : 1.0f);
    ref[i] = round_dt (dt, h[i]);
  }
  float *dsrc = to_dev (h, count * sizeof (float));
  void *ddst;
  CHECK_CUDA (cudaMalloc (&ddst, count * vae_cuda_dtype_size (dt)));
  snprintf (what, sizeof what, "f32_to_dtype %s count=%zu", dtype_names[dt], count);
  report_launch (what, vae_cuda_f32_to_dtype (dsrc, ddst, dt, count, 0));
  report_exact (what, ddst, dt, ref, count);
  free (h), free (ref);
  cudaFree (dsrc), cudaFree (ddst);
}

static void
check_nchw_to_nhwc (VaeCudaDtype dt, int n, int c, int h, int w, int c_dst)
{
  char what[128];
  size_t hw = (size_t) h * w;
  size_t in_count = (size_t) n * c * hw, out_count = (size_t) n * hw * c_dst;
  float *src = malloc (in_count * sizeof (float) + 1);
  for (size_t i = 0; i < in_count; i++)
    src[i] = rnd (-2.0f, 2.0f);
  double *ref = malloc (out_count * sizeof (double));
  for (int b = 0; b < n; b++)
    for (size_t p = 0; p < hw; p++)
      for (int ch = 0; ch < c_dst; ch++)
        ref[((size_t) b * hw + p) * c_dst + ch] =
            ch < c ? round_dt (dt, src[((size_t) b * c + ch) * hw + p]) : 0.0;
  float *dsrc = to_dev (src, in_count * sizeof (float));
  size_t out_bytes = out_count * vae_cuda_dtype_size (dt);
  void *ddst;
  CHECK_CUDA (cudaMalloc (&ddst, out_bytes));
  CHECK_CUDA (cudaMemset (ddst, 0x7f, out_bytes));   /* padding must be written */
  snprintf (what, sizeof what, "nchw_f32_to_nhwc %s n=%d c=%d h=%d w=%d c_dst=%d",
            dtype_names[dt], n, c, h, w, c_dst);
  report_launch (what, vae_cuda_nchw_f32_to_nhwc (dsrc, ddst, dt, n, c, h, w, c_dst, 0));
  report_exact (what, ddst, dt, ref, out_count);
  free (src), free (ref);
  cudaFree (dsrc), cudaFree (ddst);
}

static void
check_nhwc_to_nchw (VaeCudaDtype dt, int n, int c, int h, int w, int c_src)
{
  char what[128];
  size_t hw = (size_t) h * w;
  size_t in_count = (size_t) n * hw * c_src, out_count = (size_t) n * c * hw;
  double *vals;
  void *src = rand_buf (dt, in_count, -2.0f, 2.0f, &vals);
  double *ref = malloc (out_count * sizeof (double));
  for (int b = 0; b < n; b++)
    for (int ch = 0; ch < c; ch++)
      for (size_t p = 0; p < hw; p++)
        ref[((size_t) b * c + ch) * hw + p] = vals[((size_t) b * hw + p) * c_src + ch];
  void *dsrc = to_dev (src, in_count * vae_cuda_dtype_size (dt));
  float *ddst;
  CHECK_CUDA (cudaMalloc ((void **) &ddst, out_count * sizeof (float)));
  snprintf (what, sizeof what, "nhwc_to_nchw_f32 %s n=%d c=%d h=%d w=%d c_src=%d",
            dtype_names[dt], n, c, h, w, c_src);
  report_launch (what, vae_cuda_nhwc_to_nchw_f32 (dsrc, dt, ddst, n, c, h, w, c_src, 0));
  report_exact (what, ddst, VAE_CUDA_F32, ref, out_count);
  free (src), free (vals), free (ref);
  cudaFree (dsrc), cudaFree (ddst);
}

/* OFFSET elements shift both device pointers (unaligned vectors). */
static void
check_upsample (VaeCudaDtype dt, int n, int h, int w, int c, int offset)
{
  char what[128];
  size_t es = vae_cuda_dtype_size (dt);
  size_t in_count = (size_t) n * h * w * c, out_count = in_count * 4;
  double *vals;
  void *src = rand_buf (dt, in_count, -3.0f, 3.0f, &vals);
  double *ref = malloc (out_count * sizeof (double));
  for (int b = 0; b < n; b++)
    for (int y = 0; y < 2 * h; y++)
      for (int x = 0; x < 2 * w; x++)
        for (int ch = 0; ch < c; ch++)
          ref[(((size_t) b * 2 * h + y) * 2 * w + x) * c + ch] =
              vals[(((size_t) b * h + y / 2) * w + x / 2) * c + ch];
  char *dsrc = dev_alloc_at (src, in_count, es, offset);
  char *ddst = dev_alloc_at (NULL, out_count, es, offset);
  snprintf (what, sizeof what, "upsample2x %s n=%d h=%d w=%d c=%d%s", dtype_names[dt], n, h, w,
            c, offset ? " unaligned" : "");
  report_launch (what, vae_cuda_upsample2x (dsrc + offset * es, ddst + offset * es, dt, n, h, w,
                                            c, 0));
  report_exact (what, ddst + offset * es, dt, ref, out_count);
  free (src), free (vals), free (ref);
  cudaFree (dsrc), cudaFree (ddst);
}

static void
check_pad (VaeCudaDtype dt, int n, int h, int w, int c, int top, int left, int bottom,
           int right, int offset)
{
  char what[160];
  size_t es = vae_cuda_dtype_size (dt);
  int ho = h + top + bottom, wo = w + left + right;
  size_t in_count = (size_t) n * h * w * c, out_count = (size_t) n * ho * wo * c;
  double *vals;
  void *src = rand_buf (dt, in_count, -3.0f, 3.0f, &vals);
  double *ref = malloc (out_count * sizeof (double));
  for (int b = 0; b < n; b++)
    for (int y = 0; y < ho; y++)
      for (int x = 0; x < wo; x++)
        for (int ch = 0; ch < c; ch++) {
          int yi = y - top, xi = x - left;
          ref[(((size_t) b * ho + y) * wo + x) * c + ch] =
              (yi >= 0 && yi < h && xi >= 0 && xi < w)
                  ? vals[(((size_t) b * h + yi) * w + xi) * c + ch] : 0.0;
        }
  char *dsrc = dev_alloc_at (src, in_count, es, offset);
  char *ddst = dev_alloc_at (NULL, out_count, es, offset);
  CHECK_CUDA (cudaMemset (ddst, 0x7f, (out_count + offset) * es));  /* zeros must be written */
  snprintf (what, sizeof what, "pad %s n=%d h=%d w=%d c=%d t/l/b/r=%d/%d/%d/%d%s",
            dtype_names[dt], n, h, w, c, top, left, bottom, right, offset ? " unaligned" : "");
  report_launch (what, vae_cuda_pad (dsrc + offset * es, ddst + offset * es, dt, n, h, w, c, top,
                                     left, bottom, right, 0));
  report_exact (what, ddst + offset * es, dt, ref, out_count);
  free (src), free (vals), free (ref);
  cudaFree (dsrc), cudaFree (ddst);
}

static double
ref_act (VaeCudaAct act, double x)
{
  switch (act) {
  case VAE_CUDA_ACT_RELU: return x > 0.0 ? x : 0.0;
  case VAE_CUDA_ACT_SILU: return x / (1.0 + exp (-x));
  default: return x;
  }
}

static void
check_bias_act (VaeCudaDtype dt, size_t rows, int c, VaeCudaAct act, int with_res,
                int with_bias, int offset)
{
  char what[160];
  size_t es = vae_cuda_dtype_size (dt);
  size_t count = rows * c;
  double *yv, *rv = NULL;
  void *y = rand_buf (dt, count, -4.0f, 4.0f, &yv);
  void *r = with_res ? rand_buf (dt, count, -2.0f, 2.0f, &rv) : NULL;
  float *bias = malloc (c * sizeof (float));
  for (int i = 0; i < c; i++)
    bias[i] = rnd (-1.0f, 1.0f);
  double *ref = malloc (count * sizeof (double));
  for (size_t i = 0; i < count; i++)
    ref[i] = ref_act (act, yv[i] + (with_bias ? bias[i % c] : 0.0) + (with_res ? rv[i] : 0.0));
  char *dy, *dr = NULL;
  CHECK_CUDA (cudaMalloc ((void **) &dy, (count + offset) * es));
  CHECK_CUDA (cudaMemcpy (dy + offset * es, y, count * es, cudaMemcpyHostToDevice));
  if (with_res) {
    CHECK_CUDA (cudaMalloc ((void **) &dr, (count + offset) * es));
    CHECK_CUDA (cudaMemcpy (dr + offset * es, r, count * es, cudaMemcpyHostToDevice));
  }
  float *db = to_dev (bias, c * sizeof (float));
  snprintf (what, sizeof what, "bias_act %s rows=%zu c=%d %s%s%s%s", dtype_names[dt], rows, c,
            act_names[act], with_res ? " +res" : "", with_bias ? " +bias" : "",
            offset ? " unaligned" : "");
  report_launch (what, vae_cuda_bias_act (dy + offset * es, with_res ? dr + offset * es : NULL,
                                          with_bias ? db : NULL, dt, rows, c, act, 0));
  void *got = from_dev (dy + offset * es, count * es);
  report (what, got, dt, ref, count, tol_for (dt, 1e-6, 1e-6));
  free (y), free (yv), free (r), free (rv), free (bias), free (ref), free (got);
  cudaFree (dy), cudaFree (dr), cudaFree (db);
}

/* WITH_BIAS: through vae_cuda_bias_group_norm, normalising x + bias[c]. */
static void
check_group_norm_with (VaeCudaDtype dt, int n, int hw, int c, int groups, VaeCudaAct act,
                       int in_place, float offset, int with_bias)
{
  char what[160];
  size_t es = vae_cuda_dtype_size (dt);
  size_t count = (size_t) n * hw * c;
  const float eps = 1e-6f;
  int cpg = c / groups;
  double *xv;
  /* Per-group offsets make mean >> std for some groups. */
  void *x = rand_buf (dt, count, -1.5f, 1.5f, NULL);
  xv = malloc (count * sizeof (double));
  for (size_t i = 0; i < count; i++) {
    int g = (int) (i % c) / cpg;
    put (x, dt, i, get (x, dt, i) + offset * (float) (g % 3));
    xv[i] = get (x, dt, i);
  }
  float *gamma = malloc (c * sizeof (float)), *beta = malloc (c * sizeof (float));
  float *in_bias = malloc (c * sizeof (float));
  for (int i = 0; i < c; i++) {
    gamma[i] = rnd (0.5f, 1.5f);
    beta[i] = rnd (-0.5f, 0.5f);
    in_bias[i] = with_bias ? rnd (-2.0f, 2.0f) : 0.0f;
  }
  if (with_bias)
    for (size_t i = 0; i < count; i++)
      xv[i] += in_bias[i % c];
  double *ref = malloc (count * sizeof (double));
  for (int b = 0; b < n; b++)
    for (int g = 0; g < groups; g++) {
      double s = 0.0, q = 0.0, m, var;
      for (int p = 0; p < hw; p++)
        for (int k = 0; k < cpg; k++)
          s += xv[((size_t) b * hw + p) * c + g * cpg + k];
      m = s / ((double) hw * cpg);
      for (int p = 0; p < hw; p++)
        for (int k = 0; k < cpg; k++) {
          double d = xv[((size_t) b * hw + p) * c + g * cpg + k] - m;
          q += d * d;
        }
      var = q / ((double) hw * cpg);
      for (int p = 0; p < hw; p++)
        for (int k = 0; k < cpg; k++) {
          size_t i = ((size_t) b * hw + p) * c + g * cpg + k;
          ref[i] = ref_act (act, (xv[i] - m) / sqrt (var + eps) * gamma[g * cpg + k]
                                 + beta[g * cpg + k]);
        }
    }
  void *dx = to_dev (x, count * es);
  void *dy = dx;
  if (!in_place) {
    CHECK_CUDA (cudaMalloc (&dy, count * es));
  }
  float *dg = to_dev (gamma, c * sizeof (float)), *dbt = to_dev (beta, c * sizeof (float));
  float *dib = to_dev (in_bias, c * sizeof (float));
  size_t ss = vae_cuda_group_norm_stats_size (n, groups);
  void *dstats;
  CHECK_CUDA (cudaMalloc (&dstats, ss));
  CHECK_CUDA (cudaMemset (dstats, 0x55, ss));   /* the call must zero it */
  snprintf (what, sizeof what, "%sgroup_norm %s n=%d hw=%d c=%d g=%d %s%s%s",
            with_bias ? "bias_" : "", dtype_names[dt], n, hw, c, groups, act_names[act],
            in_place ? " in-place" : "", offset != 0.0f ? " offset" : "");
  /* Out of place: run twice, so the second run's stats start from the first's. */
  for (int rep = 0; rep < (in_place ? 1 : 2); rep++)
    report_launch (what, with_bias
                   ? vae_cuda_bias_group_norm (dx, dib, dy, dt, n, hw, c, groups, eps, dg, dbt,
                                               act, dstats, 0)
                   : vae_cuda_group_norm (dx, dy, dt, n, hw, c, groups, eps, dg, dbt, act,
                                          dstats, 0));
  void *got = from_dev (dy, count * es);
  report (what, got, dt, ref, count, tol_for (dt, 2e-6, 2e-6));
  free (x), free (xv), free (gamma), free (beta), free (in_bias), free (ref), free (got);
  if (!in_place)
    cudaFree (dy);
  cudaFree (dx), cudaFree (dg), cudaFree (dbt), cudaFree (dib), cudaFree (dstats);
}

static void
check_group_norm (VaeCudaDtype dt, int n, int hw, int c, int groups, VaeCudaAct act,
                  int in_place, float offset)
{
  check_group_norm_with (dt, n, hw, c, groups, act, in_place, offset, 0);
}

static void
check_softmax (VaeCudaDtype dt, size_t rows, int cols)
{
  char what[128];
  size_t es = vae_cuda_dtype_size (dt);
  size_t count = rows * cols;
  double *sv;
  void *s = rand_buf (dt, count, -8.0f, 8.0f, &sv);
  /* One row of a large constant (max subtraction) when there are several. */
  if (rows > 1)
    for (int j = 0; j < cols; j++) {
      put (s, dt, (size_t) cols + j, get (s, dt, (size_t) cols + j) + 1000.0f);
      sv[(size_t) cols + j] = get (s, dt, (size_t) cols + j);
    }
  double *ref = malloc (count * sizeof (double));
  for (size_t r = 0; r < rows; r++) {
    const double *row = sv + r * cols;
    double m = -INFINITY, sum = 0.0;
    for (int j = 0; j < cols; j++)
      m = fmax (m, row[j]);
    for (int j = 0; j < cols; j++)
      sum += exp (row[j] - m);
    for (int j = 0; j < cols; j++)
      ref[r * cols + j] = exp (row[j] - m) / sum;
  }
  void *ds = to_dev (s, count * es);
  snprintf (what, sizeof what, "softmax_rows %s rows=%zu cols=%d", dtype_names[dt], rows, cols);
  report_launch (what, vae_cuda_softmax_rows (ds, dt, rows, cols, 0));
  void *got = from_dev (ds, count * es);
  Tol tol;
  switch (dt) {
  case VAE_CUDA_F16: tol.atol = 1e-6; tol.rtol = 1.5e-3; break;
  case VAE_CUDA_BF16: tol.atol = 1e-6; tol.rtol = 8e-3; break;
  default: tol.atol = 1e-12; tol.rtol = 4e-6; break;
  }
  report (what, got, dt, ref, count, tol);
  free (s), free (sv), free (ref), free (got);
  cudaFree (ds);
}

static void
check_tanh_clamp (VaeCudaDtype dt, size_t count, float clamp)
{
  char what[128];
  size_t es = vae_cuda_dtype_size (dt);
  double *xv;
  void *x = rand_buf (dt, count, -4.0f * clamp, 4.0f * clamp, &xv);
  double *ref = malloc (count * sizeof (double));
  for (size_t i = 0; i < count; i++)
    ref[i] = clamp * tanh (xv[i] / clamp);
  void *dx = to_dev (x, count * es);
  snprintf (what, sizeof what, "tanh_clamp %s count=%zu clamp=%g", dtype_names[dt], count,
            clamp);
  report_launch (what, vae_cuda_tanh_clamp (dx, dt, count, clamp, 0));
  void *got = from_dev (dx, count * es);
  report (what, got, dt, ref, count, tol_for (dt, 1e-6, 2e-6));
  free (x), free (xv), free (ref), free (got);
  cudaFree (dx);
}

static void
run_checks (void)
{
  for (int di = 0; di < 3; di++) {
    VaeCudaDtype dt = all_dtypes[di];

    check_f32_to_dtype (dt, 1000003);

    check_nchw_to_nhwc (dt, 2, 3, 37, 53, 4);
    check_nchw_to_nhwc (dt, 1, 3, 33, 31, 3);
    check_nchw_to_nhwc (dt, 1, 16, 17, 31, 16);
    check_nchw_to_nhwc (dt, 3, 40, 9, 35, 48);
    check_nhwc_to_nchw (dt, 2, 3, 37, 53, 4);
    check_nhwc_to_nchw (dt, 1, 3, 33, 31, 3);
    check_nhwc_to_nchw (dt, 1, 16, 17, 31, 16);
    check_nhwc_to_nchw (dt, 3, 40, 9, 35, 48);

    check_upsample (dt, 2, 13, 17, 3, 0);
    check_upsample (dt, 1, 16, 9, 4, 0);
    check_upsample (dt, 3, 7, 21, 8, 0);
    check_upsample (dt, 1, 9, 11, 32, 0);
    check_upsample (dt, 2, 11, 19, 128, 0);
    check_upsample (dt, 1, 5, 7, 128, 1);

    check_pad (dt, 2, 17, 23, 128, 0, 0, 1, 1, 0);
    check_pad (dt, 1, 13, 9, 3, 0, 0, 1, 1, 0);
    check_pad (dt, 3, 8, 11, 16, 1, 2, 3, 1, 0);
    check_pad (dt, 1, 7, 5, 4, 1, 1, 1, 1, 0);
    check_pad (dt, 1, 9, 10, 64, 0, 0, 1, 1, 1);

    for (int act = 0; act < 3; act++) {
      check_bias_act (dt, 1001, 128, act, 1, 1, 0);
      check_bias_act (dt, 777, 3, act, 1, 1, 0);
    }
    check_bias_act (dt, 513, 16, VAE_CUDA_ACT_SILU, 0, 1, 0);
    check_bias_act (dt, 257, 32, VAE_CUDA_ACT_RELU, 1, 0, 0);
    check_bias_act (dt, 129, 8, VAE_CUDA_ACT_SILU, 0, 0, 0);
    check_bias_act (dt, 301, 4, VAE_CUDA_ACT_NONE, 0, 1, 0);
    check_bias_act (dt, 300, 128, VAE_CUDA_ACT_SILU, 1, 1, 1);

    check_group_norm (dt, 2, 37 * 29, 128, 32, VAE_CUDA_ACT_SILU, 0, 0.0f);
    check_group_norm (dt, 1, 4099, 256, 32, VAE_CUDA_ACT_NONE, 1, 0.0f);
    check_group_norm (dt, 3, 100, 512, 32, VAE_CUDA_ACT_RELU, 0, 0.0f);
    check_group_norm (dt, 1, 65536 + 17, 128, 32, VAE_CUDA_ACT_SILU, 1, 4.0f);
    check_group_norm (dt, 2, 333, 24, 6, VAE_CUDA_ACT_SILU, 0, 2.0f);   /* vector spans groups */
    check_group_norm (dt, 2, 301, 36, 4, VAE_CUDA_ACT_NONE, 1, 0.0f);   /* scalar for 16-bit */
    check_group_norm (dt, 1, 999, 3, 3, VAE_CUDA_ACT_RELU, 0, 0.0f);    /* scalar, 1 per group */
    check_group_norm (dt, 1, 5, 64, 32, VAE_CUDA_ACT_SILU, 0, 0.0f);    /* fewer rows than a step */
    /* The producing convolution's bias folded in (odd sizes, scalar path). */
    check_group_norm_with (dt, 2, 37 * 29, 128, 32, VAE_CUDA_ACT_SILU, 1, 0.0f, 1);
    check_group_norm_with (dt, 1, 65536 + 17, 256, 32, VAE_CUDA_ACT_NONE, 0, 1.0f, 1);
    check_group_norm_with (dt, 2, 301, 36, 4, VAE_CUDA_ACT_SILU, 0, 0.0f, 1);

    check_softmax (dt, 37, 77);
    check_softmax (dt, 5, 1000);
    check_softmax (dt, 3, 1024);
    check_softmax (dt, 13, 4096);
    check_softmax (dt, 7, 4099);
    check_softmax (dt, 3, 65536);
    check_softmax (dt, 4, 20000);
    check_softmax (dt, 3, 16384);
    check_softmax (dt, 5, 2048 + 8);
    check_softmax (dt, 6, 1025);
    check_softmax (dt, 9, 1);

    check_tanh_clamp (dt, 1000003, 3.0f);
    check_tanh_clamp (dt, 5, 1.5f);
  }
}

/* ---- benchmark ---- */

typedef cudaError_t (*BenchFn) (void *ctx);

typedef struct {
  void *x, *y, *stats;
  float *gamma, *beta;
  int n, h, w, c;
  size_t rows;
  int cols;
} BenchCtx;

static cudaError_t
b_group_norm (void *p)
{
  BenchCtx *b = p;
  return vae_cuda_group_norm (b->x, b->y, VAE_CUDA_F16, b->n, b->h * b->w, b->c, 32, 1e-6f,
                              b->gamma, b->beta, VAE_CUDA_ACT_SILU, b->stats, 0);
}

static cudaError_t
b_group_norm_none (void *p)
{
  BenchCtx *b = p;
  return vae_cuda_group_norm (b->x, b->y, VAE_CUDA_F16, b->n, b->h * b->w, b->c, 32, 1e-6f,
                              b->gamma, b->beta, VAE_CUDA_ACT_NONE, b->stats, 0);
}

static cudaError_t
b_group_norm_inplace (void *p)
{
  BenchCtx *b = p;
  return vae_cuda_group_norm (b->x, b->x, VAE_CUDA_F16, b->n, b->h * b->w, b->c, 32, 1e-6f,
                              b->gamma, b->beta, VAE_CUDA_ACT_SILU, b->stats, 0);
}

static cudaError_t
b_bias_act (void *p)
{
  BenchCtx *b = p;
  return vae_cuda_bias_act (b->x, NULL, b->gamma, VAE_CUDA_F16, (size_t) b->n * b->h * b->w,
                            b->c, VAE_CUDA_ACT_SILU, 0);
}

static cudaError_t
b_bias_act_res (void *p)
{
  BenchCtx *b = p;
  return vae_cuda_bias_act (b->x, b->y, b->gamma, VAE_CUDA_F16, (size_t) b->n * b->h * b->w,
                            b->c, VAE_CUDA_ACT_NONE, 0);
}

static cudaError_t
b_upsample (void *p)
{
  BenchCtx *b = p;
  return vae_cuda_upsample2x (b->x, b->y, VAE_CUDA_F16, b->n, b->h, b->w, b->c, 0);
}

static cudaError_t
b_pad (void *p)
{
  BenchCtx *b = p;
  return vae_cuda_pad (b->x, b->y, VAE_CUDA_F16, b->n, b->h, b->w, b->c, 0, 0, 1, 1, 0);
}

static cudaError_t
b_softmax (void *p)
{
  BenchCtx *b = p;
  return vae_cuda_softmax_rows (b->x, VAE_CUDA_F16, b->rows, b->cols, 0);
}

static void
bench_one (const char *what, BenchFn fn, BenchCtx *ctx, double bytes)
{
  cudaEvent_t e0, e1;
  const int iters = 20;
  CHECK_CUDA (cudaEventCreate (&e0));
  CHECK_CUDA (cudaEventCreate (&e1));
  for (int i = 0; i < 3; i++)
    CHECK_CUDA (fn (ctx));
  CHECK_CUDA (cudaEventRecord (e0, 0));
  for (int i = 0; i < iters; i++)
    CHECK_CUDA (fn (ctx));
  CHECK_CUDA (cudaEventRecord (e1, 0));
  CHECK_CUDA (cudaEventSynchronize (e1));
  float ms = 0.0f;
  CHECK_CUDA (cudaEventElapsedTime (&ms, e0, e1));
  ms /= iters;
  printf ("bench %-52s %8.3f ms %8.1f GB/s\n", what, ms, bytes / (ms * 1e-3) / 1e9);
  fflush (stdout);
  cudaEventDestroy (e0);
  cudaEventDestroy (e1);
}

static int
run_bench (void)
{
  static const int shapes[][4] = { { 1, 1024, 1024, 128 }, { 8, 256, 256, 512 } };
  char what[128];
  for (int si = 0; si < 2; si++) {
    BenchCtx b = { 0 };
    b.n = shapes[si][0], b.h = shapes[si][1], b.w = shapes[si][2], b.c = shapes[si][3];
    size_t count = (size_t) b.n * b.h * b.w * b.c;
    double bytes = (double) count * 2;   /* fp16 */
    CHECK_CUDA (cudaMalloc (&b.x, count * 2));
    CHECK_CUDA (cudaMalloc (&b.y, count * 2 * 4));
    CHECK_CUDA (cudaMalloc (&b.stats, vae_cuda_group_norm_stats_size (b.n, 32)));
    CHECK_CUDA (cudaMalloc ((void **) &b.gamma, b.c * sizeof (float)));
    CHECK_CUDA (cudaMalloc ((void **) &b.beta, b.c * sizeof (float)));
    /* Small values: SiLU in place many times stays finite. */
    CHECK_CUDA (cudaMemset (b.x, 0x11, count * 2));
    CHECK_CUDA (cudaMemset (b.y, 0x11, count * 2 * 4));
    CHECK_CUDA (cudaMemset (b.gamma, 0, b.c * sizeof (float)));
    CHECK_CUDA (cudaMemset (b.beta, 0, b.c * sizeof (float)));
    const char *shape = si == 0 ? "[1,1024,1024,128]" : "[8,256,256,512]";

    snprintf (what, sizeof what, "group_norm silu f16 %s (3 passes)", shape);
    bench_one (what, b_group_norm, &b, 3 * bytes);
    snprintf (what, sizeof what, "group_norm none f16 %s", shape);
    bench_one (what, b_group_norm_none, &b, 3 * bytes);
    snprintf (what, sizeof what, "group_norm silu in-place f16 %s", shape);
    bench_one (what, b_group_norm_inplace, &b, 3 * bytes);
    snprintf (what, sizeof what, "bias_act silu f16 %s", shape);
    bench_one (what, b_bias_act, &b, 2 * bytes);
    snprintf (what, sizeof what, "bias_act +res f16 %s", shape);
    bench_one (what, b_bias_act_res, &b, 3 * bytes);
    snprintf (what, sizeof what, "upsample2x f16 %s", shape);
    bench_one (what, b_upsample, &b, 5 * bytes);
    snprintf (what, sizeof what, "pad 0/0/1/1 f16 %s", shape);
    bench_one (what, b_pad, &b, 2 * bytes);
    CHECK_CUDA (cudaMemset (b.x, 0, count * 2));
    b.cols = 4096;
    b.rows = count / b.cols;
    snprintf (what, sizeof what, "softmax f16 rows=%zu cols=%d", b.rows, b.cols);
    bench_one (what, b_softmax, &b, 2 * bytes);
    b.cols = 16384;
    b.rows = count / b.cols;
    snprintf (what, sizeof what, "softmax f16 rows=%zu cols=%d", b.rows, b.cols);
    bench_one (what, b_softmax, &b, 2 * bytes);
    b.cols = 65536;
    b.rows = count / b.cols;
    snprintf (what, sizeof what, "softmax f16 rows=%zu cols=%d", b.rows, b.cols);
    bench_one (what, b_softmax, &b, 2 * bytes);
    b.cols = 512;
    b.rows = count / b.cols;
    snprintf (what, sizeof what, "softmax f16 rows=%zu cols=%d", b.rows, b.cols);
    bench_one (what, b_softmax, &b, 2 * bytes);

    cudaFree (b.x), cudaFree (b.y), cudaFree (b.stats), cudaFree (b.gamma), cudaFree (b.beta);
  }
  CHECK_CUDA (cudaDeviceSynchronize ());
  return 0;
}

int
main (int argc, char **argv)
{
  int ndev = 0;
  cudaError_t err = cudaGetDeviceCount (&ndev);
  if (err != cudaSuccess || ndev == 0) {
    printf ("SKIP: no CUDA device (%s)\n",
            err != cudaSuccess ? cudaGetErrorString (err) : "device count is 0");
    return 77;
  }
  struct cudaDeviceProp prop;
  CHECK_CUDA (cudaGetDeviceProperties (&prop, 0));
  printf ("device: %s, %d SMs, compute %d.%d\n", prop.name, prop.multiProcessorCount, prop.major,
          prop.minor);

  if (argc > 1 && strcmp (argv[1], "--bench") == 0)
    return run_bench ();

  run_checks ();
  CHECK_CUDA (cudaDeviceSynchronize ());
  printf ("%d checks, %d failed\n", n_checks, n_failed);
  return n_failed ? 1 : 0;
}
