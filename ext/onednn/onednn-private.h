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
  /* The engine's settings: Winograd (oneDNN's on AVX-512, ours on AVX2)
   * at all, and the largest transformed filter of a layer ours runs. */
  gboolean winograd;
  gsize wino_max_bytes;
} OnednnCtx;

/* The layout key of a reordered convolution weight: the oneDNN layout, and
 * which filter of the op it is (0: its own, 1 + p: upconv phase p or
 * causal time tap p, ONEDNN_WEIGHT_WINOGRAD(_UP): winograd.c's transform). */
#define ONEDNN_WEIGHT_WINOGRAD (-1)
#define ONEDNN_WEIGHT_WINOGRAD_UP (-2)   /* of the four upsampled phases */
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

typedef enum {
  STEP_PRIM, STEP_GROUP_NORM, STEP_ATTENTION, STEP_INTERLEAVE,
  STEP_CAUSAL, STEP_RMS_NORM, STEP_RESHAPE,   /* video ops */
  STEP_WINOGRAD,               /* a CONV2D our Winograd kernel runs */
} OnednnStepKind;

typedef struct _OnednnWino OnednnWino;
typedef struct {
  OnednnWino *conv;
  dnnl_memory_t src, dst;      /* the plan's values */
  gboolean accumulate;         /* the residual is in dst */
} OnednnWinoStep;

typedef struct _OnednnCausal OnednnCausal;
typedef struct _OnednnRmsNorm OnednnRmsNorm;
typedef struct _OnednnReshape OnednnReshape;

typedef struct {
  OnednnStepKind kind;
  const VaeOp *op;             /* the op this step belongs to (profiling) */
  OnednnPrim prim;
  OnednnGroupNorm *gn;
  OnednnAttention *attn;
  OnednnInterleave interleave;
  OnednnCausal *causal;
  OnednnRmsNorm *rms;
  OnednnReshape *reshape;
  OnednnWinoStep wino;
} OnednnStep;

/* upconv.c: upsample2x + conv3x3 as four 2x2 phase convolutions. */
gboolean onednn_upconv_foldable (const VaeOp *up, const VaeOp *conv, int up_readers);
VaeOp onednn_upconv_phase_op (const VaeOp *conv, int py, int px);
float *onednn_upconv_phase_weights (const VaeOp *conv, int py, int px);
void onednn_interleave_run (const OnednnInterleave *il);

/* onednn-fuse.c: what folds into what, decided on the graph alone before
 * any layout or primitive exists (see there for the why of each). */
/* The Winograd kernel applies to OP reading SRC_DT (3x3 float32). */
gboolean onednn_fuse_winograd (const OnednnCtx *ctx, const VaeOp *op, dnnl_data_type_t src_dt);
/* OP runs in bf16 when the plan's activation type is DT (the bf16 option). */
gboolean onednn_fuse_conv_bf16 (const VaeGraph *g, const VaeOp *op, dnnl_data_type_t dt);
/* Folds upsample2x + conv3x3 pairs: OPS (the graph's, copied) get the conv
 * reading the upsample's input, SKIP[i] the upsample, UPCONV[i+1] the conv. */
void onednn_fuse_upsamples (const OnednnCtx *ctx, const VaeGraph *graph, dnnl_data_type_t dt,
                            VaeOp *ops, gboolean *skip, gboolean *upconv);
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
/* A primitive from an op descriptor (the engine's attributes). */
gboolean onednn_prim_from_desc (const OnednnCtx *ctx, OnednnPrim *p, const_dnnl_op_desc_t desc,
                                const char *what, const char *layer, GError **error);
/* dst = alg(src) with ALPHA, over MD. */
gboolean onednn_eltwise_init (const OnednnCtx *ctx, OnednnPrim *p, dnnl_alg_kind_t alg,
                              float alpha, const dnnl_memory_desc_t *md, dnnl_memory_t src,
                              dnnl_memory_t dst, const char *layer, GError **error);
/* ACT (relu or silu) in place over MEM. */
gboolean onednn_activation_init (const OnednnCtx *ctx, OnednnPrim *p, VaeActivation act,
                                 const dnnl_memory_desc_t *md, dnnl_memory_t mem,
                                 const char *layer, GError **error);
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

/* video-ops.c: RMS norm over float32 activations (blocked or plain): the
 * statistics and scaling by hand, the activation as an eltwise in place. */
struct _OnednnRmsNorm {
  const VaeOp *op;
  const float *src;
  float *dst;
  int n, c, h, w, block, c_stored;
  float *gamma;                /* gamma * sqrt(C), [c_stored], 0 in the padding */
  OnednnPrim act;              /* in place over dst; no prim: no activation */
};
OnednnRmsNorm *onednn_rms_norm_new (const OnednnCtx *ctx, const VaeOp *op,
                                    const dnnl_memory_desc_t *md, void *src, void *dst,
                                    dnnl_memory_t dst_mem, GError **error);
gboolean onednn_rms_norm_run (const OnednnCtx *ctx, OnednnRmsNorm *r, GError **error);
void onednn_rms_norm_free (OnednnRmsNorm *r);

/* video-ops.c: the weightless reshapes of graph.h (frames <-> channels,
 * space <-> channels, AvgDown3D, DupUp3D): a copy where the blocked bytes
 * already agree, space <-> channels straight between the two layouts,
 * else through plain NCHW. */
typedef struct {
  gsize stride[4];             /* elements per n, channel (block), row, pixel */
  int block;                   /* channels per block: 1 for plain NCHW */
  int c_stored;                /* channels with the padding of the last block */
} OnednnFlatLayout;

struct _OnednnReshape {
  const VaeOp *op;
  int in_dims[4], out_dims[4];
  gboolean direct;             /* space <-> channels between these layouts */
  OnednnFlatLayout in_layout, out_layout;
  dnnl_memory_t in_mem, out_mem;   /* direct: their handles, read per run */
  const void *copy_src;        /* copy_bytes > 0: one copy does it */
  void *copy_dst;
  gsize copy_bytes;
  float *a, *b;                /* plain input and output */
  dnnl_memory_t a_mem, b_mem;
  OnednnPrim to_plain, from_plain;
};
/* OP (frames <-> channels) is one copy of the bytes between these layouts,
 * so its output may also alias its input. */
gboolean onednn_reshape_is_copy (const VaeOp *op, const dnnl_memory_desc_t *in_md,
                                 const dnnl_memory_desc_t *out_md);
OnednnReshape *onednn_reshape_new (const OnednnCtx *ctx, const VaeOp *op,
                                   const dnnl_memory_desc_t *in_md, dnnl_memory_t in_mem,
                                   void *in_data, const dnnl_memory_desc_t *out_md,
                                   dnnl_memory_t out_mem, void *out_data, GError **error);
gboolean onednn_reshape_run (const OnednnCtx *ctx, OnednnReshape *r, GError **error);
void onednn_reshape_free (OnednnReshape *r);

/* causal-conv.c: CAUSAL_CONV3D as batched 2-D convolutions per time tap
 * over views of the chunk and of the stream's state slot. */
/* RESIDUAL_IN_DST: the residual was copied into OUT first (every tap then
 * accumulates). */
OnednnCausal *onednn_causal_new (const OnednnCtx *ctx, const VaeOp *op,
                                 const dnnl_memory_desc_t *in_md, const void *in_data,
                                 const dnnl_memory_desc_t *out_md, void *out_data,
                                 dnnl_memory_t out_mem, gboolean residual_in_dst,
                                 GError **error);
/* The slot it uses (-1: none) and the bytes that slot holds. */
int onednn_causal_slot (const OnednnCausal *cc);
gsize onednn_causal_slot_bytes (const OnednnCausal *cc);
/* SLOTS: the stream's state buffers by slot; AT_START: they are zero. */
gboolean onednn_causal_run (const OnednnCtx *ctx, OnednnCausal *cc, guint8 *const *slots,
                            gboolean at_start, GError **error);
void onednn_causal_free (OnednnCausal *cc);

/* Time tap TAU of a causal conv's [Cout, Cin, kt, k, k] weight as OIHW
 * (g_aligned_free). */
float *onednn_causal_tap_weights (const VaeOp *op, int tau);
/* winograd.c: our F(4x4, 3x3) Winograd convolution for AVX2 machines
 * (oneDNN 2.6 has one for AVX-512 only), for 3x3 stride-1 pad-1 float32
 * CONV2D and CAUSAL_CONV3D (time stride 1) over nChw8c (any channel
 * counts: padded with zeros), no activation or ReLU. */
/* Whether the kernel takes OP on this CPU within CTX's filter cap. */
gboolean onednn_wino_applies (const OnednnCtx *ctx, const VaeOp *op);
/* MD is dense float32 nChw8c (what the kernel reads and writes). */
gboolean onednn_wino_layout_ok (const dnnl_memory_desc_t *md);
/* Bytes of OP's filter in the Winograd domain (4x the 3x3 filter). */
gsize onednn_wino_filter_bytes (const VaeOp *op);
/* For T_OUT output frames of H x W; the filter transformed once per engine
 * (its weight cache), the threads' scratch in the engine's scratchpad. */
OnednnWino *onednn_wino_new (const OnednnCtx *ctx, const VaeOp *op, int t_out, int h, int w,
                             GError **error);
/* Whether the kernel also takes OP (a CONV2D without residual) with the
 * nearest 2x upsample before it folded in (4x the filter, within the cap). */
gboolean onednn_wino_applies_upsampled (const OnednnCtx *ctx, const VaeOp *op);
/* OP over upsample2x of H x W input frames (the output 2H x 2W). */
OnednnWino *onednn_wino_new_upsampled (const OnednnCtx *ctx, const VaeOp *op, int t_out,
                                       int h, int w, GError **error);
/* Output frame t = act(bias + sum_tau conv(tap tau, frame t + tau of
 * [HIST | CHUNK]) [+ what DST holds, when ACCUMULATE]); HIST: the kt - 1
 * frames before the chunk, NULL when they are zero (their taps are
 * skipped).  A CONV2D is one tap and no history. */
gboolean onednn_wino_run (const OnednnCtx *ctx, const OnednnWino *wn, const float *hist,
                          const float *chunk, float *dst, gboolean accumulate, GError **error);
void onednn_wino_free (OnednnWino *wn);

/* onednn-plan.c: OP's weights reordered into W_MD, once per engine (the
 * engine's weight cache): PHASE -1 the op's own filter, an upconv phase
 * for CONV2D, the time tap for CAUSAL_CONV3D. */
void *onednn_prepared_weight (const OnednnCtx *ctx, const VaeOp *op, int phase,
                              const dnnl_memory_desc_t *w_md, GError **error);
/* onednn-plan.c, for causal-conv.c: a convolution's primitive descriptor
 * (OP's shape; its residual >= 0 asks for the sum post-op). */
gboolean onednn_conv_pd (const OnednnCtx *ctx, const VaeOp *op,
                         const dnnl_memory_desc_t *src_md, int n, int oh, int ow,
                         dnnl_data_type_t dt, dnnl_primitive_desc_t *pd, GError **error);

/* Bytes of one frame (image) of a 4-D descriptor, padding included. */
gsize onednn_frame_bytes (const dnnl_memory_desc_t *md);

/* A plan: one graph at one (n, h, w), with its memory allocated once. */
typedef struct _OnednnPlan OnednnPlan;
/* DT: the activations' type (f32, or bf16 for the bf16 option); the
 * graph's input and output stay float32 NCHW. */
OnednnPlan *onednn_plan_new (const OnednnCtx *ctx, const VaeGraph *graph,
                             int n, int h, int w, dnnl_data_type_t dt, GError **error);
gboolean onednn_plan_run (const OnednnCtx *ctx, OnednnPlan *plan, const float *input,
                          float *output, GError **error);
/* A video graph's plan (onednn_plan_new with N = the chunk's frames) runs
 * through onednn_plan_run_stream, which passes the stream's state slots.
 * Bytes state slot SLOT holds for this plan's causal steps; 0: unused. */
gsize onednn_plan_slot_bytes (const OnednnPlan *plan, int slot);
gboolean onednn_plan_run_stream (const OnednnCtx *ctx, OnednnPlan *plan, const float *input,
                                 float *output, guint8 *const *slots, gboolean at_start,
                                 GError **error);
void onednn_plan_free (OnednnPlan *plan);

G_END_DECLS
