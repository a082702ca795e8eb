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

typedef struct {
  char *group;                 /* the table row */
  char *desc;                  /* shapes and options */
  VaeGraph *graph;
  int n, h, w;
  float *input;
  double *ref;                 /* ref_graph_run's output */
  int oc, oh, ow;
} OpsCase;

static void
ops_case_free (gpointer data)
{
  OpsCase *c = data;
  g_free (c->group);
  g_free (c->desc);
  vae_graph_free (c->graph);
  g_free (c->input);
  g_free (c->ref);
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
          /* 3x3 stride 1 pad 1, channels that Winograd does not take */
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

    VAE_OP_CASES_VIDEO:
      /* TODO(issue 11): cases through the engine's streams */
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

/* Runs case C; 1: ran (errors in MAX_ABS, REL_L2), 0: refused as expected,
 * -1: failed (message printed). */
static int
run_case (const Run *run, const OpsCase *c, double *max_abs, double *rel_l2)
{
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
    c->ref = ref_graph_run (c->graph, c->n, c->h, c->w, c->input, perturb, &c->oc,
                            &c->oh, &c->ow);
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
