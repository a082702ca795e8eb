/* gst-vae: the small graph of ops a model module produces and an engine runs.
 *
 * Values are 4-D NCHW activations identified by an index; value 0 is the
 * graph input.  Ops are in execution order and every op writes a new value.
 * The graph knows channel counts; spatial sizes follow from the ops
 * (vae_graph_infer_sizes) once the engine knows the input size.
 * Weights are float32, OIHW, owned by a VaeWeightStore that graphs share
 * (a model's store: a video model's first-chunk and steady-state graphs
 * run over the same weights); ops point into it. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  /* out = act(conv(in) + bias [+ residual]) */
  VAE_OP_CONV2D,
  /* out = act(group_norm(in) * gamma + beta) */
  VAE_OP_GROUP_NORM,
  /* Single-head attention over all positions: q = in, k = in2, v = in3
   * (each [N,C,H,W], C = head dim); out[n,:,p] = softmax_j(q_p . k_j / sqrt(C)) v_j */
  VAE_OP_ATTENTION,
  /* Nearest-neighbour 2x upsampling. */
  VAE_OP_UPSAMPLE2X,
  /* out = scale * tanh(in / scale), TAESD's latent clamp. */
  VAE_OP_TANH_CLAMP,
  /* A new kind goes above this line, and VAE_OP_COUNT follows it.  Every
   * switch over VaeOpKind lists the kinds without a default (-Wswitch
   * turns a forgotten one into a build error); tests/ops has a case for
   * each kind. */
} VaeOpKind;

/* Number of op kinds: arrays indexed by kind (profiles, names). */
#define VAE_OP_COUNT ((int) VAE_OP_TANH_CLAMP + 1)

/* "conv2d", "group_norm", ... for logs and profiles. */
const char *vae_op_kind_name (VaeOpKind kind);

typedef enum {
  VAE_ACT_NONE,
  VAE_ACT_RELU,
  VAE_ACT_SILU,
} VaeActivation;

typedef struct {
  VaeOpKind kind;
  char *name;              /* the layer's name, for logs and errors */
  int in, in2, in3;        /* value ids; -1 when unused */
  int residual;            /* CONV2D: value added before act, or -1 */
  int out;                 /* the value this op writes */
  VaeActivation act;

  /* CONV2D: weight [out_channels, in_channels, kernel, kernel] */
  int in_channels, out_channels, kernel, stride;
  int pad_top, pad_left, pad_bottom, pad_right;
  float *weight;           /* owned */
  float *bias;             /* owned, NULL when the conv has none */

  /* GROUP_NORM: channels = in_channels */
  int groups;
  float eps;
  float *gamma, *beta;     /* owned */

  /* TANH_CLAMP */
  float clamp;
} VaeOp;

typedef struct {
  int channels;
} VaeValue;

/* The float32 arrays graphs point at, refcounted: every graph holds a
 * reference to its store, so weights live as long as any graph over them
 * (and the model, which holds one too).  Engines key what they derive from
 * a weight (an upload, a reorder) by its pointer, so that a weight two
 * graphs share is prepared once per engine. */
typedef struct _VaeWeightStore VaeWeightStore;
VaeWeightStore *vae_weight_store_new (void);
VaeWeightStore *vae_weight_store_ref (VaeWeightStore *w);
void vae_weight_store_unref (VaeWeightStore *w);
/* Takes over DATA (a g_malloc'd array; NULL is ignored) unless the store
 * already owns it; returns DATA. */
float *vae_weight_store_adopt (VaeWeightStore *w, float *data);
/* Number of arrays the store owns. */
guint vae_weight_store_count (const VaeWeightStore *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VaeWeightStore, vae_weight_store_unref)

typedef struct {
  GArray *ops;             /* VaeOp */
  GArray *values;          /* VaeValue */
  int output;              /* value id of the result */
  VaeWeightStore *weights;     /* a reference: the store the ops point into */
} VaeGraph;

/* A graph with a store of its own. */
VaeGraph *vae_graph_new (int input_channels);
/* A graph whose weights go to (and may come from) WEIGHTS, shared. */
VaeGraph *vae_graph_new_shared (int input_channels, VaeWeightStore *weights);
void vae_graph_free (VaeGraph *g);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VaeGraph, vae_graph_free)

static inline const VaeOp *
vae_graph_op (const VaeGraph *g, guint i)
{
  return &g_array_index (g->ops, VaeOp, i);
}

static inline int
vae_graph_channels (const VaeGraph *g, int value)
{
  return g_array_index (g->values, VaeValue, value).channels;
}

/* Builders; each returns the new value id.  Weight/bias/gamma/beta pointers
 * (g_malloc'd float arrays) are taken over by the graph's store, or are
 * arrays it already owns (a weight shared with another graph). */
int vae_graph_conv (VaeGraph *g, const char *name, int in, int out_channels,
                    int kernel, int stride, int pad_top, int pad_left,
                    int pad_bottom, int pad_right, float *weight, float *bias,
                    int residual, VaeActivation act);
int vae_graph_group_norm (VaeGraph *g, const char *name, int in, int groups,
                          float eps, float *gamma, float *beta, VaeActivation act);
int vae_graph_attention (VaeGraph *g, const char *name, int q, int k, int v);
int vae_graph_upsample2x (VaeGraph *g, const char *name, int in);
int vae_graph_tanh_clamp (VaeGraph *g, const char *name, int in, float clamp);

/* Spatial size of every value for an input of IN_H x IN_W (arrays of
 * n_values ints, allocated by the caller). */
void vae_graph_infer_sizes (const VaeGraph *g, int in_h, int in_w, int *h, int *w);

/* Multiply-accumulates for one frame of IN_H x IN_W (benchmarks, info). */
double vae_graph_macs (const VaeGraph *g, int in_h, int in_w);
/* Number of weight and bias elements. */
guint64 vae_graph_n_params (const VaeGraph *g);

G_END_DECLS
