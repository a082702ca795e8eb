#include "graph.h"

struct _VaeWeightStore {
  gint ref;
  GHashTable *arrays;      /* float * -> itself, owned (g_free) */
};

VaeWeightStore *
vae_weight_store_new (void)
{
  VaeWeightStore *w = g_new0 (VaeWeightStore, 1);
  w->ref = 1;
  w->arrays = g_hash_table_new_full (g_direct_hash, g_direct_equal, g_free, NULL);
  return w;
}

VaeWeightStore *
vae_weight_store_ref (VaeWeightStore *w)
{
  g_atomic_int_inc (&w->ref);
  return w;
}

void
vae_weight_store_unref (VaeWeightStore *w)
{
  if (w && g_atomic_int_dec_and_test (&w->ref)) {
    g_hash_table_unref (w->arrays);
    g_free (w);
  }
}

float *
vae_weight_store_adopt (VaeWeightStore *w, float *data)
{
  /* g_hash_table_add on a key it holds would free that key (the old one). */
  if (data && !g_hash_table_contains (w->arrays, data))
    g_hash_table_add (w->arrays, data);
  return data;
}

guint
vae_weight_store_count (const VaeWeightStore *w)
{
  return g_hash_table_size (w->arrays);
}

static void
op_clear (gpointer data)
{
  VaeOp *op = data;
  g_free (op->name);   /* the weights are the store's */
}

VaeGraph *
vae_graph_new (int input_channels)
{
  g_autoptr (VaeWeightStore) w = vae_weight_store_new ();
  return vae_graph_new_shared (input_channels, w);
}

VaeGraph *
vae_graph_new_shared (int input_channels, VaeWeightStore *weights)
{
  VaeGraph *g = g_new0 (VaeGraph, 1);
  g->weights = vae_weight_store_ref (weights);
  g->ops = g_array_new (FALSE, TRUE, sizeof (VaeOp));
  g_array_set_clear_func (g->ops, op_clear);
  g->values = g_array_new (FALSE, TRUE, sizeof (VaeValue));
  VaeValue input = { input_channels };
  g_array_append_val (g->values, input);
  g->output = 0;
  return g;
}

void
vae_graph_free (VaeGraph *g)
{
  if (!g)
    return;
  g_array_unref (g->ops);
  g_array_unref (g->values);
  vae_weight_store_unref (g->weights);
  g_free (g);
}

/* Appends OP writing a new value of CHANNELS; the graph's output follows
 * the last op, so builders never have to set it. */
static int
append (VaeGraph *g, VaeOp *op, int channels)
{
  VaeValue v = { channels };
  g_array_append_val (g->values, v);
  op->out = (int) g->values->len - 1;
  g_array_append_val (g->ops, *op);
  g->output = op->out;
  return op->out;
}

static VaeOp
op_init (VaeOpKind kind, const char *name, int in)
{
  VaeOp op = { 0 };
  op.kind = kind;
  op.name = g_strdup (name);
  op.in = in;
  op.in2 = op.in3 = op.residual = -1;
  op.act = VAE_ACT_NONE;
  return op;
}

int
vae_graph_conv (VaeGraph *g, const char *name, int in, int out_channels,
                int kernel, int stride, int pad_top, int pad_left,
                int pad_bottom, int pad_right, float *weight, float *bias,
                int residual, VaeActivation act)
{
  VaeOp op = op_init (VAE_OP_CONV2D, name, in);
  op.in_channels = vae_graph_channels (g, in);
  op.out_channels = out_channels;
  op.kernel = kernel;
  op.stride = stride;
  op.pad_top = pad_top;
  op.pad_left = pad_left;
  op.pad_bottom = pad_bottom;
  op.pad_right = pad_right;
  op.weight = vae_weight_store_adopt (g->weights, weight);
  op.bias = vae_weight_store_adopt (g->weights, bias);
  op.residual = residual;
  op.act = act;
  g_assert (residual < 0 || vae_graph_channels (g, residual) == out_channels);
  return append (g, &op, out_channels);
}

int
vae_graph_group_norm (VaeGraph *g, const char *name, int in, int groups,
                      float eps, float *gamma, float *beta, VaeActivation act)
{
  VaeOp op = op_init (VAE_OP_GROUP_NORM, name, in);
  op.in_channels = op.out_channels = vae_graph_channels (g, in);
  g_assert (groups > 0 && op.in_channels % groups == 0);
  op.groups = groups;
  op.eps = eps;
  op.gamma = vae_weight_store_adopt (g->weights, gamma);
  op.beta = vae_weight_store_adopt (g->weights, beta);
  op.act = act;
  return append (g, &op, op.in_channels);
}

int
vae_graph_attention (VaeGraph *g, const char *name, int q, int k, int v)
{
  VaeOp op = op_init (VAE_OP_ATTENTION, name, q);
  op.in2 = k;
  op.in3 = v;
  op.in_channels = op.out_channels = vae_graph_channels (g, q);
  return append (g, &op, op.in_channels);
}

int
vae_graph_upsample2x (VaeGraph *g, const char *name, int in)
{
  VaeOp op = op_init (VAE_OP_UPSAMPLE2X, name, in);
  op.in_channels = op.out_channels = vae_graph_channels (g, in);
  return append (g, &op, op.in_channels);
}

int
vae_graph_tanh_clamp (VaeGraph *g, const char *name, int in, float clamp)
{
  VaeOp op = op_init (VAE_OP_TANH_CLAMP, name, in);
  op.in_channels = op.out_channels = vae_graph_channels (g, in);
  op.clamp = clamp;
  return append (g, &op, op.in_channels);
}

void
vae_graph_infer_sizes (const VaeGraph *g, int in_h, int in_w, int *h, int *w)
{
  h[0] = in_h;
  w[0] = in_w;
  for (guint i = 0; i < g->ops->len; i++) {
    const VaeOp *op = vae_graph_op (g, i);
    int ih = h[op->in], iw = w[op->in];
    switch (op->kind) {
      case VAE_OP_CONV2D:
        h[op->out] = (ih + op->pad_top + op->pad_bottom - op->kernel) / op->stride + 1;
        w[op->out] = (iw + op->pad_left + op->pad_right - op->kernel) / op->stride + 1;
        break;
      case VAE_OP_UPSAMPLE2X:
        h[op->out] = ih * 2;
        w[op->out] = iw * 2;
        break;
      case VAE_OP_GROUP_NORM:
      case VAE_OP_ATTENTION:
      case VAE_OP_TANH_CLAMP:
        h[op->out] = ih;
        w[op->out] = iw;
        break;
    }
  }
}

double
vae_graph_macs (const VaeGraph *g, int in_h, int in_w)
{
  int n = g->values->len;
  g_autofree int *h = g_new (int, n);
  g_autofree int *w = g_new (int, n);
  vae_graph_infer_sizes (g, in_h, in_w, h, w);
  double macs = 0;
  for (guint i = 0; i < g->ops->len; i++) {
    const VaeOp *op = vae_graph_op (g, i);
    double pixels = (double) h[op->out] * w[op->out];
    if (op->kind == VAE_OP_CONV2D)
      macs += pixels * op->out_channels * op->in_channels * op->kernel * op->kernel;
    else if (op->kind == VAE_OP_ATTENTION)
      macs += 2.0 * pixels * pixels * op->in_channels;   /* q k^T and p v */
  }
  return macs;
}

guint64
vae_graph_n_params (const VaeGraph *g)
{
  guint64 n = 0;
  for (guint i = 0; i < g->ops->len; i++) {
    const VaeOp *op = vae_graph_op (g, i);
    if (op->kind == VAE_OP_CONV2D)
      n += (guint64) op->out_channels * op->in_channels * op->kernel * op->kernel
           + (op->bias ? op->out_channels : 0);
    else if (op->kind == VAE_OP_GROUP_NORM)
      n += 2 * (guint64) op->in_channels;
  }
  return n;
}

const char *
vae_op_kind_name (VaeOpKind kind)
{
  switch (kind) {
    case VAE_OP_CONV2D: return "conv2d";
    case VAE_OP_GROUP_NORM: return "group_norm";
    case VAE_OP_ATTENTION: return "attention";
    case VAE_OP_UPSAMPLE2X: return "upsample2x";
    case VAE_OP_TANH_CLAMP: return "tanh_clamp";
  }
  return "unknown";
}
