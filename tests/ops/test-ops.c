/* gst-vae: per-op engine tests.
 *
 * Every op kind of graph.h alone, and small graphs where the engines fuse
 * or fold ops, run through each engine this build has (as the encoder of a
 * hand-made VaeModel with spatial factor 1) on random, seeded shapes: odd
 * channel counts, sizes that are not multiples of 8 or 16, batches of 1 to
 * 3, every activation.  Outputs are compared with the double-precision
 * reference in ref-ops.c against the test data's tolerances
 * (../shared/testdata/README.md): float32 max |diff| <= 1e-3 and relative
 * L2 <= 1e-4; reduced precision (bf16, f16) relative L2 <= 1e-2.
 *
 * Paths of the cpu engine the cases are made to reach: Winograd for 3x3
 * stride-1 float32 convolutions over multiples of 16 channels, direct
 * convolution otherwise; upsample2x folded into the next 3x3 convolution
 * (float32 where Winograd does not apply, and the bf16 path, which runs
 * only 3x3 convolutions between >= 16 channels that do not write the
 * graph's output in bf16); bias, residual and activation fused into the
 * convolution; activation fused into the group norm; chunked attention
 * (more than 4096 positions).
 *
 * Cases with a video op kind (graph.h: CAUSAL_CONV3D ... ADD) run through
 * the engine's streams (vae_stream_new / run / reset) as the encoder of a
 * hand-made video model: several chunks (1, 4, 4 frames; 2-frame chunks;
 * uneven ones), so that the state slots carry over, each chunk compared
 * with ref_graph_run_stream over one RefState, then a reset and the first
 * chunk again.  An engine without streams fails these (that is the truth);
 * the reference ops themselves are checked on hand-computed values by
 * test-ref-ops.c (meson test 'ref-ops').
 *
 *   test-ops [--backend all|cpu|cuda] [--precision all|f32|bf16|f16]
 *            [--seed N] [--quick|--full] [--case I] [--perturb REL] [--verbose]
 *
 * --backend all (the default) runs every built engine that runs graphs and
 * says so for one that cannot run here (cuda without a GPU); a named one
 * that cannot run exits 77.  --quick (the default under AddressSanitizer,
 * or with VAE_OPS_QUICK=1) runs fewer and smaller cases.  --perturb REL
 * scales every reference op's output by 1 + REL and inverts the verdict:
 * it passes only when every comparison fails (the comparisons have teeth).
 * The seed (VAE_OPS_SEED, else a fixed one) is printed; every case prints
 * its shapes; --case I runs only case I of that seed's set. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "vae-error.h"
#include "ref-ops.h"
#ifdef OPS_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

/* A new op kind must be named and get cases here, or the build fails. */
#pragma GCC diagnostic error "-Wswitch"
#pragma GCC diagnostic error "-Wswitch-enum"

#define OPS_N_KINDS VAE_OP_COUNT

#define F32_MAX_ABS 1e-3
#define F32_REL_L2 1e-4
#define REDUCED_REL_L2 1e-2

#define DEFAULT_SEED 20250610u
/* Most multiply-adds in one case (the chunked attention excepted). */
#define MAC_CAP(quick) ((quick) ? 0.6e6 : 2e6)

static const char *const act_names[] = { "none", "relu", "silu" };
static const VaeActivation all_acts[] = { VAE_ACT_NONE, VAE_ACT_RELU, VAE_ACT_SILU };

static const char *
kind_name (int kind)
{
  switch ((VaeOpKind) kind) {
    case VAE_OP_CONV2D: return "conv2d";
    case VAE_OP_GROUP_NORM: return "group_norm";
    case VAE_OP_ATTENTION: return "attention";
    case VAE_OP_UPSAMPLE2X: return "upsample2x";
    case VAE_OP_TANH_CLAMP: return "tanh_clamp";
    VAE_OP_CASES_VIDEO: return vae_op_kind_name ((VaeOpKind) kind);
    default: return NULL;
  }
}

/* ------------------------------------------------------------------ cases */

#define OPS_MAX_CHUNKS 4

typedef struct {
  char *group;                 /* the table row */
  char *desc;                  /* shapes and options */
  VaeGraph *graph;
  int n, h, w;
  float *input;
  double *ref;                 /* ref_graph_run's output */
  int oc, oh, ow;
  /* Stream cases (any video op kind): GRAPH is a video model's steady
   * graph, FIRST (or NULL) its first-chunk graph over the same slots; the
   * input is N = the sum of CHUNK_T frames, run as a stream chunk after
   * chunk, each chunk's output compared with ref_graph_run_stream's over
   * one RefState (REFS[k], REF_T[k] frames). */
  gboolean stream;
  VaeGraph *first;
  int n_chunks, chunk_t[OPS_MAX_CHUNKS];
  double *refs[OPS_MAX_CHUNKS];
  int ref_t[OPS_MAX_CHUNKS];
} OpsCase;

static void
ops_case_free (gpointer data)
{
  OpsCase *c = data;
  g_free (c->group);
  g_free (c->desc);
  vae_graph_free (c->graph);
  vae_graph_free (c->first);
  g_free (c->input);
  g_free (c->ref);
  for (int k = 0; k < c->n_chunks; k++)
    g_free (c->refs[k]);
  g_free (c);
}

typedef struct {
  GRand *rng;
  gboolean quick;
  int batch_turn;              /* batches go 1, 2, 3, 1, ... */
  double mac_cap;              /* most multiply-adds per case */
  GPtrArray *cases;
} Gen;

static int
rint_in (Gen *g, int lo, int hi)
{
  return g_rand_int_range (g->rng, lo, hi + 1);
}

static float *
uniform (Gen *g, gsize count, double lo, double hi)
{
  float *v = g_new (float, MAX (count, 1));
  for (gsize i = 0; i < count; i++)
    v[i] = (float) g_rand_double_range (g->rng, lo, hi);
  return v;
}

/* Channel counts: odd and awkward ones, or multiples of 16 (Winograd and
 * the cpu engine's full channel blocks). */
static int
odd_channels (Gen *g, int lo, int hi)
{
  int c;
  do
    c = rint_in (g, lo, hi);
  while (c % 8 == 0);
  return c;
}

static int
block_channels (Gen *g)
{
  return 16 * rint_in (g, 1, 3);
}

/* A spatial size, seldom a multiple of 8. */
static int
size_in (Gen *g, int lo, int hi)
{
  int s = rint_in (g, lo, hi);
  if (s % 8 == 0 && s > lo)
    s--;
  return s;
}

static int
next_batch (Gen *g)
{
  return 1 + g->batch_turn++ % 3;
}

/* Weights with unit gain: outputs stay O(1) whatever the fan-in. */
static int
add_conv (Gen *g, VaeGraph *graph, const char *name, int in, int oc, int k, int stride,
          int pt, int pl, int pb, int pr, gboolean bias, int residual, VaeActivation act)
{
  int ic = vae_graph_channels (graph, in);
  double a = sqrt (3.0 / (ic * k * k));
  float *w = uniform (g, (gsize) oc * ic * k * k, -a, a);
  float *b = bias ? uniform (g, oc, -0.5, 0.5) : NULL;
  return vae_graph_conv (graph, name, in, oc, k, stride, pt, pl, pb, pr, w, b, residual, act);
}

static int
add_norm (Gen *g, VaeGraph *graph, const char *name, int in, int groups, VaeActivation act)
{
  int c = vae_graph_channels (graph, in);
  float *gamma = uniform (g, c, 0.5, 1.5), *beta = uniform (g, c, -0.5, 0.5);
  /* eps 1e-6 as in the KL models, 1e-5 elsewhere */
  float eps = g_rand_boolean (g->rng) ? 1e-6f : 1e-5f;
  return vae_graph_group_norm (graph, name, in, groups, eps, gamma, beta, act);
}

/* A divisor of C as the group count. */
static int
groups_for (Gen *g, int c)
{
  int d[64], nd = 0;
  for (int i = 1; i <= c && nd < 64; i++)
    if (c % i == 0)
      d[nd++] = i;
  return d[rint_in (g, 0, nd - 1)];
}

/* Takes GRAPH; the input is uniform in [offset - scale, offset + scale]. */
static OpsCase *
case_add (Gen *g, const char *group, VaeGraph *graph, int n, int h, int w,
          double offset, double scale, const char *fmt, ...) G_GNUC_PRINTF (9, 10);

static OpsCase *
case_add (Gen *g, const char *group, VaeGraph *graph, int n, int h, int w,
          double offset, double scale, const char *fmt, ...)
{
  OpsCase *c = g_new0 (OpsCase, 1);
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *what = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  /* Smaller frames where the work would pass the cap: oneDNN's reference
   * convolution, which CPUs without AVX-512 get for the blocked layout, is
   * slow. */
  g_autofree int *vh = g_new (int, graph->values->len);
  g_autofree int *vw = g_new (int, graph->values->len);
  while (n * vae_graph_macs (graph, h, w) > g->mac_cap && MAX (h, w) > 2) {
    int nh = h >= w ? h - 1 : h, nw = w > h ? w - 1 : w;
    gboolean fits = TRUE;
    vae_graph_infer_sizes (graph, nh, nw, vh, vw);
    for (guint v = 0; v < graph->values->len; v++)
      fits = fits && vh[v] >= 1 && vw[v] >= 1;
    if (!fits)
      break;
    h = nh;
    w = nw;
  }
  c->group = g_strdup (group);
  c->desc = g_strdup_printf ("n=%d %dx%d (WxH) %d ch: %s", n, w, h,
                             vae_graph_channels (graph, 0), what);
  c->graph = graph;
  c->n = n;
  c->h = h;
  c->w = w;
  c->input = uniform (g, (gsize) n * vae_graph_channels (graph, 0) * h * w,
                      offset - scale, offset + scale);
  g_ptr_array_add (g->cases, c);
  return c;
}

/* A stream case: takes GRAPH and FIRST (NULL: the first chunk runs GRAPH
 * too); CHUNKS: frames per chunk (0-terminated); H and W shrink (in steps
 * of MULT, which they stay multiples of) while the stream's multiply-adds
 * pass the cap. */
static OpsCase *
case_add_stream (Gen *g, const char *group, VaeGraph *graph, VaeGraph *first,
                 const int *chunks, int h, int w, int mult, double offset, double scale,
                 const char *fmt, ...) G_GNUC_PRINTF (11, 12);

static double
stream_macs (const VaeGraph *graph, const VaeGraph *first, const int *chunks, int h, int w)
{
  double macs = 0;
  for (int k = 0; chunks[k]; k++)
    macs += vae_graph_macs_t (k == 0 && first ? first : graph, chunks[k], h, w);
  return macs;
}

static OpsCase *
case_add_stream (Gen *g, const char *group, VaeGraph *graph, VaeGraph *first,
                 const int *chunks, int h, int w, int mult, double offset, double scale,
                 const char *fmt, ...)
{
  OpsCase *c = g_new0 (OpsCase, 1);
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *what = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  h = MAX (mult, h - h % mult);
  w = MAX (mult, w - w % mult);
  g_autofree int *vh = g_new (int, graph->values->len);
  g_autofree int *vw = g_new (int, graph->values->len);
  while (stream_macs (graph, first, chunks, h, w) > g->mac_cap && MAX (h, w) > mult) {
    int nh = h >= w ? h - mult : h, nw = w > h ? w - mult : w;
    gboolean fits = TRUE;
    vae_graph_infer_sizes (graph, nh, nw, vh, vw);
    for (guint v = 0; v < graph->values->len; v++)
      fits = fits && vh[v] >= 1 && vw[v] >= 1;
    if (!fits)
      break;
    h = nh;
    w = nw;
  }
  GString *cs = g_string_new ("");
  int total = 0;
  for (int k = 0; chunks[k]; k++) {
    g_assert (k < OPS_MAX_CHUNKS);
    c->chunk_t[k] = chunks[k];
    c->n_chunks = k + 1;
    total += chunks[k];
    g_string_append_printf (cs, "%s%d", k ? "," : "", chunks[k]);
  }
  g_assert (!first || first->n_states == graph->n_states);
  c->group = g_strdup (group);
  c->desc = g_strdup_printf ("chunks [%s] %dx%d (WxH) %d ch%s: %s", cs->str, w, h,
                             vae_graph_channels (graph, 0),
                             first ? ", own first-chunk graph" : "", what);
  g_string_free (cs, TRUE);
  c->stream = TRUE;
  c->graph = graph;
  c->first = first;
  c->n = total;
  c->h = h;
  c->w = w;
  c->input = uniform (g, (gsize) total * vae_graph_channels (graph, 0) * h * w,
                      offset - scale, offset + scale);
  g_ptr_array_add (g->cases, c);
  return c;
}

/* Random causal conv weights [oc, ic, kt, k, k] with unit gain. */
static int
add_cconv (Gen *g, VaeGraph *graph, const char *name, int in, int oc, int kt, int ts, int k,
           gboolean bias, int state, int residual, VaeActivation act)
{
  int ic = vae_graph_channels (graph, in);
  double a = sqrt (3.0 / (ic * kt * k * k));
  float *w = uniform (g, (gsize) oc * ic * kt * k * k, -a, a);
  float *b = bias ? uniform (g, oc, -0.5, 0.5) : NULL;
  return vae_graph_causal_conv3d (graph, name, in, oc, kt, ts, k, k / 2, w, b, state,
                                  residual, act);
}

static int
add_rms (Gen *g, VaeGraph *graph, const char *name, int in, VaeActivation act)
{
  /* gammas 1 +/- 0.2, as in the test data's random Wan models */
  return vae_graph_rms_norm (graph, name, in,
                             uniform (g, vae_graph_channels (graph, in), 0.8, 1.2), act);
}

static const char *
pad_desc (int pt, int pl, int pb, int pr)
{
  static char s[64];
  g_snprintf (s, sizeof s, "pad t%d l%d b%d r%d", pt, pl, pb, pr);
  return s;
}

/* One op alone, every variant the engines treat apart; returns how many
 * cases it added (0: the kind has no case, which fails the test). */
static int
add_single_op_cases (Gen *g, int kind)
{
  const guint before = g->cases->len;
  const int reps = g->quick ? 1 : 2;
  const int big = g->quick ? 13 : 23;   /* largest side */

  switch ((VaeOpKind) kind) {
    case VAE_OP_CONV2D:
      for (int r = 0; r < reps; r++)
        for (int a = 0; a < 3; a++) {
          VaeActivation act = all_acts[a];
          /* 1x1 projections and shortcuts */
          {
            VaeGraph *gr = vae_graph_new (odd_channels (g, 1, 37));
            int oc = odd_channels (g, 1, 37);
            gboolean bias = g_rand_boolean (g->rng);
            add_conv (g, gr, "conv1x1", 0, oc, 1, 1, 0, 0, 0, 0, bias, -1, act);
            case_add (g, "conv2d 1x1", gr, next_batch (g), size_in (g, 1, big),
                      size_in (g, 1, big), 0, 1, "-> %d ch, %s, act %s", oc,
                      bias ? "bias" : "no bias", act_names[act]);
          }
          /* 3x3 stride 1 pad 1, channels oneDNN's Winograd does not take (ours
           * on AVX2 does, padded with zeros) */
          {
            int ic = odd_channels (g, 1, 40), oc = odd_channels (g, 1, 40);
            VaeGraph *gr = vae_graph_new (ic);
            add_conv (g, gr, "conv3x3", 0, oc, 3, 1, 1, 1, 1, 1, TRUE, -1, act);
            case_add (g, "conv2d 3x3 s1 (direct)", gr, next_batch (g), size_in (g, 2, big),
                      size_in (g, 2, big), 0, 1, "-> %d ch, bias, act %s", oc, act_names[act]);
          }
          /* 3x3 stride 1 pad 1 over whole channel blocks: Winograd (f32) */
          {
            int ic = block_channels (g), oc = block_channels (g);
            VaeGraph *gr = vae_graph_new (ic);
            gboolean bias = g_rand_boolean (g->rng);
            add_conv (g, gr, "conv3x3", 0, oc, 3, 1, 1, 1, 1, 1, bias, -1, act);
            case_add (g, "conv2d 3x3 s1 (winograd)", gr, next_batch (g), size_in (g, 2, big),
                      size_in (g, 2, big), 0, 1, "-> %d ch, %s, act %s", oc,
                      bias ? "bias" : "no bias", act_names[act]);
          }
          /* our AVX2 Winograd F(4x4, 3x3) (ext/onednn/winograd.c): 8k in,
           * 16k out, any size (partial 4x4 tiles, frames smaller than a
           * tile), ReLU or none (SiLU goes direct), bias and residual */
          if (act != VAE_ACT_SILU) {
            int oc = block_channels (g);
            gboolean res = g_rand_boolean (g->rng), bias = g_rand_boolean (g->rng);
            int ic = res ? oc : 8 * rint_in (g, 1, 6);
            VaeGraph *gr = vae_graph_new (ic);
            add_conv (g, gr, "conv3x3", 0, oc, 3, 1, 1, 1, 1, 1, bias, res ? 0 : -1, act);
            case_add (g, "conv2d 3x3 s1 (own winograd)", gr, next_batch (g),
                      size_in (g, 1, big), size_in (g, 1, big), 0, 1, "%d -> %d ch, %s%s, act %s",
                      ic, oc, bias ? "bias" : "no bias", res ? ", + input" : "", act_names[act]);
          }
          /* the KL downsample: 3x3 stride 2, asymmetric pad (0, 0, 1, 1) */
          {
            int ic = g_rand_boolean (g->rng) ? odd_channels (g, 1, 40) : block_channels (g);
            VaeGraph *gr = vae_graph_new (ic);
            add_conv (g, gr, "down", 0, ic, 3, 2, 0, 0, 1, 1, TRUE, -1, act);
            case_add (g, "conv2d 3x3 s2 pad 0,0,1,1", gr, next_batch (g), size_in (g, 3, big),
                      size_in (g, 3, big), 0, 1, "-> %d ch, bias, act %s", ic, act_names[act]);
          }
          /* any kernel, stride and padding, each side its own */
          {
            int k = rint_in (g, 1, 5), s = rint_in (g, 1, 3);
            int pt = rint_in (g, 0, k - 1), pl = rint_in (g, 0, k - 1);
            int pb = rint_in (g, 0, k - 1), pr = rint_in (g, 0, k - 1);
            int ic = odd_channels (g, 1, 24), oc = odd_channels (g, 1, 24);
            int h = MAX (size_in (g, 1, big), k - pt - pb), w = MAX (size_in (g, 1, big), k - pl - pr);
            VaeGraph *gr = vae_graph_new (ic);
            gboolean bias = g_rand_boolean (g->rng);
            add_conv (g, gr, "convkxk", 0, oc, k, s, pt, pl, pb, pr, bias, -1, act);
            case_add (g, "conv2d kxk stride/pad mix", gr, next_batch (g), h, w,
                      0, 1, "-> %d ch, k%d s%d %s, %s, act %s", oc, k, s,
                      pad_desc (pt, pl, pb, pr), bias ? "bias" : "no bias", act_names[act]);
          }
          /* bias + residual + activation in one convolution (residual:
           * the input), odd channels and whole blocks in turn */
          for (int blk = 0; blk < 2; blk++) {
            int c = blk ? block_channels (g) : odd_channels (g, 2, 40);
            int k = g_rand_boolean (g->rng) ? 3 : 1;
            VaeGraph *gr = vae_graph_new (c);
            add_conv (g, gr, "conv+res", 0, c, k, 1, k / 2, k / 2, k / 2, k / 2, TRUE, 0, act);
            case_add (g, blk ? "conv2d +bias+residual (16k ch)" : "conv2d +bias+residual",
                      gr, next_batch (g), size_in (g, 2, big), size_in (g, 2, big), 0, 1,
                      "%dx%d -> %d ch + input, act %s", k, k, c, act_names[act]);
          }
        }
      break;

    case VAE_OP_GROUP_NORM:
      for (int r = 0; r < reps; r++)
        for (int a = 0; a < 3; a++) {
          VaeActivation act = all_acts[a];
          /* odd group sizes and counts (3 channels: the plain input layout) */
          {
            int groups = rint_in (g, 1, 5), per = 2 * rint_in (g, 0, 2) + 1;
            VaeGraph *gr = vae_graph_new (groups * per);
            add_norm (g, gr, "norm", 0, groups, act);
            double offset = g_rand_boolean (g->rng) ? 3.0 : 0.0;
            case_add (g, "group_norm (odd ch)", gr, next_batch (g), size_in (g, 1, big),
                      size_in (g, 1, big), offset, 1, "%d groups of %d, act %s, mean %.0f",
                      groups, per, act_names[act], offset);
          }
          /* whole channel blocks, groups across and within blocks */
          {
            int c = block_channels (g), groups = groups_for (g, c);
            VaeGraph *gr = vae_graph_new (c);
            add_norm (g, gr, "norm", 0, groups, act);
            double offset = g_rand_boolean (g->rng) ? 3.0 : 0.0;
            case_add (g, "group_norm (16k ch)", gr, next_batch (g), size_in (g, 1, big),
                      size_in (g, 1, big), offset, 2, "%d groups of %d, act %s, mean %.0f",
                      groups, c / groups, act_names[act], offset);
          }
        }
      break;

    case VAE_OP_ATTENTION:
      for (int r = 0; r < 2 * reps; r++) {
        int c = r % 2 ? block_channels (g) : odd_channels (g, 1, 40);
        VaeGraph *gr = vae_graph_new (c);
        vae_graph_attention (gr, "attn", 0, 0, 0);
        case_add (g, "attention (q=k=v)", gr, next_batch (g), size_in (g, 1, big),
                  size_in (g, 1, big), 0, 1, "q = k = v = input");
      }
      if (!g->quick) {
        /* more than 4096 positions: the cpu engine's query chunks, with a
         * shorter last one */
        int c = rint_in (g, 3, 8);
        VaeGraph *gr = vae_graph_new (c);
        vae_graph_attention (gr, "attn", 0, 0, 0);
        g->mac_cap = INFINITY;   /* oneDNN's matmuls, fast */
        case_add (g, "attention (chunked, >4096 pos)", gr, 1, 67, 65, 0, 1,
                  "q = k = v = input, %d positions", 67 * 65);
        g->mac_cap = MAC_CAP (g->quick);
      }
      break;

    case VAE_OP_UPSAMPLE2X:
      for (int r = 0; r < 2 * reps; r++) {
        int c = r % 2 ? block_channels (g) : odd_channels (g, 1, 40);
        VaeGraph *gr = vae_graph_new (c);
        vae_graph_upsample2x (gr, "up", 0);
        case_add (g, "upsample2x", gr, next_batch (g), size_in (g, 1, big),
                  size_in (g, 1, big), 0, 1, "nearest");
      }
      break;

    case VAE_OP_TANH_CLAMP:
      for (int r = 0; r < 2 * reps; r++) {
        static const float clamps[] = { 3.0f, 1.0f, 0.5f };
        float cl = clamps[r % 3];
        VaeGraph *gr = vae_graph_new (odd_channels (g, 1, 40));
        vae_graph_tanh_clamp (gr, "clamp", 0, cl);
        case_add (g, "tanh_clamp", gr, next_batch (g), size_in (g, 1, big),
                  size_in (g, 1, big), 0, 3 * cl, "clamp %g, input in +-%g", cl, 3 * cl);
      }
      break;

    case VAE_OP_CAUSAL_CONV3D: {
      /* (kt, time stride): pointwise, TAEHV's MemBlock (K = 1), Wan's
       * 3x3x3 (K = 2), frame pairs (K = 0), Wan's downsample3d time conv
       * (K = 1, stride 2); kernels 1 and 3; chunk schedules that carry
       * the state over: 1 then 4 then 4, 2-frame chunks, uneven ones */
      static const int kts[][2] = { { 1, 1 }, { 2, 1 }, { 3, 1 }, { 2, 2 }, { 3, 2 } };
      static const int sched_s1[][OPS_MAX_CHUNKS] = { { 1, 4, 4, 0 }, { 2, 2, 2, 0 },
                                                      { 3, 1, 5, 0 } };
      static const int sched_s2[][OPS_MAX_CHUNKS] = { { 2, 4, 2, 0 }, { 4, 2, 4, 0 } };
      int turn = 0;
      for (int r = 0; r < reps; r++)
        for (guint i = 0; i < G_N_ELEMENTS (kts); i++)
          for (int k = 1; k <= 3; k += 2) {
            const int kt = kts[i][0], ts = kts[i][1], K = kt - ts;
            VaeActivation act = all_acts[turn % 3];
            const int *sched = ts == 1 ? sched_s1[turn % 3] : sched_s2[turn % 2];
            turn++;
            /* residual (the input) where the output has the input's frames */
            gboolean res = ts == 1 && g_rand_boolean (g->rng);
            int ic = k == 3 && g_rand_boolean (g->rng) ? block_channels (g)
                                                       : odd_channels (g, 1, 21);
            int oc = res ? ic : odd_channels (g, 1, 21);
            gboolean bias = g_rand_boolean (g->rng);
            VaeGraph *gr = vae_graph_new (ic);
            add_cconv (g, gr, "cconv", 0, oc, kt, ts, k, bias, K > 0 ? 0 : -1, res ? 0 : -1, act);
            case_add_stream (g, "causal_conv3d", gr, NULL, sched, size_in (g, 1, big),
                             size_in (g, 1, big), 1, 0, 1,
                             "-> %d ch, kt %d time stride %d (K %d), %dx%d, %s%s, act %s", oc,
                             kt, ts, K, k, k, bias ? "bias" : "no bias",
                             res ? ", + input" : "", act_names[act]);
          }
      /* our AVX2 Winograd over time taps (ext/onednn/winograd.c): 3x3,
       * 8k in, 16k out, ReLU or none, taps over zero history skipped at
       * the stream's start */
      for (int r = 0; r < reps; r++)
        for (int kt = 1; kt <= 3; kt++) {
          const int *sched = sched_s1[(r + kt) % 3];
          VaeActivation act = (r + kt) % 2 ? VAE_ACT_RELU : VAE_ACT_NONE;
          int oc = block_channels (g);
          gboolean res = g_rand_boolean (g->rng), bias = g_rand_boolean (g->rng);
          int ic = res ? oc : 8 * rint_in (g, 1, 6);
          VaeGraph *gr = vae_graph_new (ic);
          add_cconv (g, gr, "cconv", 0, oc, kt, 1, 3, bias, kt > 1 ? 0 : -1, res ? 0 : -1, act);
          case_add_stream (g, "causal_conv3d (own winograd)", gr, NULL, sched,
                           size_in (g, 1, big), size_in (g, 1, big), 1, 0, 1,
                           "%d -> %d ch, kt %d, 3x3, %s%s, act %s", ic, oc, kt,
                           bias ? "bias" : "no bias", res ? ", + input" : "", act_names[act]);
        }
      /* TIME_PASSTHROUGH in the first chunk (Wan's downsample3d: the
       * frame passes and is kept), the stride-2 time conv after */
      for (int r = 0; r < reps; r++) {
        int c = r % 2 ? block_channels (g) : odd_channels (g, 1, 21);
        VaeGraph *first = vae_graph_new (c), *gr = vae_graph_new (c);
        vae_graph_time_passthrough (first, "time_conv", 0, 3, 2, 0);
        add_cconv (g, gr, "time_conv", 0, c, 3, 2, 1, TRUE, 0, -1, VAE_ACT_NONE);
        static const int sched[] = { 1, 4, 4, 0 };
        case_add_stream (g, "causal_conv3d (passthrough first)", gr, first, sched,
                         size_in (g, 1, big), size_in (g, 1, big), 1, 0, 1,
                         "first chunk passes through, then kt 3 stride 2 (3,1,1)");
      }
      /* TIME_PASSTHROUGH alone as the steady graph (out = in, slot kept) */
      {
        int c = odd_channels (g, 1, 21);
        VaeGraph *gr = vae_graph_new (c);
        vae_graph_time_passthrough (gr, "pass", 0, 3, 2, 0);
        static const int sched[] = { 1, 4, 0 };
        case_add_stream (g, "causal_conv3d (passthrough)", gr, NULL, sched,
                         size_in (g, 1, big), size_in (g, 1, big), 1, 0, 1,
                         "time passthrough kt 3 stride 2");
      }
      break;
    }

    case VAE_OP_RMS_NORM:
      for (int r = 0; r < reps; r++)
        for (int a = 0; a < 3; a++) {
          VaeActivation act = all_acts[a];
          int c = (a + r) % 2 ? block_channels (g) : odd_channels (g, 1, 40);
          VaeGraph *gr = vae_graph_new (c);
          add_rms (g, gr, "rms", 0, act);
          double offset = g_rand_boolean (g->rng) ? 2.0 : 0.0;
          static const int sched[] = { 1, 4, 0 };
          case_add_stream (g, "rms_norm", gr, NULL, sched, size_in (g, 1, big),
                           size_in (g, 1, big), 1, offset, 1, "act %s, mean %.0f",
                           act_names[act], offset);
        }
      break;

    case VAE_OP_FRAMES_TO_CHANNELS:
      for (int r = 0; r < 2 * reps; r++) {
        int s = r % 2 ? 1 : 2;
        int c = r < 2 ? odd_channels (g, 1, 40) : block_channels (g);
        VaeGraph *gr = vae_graph_new (c);
        vae_graph_frames_to_channels (gr, "tpool", 0, s);
        static const int sched2[] = { 2, 4, 2, 0 }, sched1[] = { 1, 3, 0 };
        case_add_stream (g, "frames_to_channels", gr, NULL, s == 2 ? sched2 : sched1,
                         size_in (g, 1, big), size_in (g, 1, big), 1, 0, 1, "s %d", s);
      }
      break;

    case VAE_OP_CHANNELS_TO_FRAMES:
      for (int r = 0; r < 2 * reps; r++) {
        int s = r % 2 ? 1 : 2;
        int c = (r < 2 ? odd_channels (g, 1, 20) : block_channels (g)) * s;
        VaeGraph *gr = vae_graph_new (c);
        vae_graph_channels_to_frames (gr, "tgrow", 0, s);
        static const int sched[] = { 1, 2, 1, 0 };
        case_add_stream (g, "channels_to_frames", gr, NULL, sched, size_in (g, 1, big),
                         size_in (g, 1, big), 1, 0, 1, "s %d", s);
      }
      break;

    case VAE_OP_SPACE_TO_CHANNELS:
    case VAE_OP_CHANNELS_TO_SPACE:
      for (int r = 0; r < reps; r++)
        for (int order = 0; order < 3; order++) {
          /* p 2 in both orders (pixel_unshuffle, Wan 2.2's column major), p 1 */
          int p = order < 2 ? 2 : 1;
          gboolean cm = order == 1;
          gboolean to_ch = kind == VAE_OP_SPACE_TO_CHANNELS;
          int c = odd_channels (g, 1, 13) * (to_ch ? 1 : p * p);
          VaeGraph *gr = vae_graph_new (c);
          /* an odd count of p-blocks: sizes not multiples of 4 */
          int h = p * (2 * rint_in (g, 0, big / 4) + 1), w = p * (2 * rint_in (g, 0, big / 4) + 1);
          if (to_ch)
            vae_graph_space_to_channels (gr, "patchify", 0, p, cm);
          else
            vae_graph_channels_to_space (gr, "unpatchify", 0, p, cm);
          static const int sched[] = { 1, 3, 0 };
          case_add_stream (g, to_ch ? "space_to_channels" : "channels_to_space", gr, NULL,
                           sched, to_ch ? h : h / p, to_ch ? w : w / p, to_ch ? p : 1, 0, 1,
                           "p %d, %s", p, cm ? "column major (Wan 2.2)" : "pixel_unshuffle order");
        }
      break;

    case VAE_OP_AVG_DOWN3D: {
      /* Wan 2.2's instances scaled down: (160,160,1,2) 2x2 average pool,
       * (160,320,2,2) and (320,640,2,2) time into channels, (640,640,1,1)
       * identity; and groups that straddle input channels (3 -> 4, g 6) */
      static const struct { int cmul_num, cmul_den, ft, fs; } inst[] = {
        { 1, 1, 1, 2 }, { 2, 1, 2, 2 }, { 1, 1, 1, 1 }, { 4, 3, 2, 2 },
      };
      for (int r = 0; r < reps; r++)
        for (guint i = 0; i < G_N_ELEMENTS (inst); i++) {
          int cin = inst[i].cmul_den == 3 ? 3 * rint_in (g, 1, 3) : odd_channels (g, 1, 21);
          int cout = cin * inst[i].cmul_num / inst[i].cmul_den;
          int ft = inst[i].ft, fs = inst[i].fs;
          VaeGraph *gr = vae_graph_new (cin);
          vae_graph_avg_down3d (gr, "avg_down", 0, cout, ft, fs);
          /* the first chunk's single frame is front-padded */
          static const int sched[] = { 1, 4, 2, 0 };
          case_add_stream (g, "avg_down3d", gr, NULL, sched, size_in (g, fs, big),
                           size_in (g, fs, big), fs, 0, 1, "(%d,%d,%d,%d)", cin, cout, ft, fs);
        }
      break;
    }

    case VAE_OP_DUP_UP3D: {
      /* (1024,1024,2,2) r 8, the first chunk's graph dropping ft - 1 frames
       * (drop_first); (1024,512,1,2) r 2; (c, 2c, 2, 1) r 4 */
      static const struct { int cout_num, cout_den, ft, fs; } inst[] = {
        { 1, 1, 2, 2 }, { 1, 2, 1, 2 }, { 2, 1, 2, 1 },
      };
      for (int r = 0; r < reps; r++)
        for (guint i = 0; i < G_N_ELEMENTS (inst); i++) {
          int cin = odd_channels (g, 1, 13) * inst[i].cout_den;
          int cout = cin * inst[i].cout_num / inst[i].cout_den;
          int ft = inst[i].ft, fs = inst[i].fs;
          VaeGraph *first = vae_graph_new (cin), *gr = vae_graph_new (cin);
          vae_graph_dup_up3d (first, "dup_up", 0, cout, ft, fs, TRUE);
          vae_graph_dup_up3d (gr, "dup_up", 0, cout, ft, fs, FALSE);
          static const int sched[] = { 1, 1, 2, 0 };
          case_add_stream (g, "dup_up3d", gr, first, sched, size_in (g, 1, big / 2),
                           size_in (g, 1, big / 2), 1, 0, 1, "(%d,%d,%d,%d), drop_first in "
                           "the first chunk", cin, cout, ft, fs);
        }
      /* drop_first in the steady graph too */
      {
        int cin = odd_channels (g, 1, 13);
        VaeGraph *gr = vae_graph_new (cin);
        vae_graph_dup_up3d (gr, "dup_up", 0, cin, 2, 2, TRUE);
        static const int sched[] = { 1, 2, 0 };
        case_add_stream (g, "dup_up3d", gr, NULL, sched, size_in (g, 1, big / 2),
                         size_in (g, 1, big / 2), 1, 0, 1, "(%d,%d,2,2), drop_first always",
                         cin, cin);
      }
      break;
    }

    case VAE_OP_ADD:
      for (int r = 0; r < 2 * reps; r++) {
        int c = r % 2 ? block_channels (g) : odd_channels (g, 1, 40);
        VaeGraph *gr = vae_graph_new (c);
        vae_graph_add (gr, "add", 0, 0);
        static const int sched[] = { 1, 4, 0 };
        case_add_stream (g, "add", gr, NULL, sched, size_in (g, 1, big), size_in (g, 1, big),
                         1, 0, 1, "x + x");
      }
      break;

    default:
      break;
  }
  return g->cases->len - before;
}

/* Small graphs where the engines fuse, fold or change layouts between ops. */
static void
add_graph_cases (Gen *g)
{
  const int reps = g->quick ? 1 : 2;
  const int big = g->quick ? 11 : 19;
  /* graphs get more work per case than single ops */
  g->mac_cap = 3 * MAC_CAP (g->quick);

  for (int r = 0; r < 2 * reps; r++) {
    /* conv -> group norm + silu -> conv + residual (a ResNet block after
     * conv_in), then a 1x1 so that the 3x3s do not write the output (the
     * cpu bf16 path runs those in bf16).  Widths: whole blocks, then not. */
    int ic = rint_in (g, 3, 8), c = r % 2 ? odd_channels (g, 17, 28) : 16 * rint_in (g, 1, 2);
    int oc = odd_channels (g, 1, 9), groups = groups_for (g, c);
    VaeGraph *gr = vae_graph_new (ic);
    int x = add_conv (g, gr, "conv_in", 0, c, 3, 1, 1, 1, 1, 1, TRUE, -1, VAE_ACT_NONE);
    int t = add_norm (g, gr, "norm1", x, groups, VAE_ACT_SILU);
    t = add_conv (g, gr, "conv1", t, c, 3, 1, 1, 1, 1, 1, TRUE, -1, VAE_ACT_NONE);
    t = add_norm (g, gr, "norm2", t, groups, VAE_ACT_SILU);
    t = add_conv (g, gr, "conv2", t, c, 3, 1, 1, 1, 1, 1, TRUE, x, VAE_ACT_NONE);
    add_conv (g, gr, "conv_out", t, oc, 1, 1, 0, 0, 0, 0, TRUE, -1, VAE_ACT_NONE);
    case_add (g, "graph: conv>gn+silu>conv+res", gr, next_batch (g), size_in (g, 3, big),
              size_in (g, 3, big), 0, 1, "%d ch, %d groups, resnet block, 1x1 -> %d",
              c, groups, oc);
  }

  for (int r = 0; r < 2 * reps; r++) {
    /* upsample -> conv3x3 (+act) -> group norm + silu -> conv3x3: the cpu
     * engine folds the upsample into the first conv, in float32 when
     * Winograd does not take it (odd widths) and in bf16. */
    gboolean blocks = r % 2;
    int c = blocks ? 16 * rint_in (g, 1, 2) : odd_channels (g, 17, 28);
    int c2 = blocks ? 16 * rint_in (g, 1, 2) : odd_channels (g, 17, 28);
    int groups = groups_for (g, c2);
    VaeActivation act = all_acts[rint_in (g, 0, 2)];
    VaeGraph *gr = vae_graph_new (c);
    int t = vae_graph_upsample2x (gr, "up", 0);
    t = add_conv (g, gr, "up.conv", t, c2, 3, 1, 1, 1, 1, 1, TRUE, -1, act);
    t = add_norm (g, gr, "norm", t, groups, VAE_ACT_SILU);
    add_conv (g, gr, "conv", t, odd_channels (g, 1, 9), 3, 1, 1, 1, 1, 1, TRUE, -1,
              VAE_ACT_NONE);
    case_add (g, blocks ? "graph: up>conv (wino f32, fold bf16)" : "graph: up>conv (folded)",
              gr, next_batch (g), size_in (g, 2, big), size_in (g, 2, big), 0, 1,
              "-> %d ch act %s, gn %d + silu, conv3x3", c2, act_names[act], groups);
  }

  for (int r = 0; r < reps; r++) {
    /* upsample -> conv3x3 as the whole graph (the conv writes the output) */
    int c = odd_channels (g, 1, 40);
    VaeGraph *gr = vae_graph_new (c);
    int t = vae_graph_upsample2x (gr, "up", 0);
    int oc = odd_channels (g, 1, 40);
    add_conv (g, gr, "up.conv", t, oc, 3, 1, 1, 1, 1, 1, TRUE, -1, VAE_ACT_NONE);
    case_add (g, "graph: up>conv (folded)", gr, next_batch (g), size_in (g, 2, big),
              size_in (g, 2, big), 0, 1, "-> %d ch, conv writes the output", oc);
  }

  for (int r = 0; r < 2 * reps; r++) {
    /* conv(x) + x where x dies there: an engine that writes the sum over
     * the dying residual must not do it while the conv still reads x */
    int c = r % 2 ? 16 * rint_in (g, 1, 2) : odd_channels (g, 5, 28);
    int k = r < 2 ? 3 : 1;
    VaeGraph *gr = vae_graph_new (rint_in (g, 3, 8));
    int x = add_conv (g, gr, "conv_in", 0, c, 3, 1, 1, 1, 1, 1, TRUE, -1, VAE_ACT_NONE);
    add_conv (g, gr, "conv+self", x, c, k, 1, k / 2, k / 2, k / 2, k / 2, TRUE, x,
              VAE_ACT_SILU);
    case_add (g, "graph: conv>conv(x)+x", gr, next_batch (g), size_in (g, 2, big),
              size_in (g, 2, big), 0, 1, "%d ch, %dx%d conv of x plus x, silu", c, k, k);
  }

  for (int r = 0; r < 2 * reps; r++) {
    /* the mid-block attention: group norm, q/k/v 1x1s, attention, 1x1
     * projection + residual */
    int c = r % 2 ? 16 * rint_in (g, 1, 2) : odd_channels (g, 3, 40);
    int groups = groups_for (g, c);
    VaeGraph *gr = vae_graph_new (c);
    int nrm = add_norm (g, gr, "norm", 0, groups, VAE_ACT_NONE);
    int q = add_conv (g, gr, "q", nrm, c, 1, 1, 0, 0, 0, 0, TRUE, -1, VAE_ACT_NONE);
    int k = add_conv (g, gr, "k", nrm, c, 1, 1, 0, 0, 0, 0, TRUE, -1, VAE_ACT_NONE);
    int v = add_conv (g, gr, "v", nrm, c, 1, 1, 0, 0, 0, 0, TRUE, -1, VAE_ACT_NONE);
    int at = vae_graph_attention (gr, "attn", q, k, v);
    add_conv (g, gr, "proj", at, c, 1, 1, 0, 0, 0, 0, TRUE, 0, VAE_ACT_NONE);
    case_add (g, "graph: gn>qkv>attention>proj+res", gr, next_batch (g), size_in (g, 2, big),
              size_in (g, 2, big), 0, 1, "%d groups", groups);
  }

  for (int r = 0; r < reps; r++) {
    /* TAESD: latent clamp, a Block (conv relu, conv relu, conv + skip,
     * relu), upsample, conv without bias, conv out */
    int c = r % 2 ? odd_channels (g, 17, 28) : 16 * rint_in (g, 1, 2);
    int lat = rint_in (g, 3, 6);
    VaeGraph *gr = vae_graph_new (lat);
    int t = vae_graph_tanh_clamp (gr, "clamp", 0, 3.0f);
    int x = add_conv (g, gr, "conv_in", t, c, 3, 1, 1, 1, 1, 1, TRUE, -1, VAE_ACT_RELU);
    t = add_conv (g, gr, "b.conv0", x, c, 3, 1, 1, 1, 1, 1, TRUE, -1, VAE_ACT_RELU);
    t = add_conv (g, gr, "b.conv1", t, c, 3, 1, 1, 1, 1, 1, TRUE, -1, VAE_ACT_RELU);
    t = add_conv (g, gr, "b.conv2", t, c, 3, 1, 1, 1, 1, 1, TRUE, x, VAE_ACT_RELU);
    t = vae_graph_upsample2x (gr, "up", t);
    t = add_conv (g, gr, "up.conv", t, c, 3, 1, 1, 1, 1, 1, FALSE, -1, VAE_ACT_NONE);
    add_conv (g, gr, "conv_out", t, 3, 3, 1, 1, 1, 1, 1, TRUE, -1, VAE_ACT_NONE);
    case_add (g, "graph: taesd clamp>block>up>conv", gr, next_batch (g), size_in (g, 2, big),
              size_in (g, 2, big), 0, 4, "%d ch", c);
  }

  /* ---- video graphs, through streams ---- */
  static const int three[] = { 1, 4, 4, 0 }, fours[] = { 4, 4, 4, 0 };

  for (int r = 0; r < 2 * reps; r++) {
    /* Wan residual block: rms + silu -> causal 3x3x3 -> rms + silu ->
     * causal 3x3x3 + shortcut (1x1 conv when the width changes, else the
     * input), over 3 chunks; widths odd, then whole blocks */
    gboolean change = r % 2;
    int ic = r < 2 ? odd_channels (g, 3, 21) : block_channels (g);
    int oc = change ? odd_channels (g, 3, 21) : ic;
    VaeGraph *gr = vae_graph_new (ic);
    int sc = 0;
    if (change)
      sc = add_conv (g, gr, "shortcut", 0, oc, 1, 1, 0, 0, 0, 0, TRUE, -1, VAE_ACT_NONE);
    int t = add_rms (g, gr, "norm1", 0, VAE_ACT_SILU);
    t = add_cconv (g, gr, "conv1", t, oc, 3, 1, 3, TRUE, 0, -1, VAE_ACT_NONE);
    t = add_rms (g, gr, "norm2", t, VAE_ACT_SILU);
    add_cconv (g, gr, "conv2", t, oc, 3, 1, 3, TRUE, 1, sc, VAE_ACT_NONE);
    case_add_stream (g, "graph: wan resblock", gr, NULL, three, size_in (g, 2, big),
                     size_in (g, 2, big), 1, 0, 1, "%d -> %d ch, %s shortcut", ic, oc,
                     change ? "1x1" : "identity");
  }

  for (int r = 0; r < reps; r++) {
    /* The same block with the shortcut as an ADD after the conv */
    int c = odd_channels (g, 3, 21);
    VaeGraph *gr = vae_graph_new (c);
    int t = add_rms (g, gr, "norm1", 0, VAE_ACT_SILU);
    t = add_cconv (g, gr, "conv1", t, c, 3, 1, 3, TRUE, 0, -1, VAE_ACT_NONE);
    t = add_rms (g, gr, "norm2", t, VAE_ACT_SILU);
    t = add_cconv (g, gr, "conv2", t, c, 3, 1, 3, TRUE, 1, -1, VAE_ACT_NONE);
    vae_graph_add (gr, "add", t, 0);
    case_add_stream (g, "graph: wan resblock (add)", gr, NULL, three, size_in (g, 2, big),
                     size_in (g, 2, big), 1, 0, 1, "%d ch, shortcut by ADD", c);
  }

  for (int r = 0; r < 2 * reps; r++) {
    /* TAEHV MemBlock: relu(conv(relu(conv(relu(cconv kt2 (x, past))))) + x) */
    int c = r % 2 ? block_channels (g) : odd_channels (g, 3, 21);
    VaeGraph *gr = vae_graph_new (c);
    int t = add_cconv (g, gr, "mem.conv.0", 0, c, 2, 1, 3, TRUE, 0, -1, VAE_ACT_RELU);
    t = add_conv (g, gr, "mem.conv.2", t, c, 3, 1, 1, 1, 1, 1, TRUE, -1, VAE_ACT_RELU);
    add_conv (g, gr, "mem.conv.4", t, c, 3, 1, 1, 1, 1, 1, TRUE, 0, VAE_ACT_RELU);
    static const int sched[][OPS_MAX_CHUNKS] = { { 4, 4, 4, 0 }, { 1, 2, 1, 0 } };
    case_add_stream (g, "graph: taehv memblock", gr, NULL, sched[r % 2], size_in (g, 2, big),
                     size_in (g, 2, big), 1, 0, 1, "%d ch", c);
  }

  for (int r = 0; r < reps; r++) {
    /* TAEHV encoder stage: pixel_unshuffle 2 -> conv relu -> TPool 2
     * (frames_to_channels + 1x1 no bias) -> conv s2 no bias -> MemBlock */
    int c = odd_channels (g, 5, 15);
    VaeGraph *gr = vae_graph_new (3);
    int t = vae_graph_space_to_channels (gr, "unshuffle", 0, 2, FALSE);
    t = add_conv (g, gr, "conv_in", t, c, 3, 1, 1, 1, 1, 1, TRUE, -1, VAE_ACT_RELU);
    t = vae_graph_frames_to_channels (gr, "tpool", t, 2);
    t = add_conv (g, gr, "tpool.conv", t, c, 1, 1, 0, 0, 0, 0, FALSE, -1, VAE_ACT_NONE);
    int x = add_conv (g, gr, "down", t, c, 3, 2, 1, 1, 1, 1, FALSE, -1, VAE_ACT_NONE);
    t = add_cconv (g, gr, "mem.conv.0", x, c, 2, 1, 3, TRUE, 0, -1, VAE_ACT_RELU);
    t = add_conv (g, gr, "mem.conv.2", t, c, 3, 1, 1, 1, 1, 1, TRUE, -1, VAE_ACT_RELU);
    add_conv (g, gr, "mem.conv.4", t, c, 3, 1, 1, 1, 1, 1, TRUE, x, VAE_ACT_RELU);
    case_add_stream (g, "graph: taehv encoder stage", gr, NULL, fours, size_in (g, 4, big),
                     size_in (g, 4, big), 2, 0.5, 0.5, "%d ch", c);
  }

  for (int r = 0; r < reps; r++) {
    /* TAEHV decoder stage: clamp -> conv relu -> MemBlock -> upsample ->
     * TGrow 2 (1x1 no bias C -> 2C + channels_to_frames) -> conv no bias
     * -> conv -> pixel_shuffle 2 */
    int lat = rint_in (g, 3, 6), c = odd_channels (g, 5, 15);
    VaeGraph *gr = vae_graph_new (lat);
    int t = vae_graph_tanh_clamp (gr, "clamp", 0, 3.0f);
    int x = add_conv (g, gr, "conv_in", t, c, 3, 1, 1, 1, 1, 1, TRUE, -1, VAE_ACT_RELU);
    t = add_cconv (g, gr, "mem.conv.0", x, c, 2, 1, 3, TRUE, 0, -1, VAE_ACT_RELU);
    t = add_conv (g, gr, "mem.conv.2", t, c, 3, 1, 1, 1, 1, 1, TRUE, -1, VAE_ACT_RELU);
    t = add_conv (g, gr, "mem.conv.4", t, c, 3, 1, 1, 1, 1, 1, TRUE, x, VAE_ACT_RELU);
    /* the checkpoint's order, or TGrow first (model-taehv.c's: the
     * upsample then folds into the conv) */
    gboolean grow_first = g_rand_boolean (g->rng);
    if (!grow_first)
      t = vae_graph_upsample2x (gr, "up", t);
    t = add_conv (g, gr, "tgrow.conv", t, 2 * c, 1, 1, 0, 0, 0, 0, FALSE, -1, VAE_ACT_NONE);
    t = vae_graph_channels_to_frames (gr, "tgrow", t, 2);
    if (grow_first)
      t = vae_graph_upsample2x (gr, "up", t);
    t = add_conv (g, gr, "conv", t, c, 3, 1, 1, 1, 1, 1, FALSE, -1, VAE_ACT_RELU);
    t = add_conv (g, gr, "conv_out", t, 12, 3, 1, 1, 1, 1, 1, TRUE, -1, VAE_ACT_NONE);
    vae_graph_channels_to_space (gr, "shuffle", t, 2, FALSE);
    static const int ones[] = { 1, 1, 2, 0 };
    case_add_stream (g, "graph: taehv decoder stage", gr, NULL, ones, size_in (g, 2, big / 2),
                     size_in (g, 2, big / 2), 1, 0, 4, "%d latent ch, %d ch%s", lat, c,
                     grow_first ? ", TGrow first" : "");
  }

  for (int r = 0; r < reps; r++) {
    /* Wan 2.2 residual down block tail: x -> downsample3d (pad r/b, conv
     * s2 no pad; time conv kt3 s2, passthrough in the first chunk) + the
     * AvgDown3D(c, 2c, 2, 2) shortcut after a 1x1 to 2c */
    int c = odd_channels (g, 3, 13);
    VaeGraph *first = vae_graph_new (c), *gr = vae_graph_new (c);
    VaeGraph *both[2] = { first, gr };
    const double a2 = sqrt (3.0 / (c * 9)), at = sqrt (1.0 / (2 * c));
    float *w2d = uniform (g, (gsize) 2 * c * c * 9, -a2, a2);
    float *b2d = uniform (g, 2 * c, -0.5, 0.5);
    float *wt = uniform (g, (gsize) 2 * c * 2 * c * 3, -at, at);
    float *bt = uniform (g, 2 * c, -0.5, 0.5);
    for (int k = 0; k < 2; k++) {
      /* the two graphs share the 2-D conv's weights (the store of each
       * graph owns its own copy here: graphs of a model share a store) */
      VaeGraph *q = both[k];
      float *w1 = k ? w2d : g_memdup2 (w2d, (gsize) 2 * c * c * 9 * sizeof (float));
      float *b1 = k ? b2d : g_memdup2 (b2d, (gsize) 2 * c * sizeof (float));
      int t = vae_graph_conv (q, "resample.1", 0, 2 * c, 3, 2, 0, 0, 1, 1, w1, b1, -1,
                              VAE_ACT_NONE);
      if (k == 0)
        t = vae_graph_time_passthrough (q, "time_conv", t, 3, 2, 0);
      else
        t = vae_graph_causal_conv3d (q, "time_conv", t, 2 * c, 3, 2, 1, 0, wt, bt, 0, -1,
                                     VAE_ACT_NONE);
      /* AvgDown3D(c, 2c, 2, 2): the first chunk's one frame is padded */
      int sc = vae_graph_avg_down3d (q, "avg_down", 0, 2 * c, 2, 2);
      vae_graph_add (q, "add", t, sc);
    }
    static const int sched[] = { 1, 4, 4, 0 };
    case_add_stream (g, "graph: wan2.2 down (avg_down3d)", gr, first, sched,
                     size_in (g, 4, big), size_in (g, 4, big), 2, 0, 1,
                     "%d -> %d ch, time passthrough first", c, 2 * c);
  }

  for (int r = 0; r < reps; r++) {
    /* Wan upsample3d with the DupUp3D(c, c, 2, 2) shortcut: causal time
     * conv kt3 C -> 2C, channels_to_frames 2, upsample, conv; the first
     * chunk skips the time conv and drops the DupUp3D's first frame */
    int c = odd_channels (g, 3, 13);
    VaeGraph *first = vae_graph_new (c), *gr = vae_graph_new (c);
    float *wt = uniform (g, (gsize) 2 * c * c * 3, -sqrt (1.0 / c), sqrt (1.0 / c));
    float *bt = uniform (g, 2 * c, -0.5, 0.5);
    float *wc = uniform (g, (gsize) c * c * 9, -sqrt (3.0 / (c * 9)), sqrt (3.0 / (c * 9)));
    float *bc = uniform (g, c, -0.5, 0.5);
    for (int k = 0; k < 2; k++) {
      VaeGraph *q = k ? gr : first;
      float *w1 = k ? wc : g_memdup2 (wc, (gsize) c * c * 9 * sizeof (float));
      float *b1 = k ? bc : g_memdup2 (bc, (gsize) c * sizeof (float));
      int t;
      if (k) {
        t = vae_graph_causal_conv3d (q, "time_conv", 0, 2 * c, 3, 1, 1, 0, wt, bt, 0, -1,
                                     VAE_ACT_NONE);
        t = vae_graph_channels_to_frames (q, "time_split", t, 2);
        t = vae_graph_upsample2x (q, "up", t);
      } else {
        /* The first chunk skips the time conv and leaves its slot zero
         * (diffusers' "Rep"): the graph has the slot without an op on it. */
        q->n_states = 1;
        t = vae_graph_upsample2x (q, "up", 0);
      }
      t = vae_graph_conv (q, "resample.1", t, c, 3, 1, 1, 1, 1, 1, w1, b1, -1, VAE_ACT_NONE);
      int sc = vae_graph_dup_up3d (q, "dup_up", 0, c, 2, 2, k == 0);
      vae_graph_add (q, "add", t, sc);
    }
    static const int sched[] = { 1, 1, 2, 0 };
    case_add_stream (g, "graph: wan up3d (dup_up3d)", gr, first, sched,
                     size_in (g, 1, big / 2), size_in (g, 1, big / 2), 1, 0, 1,
                     "%d ch, first chunk without the time conv", c);
  }
  g->mac_cap = MAC_CAP (g->quick);
}

/* ---------------------------------------------------------------- running */

typedef struct {
  const char *backend;
  VaePrecision precision;
  const char *precision_name;
  char backend_precision[32];  /* "cpu/f32" */
} Run;

/* Engine bugs this test found that are not fixed yet: a failing case of
 * such a row is reported (with the reason) but does not fail the run; a row
 * that passes again fails it, so that the entry goes with the fix. */
static const struct {
  const char *backend, *group, *reason;
} known_failures[] = {
  /* (fixed: the cpu engine's convolution written over its own input when
   * out = conv(x) + x, found by this test.)  NULL ends the list. */
  { NULL, NULL, NULL },
};

static const char *
known_failure (const char *backend, const char *group)
{
  for (guint i = 0; known_failures[i].backend; i++)
    if (g_str_equal (known_failures[i].backend, backend)
        && g_str_equal (known_failures[i].group, group))
      return known_failures[i].reason;
  return NULL;
}

typedef struct {
  const char *group;
  const Run *run;
  int cases, failed, refused, known;   /* known: failures listed above */
  double max_abs, rel_l2;      /* worst */
} Row;

static gboolean verbose;

/* The cuda engine refuses group norms over channel counts that are not a
 * multiple of 8 (cuda-plan.c): an UNSUPPORTED error there is expected. */
static gboolean
may_refuse (const char *backend, const VaeGraph *graph)
{
  if (!g_str_equal (backend, "cuda"))
    return FALSE;
  for (guint i = 0; i < graph->ops->len; i++) {
    const VaeOp *op = vae_graph_op (graph, i);
    if (op->kind == VAE_OP_GROUP_NORM && op->in_channels % 8)
      return TRUE;
  }
  return FALSE;
}

/* Compares COUNT engine outputs (then a guard of 64 x 12345) with REF;
 * FALSE when the engine wrote past the end. */
static gboolean
compare (const Run *run, const float *out, const double *ref, gsize count, double *max_abs,
         double *rel_l2)
{
  for (gsize i = 0; i < 64; i++)
    if (out[count + i] != 12345.0f) {
      g_print ("    FAIL: %s/%s wrote past the end of the output\n", run->backend,
               run->precision_name);
      return FALSE;
    }
  double worst = 0, d2 = 0, r2 = 0;
  for (gsize i = 0; i < count; i++) {
    double d = fabs ((double) out[i] - ref[i]);
    if (!(d <= worst))            /* NaN too */
      worst = isnan (d) ? INFINITY : d;
    d2 += isnan (d) ? INFINITY : d * d;
    r2 += ref[i] * ref[i];
  }
  *max_abs = worst;
  *rel_l2 = r2 > 0 ? sqrt (d2 / r2) : sqrt (d2);
  return TRUE;
}

/* A stream case: the graphs as a video model's encoder (spatial factor 1),
 * one stream over every chunk, each chunk's output compared with its
 * reference (the worst chunk counts); then vae_stream_reset and the first
 * chunk again, which must give the first chunk's output. */
static int
run_stream_case (const Run *run, const OpsCase *c, double *max_abs, double *rel_l2)
{
  VaeModel model = { 0 };
  model.family = VAE_FAMILY_WAN;
  model.path = model.name = (char *) "test-ops";
  model.image_channels = vae_graph_channels (c->graph, 0);
  model.latent_channels = c->oc;
  model.levels = 1;
  model.spatial_factor = 1;
  model.scaling_factor = 1.0;
  model.image_min = -1.0f;
  model.encoder = c->graph;
  model.encoder_first = c->first;
  model.temporal_factor = 4;
  model.encode_first_frames = c->chunk_t[0];
  model.encode_chunk_frames = c->n_chunks > 1 ? c->chunk_t[1] : c->chunk_t[0];
  model.patch_size = 1;
  model.variant = "test-ops";

  VaeEngineOptions options = VAE_ENGINE_OPTIONS_INIT;
  options.precision = run->precision;
  g_autoptr (GError) error = NULL;
  g_autoptr (VaeEngine) engine = vae_engine_new (run->backend, &model, &options, &error);
  if (!engine) {
    g_print ("    FAIL: %s/%s: cannot open a video model: %s\n", run->backend,
             run->precision_name, error->message);
    return -1;
  }
  g_autoptr (VaeStream) stream = vae_stream_new (engine, VAE_DIRECTION_ENCODE, c->h, c->w,
                                                 &error);
  if (!stream) {
    g_print ("    FAIL: %s/%s: no stream: %s\n", run->backend, run->precision_name,
             error->message);
    return -1;
  }
  const gsize in_frame = (gsize) vae_graph_channels (c->graph, 0) * c->h * c->w;
  const gsize out_frame = (gsize) c->oc * c->oh * c->ow;
  *max_abs = *rel_l2 = 0;
  gsize at = 0;
  for (int k = 0; k <= c->n_chunks; k++) {
    /* k = n_chunks: after a reset, chunk 0 again */
    const int ck = k < c->n_chunks ? k : 0;
    if (k == c->n_chunks) {
      vae_stream_reset (stream);
      at = 0;
    }
    int oc, oh, ow;
    int ot = vae_stream_output_shape (stream, c->chunk_t[ck], &oc, &oh, &ow);
    if (ot != c->ref_t[ck] || oc != c->oc || oh != c->oh || ow != c->ow) {
      g_print ("    FAIL: %s/%s: chunk %d: the stream says %d frames %dx%d %d ch, the "
               "reference %d frames %dx%d %d ch\n", run->backend, run->precision_name, k, ot,
               ow, oh, oc, c->ref_t[ck], c->ow, c->oh, c->oc);
      return -1;
    }
    const gsize count = (gsize) ot * out_frame;
    g_autofree float *out = g_new (float, count + 64);
    for (gsize i = 0; i < count; i++)
      out[i] = NAN;
    for (gsize i = 0; i < 64; i++)
      out[count + i] = 12345.0f;
    if (!vae_stream_run (stream, c->input + at * in_frame, c->chunk_t[ck], out, &error)) {
      g_print ("    FAIL: %s/%s: chunk %d: %s\n", run->backend, run->precision_name, k,
               error->message);
      return -1;
    }
    double ma, rl;
    if (!compare (run, out, c->refs[ck], count, &ma, &rl))
      return -1;
    if (verbose)
      g_print ("      chunk %d%s (%d -> %d frames): max|diff| %.2e  rel L2 %.2e\n", ck,
               k == c->n_chunks ? " after reset" : "", c->chunk_t[ck], ot, ma, rl);
    if (!(ma <= *max_abs))
      *max_abs = ma;
    if (!(rl <= *rel_l2))
      *rel_l2 = rl;
    at += c->chunk_t[ck];
  }
  return 1;
}

/* Runs case C; 1: ran (errors in MAX_ABS, REL_L2), 0: refused as expected,
 * -1: failed (message printed). */
static int
run_case (const Run *run, const OpsCase *c, double *max_abs, double *rel_l2)
{
  if (c->stream)
    return run_stream_case (run, c, max_abs, rel_l2);

  VaeModel model = { 0 };
  model.family = VAE_FAMILY_TINY;
  model.path = model.name = (char *) "test-ops";
  model.image_channels = vae_graph_channels (c->graph, 0);
  model.latent_channels = c->oc;
  model.levels = 1;
  model.spatial_factor = 1;
  model.scaling_factor = 1.0;
  model.image_min = -1.0f;
  model.encoder_outputs_moments = FALSE;
  model.encoder = c->graph;

  VaeEngineOptions options = VAE_ENGINE_OPTIONS_INIT;
  options.precision = run->precision;
  g_autoptr (GError) error = NULL;
  g_autoptr (VaeEngine) engine = vae_engine_new (run->backend, &model, &options, &error);
  if (!engine) {
    g_print ("    FAIL: %s/%s: cannot open: %s\n", run->backend, run->precision_name,
             error->message);
    return -1;
  }

  /* NaN where nothing should be left, a guard after the end. */
  const gsize count = (gsize) c->n * c->oc * c->oh * c->ow, guard = 64;
  g_autofree float *out = g_new (float, count + guard);
  for (gsize i = 0; i < count; i++)
    out[i] = NAN;
  for (gsize i = 0; i < guard; i++)
    out[count + i] = 12345.0f;
  VaeBatch batch = { VAE_DIRECTION_ENCODE, c->n, c->h, c->w, c->input, out };
  if (!vae_engine_run (engine, &batch, &error)) {
    if (may_refuse (run->backend, c->graph)
        && g_error_matches (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED)) {
      if (verbose)
        g_print ("    refused, as documented: %s\n", error->message);
      return 0;
    }
    g_print ("    FAIL: %s/%s: %s\n", run->backend, run->precision_name, error->message);
    return -1;
  }
  for (gsize i = 0; i < guard; i++)
    if (out[count + i] != 12345.0f) {
      g_print ("    FAIL: %s/%s wrote past the end of the output\n", run->backend,
               run->precision_name);
      return -1;
    }

  double worst = 0, d2 = 0, r2 = 0;
  for (gsize i = 0; i < count; i++) {
    double d = fabs ((double) out[i] - c->ref[i]);
    if (!(d <= worst))            /* NaN too */
      worst = isnan (d) ? INFINITY : d;
    d2 += isnan (d) ? INFINITY : d * d;
    r2 += c->ref[i] * c->ref[i];
  }
  *max_abs = worst;
  *rel_l2 = r2 > 0 ? sqrt (d2 / r2) : sqrt (d2);
  return 1;
}

static gboolean
within (const Run *run, double max_abs, double rel_l2)
{
  if (run->precision == VAE_PRECISION_F32)
    return max_abs <= F32_MAX_ABS && rel_l2 <= F32_REL_L2;
  return rel_l2 <= REDUCED_REL_L2;
}

static Row *
row_for (GPtrArray *rows, const char *group, const Run *run)
{
  for (guint i = 0; i < rows->len; i++) {
    Row *r = g_ptr_array_index (rows, i);
    if (r->run == run && g_str_equal (r->group, group))
      return r;
  }
  Row *r = g_new0 (Row, 1);
  r->group = group;
  r->run = run;
  g_ptr_array_add (rows, r);
  return r;
}

static void
print_table (GPtrArray *rows, gboolean perturbed)
{
  g_print ("\n%-6s %-5s %-37s %5s  %-18s  %-18s  %s\n", "engine", "prec", "op (variant)",
           "cases", "worst max|diff|", "worst rel L2", perturbed ? "caught" : "result");
  for (guint i = 0; i < rows->len; i++) {
    const Row *r = g_ptr_array_index (rows, i);
    gboolean f32 = r->run->precision == VAE_PRECISION_F32;
    char tol_abs[32] = "", tol_rel[32];
    if (f32)
      g_snprintf (tol_abs, sizeof tol_abs, "(<= %.0e)", F32_MAX_ABS);
    g_snprintf (tol_rel, sizeof tol_rel, "(<= %.0e)", f32 ? F32_REL_L2 : REDUCED_REL_L2);
    g_autofree char *result = NULL;
    if (perturbed)
      result = g_strdup_printf ("%d/%d", r->failed, r->cases - r->refused);
    else if (r->failed)
      result = g_strdup_printf ("FAIL (%d)", r->failed);
    else if (r->known)
      result = g_strdup_printf ("KNOWN FAIL (%d)", r->known);
    else if (known_failure (r->run->backend, r->group) && r->cases > r->refused)
      result = g_strdup ("FAIL (known failure passes)");
    else
      result = g_strdup (r->cases == r->refused ? "refused" : "ok");
    g_autofree char *refused = r->refused ? g_strdup_printf (", %d refused", r->refused)
                                          : g_strdup ("");
    g_print ("%-6s %-5s %-37s %5d  %8.1e %-9s  %8.1e %-9s  %s%s\n", r->run->backend,
             r->run->precision_name, r->group, r->cases, r->max_abs, tol_abs, r->rel_l2,
             tol_rel, result, refused);
  }
}

/* What the cpu engine's oneDNN (2.6) can do on this CPU: bf16 kernels and
 * Winograd need AVX-512 (avx512_core); below it, bf16 primitives are
 * "unimplemented" and 3x3 convolutions over the engine's 16-channel blocks
 * fall back to oneDNN's reference code. */
static const char *
cpu_isa (gboolean *avx512)
{
  *avx512 = TRUE;
#ifdef OPS_HAVE_ONEDNN
  dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa ();
  *avx512 = (isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
  switch ((int) isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
#else
  return "unknown";
#endif
}

static const char *
precision_name (VaePrecision p)
{
  switch (p) {
    case VAE_PRECISION_F32: return "f32";
    case VAE_PRECISION_BF16: return "bf16";
    case VAE_PRECISION_F16: return "f16";
    case VAE_PRECISION_AUTO: return "auto";
  }
  return "?";
}

int
main (int argc, char **argv)
{
  const char *backend_opt = "all", *precision_opt = "all";
  gint64 seed = -1;
  double perturb = 0;
  gboolean quick = FALSE, full = FALSE;
  int only_case = -1;
#ifdef __SANITIZE_ADDRESS__
  quick = TRUE;
#endif
  if (g_getenv ("VAE_OPS_QUICK") && *g_getenv ("VAE_OPS_QUICK"))
    quick = atoi (g_getenv ("VAE_OPS_QUICK")) != 0;
  if (g_getenv ("VAE_OPS_SEED") && *g_getenv ("VAE_OPS_SEED"))
    seed = g_ascii_strtoll (g_getenv ("VAE_OPS_SEED"), NULL, 0);

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (g_str_equal (a, "--backend") && next) {
      backend_opt = next;
      i++;
    } else if (g_str_equal (a, "--precision") && next) {
      precision_opt = next;
      i++;
    } else if (g_str_equal (a, "--seed") && next) {
      seed = g_ascii_strtoll (next, NULL, 0);
      i++;
    } else if (g_str_equal (a, "--perturb") && next) {
      perturb = g_ascii_strtod (next, NULL);
      i++;
    } else if (g_str_equal (a, "--case") && next) {
      only_case = atoi (next);
      i++;
    } else if (g_str_equal (a, "--quick")) {
      quick = TRUE;
    } else if (g_str_equal (a, "--full")) {
      full = TRUE;
    } else if (g_str_equal (a, "--verbose") || g_str_equal (a, "-v")) {
      verbose = TRUE;
    } else {
      g_printerr ("usage: %s [--backend all|cpu|cuda] [--precision all|f32|bf16|f16] "
                  "[--seed N] [--quick|--full] [--case I] [--perturb REL] [--verbose]\n", argv[0]);
      return 2;
    }
  }
  if (full)
    quick = FALSE;
  if (seed < 0)
    seed = DEFAULT_SEED;
  const gint64 t0 = g_get_monotonic_time ();
  g_print ("test-ops: seed %" G_GINT64_FORMAT " (VAE_OPS_SEED or --seed to change), %s set%s\n",
           seed, quick ? "quick" : "full",
           perturb != 0 ? ", PERTURBED reference (every comparison must fail)" : "");

  /* The engines: every built one that runs graphs, or the one asked for. */
  g_autoptr (GPtrArray) runs = g_ptr_array_new_with_free_func (g_free);
  const char *const *built = vae_engine_backends ();
  gboolean named = !g_str_equal (backend_opt, "all"), found = FALSE;
  for (guint b = 0; built[b]; b++) {
    const char *name = built[b];
    if (g_str_equal (name, "remote") || (named && !g_str_equal (name, backend_opt)))
      continue;
    found = TRUE;
    if (!vae_engine_backend_usable (name)) {
      g_print ("test-ops: backend %s is built but cannot run here (no GPU?): SKIPPED; "
               "run `test-ops --backend %s` on a machine that has one\n", name, name);
      continue;
    }
    gboolean gpu = g_str_equal (name, "cuda"), cpu_bf16 = TRUE;
    if (g_str_equal (name, "cpu")) {
      gboolean avx512;
      const char *isa = cpu_isa (&avx512);
      g_print ("test-ops: cpu: oneDNN ISA %s%s\n", isa, avx512 ? "" :
               ": no AVX-512, so the 'winograd' cases run oneDNN's direct or reference "
               "convolutions here, and cpu/bf16 is SKIPPED (oneDNN 2.6 has no bf16 "
               "kernels below AVX-512; the engine refuses precision bf16 there)");
      cpu_bf16 = avx512;
    }
    /* float32, and the reduced precisions the engine has */
    VaePrecision precs[3];
    guint n_precs = 0;
    precs[n_precs++] = VAE_PRECISION_F32;
    if (gpu)
      precs[n_precs++] = VAE_PRECISION_F16;
    if (gpu || cpu_bf16)
      precs[n_precs++] = VAE_PRECISION_BF16;
    for (guint p = 0; p < n_precs; p++) {
      if (!g_str_equal (precision_opt, "all")
          && !g_str_equal (precision_opt, precision_name (precs[p])))
        continue;
      if (perturb != 0 && precs[p] != VAE_PRECISION_F32 && perturb < REDUCED_REL_L2 * 2)
        continue;   /* a small perturbation is within the reduced tolerance */
      Run *run = g_new0 (Run, 1);
      run->backend = name;
      run->precision = precs[p];
      run->precision_name = precision_name (precs[p]);
      g_snprintf (run->backend_precision, sizeof run->backend_precision, "%s/%s", name,
                  run->precision_name);
      g_ptr_array_add (runs, run);
    }
  }
  if (named && !found) {
    g_print ("test-ops: backend %s is not in this build: SKIPPED\n", backend_opt);
    return 77;
  }
  if (runs->len == 0) {
    g_print ("test-ops: no engine to test here: SKIPPED\n");
    return 77;
  }

  /* The cases: every op kind alone (a kind without cases fails), then
   * small graphs. */
  gboolean ok = TRUE;
  Gen gen = { g_rand_new_with_seed ((guint32) seed), quick, 0, 0,
              g_ptr_array_new_with_free_func (ops_case_free) };
  gen.mac_cap = MAC_CAP (quick);
  for (int k = 0; k < OPS_N_KINDS; k++) {
    int added = add_single_op_cases (&gen, k);
    if (added == 0 || !kind_name (k)) {
      g_print ("FAIL: op kind %d (%s) has no case in tests/ops/test-ops.c\n", k,
               kind_name (k) ? kind_name (k) : "unnamed");
      ok = FALSE;
    }
  }
  add_graph_cases (&gen);
  for (guint i = 0; i < gen.cases->len; i++) {
    OpsCase *c = g_ptr_array_index (gen.cases, i);
    if (!c->stream) {
      c->ref = ref_graph_run (c->graph, c->n, c->h, c->w, c->input, perturb, &c->oc,
                              &c->oh, &c->ow);
      continue;
    }
    /* one RefState over the chunks, as the engine's stream */
    RefState *st = ref_state_new (c->graph, c->h, c->w);
    const gsize in_frame = (gsize) vae_graph_channels (c->graph, 0) * c->h * c->w;
    gsize at = 0;
    for (int k = 0; k < c->n_chunks; k++) {
      const VaeGraph *gr = k == 0 && c->first ? c->first : c->graph;
      c->refs[k] = ref_graph_run_stream (gr, st, c->chunk_t[k], c->h, c->w,
                                         c->input + at * in_frame, perturb, &c->ref_t[k],
                                         &c->oc, &c->oh, &c->ow);
      at += c->chunk_t[k];
    }
    ref_state_free (st);
  }
  g_print ("test-ops: %u cases, references in %.1f s\n", gen.cases->len,
           (g_get_monotonic_time () - t0) / 1e6);
  /* Every kind appears alone in some case. */
  for (int k = 0; k < OPS_N_KINDS; k++) {
    int alone = 0;
    for (guint i = 0; i < gen.cases->len; i++) {
      OpsCase *c = g_ptr_array_index (gen.cases, i);
      alone += c->graph->ops->len == 1 && vae_graph_op (c->graph, 0)->kind == (VaeOpKind) k;
    }
    if (!alone) {
      g_print ("FAIL: no case runs op kind %d (%s) alone\n", k, kind_name (k));
      ok = FALSE;
    }
  }

  g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func (g_free);
  int n_compared = 0, n_failed = 0;
  for (guint i = 0; i < gen.cases->len; i++) {
    OpsCase *c = g_ptr_array_index (gen.cases, i);
    if (only_case >= 0 && (int) i != only_case)
      continue;
    g_print ("case %3u  %-37s %s -> %dx%d %d ch\n", i, c->group, c->desc, c->ow, c->oh, c->oc);
    for (guint r = 0; r < runs->len; r++) {
      const Run *run = g_ptr_array_index (runs, r);
      Row *row = row_for (rows, c->group, run);
      double max_abs = 0, rel_l2 = 0;
      const gint64 t_run = g_get_monotonic_time ();
      int st = run_case (run, c, &max_abs, &rel_l2);
      const double ms = (g_get_monotonic_time () - t_run) / 1e3;
      row->cases++;
      if (st == 0) {
        row->refused++;
        continue;
      }
      gboolean good = st > 0 && within (run, max_abs, rel_l2);
      gboolean known = !good && perturb == 0 && known_failure (run->backend, c->group);
      n_compared++;
      if (st > 0) {
        const char *verdict = "";
        if (perturb != 0)
          verdict = good ? "  NOT CAUGHT" : "";
        else if (!good)
          verdict = known ? "  KNOWN FAIL" : "  FAIL";
        row->max_abs = MAX (row->max_abs, max_abs);
        row->rel_l2 = MAX (row->rel_l2, rel_l2);
        g_print ("    %-9s max|diff| %.2e  rel L2 %.2e  %6.1f ms%s\n", run->backend_precision,
                 max_abs, rel_l2, ms, verdict);
      }
      if (known) {
        row->known++;
        continue;
      }
      if (!good) {
        row->failed++;
        n_failed++;
      }
    }
  }
  print_table (rows, perturb != 0);

  /* Known failures: each reported, and each must still fail. */
  for (guint i = 0; i < rows->len && perturb == 0; i++) {
    const Row *r = g_ptr_array_index (rows, i);
    const char *reason = known_failure (r->run->backend, r->group);
    if (!reason || r->cases == r->refused)
      continue;
    if (r->known) {
      g_print ("\nKNOWN FAILURE, not counted: %s/%s '%s' (%d of %d cases): %s\n",
               r->run->backend, r->run->precision_name, r->group, r->known, r->cases, reason);
    } else if (!r->failed) {
      g_print ("\nFAIL: %s/%s '%s' is a known failure but passed: remove it from "
               "known_failures in tests/ops/test-ops.c\n", r->run->backend,
               r->run->precision_name, r->group);
      ok = FALSE;
    }
  }

  if (perturb != 0) {
    /* Every comparison must have failed. */
    g_print ("\nperturbed reference (x %.4g): %d of %d comparisons caught\n", 1 + perturb,
             n_failed, n_compared);
    ok = ok && n_failed == n_compared && n_compared > 0;
  } else {
    ok = ok && n_failed == 0;
  }
  g_print ("\ntest-ops: %u cases, %d comparisons on %u engine/precision runs, %.1f s: %s\n",
           gen.cases->len, n_compared, runs->len, (g_get_monotonic_time () - t0) / 1e6,
           ok ? "PASS" : "FAIL");
  g_ptr_array_unref (gen.cases);
  g_rand_free (gen.rng);
  return ok ? 0 : 1;
}
