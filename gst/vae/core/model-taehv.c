/* gst-vae: TAEHV (taew2_1, taew2_2, taehv, taehv1_5) as stream graphs.
 *
 * The file is taehv.py's state dict: two nn.Sequential, keyed by layer
 * index (docs/video-architectures.md sections 6-7).  conv = 3x3, padding
 * 1, bias unless noted; MB = MemBlock.
 *
 *   encoder: [pixel_unshuffle p] 0 conv 3p^2->C, 1 ReLU,
 *            2 TPool(C, s0), 3 conv s2 no bias, 4-6 MB(C),
 *            7 TPool(C, s1), 8 conv s2 no bias, 9-11 MB(C),
 *            12 TPool(C, s2), 13 conv s2 no bias, 14-16 MB(C), 17 conv C->Z
 *   decoder: 0 Clamp (tanh(x/3)*3), 1 conv Z->D0, 2 ReLU, 3-5 MB(D0),
 *            6 Upsample x2, 7 TGrow(D0, g0), 8 conv D0->D1 no bias, 9-11 MB(D1),
 *            12 Upsample, 13 TGrow(D1, g1), 14 conv D1->D2 no bias, 15-17 MB(D2),
 *            18 Upsample, 19 TGrow(D2, g2), 20 conv D2->D3 no bias, 21 ReLU,
 *            22 conv D3->3p^2, [pixel_shuffle p]; the stream drops its first
 *            g0 g1 g2 - 1 frames.
 *   MemBlock(C): out = ReLU(conv(ReLU(conv(ReLU(conv_{2C->C}(cat[x, past]))))) + x),
 *            past = the block's input at the previous frame (zero at the
 *            start).  conv_{2C->C}(cat[x, past]) is a CAUSAL_CONV3D with
 *            kt 2, time stride 1 (one history frame, one state slot per
 *            MemBlock): its tap 0 (the past frame) takes the weight's input
 *            channels [C, 2C), tap 1 (the current frame) [0, C).
 *   TPool(C, s): FRAMES_TO_CHANNELS(s) (earliest frame first) + 1x1 conv
 *            sC->C without bias; TGrow(C, s): 1x1 conv C->sC without bias +
 *            CHANNELS_TO_FRAMES(s).  s = 1: the 1x1 conv alone.
 *
 * The configuration comes from the tensor shapes only, never from the
 * file name (taehv.py goes by the name; a renamed file must still load):
 * p = sqrt(encoder.0 in-channels / 3) (= sqrt(decoder.22 out-channels / 3)),
 * Z = encoder.17 out-channels (= decoder.1 in-channels), TPool strides =
 * encoder.{2,7,12}.conv.weight in / out channels, TGrow strides =
 * decoder.{7,13,19}.conv.weight out / in channels.  What shapes cannot
 * tell: the spatial upsampling (x2 assumed everywhere, as in every
 * published checkpoint) and taecvx's / taeh3's trimming quirks.
 * `_super` decoders (decoder.0.weight present) are refused.
 *
 * Every tensor of the file must end up in a graph: an unknown one is an
 * error.  Graph pixels are TAEHV's [0, 1] (image_min 0); the decoder's
 * output is not clamped (callers clamp, as for the image models). */
#include "model-private.h"
#include <math.h>
#include <string.h>

#define HV_MAX_CHANNELS 65536
#define HV_CLAMP 3.0f
#define HV_STAGES 3

typedef struct {
  VaeWeights w;
  VaeWeightStore *store;
  GHashTable *used;          /* tensor names the graphs took */
} Hv;

static void
shape_str (GString *s, const VaeTensorView *t)
{
  g_string_append_c (s, '[');
  for (int i = 0; i < t->ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? "," : "", t->shape[i]);
  g_string_append_c (s, ']');
}

/* The 4-D conv weight NAME (missing or not 4-D: an error); its dims in D. */
static gboolean
hv_dims (Hv *h, const char *name, gint64 d[4])
{
  if (h->w.error)
    return FALSE;
  const VaeTensorView *t = vae_weights_find (&h->w, name);
  if (!t) {
    vae_weights_fail (&h->w, VAE_ERROR_MODEL, "%s: TAEHV tensor '%s' is missing",
                      h->w.label, name);
    return FALSE;
  }
  gboolean ok = t->ndim == 4;
  for (int i = 0; ok && i < 4; i++)
    ok = t->shape[i] >= 1 && t->shape[i] <= HV_MAX_CHANNELS;
  if (!ok) {
    GString *s = g_string_new (NULL);
    shape_str (s, t);
    vae_weights_fail (&h->w, VAE_ERROR_MODEL,
                      "%s: TAEHV tensor '%s' has shape %s where a conv weight "
                      "[out,in,kernel,kernel] was expected", h->w.label, name, s->str);
    g_string_free (s, TRUE);
    return FALSE;
  }
  for (int i = 0; i < 4; i++)
    d[i] = t->shape[i];
  return TRUE;
}

/* NAME checked against SHAPE, widened; marked used. */
static float *
hv_load (Hv *h, const char *name, int ndim, const gint64 *shape)
{
  if (h->w.error)
    return NULL;
  float *v = vae_weights_load (&h->w, name, vae_weights_find (&h->w, name), ndim, shape);
  if (v)
    g_hash_table_add (h->used, g_strdup (name));
  return v;
}

/* The conv PREFIX.weight [+ PREFIX.bias]: OUT_CH outputs (< 0: the
 * weight's), KERNEL x KERNEL, padding KERNEL / 2. */
static int
hv_conv (Hv *h, VaeGraph *g, const char *prefix, int in, int out_ch, int kernel, int stride,
         gboolean bias, int residual, VaeActivation act)
{
  if (h->w.error || in < 0)
    return -1;
  g_autofree char *wname = g_strdup_printf ("%s.weight", prefix);
  g_autofree char *bname = g_strdup_printf ("%s.bias", prefix);
  if (out_ch < 0) {
    gint64 d[4];
    if (!hv_dims (h, wname, d))
      return -1;
    out_ch = (int) d[0];
  }
  gint64 shape[4] = { out_ch, vae_graph_channels (g, in), kernel, kernel };
  float *w = hv_load (h, wname, 4, shape);
  float *b = bias ? hv_load (h, bname, 1, shape) : NULL;
  if (!bias && vae_weights_find (&h->w, bname) && !h->w.error)
    vae_weights_fail (&h->w, VAE_ERROR_MODEL,
                      "%s: TAEHV tensor '%s' is unexpected (that conv has no bias)",
                      h->w.label, bname);
  return vae_weights_conv (&h->w, g, prefix, in, out_ch, kernel, stride, kernel / 2,
                           kernel / 2, kernel / 2, kernel / 2, w, b, residual, act);
}

/* MemBlock PREFIX (e.g. "encoder.4") on X with state slot SLOT. */
static int
hv_memblock (Hv *h, VaeGraph *g, const char *prefix, int x, int slot)
{
  if (h->w.error || x < 0)
    return -1;
  const int c = vae_graph_channels (g, x);
  g_autofree char *w0 = g_strdup_printf ("%s.conv.0.weight", prefix);
  g_autofree char *b0 = g_strdup_printf ("%s.conv.0.bias", prefix);
  g_autofree char *c0 = g_strdup_printf ("%s.conv.0", prefix);
  g_autofree char *c2 = g_strdup_printf ("%s.conv.2", prefix);
  g_autofree char *c4 = g_strdup_printf ("%s.conv.4", prefix);
  g_autofree char *skip = g_strdup_printf ("%s.skip.weight", prefix);
  if (vae_weights_find (&h->w, skip)) {
    /* n_in != n_out never happens in TAEHV: its blocks keep the width */
    vae_weights_fail (&h->w, VAE_ERROR_UNSUPPORTED,
                      "%s: TAEHV tensor '%s': MemBlocks that change the width are not "
                      "supported", h->w.label, skip);
    return -1;
  }
  /* conv.0: [C, 2C, 3, 3] over cat[x, past] -> [C, C, 2 taps, 3, 3] */
  gint64 shape[4] = { c, 2 * c, 3, 3 };
  float *w = hv_load (h, w0, 4, shape);
  float *b = hv_load (h, b0, 1, shape);
  if (h->w.error) {
    g_free (w);
    g_free (b);
    return -1;
  }
  float *w3 = g_new (float, (gsize) c * c * 2 * 9);
  for (int o = 0; o < c; o++)
    for (int i = 0; i < c; i++) {
      float *dst = w3 + ((gsize) o * c + i) * 2 * 9;
      memcpy (dst, w + ((gsize) o * 2 * c + c + i) * 9, 9 * sizeof (float));   /* past */
      memcpy (dst + 9, w + ((gsize) o * 2 * c + i) * 9, 9 * sizeof (float));   /* current */
    }
  g_free (w);
  int t = vae_graph_causal_conv3d (g, c0, x, c, 2, 1, 3, 1, w3, b, slot, -1, VAE_ACT_RELU);
  t = hv_conv (h, g, c2, t, c, 3, 1, TRUE, -1, VAE_ACT_RELU);
  return hv_conv (h, g, c4, t, c, 3, 1, TRUE, x, VAE_ACT_RELU);
}

/* The stride of TPool PREFIX.conv ([C, sC, 1, 1]) or TGrow ([sC, C, 1, 1]). */
static int
hv_time_stride (Hv *h, const char *prefix, int c, gboolean grow)
{
  g_autofree char *name = g_strdup_printf ("%s.conv.weight", prefix);
  gint64 d[4];
  if (!hv_dims (h, name, d))
    return -1;
  const gint64 small = grow ? d[1] : d[0], big = grow ? d[0] : d[1];
  if (small != c || big % c != 0 || big / c > 16 || d[2] != 1 || d[3] != 1) {
    GString *s = g_string_new (NULL);
    shape_str (s, vae_weights_find (&h->w, name));
    vae_weights_fail (&h->w, VAE_ERROR_MODEL,
                      "%s: TAEHV tensor '%s' has shape %s where a %s weight [%s] over %d "
                      "channels was expected", h->w.label, name, s->str,
                      grow ? "TGrow" : "TPool", grow ? "s*C,C,1,1" : "C,s*C,1,1", c);
    g_string_free (s, TRUE);
    return -1;
  }
  return (int) (big / c);
}

/* 3 p^2 channels -> p (0 with an error when not of that form). */
static int
hv_patch (Hv *h, const char *name, gint64 ch)
{
  int p = (int) lround (sqrt (ch / 3.0));
  if (ch % 3 != 0 || p < 1 || 3 * p * p != ch || p > 8) {
    vae_weights_fail (&h->w, VAE_ERROR_MODEL,
                      "%s: TAEHV tensor '%s' has %" G_GINT64_FORMAT " image channels; "
                      "expected 3 p^2 (RGB pixel-unshuffled by p: 3, 12, 48, ...)",
                      h->w.label, name, ch);
    return 0;
  }
  return p;
}

typedef struct {
  int patch, latent, width;
  int strides[HV_STAGES];
} HvEncoderInfo;

static VaeGraph *
hv_encoder (Hv *h, HvEncoderInfo *info)
{
  gint64 d[4];
  if (!hv_dims (h, "encoder.0.weight", d))
    return NULL;
  info->patch = hv_patch (h, "encoder.0.weight", d[1]);
  info->width = (int) d[0];
  if (h->w.error)
    return NULL;
  const int p = info->patch, c = info->width;
  g_autoptr (VaeGraph) g = vae_graph_new_shared (3, h->store);
  int x = 0;
  if (p > 1)
    x = vae_graph_space_to_channels (g, "encoder.pixel_unshuffle", 0, p, FALSE);
  x = hv_conv (h, g, "encoder.0", x, c, 3, 1, TRUE, -1, VAE_ACT_RELU);
  int slot = 0;
  for (int s = 0; s < HV_STAGES; s++) {
    const int base = 2 + 5 * s;   /* 2, 7, 12: TPool; then conv s2; then 3 MemBlocks */
    g_autofree char *tpool = g_strdup_printf ("encoder.%d", base);
    g_autofree char *tpool_conv = g_strdup_printf ("encoder.%d.conv", base);
    g_autofree char *down = g_strdup_printf ("encoder.%d", base + 1);
    int st = hv_time_stride (h, tpool, c, FALSE);
    if (h->w.error)
      return NULL;
    info->strides[s] = st;
    if (st > 1) {
      g_autofree char *name = g_strdup_printf ("encoder.%d.frames_to_channels", base);
      x = vae_graph_frames_to_channels (g, name, x, st);
    }
    x = hv_conv (h, g, tpool_conv, x, c, 1, 1, FALSE, -1, VAE_ACT_NONE);
    x = hv_conv (h, g, down, x, c, 3, 2, FALSE, -1, VAE_ACT_NONE);
    for (int b = 0; b < 3; b++) {
      g_autofree char *mb = g_strdup_printf ("encoder.%d", base + 2 + b);
      x = hv_memblock (h, g, mb, x, slot++);
    }
  }
  x = hv_conv (h, g, "encoder.17", x, -1, 3, 1, TRUE, -1, VAE_ACT_NONE);
  if (h->w.error)
    return NULL;
  info->latent = vae_graph_channels (g, x);
  g->output = x;
  return g_steal_pointer (&g);
}

typedef struct {
  int patch, latent;
  int widths[HV_STAGES + 1];
  int strides[HV_STAGES];
} HvDecoderInfo;

static VaeGraph *
hv_decoder (Hv *h, HvDecoderInfo *info)
{
  gint64 d1[4], d22[4];
  if (!hv_dims (h, "decoder.1.weight", d1) || !hv_dims (h, "decoder.22.weight", d22))
    return NULL;
  info->latent = (int) d1[1];
  info->patch = hv_patch (h, "decoder.22.weight", d22[0]);
  if (h->w.error)
    return NULL;
  const int p = info->patch;
  g_autoptr (VaeGraph) g = vae_graph_new_shared (info->latent, h->store);
  int x = vae_graph_tanh_clamp (g, "decoder.0", 0, HV_CLAMP);
  x = hv_conv (h, g, "decoder.1", x, -1, 3, 1, TRUE, -1, VAE_ACT_RELU);
  if (h->w.error)
    return NULL;
  info->widths[0] = vae_graph_channels (g, x);
  int slot = 0;
  for (int s = 0; s < HV_STAGES; s++) {
    const int base = 3 + 6 * s;   /* 3, 9, 15: 3 MemBlocks, Upsample, TGrow, conv */
    const int c = vae_graph_channels (g, x);
    for (int b = 0; b < 3; b++) {
      g_autofree char *mb = g_strdup_printf ("decoder.%d", base + b);
      x = hv_memblock (h, g, mb, x, slot++);
    }
    if (h->w.error)
      return NULL;
    g_autofree char *up = g_strdup_printf ("decoder.%d", base + 3);
    g_autofree char *tgrow = g_strdup_printf ("decoder.%d", base + 4);
    g_autofree char *tgrow_conv = g_strdup_printf ("decoder.%d.conv", base + 4);
    g_autofree char *conv = g_strdup_printf ("decoder.%d", base + 5);
    /* The checkpoint upsamples, then TGrows.  TGrow (a 1x1 convolution and
     * a reshape) works pixel by pixel, so it commutes exactly with a
     * nearest upsample: run first, it reads and writes a quarter of the
     * pixels, and the upsample then sits right before the 3x3 convolution,
     * which engines can fold it into. */
    int st = hv_time_stride (h, tgrow, c, TRUE);
    if (h->w.error)
      return NULL;
    info->strides[s] = st;
    x = hv_conv (h, g, tgrow_conv, x, st * c, 1, 1, FALSE, -1, VAE_ACT_NONE);
    if (st > 1 && !h->w.error) {
      g_autofree char *name = g_strdup_printf ("decoder.%d.channels_to_frames", base + 4);
      x = vae_graph_channels_to_frames (g, name, x, st);
    }
    if (h->w.error)
      return NULL;
    x = vae_graph_upsample2x (g, up, x);
    /* the last stage's conv is followed by index 21, a ReLU */
    x = hv_conv (h, g, conv, x, -1, 3, 1, FALSE, -1,
                 s == HV_STAGES - 1 ? VAE_ACT_RELU : VAE_ACT_NONE);
    if (h->w.error)
      return NULL;
    info->widths[s + 1] = vae_graph_channels (g, x);
  }
  x = hv_conv (h, g, "decoder.22", x, 3 * p * p, 3, 1, TRUE, -1, VAE_ACT_NONE);
  if (p > 1 && !h->w.error)
    x = vae_graph_channels_to_space (g, "decoder.pixel_shuffle", x, p, FALSE);
  if (h->w.error)
    return NULL;
  g->output = x;
  return g_steal_pointer (&g);
}

static gboolean
has_prefix_key (VaeSafetensors *st, const char *prefix)
{
  for (guint i = 0; i < vae_safetensors_n_tensors (st); i++)
    if (g_str_has_prefix (vae_safetensors_tensor_at (st, i)->name, prefix))
      return TRUE;
  return FALSE;
}

gboolean
vae_model_build_taehv (VaeModel *m, VaeSafetensors *st, GError **error)
{
  Hv h = { { st, m->path, NULL }, m->weights,
           g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL) };
  HvEncoderInfo ei = { 0 };
  HvDecoderInfo di = { 0 };
  VaeGraph *enc = NULL, *dec = NULL;
  gboolean ok = FALSE;

  if (vae_safetensors_lookup (st, "decoder.0.weight")) {
    vae_weights_fail (&h.w, VAE_ERROR_UNSUPPORTED,
                      "%s: a TAEHV '_super' decoder (tensor 'decoder.0.weight': "
                      "SuperMemBlocks, PixelShuffle stages) is not supported; the base "
                      "decoders (taew2_1, taew2_2, taehv) are", m->path);
    goto out;
  }
  const gboolean has_enc = has_prefix_key (st, "encoder.");
  const gboolean has_dec = has_prefix_key (st, "decoder.");
  if (has_enc)
    enc = hv_encoder (&h, &ei);
  if (has_dec && !h.w.error)
    dec = hv_decoder (&h, &di);
  if (h.w.error)
    goto out;
  if (!enc && !dec) {
    vae_weights_fail (&h.w, VAE_ERROR_MODEL, "%s: no TAEHV encoder.* or decoder.* tensors",
                      m->path);
    goto out;
  }
  /* Every tensor is used. */
  for (guint i = 0; i < vae_safetensors_n_tensors (st); i++) {
    const char *name = vae_safetensors_tensor_at (st, i)->name;
    if (!g_hash_table_contains (h.used, name)) {
      vae_weights_fail (&h.w, VAE_ERROR_MODEL,
                        "%s: unexpected tensor '%s' in a TAEHV file (not part of its "
                        "encoder.N / decoder.N layers)", m->path, name);
      goto out;
    }
  }
  int tpool = 1, tgrow = 1;
  for (int s = 0; s < HV_STAGES; s++) {
    tpool *= enc ? ei.strides[s] : 1;
    tgrow *= dec ? di.strides[s] : 1;
  }
  if (enc && dec && (ei.patch != di.patch || ei.latent != di.latent || tpool != tgrow)) {
    vae_weights_fail (&h.w, VAE_ERROR_MODEL,
                      "%s: the TAEHV encoder and decoder do not belong together: patch "
                      "%d / %d, latent channels %d / %d, time factor %d / %d", m->path,
                      ei.patch, di.patch, ei.latent, di.latent, tpool, tgrow);
    goto out;
  }
  const int factor = enc ? tpool : tgrow;
  if (factor < 2) {
    vae_weights_fail (&h.w, VAE_ERROR_UNSUPPORTED,
                      "%s: a TAEHV without temporal compression (time factor 1) is not "
                      "supported", m->path);
    goto out;
  }

  m->family = VAE_FAMILY_TAEHV;
  m->image_channels = 3;
  m->patch_size = enc ? ei.patch : di.patch;
  m->latent_channels = enc ? ei.latent : di.latent;
  m->levels = HV_STAGES + 1;
  for (int i = 0; i < m->levels; i++)     /* encoder order */
    m->block_out_channels[i] = enc ? ei.width : di.widths[HV_STAGES - i];
  m->spatial_factor = 8 * m->patch_size;
  m->temporal_factor = factor;
  m->encode_first_frames = factor;   /* a latent needs all its frames */
  m->encode_chunk_frames = factor;
  m->decode_drop_frames = factor - 1;
  /* A description made from the shapes (the configuration never comes from
   * the file name): taew2_1 and taehv are "taehv-p1-z16", taew2_2
   * "taehv-p2-z48". */
  {
    g_autofree char *variant = g_strdup_printf ("taehv-p%d-z%d", m->patch_size,
                                                m->latent_channels);
    m->variant = g_intern_string (variant);
  }
  m->scaling_factor = 1.0;           /* latents are diffusion-space already */
  m->shift_factor = 0.0;
  m->latents_mean = m->latents_std = NULL;
  m->image_min = 0.0f;
  m->encoder_outputs_moments = FALSE;
  m->encoder_first = m->decoder_first = NULL;
  m->encoder = g_steal_pointer (&enc);
  m->decoder = g_steal_pointer (&dec);
  ok = TRUE;

out:
  vae_graph_free (enc);
  vae_graph_free (dec);
  g_hash_table_unref (h.used);
  if (!ok)
    g_propagate_error (error, h.w.error);
  else
    g_clear_error (&h.w.error);
  return ok;
}
