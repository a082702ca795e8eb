/* gst-vae CPU engine: the causal convolution over time (CAUSAL_CONV3D).
 *
 * A kt x k x k causal conv is kt 2-D convolutions, one per time tap, summed
 * into one output: tap tau of output frame t reads frame t*s + tau of
 * [history | chunk].  Nothing is concatenated: with frames folded into the
 * batch, the frames a tap reads from the chunk are a contiguous run of the
 * input value, and those it reads from history a contiguous run of the
 * stream's state slot, so each tap is at most two batched oneDNN
 * convolutions over views (pointer offsets) into those buffers, the later
 * ones accumulating with oneDNN's sum post-op.  The last tap never reads
 * history, so it runs first and writes every output frame, with the bias;
 * at the stream's start the history taps are skipped (they would add
 * zeros: two thirds of a Wan first frame's work).  The activation, when
 * there is one, is an eltwise pass after the last tap.  After the taps, the
 * slot keeps the input's last K frames (a copy of K frames, the only bytes
 * the cache costs per chunk).  Where our Winograd kernel takes the layer
 * (winograd.c, AVX2), it runs every tap instead, over the same chunk and
 * slot. */
#include "onednn-private.h"
#include <string.h>

typedef struct {
  int batch;
  gboolean sum;
  gboolean bias;
  dnnl_primitive_desc_t pd;
  dnnl_primitive_t prim;
} CausalPrim;

struct _OnednnCausal {
  const VaeOp *op;
  GArray *prims;               /* CausalPrim, shared by the execs */
  GArray *execs;               /* OnednnCausalExec */
  OnednnPrim act;
  OnednnWino *wino;            /* set: winograd.c runs the taps */
  gboolean residual_in_dst;
  int K, t, slot;
  const guint8 *in_data;
  guint8 *out_data;
  gsize in_frame, out_bytes;
  GPtrArray *mems;             /* views and bias memories, destroyed at free */
};

typedef struct {
  dnnl_primitive_t prim;       /* borrowed from prims */
  int nargs;
  dnnl_exec_arg_t args[4];
  dnnl_memory_t src;           /* a view; history: its handle is set per run */
  gsize src_offset;            /* history: bytes into the slot */
  gboolean history;
} OnednnCausalExec;

static void
memory_destroy (gpointer mem)
{
  dnnl_memory_destroy (mem);
}

/* MD with N frames instead of its own. */
static dnnl_memory_desc_t
md_frames (const dnnl_memory_desc_t *md, int n)
{
  dnnl_memory_desc_t out;
  dnnl_dims_t dims = { n, md->dims[1], md->dims[2], md->dims[3] };
  const dnnl_blocking_desc_t *bd = &md->format_desc.blocking;
  dnnl_memory_desc_init_by_tag (&out, 4, dims, md->data_type,
                                bd->inner_nblks == 0 ? dnnl_nchw : onednn_activation_layout ());
  return out;
}

float *
onednn_causal_tap_weights (const VaeOp *op, int tau)
{
  const int k2 = op->kernel * op->kernel;
  float *tap = g_aligned_alloc (1, (gsize) op->out_channels * op->in_channels * k2
                                * sizeof (float), 64);
  for (int o = 0; o < op->out_channels; o++)
    for (int i = 0; i < op->in_channels; i++)
      memcpy (tap + ((gsize) o * op->in_channels + i) * k2,
              op->weight + (((gsize) o * op->in_channels + i) * op->kt + tau) * k2,
              k2 * sizeof (float));
  return tap;
}

static CausalPrim *
causal_prim (const OnednnCtx *ctx, OnednnCausal *cc, const dnnl_memory_desc_t *in_md,
             int batch, gboolean sum, gboolean bias, int oh, int ow, GError **error)
{
  for (guint i = 0; i < cc->prims->len; i++) {
    CausalPrim *p = &g_array_index (cc->prims, CausalPrim, i);
    if (p->batch == batch && p->sum == sum && p->bias == bias)
      return p;
  }
  VaeOp tap = *cc->op;
  tap.kind = VAE_OP_CONV2D;
  tap.residual = sum ? 0 : -1;
  tap.act = VAE_ACT_NONE;
  tap.bias = bias ? cc->op->bias : NULL;
  CausalPrim p = { batch, sum, bias };
  dnnl_memory_desc_t src_md = md_frames (in_md, batch);
  if (!onednn_conv_pd (ctx, &tap, &src_md, batch, oh, ow, dnnl_f32, &p.pd, error))
    return NULL;
  if (onednn_primitive_create (ctx, &p.prim, p.pd) != dnnl_success) {
    dnnl_primitive_desc_destroy (p.pd);
    g_set_error (error, VAE_ERROR, VAE_ERROR_ENGINE, "oneDNN: convolution failed for '%s'",
                 cc->op->name);
    return NULL;
  }
  g_array_append_val (cc->prims, p);
  return &g_array_index (cc->prims, CausalPrim, cc->prims->len - 1);
}

/* One tap over BATCH output frames starting at OUT_FRAME, reading frames
 * from SRC_FRAME of the chunk (history: of the slot). */
static gboolean
add_exec (const OnednnCtx *ctx, OnednnCausal *cc, const dnnl_memory_desc_t *in_md,
          const dnnl_memory_desc_t *out_md, int tau, int batch, int out_frame,
          int src_frame, gboolean history, gboolean sum, gboolean bias, GError **error)
{
  const int oh = out_md->dims[2], ow = out_md->dims[3];
  CausalPrim *p = causal_prim (ctx, cc, in_md, batch, sum, bias, oh, ow, error);
  if (!p)
    return FALSE;
  OnednnCausalExec e = { p->prim };
  const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md (p->pd, dnnl_query_weights_md, 0);
  /* Once per engine: the first-chunk and steady plans share it. */
  void *wdata = onednn_prepared_weight (ctx, cc->op, tau, w_md, error);
  if (!wdata)
    return FALSE;
  dnnl_memory_desc_t src_md = md_frames (in_md, batch), dst_md = md_frames (out_md, batch);
  dnnl_memory_t wmem = NULL, dst = NULL, bmem = NULL;
  gsize out_frame_bytes = onednn_frame_bytes (out_md);
  e.history = history;
  e.src_offset = (gsize) src_frame * cc->in_frame;
  DNNL_TRY (dnnl_memory_create (&e.src, &src_md, ctx->engine,
                                history ? NULL : (void *) (cc->in_data + e.src_offset)),
            "memory", cc->op->name);
  g_ptr_array_add (cc->mems, e.src);
  DNNL_TRY (dnnl_memory_create (&wmem, w_md, ctx->engine, wdata), "memory", cc->op->name);
  g_ptr_array_add (cc->mems, wmem);
  DNNL_TRY (dnnl_memory_create (&dst, &dst_md, ctx->engine,
                                cc->out_data + (gsize) out_frame * out_frame_bytes),
            "memory", cc->op->name);
  g_ptr_array_add (cc->mems, dst);
  e.args[e.nargs++] = (dnnl_exec_arg_t) { DNNL_ARG_SRC, e.src };
  e.args[e.nargs++] = (dnnl_exec_arg_t) { DNNL_ARG_WEIGHTS, wmem };
  if (bias) {
    dnnl_memory_desc_t b_md;
    dnnl_dims_t bd = { cc->op->out_channels };
    dnnl_memory_desc_init_by_tag (&b_md, 1, bd, dnnl_f32, dnnl_a);
    DNNL_TRY (dnnl_memory_create (&bmem, &b_md, ctx->engine, cc->op->bias), "memory",
              cc->op->name);
    g_ptr_array_add (cc->mems, bmem);
    e.args[e.nargs++] = (dnnl_exec_arg_t) { DNNL_ARG_BIAS, bmem };
  }
  e.args[e.nargs++] = (dnnl_exec_arg_t) { DNNL_ARG_DST, dst };
  g_array_append_val (cc->execs, e);
  return TRUE;
fail:
  return FALSE;
}

OnednnCausal *
onednn_causal_new (const OnednnCtx *ctx, const VaeOp *op, const dnnl_memory_desc_t *in_md,
                   const void *in_data, const dnnl_memory_desc_t *out_md, void *out_data,
                   dnnl_memory_t out_mem, gboolean residual_in_dst, GError **error)
{
  OnednnCausal *cc = g_new0 (OnednnCausal, 1);
  cc->op = op;
  cc->prims = g_array_new (FALSE, TRUE, sizeof (CausalPrim));
  cc->execs = g_array_new (FALSE, TRUE, sizeof (OnednnCausalExec));
  cc->mems = g_ptr_array_new_with_free_func (memory_destroy);
  cc->K = vae_op_history_frames (op);
  cc->t = in_md->dims[0];
  cc->slot = op->state;
  cc->in_data = in_data;
  cc->out_data = out_data;
  cc->in_frame = onednn_frame_bytes (in_md);
  cc->out_bytes = dnnl_memory_desc_get_size (out_md);
  if (in_md->data_type != dnnl_f32 || out_md->data_type != dnnl_f32 || !in_data || !out_data) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "causal conv '%s': float32 activations in the plan's buffers only", op->name);
    goto fail;
  }
  if (op->time_passthrough)
    return cc;

  const int K = cc->K, T = cc->t, kt = op->kt, s = op->time_stride;
  const int tout = out_md->dims[0];
  if (onednn_wino_applies (ctx, op) && onednn_wino_layout_ok (in_md)
      && onednn_wino_layout_ok (out_md)) {
    g_assert (K == kt - 1 && tout == T);
    cc->residual_in_dst = residual_in_dst;
    cc->wino = onednn_wino_new (ctx, op, tout, out_md->dims[2], out_md->dims[3], error);
    if (!cc->wino)
      goto fail;
    return cc;
  }
  if (s == 1) {
    /* Tap kt-1 reads only the chunk (K = kt - 1): it goes first, over
     * every frame, with the bias. */
    for (int tau = kt - 1; tau >= 0; tau--) {
      int nh = MIN (MAX (K - tau, 0), T);    /* outputs whose frame is history */
      int ni = T - nh;
      gboolean first = tau == kt - 1;
      if (ni > 0 && !add_exec (ctx, cc, in_md, out_md, tau, ni, nh, nh + tau - K, FALSE,
                               !first || residual_in_dst, first, error))
        goto fail;
      if (nh > 0 && !add_exec (ctx, cc, in_md, out_md, tau, nh, 0, tau, TRUE, TRUE, FALSE,
                               error))
        goto fail;
    }
  } else {
    /* Strided in time (Wan's downsample3d, tiny tensors): frame by frame. */
    for (int t = 0; t < tout; t++)
      for (int tau = kt - 1; tau >= 0; tau--) {
        int f = t * s + tau;
        gboolean first = tau == kt - 1;
        if (!add_exec (ctx, cc, in_md, out_md, tau, 1, t, f < K ? f : f - K, f < K,
                       !first || residual_in_dst, first, error))
          goto fail;
      }
  }
  if (op->act != VAE_ACT_NONE
      && !onednn_activation_init (ctx, &cc->act, op->act, out_md, out_mem, op->name, error))
    goto fail;
  return cc;
fail:
  onednn_causal_free (cc);
  return NULL;
}

gsize
onednn_causal_slot_bytes (const OnednnCausal *cc)
{
  return (gsize) cc->K * cc->in_frame;
}

int
onednn_causal_slot (const OnednnCausal *cc)
{
  return cc->slot;
}

gboolean
onednn_causal_run (const OnednnCtx *ctx, OnednnCausal *cc, guint8 *const *slots,
                   gboolean at_start, GError **error)
{
  guint8 *slot = cc->slot >= 0 ? slots[cc->slot] : NULL;
  if (cc->op->time_passthrough) {
    memcpy (cc->out_data, cc->in_data, cc->out_bytes);
  } else if (cc->wino) {
    if (!onednn_wino_run (ctx, cc->wino, at_start ? NULL : (const float *) slot,
                          (const float *) cc->in_data, (float *) cc->out_data,
                          cc->residual_in_dst, error))
      return FALSE;
  } else {
    for (guint i = 0; i < cc->execs->len; i++) {
      OnednnCausalExec *e = &g_array_index (cc->execs, OnednnCausalExec, i);
      if (e->history) {
        if (at_start)
          continue;   /* zeros */
        dnnl_memory_set_data_handle (e->src, slot + e->src_offset);
      }
      DNNL_TRY (onednn_execute (ctx, e->prim, e->nargs, e->args), "convolution", cc->op->name);
    }
    if (cc->act.prim && !onednn_prim_run (ctx, &cc->act, cc->op->name, error))
      return FALSE;
    dnnl_stream_wait (ctx->stream);
  }
  /* The slot keeps the last K frames of [history | chunk]. */
  if (slot) {
    const int K = cc->K, T = cc->t;
    const gsize fb = cc->in_frame;
    if (T >= K) {
      memcpy (slot, cc->in_data + (gsize) (T - K) * fb, (gsize) K * fb);
    } else {
      memmove (slot, slot + (gsize) T * fb, (gsize) (K - T) * fb);
      memcpy (slot + (gsize) (K - T) * fb, cc->in_data, (gsize) T * fb);
    }
  }
  return TRUE;
fail:
  return FALSE;
}

void
onednn_causal_free (OnednnCausal *cc)
{
  if (!cc)
    return;
  for (guint i = 0; i < cc->prims->len; i++) {
    CausalPrim *p = &g_array_index (cc->prims, CausalPrim, i);
    dnnl_primitive_destroy (p->prim);
    dnnl_primitive_desc_destroy (p->pd);
  }
  g_array_unref (cc->prims);
  g_array_unref (cc->execs);
  g_ptr_array_unref (cc->mems);
  onednn_prim_clear (&cc->act);
  onednn_wino_free (cc->wino);
  g_free (cc);
}
