/* gst-vae CPU engine: our own Winograd F(4x4, 3x3) convolution for AVX2.
 *
 * Why: oneDNN 2.6 has Winograd for AVX-512 only; on an AVX2 machine its
 * direct 3x3 convolutions already run near the FMA peak, so the only way to
 * go faster is fewer multiplies.  F(4x4, 3x3) computes a 4x4 output tile
 * from a 6x6 input tile with 36 multiplies per (input, output) channel pair
 * instead of 144: the input tile and the filter are transformed (B^T d B,
 * G g G^T), multiplied point by point -- which over channels is 36
 * independent matrix products, the GEMMs below -- and transformed back
 * (A^T m A).  The matrices are Lavin & Gray's for the points 0, +-1, +-2.
 *
 * The same kernel runs a 2-D 3x3 convolution (one tap) and a causal
 * kt x 3 x 3 convolution over time (kt taps over [history | chunk], the
 * history being the stream's state slot): output frame t sums, in the
 * Winograd domain, tap tau over source frame t + tau, so the taps cost one
 * input transform per source frame and one output transform per output
 * frame, and a tap whose source is zero history is skipped.
 *
 * Folded nearest 2x upsampling (onednn_wino_new_upsampled): each output
 * pixel (2y+py, 2x+px) of conv3x3(upsample2x(X)) is a 2x2 convolution of
 * X (upconv.c's phases), which is a 3x3 one with a zero row and column.
 * So the four phases run as one F(4x4, 3x3) over the small X with 4x the
 * output channels (phase-major), whose output transform writes each
 * phase's pixels to their places in the 2x larger frame: the same GEMM
 * work as over the upsampled frame, but a quarter of the input transforms
 * and no upsampled tensor (which the 1x1 TGrow before it in TAEHV's
 * decoders also no longer has to read: model-taehv.c moves it first).
 *
 * Layouts: activations nChw8c float32 (the AVX2 engine's layout), the
 * channels padded with zeros to 8 (input) and 16 (outputs computed).
 * Filters transformed once per engine (the weight cache) into
 * U[xi][kb][tau][c][16] (xi the 36 Winograd points, kb a block of 16
 * output channels), what the 6x16 GEMM micro-kernel streams.
 * The work is split into blocks of tiles (and, when there are too few
 * blocks for the threads, into parts of the output channels too); each
 * thread transforms its block's input into V[s][xi][cb][tile][8] in its own
 * share of the engine's scratchpad, then per 16 output channels runs the 36
 * GEMMs into M and the output transform, with bias, the residual already in
 * the destination and ReLU.  Filters grow 4x in the Winograd domain, so
 * layers whose transformed filter would pass the engine's cap
 * (winograd-max-mib) run oneDNN's direct convolution instead
 * (onednn_wino_applies). */
#include "onednn-private.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define WINO_X86 1
#endif

#define TILE 4                 /* output tile side */
#define ALPHA 6                /* input tile side: TILE + 3 - 1 */
#define NPTS (ALPHA * ALPHA)   /* Winograd points per tile */
#define ROWS 6                 /* tiles per micro-kernel call */
#define KBLK 16                /* output channels per micro-kernel call */
#define CBLK 8                 /* channels of the nChw8c layout */
#define PREFETCH 2             /* tiles ahead the input transform asks for */

struct _OnednnWino {
  const VaeOp *op;
  int C, K, kt, hist, t_out;   /* C, K: padded (below); hist: kt - 1 */
  int k_stored;                /* output channels as stored: K rounded to 8 */
  int up;                      /* 1, or 2: upsampling folded in (K: 4 phases) */
  int k_run;                   /* channels the output transform writes:
                                * k_stored, times 4 phases when up is 2 */
  int h, w, tiles_h, tiles_w, tiles;   /* the input's frame (tiles over it) */
  int out_h, out_w;            /* the output's: up x h, up x w */
  int tb;                      /* tiles per block (a multiple of ROWS) */
  int n_blocks, n_parts;       /* work items: n_blocks x n_parts */
  int threads;
  gsize v_floats, m_floats;    /* per thread */
  const float *u;              /* the engine's transformed filter */
  float *bias;                 /* [K], zeros past the op's own */
  gboolean relu;
};

static gboolean
cpu_takes_it (void)
{
  static int ok = -1;
  if (ok < 0) {
#ifdef WINO_X86
    __builtin_cpu_init ();
    ok = __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma")
        && !onednn_cpu_has_avx512 ()     /* there oneDNN's own runs */
        && onednn_channel_block () == CBLK;
#else
    ok = 0;
#endif
  }
  return ok;
}

static int
op_taps (const VaeOp *op)
{
  return op->kind == VAE_OP_CAUSAL_CONV3D ? op->kt : 1;
}

/* Channels as the kernel runs them: the input's as stored (nChw8c pads to
 * 8, with zeros), the outputs rounded to the micro-kernel's 16.  The
 * padding costs little next to what direct convolution loses on such
 * layers (12 patchified input channels, 3 or 12 output ones). */
static int
padded_in (const VaeOp *op)
{
  return (op->in_channels + CBLK - 1) / CBLK * CBLK;
}

static int
stored_out (const VaeOp *op)
{
  return (op->out_channels + CBLK - 1) / CBLK * CBLK;
}

/* UP 2: the four phases' channels, each phase's rounded to 8 (the output
 * transform writes whole 8-channel blocks of one phase). */
static int
padded_out (const VaeOp *op, int up)
{
  const int k = up > 1 ? 4 * stored_out (op) : op->out_channels;
  return (k + KBLK - 1) / KBLK * KBLK;
}

static gsize
filter_bytes (const VaeOp *op, int up)
{
  return (gsize) NPTS * op_taps (op) * padded_in (op) * padded_out (op, up) * sizeof (float);
}

gsize
onednn_wino_filter_bytes (const VaeOp *op)
{
  return filter_bytes (op, 1);
}

/* The cap (the engine's winograd-max-mib, default 128 MiB): a 384 -> 384
 * Wan 3x3x3 layer is 64 MiB in the Winograd domain, a 1024-channel Wan 2.2
 * one 453 MiB, and those run on small frames where Winograd gains least. */
gboolean
onednn_wino_applies (const OnednnCtx *ctx, const VaeOp *op)
{
  if (op->kind == VAE_OP_CAUSAL_CONV3D) {
    if (op->time_passthrough || op->time_stride != 1 || op->kt < 1)
      return FALSE;
  } else if (op->kind != VAE_OP_CONV2D) {
    return FALSE;
  }
  return ctx->winograd && cpu_takes_it () && op->kernel == 3 && op->stride == 1 && op->pad_top == 1
      && op->pad_left == 1 && op->pad_bottom == 1 && op->pad_right == 1
      && (op->act == VAE_ACT_NONE || op->act == VAE_ACT_RELU)
      && onednn_wino_filter_bytes (op) <= ctx->wino_max_bytes;
}

gboolean
onednn_wino_applies_upsampled (const OnednnCtx *ctx, const VaeOp *op)
{
  return op->kind == VAE_OP_CONV2D && op->residual < 0 && onednn_wino_applies (ctx, op)
      && filter_bytes (op, 2) <= ctx->wino_max_bytes;
}

gboolean
onednn_wino_layout_ok (const dnnl_memory_desc_t *md)
{
  const dnnl_blocking_desc_t *bd = &md->format_desc.blocking;
  if (md->ndims != 4 || md->data_type != dnnl_f32 || md->format_kind != dnnl_blocked
      || bd->inner_nblks != 1 || bd->inner_blks[0] != CBLK || bd->inner_idxs[0] != 1
      || md->padded_dims[1] != (md->dims[1] + CBLK - 1) / CBLK * CBLK || md->offset0 != 0)
    return FALSE;
  /* dense: n, C/8, h, w, 8 */
  const dnnl_dim_t h = md->dims[2], w = md->dims[3];
  return bd->strides[3] == CBLK && bd->strides[2] == w * CBLK
      && bd->strides[1] == h * w * CBLK && bd->strides[0] == md->padded_dims[1] * h * w;
}

/* ---------------------------------------------------------------- filters */

/* G (6x3) of F(4x4, 3x3). */
static const double wino_g[ALPHA][3] = {
  { 1.0 / 4, 0, 0 },
  { -1.0 / 6, -1.0 / 6, -1.0 / 6 },
  { -1.0 / 6, 1.0 / 6, -1.0 / 6 },
  { 1.0 / 24, 1.0 / 12, 1.0 / 6 },
  { 1.0 / 24, -1.0 / 12, 1.0 / 6 },
  { 0, 0, 1 },
};

/* The 3x3 filters of the four phases of OP after a nearest 2x upsample,
 * [4 x stored_out][C][3][3] (phase-major, zeros past each phase's own
 * channels): upconv.c's 2x2 phase taps, placed at rows py..py+1 and
 * columns px..px+1 (phase 0 reads y-1 and y, phase 1 y and y+1). */
static float *
phase_filters (const VaeOp *op)
{
  const int K8 = stored_out (op), K0 = op->out_channels, C0 = op->in_channels;
  float *f = g_new0 (float, (gsize) 4 * K8 * C0 * 9);
  for (int p = 0; p < 4; p++) {
    const int py = p / 2, px = p % 2;
    float *w2 = onednn_upconv_phase_weights (op, py, px);   /* [K0][C0][2][2] */
    for (int k = 0; k < K0; k++)
      for (int c = 0; c < C0; c++)
        for (int a = 0; a < 2; a++)
          for (int b = 0; b < 2; b++)
            f[(((gsize) (p * K8 + k) * C0 + c) * 3 + py + a) * 3 + px + b] =
                w2[(((gsize) k * C0 + c) * 2 + a) * 2 + b];
    g_aligned_free (w2);
  }
  return f;
}

/* U = G g G^T for every (k, tau, c), into U[xi][kb][tau][c][16]; zeros
 * for the padding channels.  UP 2: of the phase filters. */
static float *
transform_filter (const VaeOp *op, int up, GError **error)
{
  const int C = padded_in (op), K = padded_out (op, up), kt = op_taps (op);
  const int C0 = op->in_channels, K0 = up > 1 ? 4 * stored_out (op) : op->out_channels;
  float *u = vae_try_aligned_alloc (1, filter_bytes (op, up), 64, "Winograd filters", error);
  if (!u)
    return NULL;
  g_autofree float *phases = up > 1 ? phase_filters (op) : NULL;
  const float *weight = up > 1 ? phases : op->weight;
  const int kbs = K / KBLK;
  /* Once per engine, but 4 s single-threaded for Wan 2.1's decoder. */
#pragma omp parallel for schedule(static)
  for (int k = 0; k < K; k++)
    for (int tau = 0; tau < kt; tau++)
      for (int c = 0; c < C; c++) {
        /* g: [K, C, kt, 3, 3] (causal) or [K, C, 3, 3] */
        static const float zero[9];
        const float *g = k < K0 && c < C0
            ? weight + (((gsize) k * C0 + c) * kt + tau) * 9 : zero;
        double gg[ALPHA][3], uu[ALPHA][ALPHA];
        for (int i = 0; i < ALPHA; i++)
          for (int j = 0; j < 3; j++)
            gg[i][j] = wino_g[i][0] * g[j] + wino_g[i][1] * g[3 + j] + wino_g[i][2] * g[6 + j];
        for (int i = 0; i < ALPHA; i++)
          for (int j = 0; j < ALPHA; j++)
            uu[i][j] = gg[i][0] * wino_g[j][0] + gg[i][1] * wino_g[j][1] + gg[i][2] * wino_g[j][2];
        for (int xi = 0; xi < NPTS; xi++) {
          gsize at = ((((gsize) xi * kbs + k / KBLK) * kt + tau) * C + c) * KBLK + k % KBLK;
          u[at] = (float) uu[xi / ALPHA][xi % ALPHA];
        }
      }
  return u;
}

/* The engine's transformed copy of OP's filter (made once, in the weight
 * cache under its own variant). */
static const float *
prepared_filter (const OnednnCtx *ctx, const VaeOp *op, int up, GError **error)
{
  OnednnWeightLayout key;
  memset (&key, 0, sizeof key);
  key.variant = up > 1 ? ONEDNN_WEIGHT_WINOGRAD_UP : ONEDNN_WEIGHT_WINOGRAD;
  dnnl_dims_t dims = { (dnnl_dim_t) (filter_bytes (op, up) / sizeof (float)) };
  dnnl_memory_desc_init_by_tag (&key.md, 1, dims, dnnl_f32, dnnl_a);
  float *u = vae_weight_cache_lookup (ctx->weights, op->weight, &key);
  if (u)
    return u;
  u = transform_filter (op, up, error);
  if (u)
    vae_weight_cache_insert (ctx->weights, op->weight, &key, u);
  return u;
}

/* ---------------------------------------------------------------- kernels */

#ifdef WINO_X86
#define WINO_TARGET __attribute__ ((target ("avx2,fma")))

/* B^T x for one column of six 8-channel vectors. */
#define WINO_BT(d0, d1, d2, d3, d4, d5, r)                                          \
  do {                                                                              \
    const __m256 four = _mm256_set1_ps (4.0f), five = _mm256_set1_ps (5.0f);        \
    const __m256 two = _mm256_set1_ps (2.0f);                                       \
    r[0] = _mm256_add_ps (_mm256_fnmadd_ps (five, d2, _mm256_mul_ps (four, d0)), d4); \
    r[1] = _mm256_fnmadd_ps (four, _mm256_add_ps (d1, d2), _mm256_add_ps (d3, d4));   \
    r[2] = _mm256_fmadd_ps (four, _mm256_sub_ps (d1, d2), _mm256_sub_ps (d4, d3));    \
    r[3] = _mm256_fnmadd_ps (two, _mm256_sub_ps (d1, d3), _mm256_sub_ps (d4, d2));    \
    r[4] = _mm256_fmadd_ps (two, _mm256_sub_ps (d1, d3), _mm256_sub_ps (d4, d2));     \
    r[5] = _mm256_add_ps (_mm256_fnmadd_ps (five, d3, _mm256_mul_ps (four, d1)), d5); \
  } while (0)

/* The input transform of one frame's tiles [t0, t0 + n) into V[xi][cb][tile][8]
 * (tile index relative to T0, TBP tiles per plane). */
static WINO_TARGET void
input_transform (const OnednnWino *w, const float *src, int t0, int n, float *v)
{
  const int cbs = w->C / CBLK, H = w->h, W = w->w, tbp = w->tb;
  const gsize plane = (gsize) cbs * tbp * CBLK;   /* floats per xi */
  for (int cb = 0; cb < cbs; cb++) {
    const float *s = src + (gsize) cb * H * W * CBLK;
    for (int i = 0; i < n; i++) {
      const int tile = t0 + i, ty = tile / w->tiles_w, tx = tile % w->tiles_w;
      const int y0 = ty * TILE - 1, x0 = tx * TILE - 1;
      __m256 d[ALPHA][ALPHA], r[ALPHA];
      const gboolean inside = y0 >= 0 && x0 >= 0 && y0 + ALPHA <= H && x0 + ALPHA <= W;
      /* The tile PREFETCH ahead in this loop's order (the next channel
       * block's first tiles after this one's last), asked for while this
       * one computes: a block's rows are short runs in C/8 planes, which
       * the hardware prefetcher does not follow, and without this the
       * loads waited on memory about a third as long as the GEMMs ran
       * (64 channels, perf).  The first tile of a run needs its six
       * columns (x0 odd: four cache lines), a later one the four it adds
       * (two lines). */
      {
        int pi = i + PREFETCH, pcb = cb;
        if (pi >= n) {
          pi -= n;
          pcb++;
        }
        if (pcb < cbs && pi < n) {
          const int nt = t0 + pi, ny0 = nt / w->tiles_w * TILE - 1;
          const int nx0 = nt % w->tiles_w * TILE - 1;
          const float *ps = src + (gsize) pcb * H * W * CBLK;
          for (int y = MAX (ny0, 0); y < MIN (ny0 + ALPHA, H); y++) {
            const float *row = ps + (gsize) y * W * CBLK;
            for (int x = pi == 0 ? 0 : 4; x <= 6; x += 2)
              _mm_prefetch ((const char *) (row + (gsize) CLAMP (nx0 + x, 0, W - 1) * CBLK),
                            _MM_HINT_T0);
          }
        }
      }
      for (int y = 0; y < ALPHA; y++)
        for (int x = 0; x < ALPHA; x++) {
          const int yy = y0 + y, xx = x0 + x;
          d[y][x] = inside || (yy >= 0 && yy < H && xx >= 0 && xx < W)
              ? _mm256_loadu_ps (s + ((gsize) yy * W + xx) * CBLK) : _mm256_setzero_ps ();
        }
      /* columns, then rows */
      for (int x = 0; x < ALPHA; x++) {
        WINO_BT (d[0][x], d[1][x], d[2][x], d[3][x], d[4][x], d[5][x], r);
        for (int y = 0; y < ALPHA; y++)
          d[y][x] = r[y];
      }
      float *out = v + ((gsize) cb * tbp + i) * CBLK;
      for (int y = 0; y < ALPHA; y++) {
        WINO_BT (d[y][0], d[y][1], d[y][2], d[y][3], d[y][4], d[y][5], r);
        for (int x = 0; x < ALPHA; x++)
          _mm256_storeu_ps (out + (gsize) (y * ALPHA + x) * plane, r[x]);
      }
    }
    /* Tiles past the frame's last (the block's padding to ROWS): zeros,
     * so that the GEMM reads defined values it then discards. */
    for (int i = n; i < tbp; i++) {
      float *out = v + ((gsize) cb * tbp + i) * CBLK;
      for (int xi = 0; xi < NPTS; xi++)
        _mm256_storeu_ps (out + (gsize) xi * plane, _mm256_setzero_ps ());
    }
  }
}

/* M[6 tiles][16 k] = sum over taps and c of V[tile][c] U[c][k], for one
 * Winograd point: VS[tau] the tap's V at this point and tile group (NULL:
 * a zero source, skipped), U the point's [tau][c][16] for this k block.
 * M gets the result tile-major: tile r's 16 values at M + r * TS. */
static WINO_TARGET void
gemm_6x16 (const float *const *vs, const float *u, int kt, int C, int tbp, float *m, gsize ts)
{
  __m256 a00 = _mm256_setzero_ps (), a01 = _mm256_setzero_ps ();
  __m256 a10 = _mm256_setzero_ps (), a11 = _mm256_setzero_ps ();
  __m256 a20 = _mm256_setzero_ps (), a21 = _mm256_setzero_ps ();
  __m256 a30 = _mm256_setzero_ps (), a31 = _mm256_setzero_ps ();
  __m256 a40 = _mm256_setzero_ps (), a41 = _mm256_setzero_ps ();
  __m256 a50 = _mm256_setzero_ps (), a51 = _mm256_setzero_ps ();
  const int cbs = C / CBLK;
  for (int tau = 0; tau < kt; tau++) {
    const float *v = vs[tau];
    if (!v)
      continue;
    const float *up = u + (gsize) tau * C * KBLK;
    for (int cb = 0; cb < cbs; cb++) {
      const float *vb = v + (gsize) cb * tbp * CBLK;
      for (int j = 0; j < CBLK; j++) {
        const __m256 u0 = _mm256_load_ps (up), u1 = _mm256_load_ps (up + 8);
        __m256 b;
        up += KBLK;
        b = _mm256_broadcast_ss (vb + 0 * CBLK + j);
        a00 = _mm256_fmadd_ps (b, u0, a00);
        a01 = _mm256_fmadd_ps (b, u1, a01);
        b = _mm256_broadcast_ss (vb + 1 * CBLK + j);
        a10 = _mm256_fmadd_ps (b, u0, a10);
        a11 = _mm256_fmadd_ps (b, u1, a11);
        b = _mm256_broadcast_ss (vb + 2 * CBLK + j);
        a20 = _mm256_fmadd_ps (b, u0, a20);
        a21 = _mm256_fmadd_ps (b, u1, a21);
        b = _mm256_broadcast_ss (vb + 3 * CBLK + j);
        a30 = _mm256_fmadd_ps (b, u0, a30);
        a31 = _mm256_fmadd_ps (b, u1, a31);
        b = _mm256_broadcast_ss (vb + 4 * CBLK + j);
        a40 = _mm256_fmadd_ps (b, u0, a40);
        a41 = _mm256_fmadd_ps (b, u1, a41);
        b = _mm256_broadcast_ss (vb + 5 * CBLK + j);
        a50 = _mm256_fmadd_ps (b, u0, a50);
        a51 = _mm256_fmadd_ps (b, u1, a51);
      }
    }
  }
  _mm256_store_ps (m + 0 * ts, a00); _mm256_store_ps (m + 0 * ts + CBLK, a01);
  _mm256_store_ps (m + 1 * ts, a10); _mm256_store_ps (m + 1 * ts + CBLK, a11);
  _mm256_store_ps (m + 2 * ts, a20); _mm256_store_ps (m + 2 * ts + CBLK, a21);
  _mm256_store_ps (m + 3 * ts, a30); _mm256_store_ps (m + 3 * ts + CBLK, a31);
  _mm256_store_ps (m + 4 * ts, a40); _mm256_store_ps (m + 4 * ts + CBLK, a41);
  _mm256_store_ps (m + 5 * ts, a50); _mm256_store_ps (m + 5 * ts + CBLK, a51);
}

/* A^T x for one column of six vectors (4 outputs). */
#define WINO_AT(m0, m1, m2, m3, m4, m5, o)                                  \
  do {                                                                      \
    const __m256 p12 = _mm256_add_ps (m1, m2), d12 = _mm256_sub_ps (m1, m2); \
    const __m256 p34 = _mm256_add_ps (m3, m4), d34 = _mm256_sub_ps (m3, m4); \
    o[0] = _mm256_add_ps (_mm256_add_ps (m0, p12), p34);                    \
    o[1] = _mm256_fmadd_ps (_mm256_set1_ps (2.0f), d34, d12);               \
    o[2] = _mm256_fmadd_ps (_mm256_set1_ps (4.0f), p34, p12);               \
    o[3] = _mm256_add_ps (_mm256_fmadd_ps (_mm256_set1_ps (8.0f), d34, d12), m5); \
  } while (0)

/* Output transform of tiles [t0, t0 + n) for the 8 output channels of
 * block KB8 from M[tile][xi][16] (the 8 at M): bias, what DST holds when
 * ACCUMULATE, ReLU.  Upsampled: block KB8 is one of phase (py, px)'s, its
 * pixel (y, x) goes to (2y + py, 2x + px). */
static WINO_TARGET void
output_transform (const OnednnWino *w, const float *m, int t0, int n,
                  int kb8, float *dst, gboolean accumulate)
{
  const int H = w->h, W = w->w, OW = w->out_w, s = w->up;
  /* kb8 < per_phase (phase 0) when no upsample is folded */
  const int per_phase = w->k_stored / CBLK, phase = kb8 / per_phase;
  const int py = phase / 2, px = phase % 2;
  const __m256 bias = _mm256_loadu_ps (w->bias + kb8 * CBLK);
  const __m256 zero = _mm256_setzero_ps ();
  float *d = dst + (gsize) (kb8 % per_phase) * w->out_h * OW * CBLK;
  for (int i = 0; i < n; i++) {
    const int tile = t0 + i, ty = tile / w->tiles_w, tx = tile % w->tiles_w;
    __m256 t[TILE][ALPHA], o[TILE];
    for (int x = 0; x < ALPHA; x++) {
      __m256 c[ALPHA];
      for (int y = 0; y < ALPHA; y++)
        c[y] = _mm256_load_ps (m + ((gsize) i * NPTS + y * ALPHA + x) * KBLK);
      WINO_AT (c[0], c[1], c[2], c[3], c[4], c[5], o);
      for (int y = 0; y < TILE; y++)
        t[y][x] = o[y];
    }
    for (int y = 0; y < TILE; y++) {
      const int yy = ty * TILE + y;
      if (yy >= H)
        break;
      WINO_AT (t[y][0], t[y][1], t[y][2], t[y][3], t[y][4], t[y][5], o);
      for (int x = 0; x < TILE; x++) {
        const int xx = tx * TILE + x;
        if (xx >= W)
          break;
        float *p = d + ((gsize) (s * yy + py) * OW + s * xx + px) * CBLK;
        __m256 r = _mm256_add_ps (o[x], bias);
        if (accumulate)
          r = _mm256_add_ps (r, _mm256_loadu_ps (p));
        if (w->relu)
          r = _mm256_max_ps (r, zero);
        _mm256_storeu_ps (p, r);
      }
    }
  }
}

/* One work item: tile block BLOCK, output channel blocks [kb0, kb1) of 16,
 * every output frame.  SRCS[s]: source frame s of [history | chunk], NULL
 * when it is zero. */
static WINO_TARGET void
run_item (const OnednnWino *w, const float *const *srcs, float *dst, gboolean accumulate,
          int block, int kb0, int kb1, float *v, float *m)
{
  const int tbp = w->tb, C = w->C, kt = w->kt, cbs = C / CBLK, kbs = w->K / KBLK;
  const int t0 = block * tbp, n = MIN (tbp, w->tiles - t0);
  const int S = w->t_out + w->hist;
  const gsize v_plane = (gsize) cbs * tbp * CBLK, v_frame = NPTS * v_plane;
  /* M tile-major ([t][tile][xi][16]): the output transform then reads
   * each tile's 36 points from one contiguous run, which the hardware
   * prefetcher follows (point-major, they were 36 streams, and its loads
   * waited on L2). */
  const gsize m_tile = (gsize) NPTS * KBLK, m_frame = (gsize) tbp * m_tile;
  const gsize out_frame = (gsize) w->k_stored * w->out_h * w->out_w;

  /* V of every nonzero source frame, packed in order */
  const float *vs_of[S > 0 ? S : 1];
  int packed = 0;
  for (int s = 0; s < S; s++) {
    vs_of[s] = NULL;
    if (srcs[s]) {
      float *vf = v + (gsize) packed++ * v_frame;
      input_transform (w, srcs[s], t0, n, vf);
      vs_of[s] = vf;
    }
  }
  for (int kb = kb0; kb < kb1; kb++) {
    for (int xi = 0; xi < NPTS; xi++) {
      const float *u = w->u + ((gsize) xi * kbs + kb) * kt * C * KBLK;
      for (int t = 0; t < w->t_out; t++) {
        const float *vs[kt];
        for (int tau = 0; tau < kt; tau++)
          vs[tau] = vs_of[t + tau] ? vs_of[t + tau] + xi * v_plane : NULL;
        float *mp = m + t * m_frame + xi * KBLK;
        for (int g = 0; g < tbp; g += ROWS) {
          const float *vg[kt];
          for (int tau = 0; tau < kt; tau++)
            vg[tau] = vs[tau] ? vs[tau] + (gsize) g * CBLK : NULL;
          gemm_6x16 (vg, u, kt, C, tbp, mp + (gsize) g * m_tile, m_tile);
        }
      }
    }
    for (int t = 0; t < w->t_out; t++)
      for (int half = 0; half < 2 && (kb * 2 + half) * CBLK < w->k_run; half++)
        output_transform (w, m + t * m_frame + (gsize) half * CBLK, t0, n,
                          kb * 2 + half, dst + t * out_frame, accumulate);
  }
}
#endif

/* ---------------------------------------------------------------- plan */

/* Floats of V per thread: the source frames a block reads, transformed. */
static gsize
v_floats (int frames, int C, int tb)
{
  return (gsize) frames * NPTS * C * tb;
}

static OnednnWino *
wino_new (const OnednnCtx *ctx, const VaeOp *op, int up, int t_out, int h, int w,
          GError **error)
{
  OnednnWino *wn = g_new0 (OnednnWino, 1);
  wn->op = op;
  wn->up = up;
  wn->C = padded_in (op);
  wn->K = padded_out (op, up);
  wn->k_stored = stored_out (op);
  wn->k_run = up * up * wn->k_stored;
  wn->kt = op_taps (op);
  wn->hist = wn->kt - 1;
  wn->t_out = t_out;
  wn->h = h;
  wn->w = w;
  wn->tiles_h = (h + TILE - 1) / TILE;
  wn->tiles_w = (w + TILE - 1) / TILE;
  wn->tiles = wn->tiles_h * wn->tiles_w;
  wn->out_h = up * h;
  wn->out_w = up * w;
  wn->bias = g_new0 (float, wn->K);
  for (int p = 0; p < up * up && op->bias; p++)
    memcpy (wn->bias + p * wn->k_stored, op->bias, op->out_channels * sizeof (float));
  wn->relu = op->act == VAE_ACT_RELU;
#ifdef _OPENMP
  wn->threads = MAX (omp_get_max_threads (), 1);
#else
  wn->threads = 1;
#endif
  /* Tiles per block, from what a block streams.  Every block reads the
   * whole transformed filter, and each 16 output channels read the
   * block's V again.  A filter the last-level cache holds (up to about
   * 8 MiB) is cheap to read again, so the blocks are small enough for V
   * to stay in L2 (384 KiB: up to 2.5x faster at 64 to 128 channels on
   * large frames).  A larger one (wide layers, on small frames) is read
   * from memory each time, so the blocks are large (V within 4 MiB) and,
   * when they are too few for the threads, the output channels are split
   * instead, each thread streaming its share of the filter once.  At
   * least ROWS tiles; the blocks of one size, so the threads finish
   * together. */
  const int S = t_out + wn->hist, want = 2 * wn->threads, kbs = wn->K / KBLK;
  const int max_blocks = (wn->tiles + ROWS - 1) / ROWS;
  const gboolean small_filter = filter_bytes (op, up) <= ((gsize) 8 << 20);
  const gsize budget = small_filter ? (gsize) 384 << 10 : (gsize) 4 << 20;
  gsize per_tile = v_floats (S, wn->C, 1) * sizeof (float);
  int tb_max = MAX ((int) MIN (budget / per_tile, 240) / ROWS * ROWS, ROWS);
  int blocks = (wn->tiles + tb_max - 1) / tb_max;
  wn->n_parts = 1;
  if (blocks < want) {
    if (small_filter)
      blocks = MIN (want, max_blocks);
    if (blocks < want)
      wn->n_parts = MIN (kbs, (want + blocks - 1) / blocks);
  }
  int tb = (wn->tiles + blocks - 1) / blocks;
  wn->tb = (tb + ROWS - 1) / ROWS * ROWS;
  wn->n_blocks = (wn->tiles + wn->tb - 1) / wn->tb;
  wn->v_floats = v_floats (S, wn->C, wn->tb);
  wn->m_floats = (gsize) t_out * wn->tb * NPTS * KBLK;
  /* Each thread's V and M live in the engine's scratchpad (no oneDNN
   * primitive runs while a Winograd step does). */
  gsize need_bytes = (wn->v_floats + wn->m_floats) * sizeof (float) * wn->threads + 64;
  ctx->scratch->needed = MAX (ctx->scratch->needed, need_bytes);
  wn->u = prepared_filter (ctx, op, up, error);
  if (!wn->u) {
    onednn_wino_free (wn);
    return NULL;
  }
  return wn;
}

OnednnWino *
onednn_wino_new (const OnednnCtx *ctx, const VaeOp *op, int t_out, int h, int w,
                 GError **error)
{
  g_return_val_if_fail (onednn_wino_applies (ctx, op), NULL);
  return wino_new (ctx, op, 1, t_out, h, w, error);
}

OnednnWino *
onednn_wino_new_upsampled (const OnednnCtx *ctx, const VaeOp *op, int t_out, int h, int w,
                           GError **error)
{
  g_return_val_if_fail (onednn_wino_applies_upsampled (ctx, op), NULL);
  return wino_new (ctx, op, 2, t_out, h, w, error);
}

gboolean
onednn_wino_run (const OnednnCtx *ctx, const OnednnWino *wn, const float *hist,
                 const float *chunk, float *dst, gboolean accumulate, GError **error)
{
#ifdef WINO_X86
  if (!onednn_scratch_reserve (ctx, error))
    return FALSE;
  const int S = wn->t_out + wn->hist;
  const float *srcs[S];
  const gsize frame = (gsize) wn->C * wn->h * wn->w;
  for (int s = 0; s < S; s++)
    srcs[s] = s < wn->hist ? (hist ? hist + s * frame : NULL) : chunk + (s - wn->hist) * frame;
  float *base = (float *) (((guintptr) ctx->scratch->data + 63) & ~(guintptr) 63);
  const int items = wn->n_blocks * wn->n_parts, kbs = wn->K / KBLK;
  const gsize per_thread = wn->v_floats + wn->m_floats;
#pragma omp parallel for schedule(dynamic, 1) num_threads(wn->threads)
  for (int it = 0; it < items; it++) {
#ifdef _OPENMP
    const int me = omp_get_thread_num ();
#else
    const int me = 0;
#endif
    const int block = it / wn->n_parts, part = it % wn->n_parts;
    const int kb0 = part * kbs / wn->n_parts, kb1 = (part + 1) * kbs / wn->n_parts;
    float *v = base + (gsize) me * per_thread;
    run_item (wn, srcs, dst, accumulate, block, kb0, kb1, v, v + wn->v_floats);
  }
  return TRUE;
#else
  g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
               "Winograd '%s': this build has no AVX2 kernel", wn->op->name);
  return FALSE;
#endif
}

void
onednn_wino_free (OnednnWino *wn)
{
  if (!wn)
    return;
  g_free (wn->bias);
  g_free (wn);
}
