#include "graph.h"
#include "safetensors.h"
#include <string.h>

typedef struct {
  GBytes *mapping;         /* borrowed from the store's mappings */
  gsize n_bytes;
} MappedArray;

struct _VaeWeightStore {
  gint ref;
  GHashTable *arrays;      /* float * -> itself, owned (g_free) */
  GHashTable *mapped;      /* float * -> MappedArray (g_free): in a file's mapping */
  GPtrArray *mappings;     /* GBytes, a reference each */
  guint64 mapped_bytes;
  gsize released;          /* bytes given back, atomically updated */
};

VaeWeightStore *
vae_weight_store_new (void)
{
  VaeWeightStore *w = g_new0 (VaeWeightStore, 1);
  w->ref = 1;
  w->arrays = g_hash_table_new_full (g_direct_hash, g_direct_equal, g_free, NULL);
  w->mapped = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_free);
  w->mappings = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
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
    g_hash_table_unref (w->mapped);
    g_ptr_array_unref (w->mappings);   /* after the arrays that point into them */
    g_free (w);
  }
}

float *
vae_weight_store_adopt (VaeWeightStore *w, float *data)
{
  /* g_hash_table_add on a key it holds would free that key (the old one);
   * a mapped array is never the store's to free. */
  if (data && !g_hash_table_contains (w->arrays, data)
      && !g_hash_table_contains (w->mapped, data))
    g_hash_table_add (w->arrays, data);
  return data;
}

float *
vae_weight_store_add_mapped (VaeWeightStore *w, GBytes *mapping, const float *data,
                             gsize n_bytes)
{
  g_return_val_if_fail (mapping != NULL && data != NULL, NULL);
  g_return_val_if_fail (!g_hash_table_contains (w->arrays, data), NULL);
  if (!g_hash_table_contains (w->mapped, data)) {
    guint i = 0;
    while (i < w->mappings->len && g_ptr_array_index (w->mappings, i) != mapping)
      i++;
    if (i == w->mappings->len)
      g_ptr_array_add (w->mappings, g_bytes_ref (mapping));
    MappedArray *m = g_new (MappedArray, 1);
    m->mapping = g_ptr_array_index (w->mappings, i);
    m->n_bytes = n_bytes;
    g_hash_table_insert (w->mapped, (gpointer) data, m);
    w->mapped_bytes += n_bytes;
  }
  /* Never written through: the pages are read-only. */
  return (float *) data;
}

void
vae_weight_store_split (VaeWeightStore *w, float *whole, guint n_parts, gsize part,
                        float **parts)
{
  const MappedArray *m = g_hash_table_lookup (w->mapped, whole);
  if (m) {
    g_return_if_fail (m->n_bytes == n_parts * part * sizeof (float));
    GBytes *mapping = m->mapping;   /* the store keeps its reference */
    w->mapped_bytes -= m->n_bytes;
    g_hash_table_remove (w->mapped, whole);   /* PARTS[0] is at WHOLE */
    for (guint i = 0; i < n_parts; i++)
      parts[i] = vae_weight_store_add_mapped (w, mapping, whole + i * part,
                                              part * sizeof (float));
    return;
  }
  g_return_if_fail (g_hash_table_contains (w->arrays, whole));
  for (guint i = 0; i < n_parts; i++)
    parts[i] = vae_weight_store_adopt (w, g_memdup2 (whole + i * part, part * sizeof (float)));
  g_hash_table_remove (w->arrays, whole);   /* frees it */
}

gsize
vae_weight_store_release (VaeWeightStore *w, const float *data)
{
  const MappedArray *m = data ? g_hash_table_lookup (w->mapped, data) : NULL;
  if (!m)
    return 0;
  gsize n = vae_safetensors_mapping_release (m->mapping, data, m->n_bytes);
  if (n > 0)
    g_atomic_pointer_add (&w->released, (gssize) n);
  return n;
}

guint
vae_weight_store_count (const VaeWeightStore *w)
{
  return g_hash_table_size (w->arrays) + g_hash_table_size (w->mapped);
}

guint64
vae_weight_store_mapped_bytes (const VaeWeightStore *w)
{
  return w->mapped_bytes;
}

guint64
vae_weight_store_released_bytes (const VaeWeightStore *w)
{
  /* A reader only: the cast drops a const that __atomic_load would not take. */
  return (guint64) g_atomic_pointer_get ((gsize *) &w->released);
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
  op.kt = op.time_stride = 1;
  op.state = -1;
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

int
vae_graph_causal_conv3d (VaeGraph *g, const char *name, int in, int out_channels,
                         int kt, int time_stride, int kernel, int pad,
                         float *weight, float *bias, int state, int residual,
                         VaeActivation act)
{
  VaeOp op = op_init (VAE_OP_CAUSAL_CONV3D, name, in);
  op.in_channels = vae_graph_channels (g, in);
  op.out_channels = out_channels;
  op.kernel = kernel;
  op.stride = 1;
  op.pad_top = op.pad_left = op.pad_bottom = op.pad_right = pad;
  op.kt = kt;
  op.time_stride = time_stride;
  g_assert (kt >= 1 && time_stride >= 1 && time_stride <= kt);
  g_assert ((state >= 0) == (kt > time_stride));
  op.state = state;
  if (state >= g->n_states)
    g->n_states = state + 1;
  op.weight = vae_weight_store_adopt (g->weights, weight);
  op.bias = vae_weight_store_adopt (g->weights, bias);
  op.residual = residual;
  op.act = act;
  g_assert (residual < 0 || vae_graph_channels (g, residual) == out_channels);
  return append (g, &op, out_channels);
}

int
vae_graph_time_passthrough (VaeGraph *g, const char *name, int in, int kt,
                            int time_stride, int state)
{
  VaeOp op = op_init (VAE_OP_CAUSAL_CONV3D, name, in);
  op.in_channels = op.out_channels = vae_graph_channels (g, in);
  op.kernel = op.stride = 1;
  op.kt = kt;
  op.time_stride = time_stride;
  g_assert (state >= 0 && kt > time_stride);
  op.state = state;
  if (state >= g->n_states)
    g->n_states = state + 1;
  op.time_passthrough = TRUE;
  return append (g, &op, op.in_channels);
}

int
vae_graph_rms_norm (VaeGraph *g, const char *name, int in, float *gamma,
                    VaeActivation act)
{
  VaeOp op = op_init (VAE_OP_RMS_NORM, name, in);
  op.in_channels = op.out_channels = vae_graph_channels (g, in);
  op.gamma = vae_weight_store_adopt (g->weights, gamma);
  op.act = act;
  return append (g, &op, op.in_channels);
}

static int
reshape_op (VaeGraph *g, VaeOpKind kind, const char *name, int in, int factor,
            int out_channels)
{
  VaeOp op = op_init (kind, name, in);
  op.in_channels = vae_graph_channels (g, in);
  op.out_channels = out_channels;
  op.factor = factor;
  return append (g, &op, out_channels);
}

int
vae_graph_frames_to_channels (VaeGraph *g, const char *name, int in, int s)
{
  return reshape_op (g, VAE_OP_FRAMES_TO_CHANNELS, name, in, s,
                     vae_graph_channels (g, in) * s);
}

int
vae_graph_channels_to_frames (VaeGraph *g, const char *name, int in, int s)
{
  g_assert (vae_graph_channels (g, in) % s == 0);
  return reshape_op (g, VAE_OP_CHANNELS_TO_FRAMES, name, in, s,
                     vae_graph_channels (g, in) / s);
}

int
vae_graph_space_to_channels (VaeGraph *g, const char *name, int in, int p,
                             gboolean column_major)
{
  int v = reshape_op (g, VAE_OP_SPACE_TO_CHANNELS, name, in, p,
                      vae_graph_channels (g, in) * p * p);
  g_array_index (g->ops, VaeOp, g->ops->len - 1).column_major = column_major;
  return v;
}

int
vae_graph_channels_to_space (VaeGraph *g, const char *name, int in, int p,
                             gboolean column_major)
{
  g_assert (vae_graph_channels (g, in) % (p * p) == 0);
  int v = reshape_op (g, VAE_OP_CHANNELS_TO_SPACE, name, in, p,
                      vae_graph_channels (g, in) / (p * p));
  g_array_index (g->ops, VaeOp, g->ops->len - 1).column_major = column_major;
  return v;
}

int
vae_graph_avg_down3d (VaeGraph *g, const char *name, int in, int out_channels,
                      int ft, int fs)
{
  int cin = vae_graph_channels (g, in);
  g_assert ((cin * ft * fs * fs) % out_channels == 0);
  int v = reshape_op (g, VAE_OP_AVG_DOWN3D, name, in, fs, out_channels);
  g_array_index (g->ops, VaeOp, g->ops->len - 1).time_factor = ft;
  return v;
}

int
vae_graph_dup_up3d (VaeGraph *g, const char *name, int in, int out_channels,
                    int ft, int fs, gboolean drop_first)
{
  int cin = vae_graph_channels (g, in);
  g_assert ((out_channels * ft * fs * fs) % cin == 0);
  int v = reshape_op (g, VAE_OP_DUP_UP3D, name, in, fs, out_channels);
  VaeOp *op = &g_array_index (g->ops, VaeOp, g->ops->len - 1);
  op->time_factor = ft;
  op->drop_first = drop_first;
  return v;
}

int
vae_graph_add (VaeGraph *g, const char *name, int a, int b)
{
  VaeOp op = op_init (VAE_OP_ADD, name, a);
  op.in2 = b;
  op.in_channels = op.out_channels = vae_graph_channels (g, a);
  g_assert (vae_graph_channels (g, b) == op.in_channels);
  return append (g, &op, op.in_channels);
}

/* Output size of OP over an input of IH x IW (spatial only). */
static void
op_out_size (const VaeOp *op, int ih, int iw, int *oh, int *ow)
{
  switch (op->kind) {
    case VAE_OP_CONV2D:
    case VAE_OP_CAUSAL_CONV3D:
      if (op->kind == VAE_OP_CAUSAL_CONV3D && op->time_passthrough) {
        *oh = ih;
        *ow = iw;
        return;
      }
      *oh = (ih + op->pad_top + op->pad_bottom - op->kernel) / op->stride + 1;
      *ow = (iw + op->pad_left + op->pad_right - op->kernel) / op->stride + 1;
      return;
    case VAE_OP_UPSAMPLE2X:
      *oh = ih * 2;
      *ow = iw * 2;
      return;
    case VAE_OP_SPACE_TO_CHANNELS:
    case VAE_OP_AVG_DOWN3D:
      *oh = ih / op->factor;
      *ow = iw / op->factor;
      return;
    case VAE_OP_CHANNELS_TO_SPACE:
    case VAE_OP_DUP_UP3D:
      *oh = ih * op->factor;
      *ow = iw * op->factor;
      return;
    case VAE_OP_GROUP_NORM:
    case VAE_OP_ATTENTION:
    case VAE_OP_TANH_CLAMP:
    case VAE_OP_RMS_NORM:
    case VAE_OP_FRAMES_TO_CHANNELS:
    case VAE_OP_CHANNELS_TO_FRAMES:
    case VAE_OP_ADD:
      *oh = ih;
      *ow = iw;
      return;
  }
  g_assert_not_reached ();
}

/* Output frames of OP over IT input frames; -1 when IT does not fit. */
static int
op_out_frames (const VaeOp *op, int it)
{
  switch (op->kind) {
    case VAE_OP_CAUSAL_CONV3D: {
      if (op->time_passthrough)
        return it;
      int x = vae_op_history_frames (op) + it;
      /* A strided time conv must use every frame of [history | chunk]: its
       * slot keeps the last K frames, which is where the next output
       * starts only then. */
      if (x < op->kt || (x - op->kt) % op->time_stride != 0)
        return -1;
      return (x - op->kt) / op->time_stride + 1;
    }
    case VAE_OP_FRAMES_TO_CHANNELS:
      return it % op->factor == 0 ? it / op->factor : -1;
    case VAE_OP_CHANNELS_TO_FRAMES:
      return it * op->factor;
    case VAE_OP_AVG_DOWN3D:
      return (it + op->time_factor - 1) / op->time_factor;
    case VAE_OP_DUP_UP3D: {
      int t = it * op->time_factor - (op->drop_first ? op->time_factor - 1 : 0);
      return t > 0 ? t : -1;
    }
    case VAE_OP_CONV2D:
    case VAE_OP_GROUP_NORM:
    case VAE_OP_ATTENTION:
    case VAE_OP_UPSAMPLE2X:
    case VAE_OP_TANH_CLAMP:
    case VAE_OP_RMS_NORM:
    case VAE_OP_SPACE_TO_CHANNELS:
    case VAE_OP_CHANNELS_TO_SPACE:
    case VAE_OP_ADD:
      return it;
  }
  g_assert_not_reached ();
}

void
vae_graph_infer_sizes (const VaeGraph *g, int in_h, int in_w, int *h, int *w)
{
  h[0] = in_h;
  w[0] = in_w;
  for (guint i = 0; i < g->ops->len; i++) {
    const VaeOp *op = vae_graph_op (g, i);
    op_out_size (op, h[op->in], w[op->in], &h[op->out], &w[op->out]);
  }
}

gboolean
vae_graph_infer_shapes (const VaeGraph *g, int in_t, int in_h, int in_w,
                        int *t, int *h, int *w)
{
  int n = g->values->len;
  g_autofree int *tt = g_new0 (int, n);
  g_autofree int *hh = g_new0 (int, n);
  g_autofree int *ww = g_new0 (int, n);
  tt[0] = in_t;
  vae_graph_infer_sizes (g, in_h, in_w, hh, ww);
  gboolean ok = in_t > 0;
  for (guint i = 0; ok && i < g->ops->len; i++) {
    const VaeOp *op = vae_graph_op (g, i);
    tt[op->out] = op_out_frames (op, tt[op->in]);
    if (tt[op->out] <= 0)
      ok = FALSE;
    if (op->kind == VAE_OP_ADD
        && (tt[op->in2] != tt[op->in] || hh[op->in2] != hh[op->in] || ww[op->in2] != ww[op->in]))
      ok = FALSE;
    if (op->residual >= 0
        && (tt[op->residual] != tt[op->out] || hh[op->residual] != hh[op->out]
            || ww[op->residual] != ww[op->out]))
      ok = FALSE;
    if (op->kind == VAE_OP_ATTENTION
        && (tt[op->in2] != tt[op->in] || tt[op->in3] != tt[op->in]))
      ok = FALSE;
  }
  if (t)
    memcpy (t, tt, n * sizeof (int));
  if (h)
    memcpy (h, hh, n * sizeof (int));
  if (w)
    memcpy (w, ww, n * sizeof (int));
  return ok;
}

gboolean
vae_graph_is_temporal (const VaeGraph *g)
{
  /* Any video kind: an engine without streams must not meet one in a plan
   * (RMS norm and the space/channel shuffles are per frame, but only the
   * video engines implement them). */
  for (guint i = 0; i < g->ops->len; i++)
    switch (vae_graph_op (g, i)->kind) {
      VAE_OP_CASES_VIDEO:
        return TRUE;
      case VAE_OP_CONV2D:
      case VAE_OP_GROUP_NORM:
      case VAE_OP_ATTENTION:
      case VAE_OP_UPSAMPLE2X:
      case VAE_OP_TANH_CLAMP:
        break;
    }
  return g->n_states > 0;
}

double
vae_graph_macs_t (const VaeGraph *g, int in_t, int in_h, int in_w)
{
  int n = g->values->len;
  g_autofree int *t = g_new (int, n);
  g_autofree int *h = g_new (int, n);
  g_autofree int *w = g_new (int, n);
  if (!vae_graph_infer_shapes (g, in_t, in_h, in_w, t, h, w))
    return 0;
  double macs = 0;
  for (guint i = 0; i < g->ops->len; i++) {
    const VaeOp *op = vae_graph_op (g, i);
    double pixels = (double) h[op->out] * w[op->out];
    double frames = t[op->out];
    if (op->kind == VAE_OP_CONV2D)
      macs += frames * pixels * op->out_channels * op->in_channels * op->kernel * op->kernel;
    else if (op->kind == VAE_OP_CAUSAL_CONV3D && !op->time_passthrough)
      macs += frames * pixels * op->out_channels * op->in_channels * op->kt
              * op->kernel * op->kernel;
    else if (op->kind == VAE_OP_ATTENTION)
      macs += frames * 2.0 * pixels * pixels * op->in_channels;   /* q k^T and p v */
  }
  return macs;
}

double
vae_graph_macs (const VaeGraph *g, int in_h, int in_w)
{
  return vae_graph_macs_t (g, 1, in_h, in_w);
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
    else if (op->kind == VAE_OP_CAUSAL_CONV3D && !op->time_passthrough)
      n += (guint64) op->out_channels * op->in_channels * op->kt * op->kernel * op->kernel
           + (op->bias ? op->out_channels : 0);
    else if (op->kind == VAE_OP_GROUP_NORM)
      n += 2 * (guint64) op->in_channels;
    else if (op->kind == VAE_OP_RMS_NORM)
      n += op->in_channels;
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
    case VAE_OP_CAUSAL_CONV3D: return "causal_conv3d";
    case VAE_OP_RMS_NORM: return "rms_norm";
    case VAE_OP_FRAMES_TO_CHANNELS: return "frames_to_channels";
    case VAE_OP_CHANNELS_TO_FRAMES: return "channels_to_frames";
    case VAE_OP_SPACE_TO_CHANNELS: return "space_to_channels";
    case VAE_OP_CHANNELS_TO_SPACE: return "channels_to_space";
    case VAE_OP_AVG_DOWN3D: return "avg_down3d";
    case VAE_OP_DUP_UP3D: return "dup_up3d";
    case VAE_OP_ADD: return "add";
  }
  return "unknown";
}
