/* gst-vae CPU engine: single-head attention over all positions.
 *
 * q, k and v leave the blocked layout once, as [positions, channels] rows;
 * scores are computed for a chunk of queries at a time (at most 64 MiB of
 * scores), so memory stays bounded at any frame size: oneDNN matmul for
 * q k^T (scaled by 1/sqrt(C) through output scales) and for p v, oneDNN
 * softmax in place between them. */
#include "onednn-private.h"
#include <math.h>

#define SCORE_BUDGET_FLOATS (16u * 1024u * 1024u)

static void
md_2d (dnnl_memory_desc_t *md, gint64 rows, gint64 cols)
{
  dnnl_dims_t d = { rows, cols };
  dnnl_memory_desc_init_by_tag (md, 2, d, dnnl_f32, dnnl_ab);
}

static gboolean
matmul_prim (const OnednnCtx *ctx, const char *layer, const dnnl_memory_desc_t *a,
             const dnnl_memory_desc_t *b, const dnnl_memory_desc_t *c, float scale,
             dnnl_primitive_t *prim, GError **error)
{
  dnnl_matmul_desc_t desc;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_primitive_desc_t pd = NULL;
  gboolean ok = FALSE;
  DNNL_TRY (dnnl_matmul_desc_init (&desc, a, b, NULL, c), "matmul", layer);
  DNNL_TRY (onednn_attr_new (&attr), "attributes", layer);
  if (scale != 1.0f)
    DNNL_TRY (dnnl_primitive_attr_set_output_scales (attr, 1, 0, &scale), "scale", layer);
  DNNL_TRY (dnnl_primitive_desc_create (&pd, &desc, attr, ctx->engine, NULL), "matmul", layer);
  DNNL_TRY (onednn_primitive_create (ctx, prim, pd), "matmul", layer);
  ok = TRUE;
fail:
  if (pd)
    dnnl_primitive_desc_destroy (pd);
  if (attr)
    dnnl_primitive_attr_destroy (attr);
  return ok;
}

static gboolean
softmax_prim (const OnednnCtx *ctx, const char *layer, const dnnl_memory_desc_t *md,
              dnnl_primitive_t *prim, GError **error)
{
  dnnl_softmax_desc_t desc;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_attr_t attr = NULL;
  gboolean ok = FALSE;
  DNNL_TRY (dnnl_softmax_forward_desc_init (&desc, dnnl_forward_inference, md, 1), "softmax", layer);
  DNNL_TRY (onednn_attr_new (&attr), "attributes", layer);
  DNNL_TRY (dnnl_primitive_desc_create (&pd, &desc, attr, ctx->engine, NULL), "softmax", layer);
  DNNL_TRY (onednn_primitive_create (ctx, prim, pd), "softmax", layer);
  ok = TRUE;
fail:
  if (attr)
    dnnl_primitive_attr_destroy (attr);
  if (pd)
    dnnl_primitive_desc_destroy (pd);
  return ok;
}

/* The three primitives and their views for chunks of M query rows. */
static gboolean
chunk_prims (const OnednnCtx *ctx, OnednnAttention *a, gint64 m, int slot,
             dnnl_memory_t *mq, dnnl_memory_t *ms, dnnl_memory_t *mo, GError **error)
{
  const char *layer = a->op->name;
  dnnl_memory_desc_t q_md, kt_md, s_md, v_md, o_md;
  dnnl_dims_t kt_dims = { a->c, a->hw }, kt_strides = { 1, a->c };
  md_2d (&q_md, m, a->c);
  dnnl_memory_desc_init_by_strides (&kt_md, 2, kt_dims, dnnl_f32, kt_strides);
  md_2d (&s_md, m, a->hw);
  md_2d (&v_md, a->hw, a->c);
  md_2d (&o_md, m, a->c);
  if (!matmul_prim (ctx, layer, &q_md, &kt_md, &s_md, 1.0f / sqrtf ((float) a->c),
                    &a->qk[slot], error)
      || !softmax_prim (ctx, layer, &s_md, &a->softmax[slot], error)
      || !matmul_prim (ctx, layer, &s_md, &v_md, &o_md, 1.0f, &a->pv[slot], error))
    return FALSE;
  DNNL_TRY (dnnl_memory_create (mq, &q_md, ctx->engine, NULL), "memory", layer);
  DNNL_TRY (dnnl_memory_create (ms, &s_md, ctx->engine, a->scores), "memory", layer);
  DNNL_TRY (dnnl_memory_create (mo, &o_md, ctx->engine, NULL), "memory", layer);
  if (slot == 0) {
    DNNL_TRY (dnnl_memory_create (&a->m_kt, &kt_md, ctx->engine, NULL), "memory", layer);
    DNNL_TRY (dnnl_memory_create (&a->m_v, &v_md, ctx->engine, NULL), "memory", layer);
  }
  return TRUE;
fail:
  return FALSE;
}

OnednnAttention *
onednn_attention_new (const OnednnCtx *ctx, const VaeOp *op, const dnnl_memory_desc_t *md,
                      dnnl_memory_t q, dnnl_memory_t k, dnnl_memory_t v,
                      dnnl_memory_t out, GError **error)
{
  OnednnAttention *a = g_new0 (OnednnAttention, 1);
  dnnl_memory_desc_t rows_md;
  dnnl_dims_t dims = { md->dims[0], md->dims[1], md->dims[2], md->dims[3] };
  dnnl_memory_t rows[4] = { NULL };
  float **bufs[4] = { &a->q, &a->k, &a->v, &a->o };
  dnnl_memory_t srcs[3] = { q, k, v };

  a->op = op;
  a->n = md->dims[0];
  a->c = md->dims[1];
  a->hw = md->dims[2] * md->dims[3];
  a->chunk = CLAMP (SCORE_BUDGET_FLOATS / (guint) a->hw, 1, (guint) a->hw);
  /* The scores and the q, k, v, o rows grow with the frame: fallible, like
   * the plan's own buffers. */
  a->scores = vae_try_aligned_alloc0 ((gsize) a->chunk * a->hw, sizeof (float), 64,
                                      "attention scores", error);
  if (!a->scores)
    goto fail;

  /* [n, c, h, w] in nhwc order is [n, positions, channels] row-major. */
  dnnl_memory_desc_init_by_tag (&rows_md, 4, dims, dnnl_f32, dnnl_nhwc);
  for (int i = 0; i < 4; i++) {
    *bufs[i] = vae_try_aligned_alloc0 ((gsize) a->n * a->hw * a->c, sizeof (float), 64,
                                       "attention rows", error);
    if (!*bufs[i])
      goto fail;
    DNNL_TRY (dnnl_memory_create (&rows[i], &rows_md, ctx->engine, *bufs[i]), "memory", op->name);
  }
  for (int i = 0; i < 3; i++)
    if (!onednn_reorder_init (ctx, &a->to_rows[i], md, srcs[i], &rows_md, rows[i],
                              op->name, error))
      goto fail;
  if (!onednn_reorder_init (ctx, &a->from_rows, &rows_md, rows[3], md, out, op->name, error))
    goto fail;
  if (!chunk_prims (ctx, a, a->chunk, 0, &a->m_q, &a->m_s, &a->m_o, error))
    goto fail;
  if (a->hw % a->chunk
      && !chunk_prims (ctx, a, a->hw % a->chunk, 1, &a->m_q_tail, &a->m_s_tail,
                       &a->m_o_tail, error))
    goto fail;
  /* The reorders hold the row memories; they are freed with them. */
  return a;

fail:
  for (int i = 0; i < 4; i++)
    if (rows[i] && !(i < 3 ? a->to_rows[i].prim : a->from_rows.prim))
      dnnl_memory_destroy (rows[i]);
  onednn_attention_free (a);
  return NULL;
}

gboolean
onednn_attention_run (const OnednnCtx *ctx, OnednnAttention *a, GError **error)
{
  const char *layer = a->op->name;
  for (int i = 0; i < 3; i++)
    if (!onednn_prim_run (ctx, &a->to_rows[i], layer, error))
      return FALSE;
  for (int n = 0; n < a->n; n++) {
    gsize img = (gsize) n * a->hw * a->c;
    dnnl_memory_set_data_handle (a->m_kt, a->k + img);
    dnnl_memory_set_data_handle (a->m_v, a->v + img);
    for (int row = 0; row < a->hw; row += a->chunk) {
      int slot = row + a->chunk <= a->hw ? 0 : 1;
      dnnl_memory_t mq = slot ? a->m_q_tail : a->m_q;
      dnnl_memory_t ms = slot ? a->m_s_tail : a->m_s;
      dnnl_memory_t mo = slot ? a->m_o_tail : a->m_o;
      dnnl_memory_set_data_handle (mq, a->q + img + (gsize) row * a->c);
      dnnl_memory_set_data_handle (mo, a->o + img + (gsize) row * a->c);
      dnnl_exec_arg_t qk[3] = { { DNNL_ARG_SRC, mq }, { DNNL_ARG_WEIGHTS, a->m_kt }, { DNNL_ARG_DST, ms } };
      dnnl_exec_arg_t sm[2] = { { DNNL_ARG_SRC, ms }, { DNNL_ARG_DST, ms } };
      dnnl_exec_arg_t pv[3] = { { DNNL_ARG_SRC, ms }, { DNNL_ARG_WEIGHTS, a->m_v }, { DNNL_ARG_DST, mo } };
      DNNL_TRY (onednn_execute (ctx, a->qk[slot], 3, qk), "q k^T", layer);
      DNNL_TRY (onednn_execute (ctx, a->softmax[slot], 2, sm), "softmax", layer);
      DNNL_TRY (onednn_execute (ctx, a->pv[slot], 3, pv), "p v", layer);
    }
  }
  return onednn_prim_run (ctx, &a->from_rows, layer, error);
fail:
  return FALSE;
}

void
onednn_attention_free (OnednnAttention *a)
{
  if (!a)
    return;
  /* Row memories: the TO side of each to_rows reorder, FROM side of from_rows. */
  for (int i = 0; i < 3; i++) {
    if (a->to_rows[i].prim)
      dnnl_memory_destroy (a->to_rows[i].args[1].memory);
    onednn_prim_clear (&a->to_rows[i]);
  }
  if (a->from_rows.prim)
    dnnl_memory_destroy (a->from_rows.args[0].memory);
  onednn_prim_clear (&a->from_rows);
  for (int s = 0; s < 2; s++) {
    if (a->qk[s]) dnnl_primitive_destroy (a->qk[s]);
    if (a->softmax[s]) dnnl_primitive_destroy (a->softmax[s]);
    if (a->pv[s]) dnnl_primitive_destroy (a->pv[s]);
  }
  dnnl_memory_t mems[] = { a->m_q, a->m_kt, a->m_s, a->m_v, a->m_o, a->m_q_tail,
                           a->m_s_tail, a->m_o_tail };
  for (guint i = 0; i < G_N_ELEMENTS (mems); i++)
    if (mems[i])
      dnnl_memory_destroy (mems[i]);
  g_aligned_free (a->q);
  g_aligned_free (a->k);
  g_aligned_free (a->v);
  g_aligned_free (a->o);
  g_aligned_free (a->scores);
  g_free (a);
}
