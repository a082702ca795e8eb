/* gst-vae CPU engine: which graph ops fold into which, and which kernel a
 * convolution gets.
 *
 * Why apart from the plan builder: these are decisions about the graph
 * alone (op kinds, shapes of weights, who reads what), made before any
 * memory descriptor or primitive exists.  The plan (onednn-plan.c) asks
 * them and then lays out, plans buffers and creates primitives accordingly;
 * a new op kind decides here what it may fuse with, and nowhere else. */
#include "onednn-private.h"

/* Why: oneDNN's Winograd kernel (jit_wino_4x3) takes only 3x3, stride 1,
 * pad 1 float32 convolutions over whole 16-channel blocks, and is 2.4x to
 * 4.6x direct convolution there. */
gboolean
onednn_fuse_winograd (const OnednnCtx *ctx, const VaeOp *op, dnnl_data_type_t src_dt)
{
  return ctx->winograd && onednn_cpu_has_avx512 ()   /* oneDNN 2.6: AVX-512 kernels only */
      && src_dt == dnnl_f32 && op->kind == VAE_OP_CONV2D
      && op->kernel == 3 && op->stride == 1 && op->pad_top == 1 && op->pad_left == 1
      && op->pad_bottom == 1 && op->pad_right == 1 && op->in_channels % 16 == 0
      && op->out_channels % 16 == 0;
}

/* Why: with the bf16 option, only the 3x3 convolutions between wide
 * activations run in bf16: those that see raw pixels or latents or write
 * few channels, the 1x1 projections and shortcuts, and the one that writes
 * the result stay float32: they cost little and decide much of the
 * accuracy. */
gboolean
onednn_fuse_conv_bf16 (const VaeGraph *g, const VaeOp *op, dnnl_data_type_t dt)
{
  return dt != dnnl_f32 && op->kind == VAE_OP_CONV2D && op->kernel == 3
      && op->in_channels >= 16 && op->out_channels >= 16 && op->out != g->output;
}

/* Why: a nearest 2x upsample read only by the 3x3 convolution after it
 * costs a 4x tensor and 9/4 of the multiply-adds; folded (upconv.c) it is
 * four 2x2 convolutions over the small input.  Not when oneDNN's Winograd
 * runs the 3x3: 36 multiplies per 16 outputs beat the four phases' 64.
 * Ours (AVX2) folds it itself, with the same multiplies as over the
 * upsampled frame but a quarter of the input transforms
 * (onednn_wino_new_upsampled); the plan runs the four phases where it
 * cannot. */
void
onednn_fuse_upsamples (const OnednnCtx *ctx, const VaeGraph *graph, dnnl_data_type_t dt,
                       VaeOp *ops, gboolean *skip, gboolean *upconv)
{
  guint n_ops = graph->ops->len;
  g_autofree int *readers = g_new0 (int, graph->values->len);
  for (guint i = 0; i < n_ops; i++) {
    const VaeOp *op = &ops[i];
    int reads[4] = { op->in, op->in2, op->in3, op->residual };
    for (int r = 0; r < 4; r++)
      if (reads[r] >= 0)
        readers[reads[r]]++;
  }
  for (guint i = 0; i + 1 < n_ops; i++) {
    VaeOp *up = &ops[i], *conv = &ops[i + 1];
    if (onednn_upconv_foldable (up, conv, readers[up->out]) && up->out != graph->output
        && !(onednn_fuse_winograd (ctx, conv, dnnl_f32) && !onednn_fuse_conv_bf16 (graph, conv, dt))
        && !(dt == dnnl_f32 && onednn_wino_applies (ctx, conv)
             && !onednn_wino_applies_upsampled (ctx, conv))) {
      skip[i] = TRUE;
      upconv[i + 1] = TRUE;
      conv->in = up->in;
    }
  }
}

/* Why: a value stored in bf16 halves its memory traffic, but only
 * convolutions (and upsamples feeding them) read bf16; anything else
 * (GroupNorm, attention, residual adds, the result) needs float32.  So a
 * value is bf16 when convolutions that run in bf16 and upsamples are its
 * only readers.  All FALSE for float32 plans. */
void
onednn_fuse_bf16_values (const VaeGraph *graph, dnnl_data_type_t dt, const VaeOp *ops,
                         const gboolean *skip, gboolean *conv_only)
{
  guint n_values = graph->values->len;
  for (guint v = 0; v < n_values; v++)
    conv_only[v] = dt != dnnl_f32 && (int) v != graph->output;
  if (dt == dnnl_f32)
    return;
  for (guint i = 0; i < graph->ops->len; i++) {
    const VaeOp *op = &ops[i];
    if (skip[i])
      continue;
    if (op->kind == VAE_OP_CONV2D ? !onednn_fuse_conv_bf16 (graph, op, dt)
        : op->kind != VAE_OP_UPSAMPLE2X)
      conv_only[op->in] = FALSE;
    if (op->in2 >= 0) conv_only[op->in2] = FALSE;
    if (op->in3 >= 0) conv_only[op->in3] = FALSE;
    if (op->residual >= 0) conv_only[op->residual] = FALSE;
  }
}

/* Why: writing an op's output over a read that dies there saves a buffer
 * and, for a residual, the copy into the sum post-op's destination.  This
 * says which read may be taken (the plan then checks that the two are laid
 * out alike): a residual for a convolution (oneDNN's sum post-op), the
 * input of an elementwise op, attention's queries.  CONV_SRC: the value
 * the convolution actually reads (its input or the input's bf16 shadow).
 * -1: none. */
int
onednn_fuse_inplace (const VaeOp *op, int conv_src)
{
  switch (op->kind) {
    case VAE_OP_CONV2D:
      /* Never over the convolution's own input (out = conv(x) + x): the
       * sum would overwrite x while the convolution still reads it. */
      if (op->residual != op->in && op->residual != conv_src)
        return op->residual;
      return -1;
    case VAE_OP_GROUP_NORM:
      /* oneDNN 2.6's JIT binary (GroupNorm's apply) gives wrong values in
       * place over an 8-channel blocked tensor whose channel count leaves a
       * partial last block (tests/ops, resnet block with 19 channels on
       * AVX2); out of place it is right.  Real models have whole blocks. */
      return op->in_channels % onednn_channel_block () == 0 ? op->in : -1;
    case VAE_OP_TANH_CLAMP:
    case VAE_OP_ATTENTION:
    case VAE_OP_RMS_NORM:   /* per pixel: a tile's reads come before its writes */
    case VAE_OP_ADD:
      return op->in;
    case VAE_OP_CAUSAL_CONV3D:
      /* As CONV2D; the chunk must also survive the taps: the slot is
       * refilled from it afterwards. */
      if (!op->time_passthrough && op->residual != op->in)
        return op->residual;
      return -1;
    case VAE_OP_FRAMES_TO_CHANNELS:
    case VAE_OP_CHANNELS_TO_FRAMES:
      /* Where the blocked bytes agree (onednn_reshape_is_copy, checked by
       * the plan) the output is the input's bytes: aliased, no copy
       * (TAEHV's TPool and TGrow, 16 MiB a chunk at 256x256). */
      return op->in;
    case VAE_OP_UPSAMPLE2X:
    case VAE_OP_SPACE_TO_CHANNELS:
    case VAE_OP_CHANNELS_TO_SPACE:
    case VAE_OP_AVG_DOWN3D:
    case VAE_OP_DUP_UP3D:
      return -1;
  }
  return -1;
}
