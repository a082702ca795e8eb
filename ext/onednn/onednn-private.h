/* gst-vae CPU engine: shared types of the oneDNN plan and its steps. */
#pragma once
#include <glib.h>
#include <oneapi/dnnl/dnnl.h>
#include "graph.h"
#include "vae-error.h"
#include "weight-cache.h"

G_BEGIN_DECLS

/* Turns a failed oneDNN call into a GError naming WHAT and the layer.
 * oneDNN's out_of_memory (its own allocations for primitives, kernels or
 * reorders failed) is VAE_ERROR_NO_MEMORY like our own buffers, so that
 * callers can tell "too large for this machine" from an engine fault. */
#define DNNL_TRY(call, what, layer)                                           \
  do {                                                                        \
    dnnl_status_t st_ = (call);                                               \
    if (st_ != dnnl_success) {                                                \
      onednn_set_error (error, st_, (what), (layer));                         \
      goto fail;                                                              \
    }                                                                         \
  } while (0)

void onednn_set_error (GError **error, dnnl_status_t status, const char *what,
                       const char *layer);

/* One scratchpad per engine, shared by all its primitives (oneDNN's user
 * scratchpad mode): the default mode keeps a scratchpad per thread, which
 * every GStreamer streaming thread that ran a batch would leave behind. */
typedef struct {
  gsize needed;                /* the largest any primitive asked for */
  gsize size;
  void *data;
  dnnl_memory_t mem;
} OnednnScratch;

typedef struct {
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  OnednnScratch *scratch;
  /* Convolution weights reordered into their primitives' layouts, once per
   * engine (weight, variant, layout): every plan borrows them. */
  VaeWeightCache *weights;
} OnednnCtx;

/* The layout key of a reordered convolution weight: the oneDNN layout, and
 * which filter of the op it is (0: its own, 1 + p: upconv phase p). */
typedef struct {
  int variant;
  dnnl_memory_desc_t md;
} OnednnWeightLayout;

/* The engine's weight cache (onednn-plan.c). */
VaeWeightCache *onednn_weight_cache_new (void);

/* What this CPU runs well (dnnl_get_effective_cpu_isa, read once).  oneDNN
 * 2.6 has its Winograd and bf16 convolutions for AVX-512 only, and its AVX2
 * convolutions take 8-channel blocks: on a 16-channel blocked layout an
 * AVX2 machine falls back to reference code, 30-100x slower. */
gboolean onednn_cpu_has_avx512 (void);
/* Channels per block of the activation layout: 16 with AVX-512, else 8. */
int onednn_channel_block (void);
/* The activation layout every op works in: nChw16c or nChw8c. */
dnnl_format_tag_t onednn_activation_layout (void);
/* The ISA's name for messages ("avx2", "avx512_core", ...). */
const char *onednn_cpu_isa_name (void);

/* Attributes with the user scratchpad mode; every primitive uses them. */
dnnl_status_t onednn_attr_new (dnnl_primitive_attr_t *attr);
/* dnnl_primitive_create, noting the primitive's scratchpad size. */
dnnl_status_t onednn_primitive_create (const OnednnCtx *ctx, dnnl_primitive_t *prim,
                                       const_dnnl_primitive_desc_t pd);
/* dnnl_primitive_execute with the engine's scratchpad added (grown first
 * when a new primitive needs more). */
dnnl_status_t onednn_execute (const OnednnCtx *ctx, dnnl_primitive_t prim, int nargs,
                              const dnnl_exec_arg_t *args);
void onednn_scratch_free (OnednnScratch *scratch);
/* Allocates the scratchpad for what the primitives created so far need,
 * so that a plan fails when it is built rather than when it first runs. */
gboolean onednn_scratch_reserve (const OnednnCtx *ctx, GError **error);

/* A primitive with its arguments, executed as is. */
typedef struct {
  dnnl_primitive_t prim;
  int nargs;
  dnnl_exec_arg_t args[8];
} OnednnPrim;

/* GroupNorm: statistics by hand (oneDNN 2.6 has no group norm), then
 * y = act(x * a_c + b_c) as one oneDNN binary primitive with post-ops,
 * per image because a and b differ per image. */
typedef struct {
  const VaeOp *op;
  const guint8 *src;           /* value buffers, set at plan time */
  guint8 *dst;
  dnnl_memory_desc_t image_md; /* the input's layout, batch 1 */
  dnnl_memory_desc_t image_dst_md;  /* the output's (may differ in type) */
  gsize image_bytes, image_dst_bytes;   /* per image, padding included */
  int n, h, w;
  float *scale, *shift;        /* [C] for the image in flight */
  OnednnPrim apply;            /* binary mul + add + act over one image */
  dnnl_memory_t src_mem, dst_mem;
} OnednnGroupNorm;

/* Single-head attention in query chunks so the score matrix stays bounded. */
typedef struct {
  const VaeOp *op;
  int n, hw, c, chunk;
  float *q, *k, *v, *o;        /* [n, hw, c] row-major scratch */
  float *scores;               /* [chunk, hw] */
  OnednnPrim to_rows[3];       /* value layout -> [n, hw, c] for q, k, v */
  OnednnPrim from_rows;        /* o -> output value layout */
  dnnl_primitive_t qk[2], softmax[2], pv[2];   /* full chunk, remainder */
  dnnl_memory_t m_q, m_kt, m_s, m_v, m_o;      /* views, handles set per chunk */
  dnnl_memory_t m_q_tail, m_s_tail, m_o_tail;
} OnednnAttention;

/* Four phase outputs [planes, h, w, pixel] (one after another) into one
 * [planes, 2h, 2w, pixel] tensor: nChw16c with planes = images x channel
 * blocks and 16-channel pixels (nhwc would be planes = images). */
typedef struct {
  const guint8 *phases;
  guint8 *dst;
  int planes, h, w;
  gsize pixel_bytes;
} OnednnInterleave;

typedef enum { STEP_PRIM, STEP_GROUP_NORM, STEP_ATTENTION, STEP_INTERLEAVE } OnednnStepKind;

typedef struct {
  OnednnStepKind kind;
  const VaeOp *op;             /* the op this step belongs to (profiling) */
  OnednnPrim prim;
  OnednnGroupNorm *gn;
  OnednnAttention *attn;
  OnednnInterleave interleave;
} OnednnStep;

/* upconv.c: upsample2x + conv3x3 as four 2x2 phase convolutions. */
gboolean onednn_upconv_foldable (const VaeOp *up, const VaeOp *conv, int up_readers);
VaeOp onednn_upconv_phase_op (const VaeOp *conv, int py, int px);
float *onednn_upconv_phase_weights (const VaeOp *conv, int py, int px);
void onednn_interleave_run (const OnednnInterleave *il);

/* onednn-fuse.c: what folds into what, decided on the graph alone before
 * any layout or primitive exists (see there for the why of each). */
/* The Winograd kernel applies to OP reading SRC_DT (3x3 float32). */
gboolean onednn_fuse_winograd (const VaeOp *op, dnnl_data_type_t src_dt);
/* OP runs in bf16 when the plan's activation type is DT (the bf16 option). */
gboolean onednn_fuse_conv_bf16 (const VaeGraph *g, const VaeOp *op, dnnl_data_type_t dt);
/* Folds upsample2x + conv3x3 pairs: OPS (the graph's, copied) get the conv
 * reading the upsample's input, SKIP[i] the upsample, UPCONV[i+1] the conv. */
void onednn_fuse_upsamples (const VaeGraph *graph, dnnl_data_type_t dt, VaeOp *ops,
                            gboolean *skip, gboolean *upconv);
/* CONV_ONLY[v]: value v is stored in DT (bf16), read only by bf16 convs. */
void onednn_fuse_bf16_values (const VaeGraph *graph, dnnl_data_type_t dt, const VaeOp *ops,
                              const gboolean *skip, gboolean *conv_only);
/* The read OP may write its output over when it dies there, or -1. */
int onednn_fuse_inplace (const VaeOp *op, int conv_src);

/* Appends ACT to PO: swish with alpha 1 (x * sigmoid(x)), relu with
 * alpha 0 (alpha is relu's negative slope). */
dnnl_status_t onednn_append_activation (dnnl_post_ops_t po, VaeActivation act);

void onednn_prim_clear (OnednnPrim *p);
gboolean onednn_prim_run (const OnednnCtx *ctx, OnednnPrim *p, const char *layer,
                          GError **error);
/* A reorder between two layouts of the same tensor. */
gboolean onednn_reorder_init (const OnednnCtx *ctx, OnednnPrim *p,
                              const dnnl_memory_desc_t *src_md, dnnl_memory_t src,
                              const dnnl_memory_desc_t *dst_md, dnnl_memory_t dst,
                              const char *layer, GError **error);

OnednnGroupNorm *onednn_group_norm_new (const OnednnCtx *ctx, const VaeOp *op,
                                        const dnnl_memory_desc_t *md,
                                        const dnnl_memory_desc_t *dst_md,
                                        const void *src, void *dst, GError **error);
gboolean onednn_group_norm_run (const OnednnCtx *ctx, OnednnGroupNorm *gn, GError **error);
void onednn_group_norm_free (OnednnGroupNorm *gn);

OnednnAttention *onednn_attention_new (const OnednnCtx *ctx, const VaeOp *op,
                                       const dnnl_memory_desc_t *md,
                                       dnnl_memory_t q, dnnl_memory_t k,
                                       dnnl_memory_t v, dnnl_memory_t out,
                                       GError **error);
gboolean onednn_attention_run (const OnednnCtx *ctx, OnednnAttention *a, GError **error);
void onednn_attention_free (OnednnAttention *a);

/* A plan: one graph at one (n, h, w), with its memory allocated once. */
typedef struct _OnednnPlan OnednnPlan;
/* DT: the activations' type (f32, or bf16 for the bf16 option); the
 * graph's input and output stay float32 NCHW. */
OnednnPlan *onednn_plan_new (const OnednnCtx *ctx, const VaeGraph *graph,
                             int n, int h, int w, dnnl_data_type_t dt, GError **error);
gboolean onednn_plan_run (const OnednnCtx *ctx, OnednnPlan *plan, const float *input,
                          float *output, GError **error);
void onednn_plan_free (OnednnPlan *plan);

G_END_DECLS
