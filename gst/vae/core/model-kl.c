/* gst-vae: AutoencoderKL (SD 1.x/2.x, SDXL, SD3, FLUX.1) and FLUX.2's
 * AutoencoderKLFlux2 (the same network, 32 latent channels, a decoder that
 * may have its own widths, and BatchNorm running statistics that normalise
 * the 2x2-patchified latents; see model.h, latent_patch).
 *
 * One builder asks for every tensor by its diffusers name; for LDM files
 * (CompVis, ComfyUI, A1111, BFL ae.safetensors) kl_ldm_name() translates
 * that name, and the key prefix (first_stage_model. in full checkpoints) is
 * put in front.  Graph ops are named by the diffusers name whatever the file
 * layout, so the same weights give the same graph. */
#include "model-private.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KL_EPS 1e-6f
#define KL_MAX_CHANNELS 65536
#define KL_MAX_LATENT 4096
#define KL_MAX_LAYERS 64

typedef struct {
  VaeWeights w;
  gboolean ldm;
  gboolean quant_inside;       /* BFL FLUX.2: encoder.quant_conv, decoder.post_quant_conv */
  const char *prefix;
  int levels;
  int groups;
} Kl;

/* diffusers name -> LDM name, token by token (see vae-architectures.md):
 *   down_blocks.I.resnets.J      down.I.block.J
 *   down_blocks.I.downsamplers.0 down.I.downsample
 *   up_blocks.I.resnets.J        up.(L-1-I).block.J
 *   up_blocks.I.upsamplers.0     up.(L-1-I).upsample
 *   mid_block.resnets.0 / .1     mid.block_1 / mid.block_2
 *   mid_block.attentions.0       mid.attn_1
 *   group_norm, to_q, to_k, to_v, to_out.0   norm, q, k, v, proj_out
 *   conv_shortcut                nin_shortcut
 *   conv_norm_out                norm_out
 * Everything else (conv_in, conv_out, norm1, conv1, quant_conv, ...) is the
 * same in both layouts. */
static char *
kl_ldm_name (const char *name, int levels)
{
  g_auto (GStrv) t = g_strsplit (name, ".", -1);
  guint n = g_strv_length (t);
  GString *out = g_string_new (NULL);
#define EMIT(s) g_string_append_printf (out, "%s%s", out->len ? "." : "", (s))
  for (guint i = 0; i < n; i++) {
    const char *a = t[i];
    const char *b = i + 1 < n ? t[i + 1] : "";
    const char *c = i + 2 < n ? t[i + 2] : "";
    const char *d = i + 3 < n ? t[i + 3] : "";
    gboolean down = strcmp (a, "down_blocks") == 0, up = strcmp (a, "up_blocks") == 0;
    if ((down || up) && *b) {
      int level = atoi (b);
      g_autofree char *idx = g_strdup_printf ("%d", up ? levels - 1 - level : level);
      EMIT (down ? "down" : "up");
      EMIT (idx);
      if (strcmp (c, "resnets") == 0 && *d) {
        EMIT ("block");
        EMIT (d);
        i += 3;
      } else if ((strcmp (c, "downsamplers") == 0 || strcmp (c, "upsamplers") == 0) &&
                 strcmp (d, "0") == 0) {
        EMIT (down ? "downsample" : "upsample");
        i += 3;
      } else {
        i += 1;
      }
    } else if (strcmp (a, "mid_block") == 0 && strcmp (b, "resnets") == 0 && *c) {
      EMIT ("mid");
      EMIT (strcmp (c, "0") == 0 ? "block_1" : "block_2");
      i += 2;
    } else if (strcmp (a, "mid_block") == 0 && strcmp (b, "attentions") == 0 &&
               strcmp (c, "0") == 0) {
      EMIT ("mid");
      EMIT ("attn_1");
      i += 2;
    } else if (strcmp (a, "group_norm") == 0) {
      EMIT ("norm");
    } else if (strcmp (a, "to_q") == 0 || strcmp (a, "to_k") == 0 || strcmp (a, "to_v") == 0) {
      EMIT (a + 3);
    } else if (strcmp (a, "to_out") == 0 && strcmp (b, "0") == 0) {
      EMIT ("proj_out");
      i += 1;
    } else if (strcmp (a, "conv_shortcut") == 0) {
      EMIT ("nin_shortcut");
    } else if (strcmp (a, "conv_norm_out") == 0) {
      EMIT ("norm_out");
    } else {
      EMIT (a);
    }
  }
#undef EMIT
  return g_string_free (out, FALSE);
}

/* Older diffusers files name the attention projections query/key/value/proj_attn. */
static char *
kl_legacy_attention_name (const char *name)
{
  static const char *const map[][2] = {
    { ".to_q.", ".query." }, { ".to_k.", ".key." }, { ".to_v.", ".value." },
    { ".to_out.0.", ".proj_attn." },
  };
  for (guint i = 0; i < G_N_ELEMENTS (map); i++) {
    const char *hit = strstr (name, map[i][0]);
    if (hit)
      return g_strdup_printf ("%.*s%s%s", (int) (hit - name), name, map[i][1],
                              hit + strlen (map[i][0]));
  }
  return NULL;
}

/* The tensor for diffusers name DNAME; *FILE_NAME (always set, free it) is
 * the name the file uses, for messages. */
static const VaeTensorView *
kl_find (Kl *k, const char *dname, char **file_name)
{
  g_autofree char *local = k->ldm ? kl_ldm_name (dname, k->levels) : g_strdup (dname);
  if (k->ldm && k->quant_inside) {
    /* Black Forest Labs' FLUX.2 AutoEncoder keeps the quant convs in the halves. */
    const char *half = g_str_has_prefix (local, "quant_conv.") ? "encoder."
        : g_str_has_prefix (local, "post_quant_conv.") ? "decoder." : NULL;
    if (half) {
      char *moved = g_strconcat (half, local, NULL);
      g_free (local);
      local = moved;
    }
  }
  *file_name = g_strconcat (k->prefix, local, NULL);
  const VaeTensorView *t = vae_weights_find (&k->w, *file_name);
  if (!t && !k->ldm) {
    g_autofree char *legacy = kl_legacy_attention_name (local);
    if (legacy) {
      g_autofree char *full = g_strconcat (k->prefix, legacy, NULL);
      t = vae_weights_find (&k->w, full);
    }
  }
  return t;
}

static float *
kl_load (Kl *k, const char *dname, const char *suffix, int ndim, const gint64 *shape)
{
  if (k->w.error)
    return NULL;
  g_autofree char *full = g_strconcat (dname, suffix, NULL);
  g_autofree char *file_name = NULL;
  const VaeTensorView *t = kl_find (k, full, &file_name);
  return vae_weights_load (&k->w, file_name, t, ndim, shape);
}

/* A conv named DNAME (DNAME.weight [OUT, IN, K, K], DNAME.bias [OUT]).
 * LINEAR: a 1x1 conv that diffusers stores as a linear layer [OUT, IN]. */
static int
kl_conv (Kl *k, VaeGraph *g, const char *dname, int in, int out_ch, int kernel,
         int stride, int pt, int pl, int pb, int pr, int residual, gboolean linear)
{
  if (k->w.error)
    return -1;
  gint64 shape[4] = { out_ch, vae_graph_channels (g, in), kernel, kernel };
  int ndim = 4;
  if (linear) {
    g_autofree char *wname = g_strconcat (dname, ".weight", NULL);
    g_autofree char *file_name = NULL;
    const VaeTensorView *t = kl_find (k, wname, &file_name);
    if (t && t->ndim == 2)
      ndim = 2;
  }
  float *weight = kl_load (k, dname, ".weight", ndim, shape);
  float *bias = kl_load (k, dname, ".bias", 1, shape);
  return vae_weights_conv (&k->w, g, dname, in, out_ch, kernel, stride, pt, pl, pb, pr,
                           weight, bias, residual, VAE_ACT_NONE);
}

static int
kl_conv3 (Kl *k, VaeGraph *g, const char *dname, int in, int out_ch, int residual)
{
  return kl_conv (k, g, dname, in, out_ch, 3, 1, 1, 1, 1, 1, residual, FALSE);
}

static int
kl_norm (Kl *k, VaeGraph *g, const char *dname, int in, VaeActivation act)
{
  if (k->w.error)
    return -1;
  gint64 shape[1] = { vae_graph_channels (g, in) };
  float *gamma = kl_load (k, dname, ".weight", 1, shape);
  float *beta = kl_load (k, dname, ".bias", 1, shape);
  return vae_weights_group_norm (&k->w, g, dname, in, k->groups, KL_EPS, gamma, beta, act);
}

/* ResnetBlock2D: out = conv2(silu(gn2(conv1(silu(gn1(x)))))) + shortcut(x). */
static int
kl_resnet (Kl *k, VaeGraph *g, const char *dname, int x, int out_ch)
{
  if (k->w.error)
    return -1;
  g_autofree char *norm1 = g_strconcat (dname, ".norm1", NULL);
  g_autofree char *conv1 = g_strconcat (dname, ".conv1", NULL);
  g_autofree char *norm2 = g_strconcat (dname, ".norm2", NULL);
  g_autofree char *conv2 = g_strconcat (dname, ".conv2", NULL);
  g_autofree char *shortcut = g_strconcat (dname, ".conv_shortcut", NULL);
  int h = kl_norm (k, g, norm1, x, VAE_ACT_SILU);
  h = kl_conv3 (k, g, conv1, h, out_ch, -1);
  h = kl_norm (k, g, norm2, h, VAE_ACT_SILU);
  int residual = x;
  if (vae_graph_channels (g, x) != out_ch)
    residual = kl_conv (k, g, shortcut, x, out_ch, 1, 1, 0, 0, 0, 0, -1, FALSE);
  return kl_conv3 (k, g, conv2, h, out_ch, residual);
}

/* Single-head self-attention with the residual added by the output projection. */
static int
kl_attention (Kl *k, VaeGraph *g, const char *dname, int x)
{
  if (k->w.error)
    return -1;
  int c = vae_graph_channels (g, x);
  g_autofree char *norm = g_strconcat (dname, ".group_norm", NULL);
  g_autofree char *to_q = g_strconcat (dname, ".to_q", NULL);
  g_autofree char *to_k = g_strconcat (dname, ".to_k", NULL);
  g_autofree char *to_v = g_strconcat (dname, ".to_v", NULL);
  g_autofree char *to_out = g_strconcat (dname, ".to_out.0", NULL);
  int n = kl_norm (k, g, norm, x, VAE_ACT_NONE);
  int q = kl_conv (k, g, to_q, n, c, 1, 1, 0, 0, 0, 0, -1, TRUE);
  int kk = kl_conv (k, g, to_k, n, c, 1, 1, 0, 0, 0, 0, -1, TRUE);
  int v = kl_conv (k, g, to_v, n, c, 1, 1, 0, 0, 0, 0, -1, TRUE);
  if (k->w.error)
    return -1;
  int a = vae_graph_attention (g, dname, q, kk, v);
  return kl_conv (k, g, to_out, a, c, 1, 1, 0, 0, 0, 0, x, TRUE);
}

static int
kl_mid (Kl *k, const VaeModel *m, VaeGraph *g, const char *half, int x, gboolean attention)
{
  const int *widths = g_str_equal (half, "decoder") ? m->decoder_block_out_channels
                                                    : m->block_out_channels;
  int c = widths[m->levels - 1];
  g_autofree char *r0 = g_strdup_printf ("%s.mid_block.resnets.0", half);
  g_autofree char *r1 = g_strdup_printf ("%s.mid_block.resnets.1", half);
  g_autofree char *at = g_strdup_printf ("%s.mid_block.attentions.0", half);
  x = kl_resnet (k, g, r0, x, c);
  if (attention)
    x = kl_attention (k, g, at, x);
  return kl_resnet (k, g, r1, x, c);
}

static VaeGraph *
kl_build_encoder (Kl *k, const VaeModel *m, gboolean attention)
{
  const int *c = m->block_out_channels;
  const int levels = m->levels;
  VaeGraph *g = vae_graph_new_shared (m->image_channels, m->weights);
  int x = kl_conv3 (k, g, "encoder.conv_in", 0, c[0], -1);
  for (int i = 0; i < levels; i++) {
    for (int j = 0; j < m->layers_per_block; j++) {
      g_autofree char *name = g_strdup_printf ("encoder.down_blocks.%d.resnets.%d", i, j);
      x = kl_resnet (k, g, name, x, c[i]);
    }
    if (i < levels - 1) {
      /* Downsample: zero pad right and bottom by one, conv 3x3 stride 2. */
      g_autofree char *name = g_strdup_printf ("encoder.down_blocks.%d.downsamplers.0.conv", i);
      x = kl_conv (k, g, name, x, c[i], 3, 2, 0, 0, 1, 1, -1, FALSE);
    }
  }
  x = kl_mid (k, m, g, "encoder", x, attention);
  x = kl_norm (k, g, "encoder.conv_norm_out", x, VAE_ACT_SILU);
  x = kl_conv3 (k, g, "encoder.conv_out", x, 2 * m->latent_channels, -1);
  if (m->quant_conv)
    x = kl_conv (k, g, "quant_conv", x, 2 * m->latent_channels, 1, 1, 0, 0, 0, 0, -1, FALSE);
  if (k->w.error) {
    vae_graph_free (g);
    return NULL;
  }
  return g;
}

static VaeGraph *
kl_build_decoder (Kl *k, const VaeModel *m, gboolean attention)
{
  const int *c = m->decoder_block_out_channels;
  const int levels = m->levels;
  VaeGraph *g = vae_graph_new_shared (m->latent_channels, m->weights);
  int x = 0;
  if (m->post_quant_conv)
    x = kl_conv (k, g, "post_quant_conv", x, m->latent_channels, 1, 1, 0, 0, 0, 0, -1, FALSE);
  x = kl_conv3 (k, g, "decoder.conv_in", x, c[levels - 1], -1);
  x = kl_mid (k, m, g, "decoder", x, attention);
  for (int i = 0; i < levels; i++) {
    int out_ch = c[levels - 1 - i];
    for (int j = 0; j < m->layers_per_block + 1; j++) {
      g_autofree char *name = g_strdup_printf ("decoder.up_blocks.%d.resnets.%d", i, j);
      x = kl_resnet (k, g, name, x, out_ch);
    }
    if (i < levels - 1 && !k->w.error) {
      g_autofree char *up = g_strdup_printf ("decoder.up_blocks.%d.upsamplers.0", i);
      g_autofree char *conv = g_strdup_printf ("decoder.up_blocks.%d.upsamplers.0.conv", i);
      x = vae_graph_upsample2x (g, up, x);
      x = kl_conv3 (k, g, conv, x, out_ch, -1);
    }
  }
  x = kl_norm (k, g, "decoder.conv_norm_out", x, VAE_ACT_SILU);
  x = kl_conv3 (k, g, "decoder.conv_out", x, m->image_channels, -1);
  if (k->w.error) {
    vae_graph_free (g);
    return NULL;
  }
  return g;
}

/* FLUX.2's "patch_size": [p, p] (or a single integer); only square patches
 * of 1 or 2 exist. */
static gboolean
kl_config_patch (JsonObject *config, const char *file, int *patch, GError **error)
{
  int p[2], n;
  JsonNode *node = json_object_get_member (config, "patch_size");
  if (node && JSON_NODE_HOLDS_VALUE (node))
    return vae_config_int (config, file, "patch_size", 2, 1, 2, patch, error);
  if (!vae_config_int_array (config, file, "patch_size", 2, 2, 1, 2, p, &n, error))
    return FALSE;
  if (n == 0) {
    *patch = 2;
    return TRUE;
  }
  if (p[0] != p[1]) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "%s: \"patch_size\" [%d, %d]: only square patches are supported",
                 file, p[0], p[1]);
    return FALSE;
  }
  *patch = p[0];
  return TRUE;
}

/* Hyper-parameters from config.json, checked for sense. */
static gboolean
kl_read_config (VaeModel *m, JsonObject *config, const char *file, gboolean flux2,
                gboolean *attention, GError **error)
{
  int n, in_ch, out_ch;
  if (!vae_config_int_array (config, file, "block_out_channels", 1, VAE_MAX_LEVELS, 1,
                             KL_MAX_CHANNELS, m->block_out_channels, &n, error))
    return FALSE;
  if (n == 0) {     /* diffusers' default */
    m->block_out_channels[0] = 64;
    n = 1;
  }
  m->levels = n;
  memcpy (m->decoder_block_out_channels, m->block_out_channels,
          sizeof m->decoder_block_out_channels);
  if (flux2) {
    /* decoder_block_out_channels (diffusers 0.38+): null or absent = the
     * encoder's widths. */
    int nd;
    if (!vae_config_int_array (config, file, "decoder_block_out_channels", 1,
                               VAE_MAX_LEVELS, 1, KL_MAX_CHANNELS,
                               m->decoder_block_out_channels, &nd, error))
      return FALSE;
    if (nd == 0) {
      memcpy (m->decoder_block_out_channels, m->block_out_channels,
              sizeof m->decoder_block_out_channels);
    } else if (nd != n) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                   "%s: \"decoder_block_out_channels\" has %d entries, "
                   "\"block_out_channels\" %d", file, nd, n);
      return FALSE;
    }
    if (!kl_config_patch (config, file, &m->latent_patch, error) ||
        !vae_config_double (config, file, "batch_norm_eps", 1e-4, 0.0, 1.0,
                            &m->batch_norm_eps, error))
      return FALSE;
  }
  if (!vae_config_int (config, file, "layers_per_block", 1, 1, KL_MAX_LAYERS,
                       &m->layers_per_block, error) ||
      !vae_config_int (config, file, "latent_channels", 4, 1, KL_MAX_LATENT,
                       &m->latent_channels, error) ||
      !vae_config_int (config, file, "norm_num_groups", 32, 1, KL_MAX_CHANNELS,
                       &m->norm_groups, error) ||
      !vae_config_int (config, file, "in_channels", 3, 1, KL_MAX_CHANNELS, &in_ch, error) ||
      !vae_config_int (config, file, "out_channels", 3, 1, KL_MAX_CHANNELS, &out_ch, error) ||
      !vae_config_bool (config, file, "use_quant_conv", TRUE, &m->quant_conv, error) ||
      !vae_config_bool (config, file, "use_post_quant_conv", TRUE, &m->post_quant_conv, error) ||
      !vae_config_bool (config, file, "mid_block_add_attention", TRUE, attention, error) ||
      !vae_config_double (config, file, "scaling_factor", flux2 ? 1.0 : 0.18215, 1e-6, 1e6,
                          &m->scaling_factor, error) ||
      !vae_config_double (config, file, "shift_factor", 0.0, -1e6, 1e6,
                          &m->shift_factor, error) ||
      !vae_config_string_is (config, file, "act_fn", "silu", error))
    return FALSE;
  if (in_ch != 3 || out_ch != 3) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "%s: in_channels %d / out_channels %d: only RGB (3) models are supported",
                 file, in_ch, out_ch);
    return FALSE;
  }

  static const struct { const char *key, *type; } block_types[] = {
    { "down_block_types", "DownEncoderBlock2D" },
    { "up_block_types", "UpDecoderBlock2D" },
  };
  for (guint b = 0; b < G_N_ELEMENTS (block_types); b++) {
    JsonNode *node = json_object_get_member (config, block_types[b].key);
    if (!node || JSON_NODE_HOLDS_NULL (node))
      continue;
    JsonArray *a = JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
    if (!a || json_array_get_length (a) != (guint) m->levels) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                   "%s: \"%s\" must be an array as long as \"block_out_channels\" (%d)",
                   file, block_types[b].key, m->levels);
      return FALSE;
    }
    for (guint i = 0; i < json_array_get_length (a); i++) {
      JsonNode *e = json_array_get_element (a, i);
      const char *s = JSON_NODE_HOLDS_VALUE (e) &&
          json_node_get_value_type (e) == G_TYPE_STRING ? json_node_get_string (e) : NULL;
      if (!s || strcmp (s, block_types[b].type) != 0) {
        g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                     "%s: \"%s\"[%u] is %s%s%s; only %s is supported", file,
                     block_types[b].key, i, s ? "\"" : "", s ? s : "not a string",
                     s ? "\"" : "", block_types[b].type);
        return FALSE;
      }
    }
  }
  return TRUE;
}

/* Hyper-parameters from the tensors themselves (LDM files, bare state dicts). */
static gboolean
kl_infer (Kl *k, VaeModel *m, gboolean *attention, GError **error)
{
  g_autofree char *first = NULL;
  const VaeTensorView *t;

  /* Levels and widths: encoder.down_blocks.{i}.resnets.0.conv1.weight [c_i, ., 3, 3]. */
  k->levels = 0;
  for (int i = 0;; i++) {
    g_autofree char *dname = g_strdup_printf ("encoder.down_blocks.%d.resnets.0.conv1.weight", i);
    g_autofree char *file_name = NULL;
    /* LDM level indices are not reversed in the encoder, so LEVELS does not
     * matter to this translation yet. */
    t = kl_find (k, dname, &file_name);
    if (i == 0)
      first = g_strdup (file_name);
    if (!t)
      break;
    if (i == VAE_MAX_LEVELS) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                   "%s: more than %d encoder levels", k->w.label, VAE_MAX_LEVELS);
      return FALSE;
    }
    if (t->ndim != 4 || t->shape[0] < 1 || t->shape[0] > KL_MAX_CHANNELS) {
      gint64 shape[4] = { t->ndim >= 1 ? t->shape[0] : 1, t->ndim >= 2 ? t->shape[1] : 1, 3, 3 };
      if (!vae_tensor_view_check_shape (t, k->w.label, 4, shape, error))
        return FALSE;
      g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL, "%s: tensor '%s' has %" G_GINT64_FORMAT
                   " output channels", k->w.label, file_name, t->shape[0]);
      return FALSE;
    }
    m->block_out_channels[i] = (int) t->shape[0];
    k->levels = i + 1;
  }
  if (k->levels == 0) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL, "%s: tensor '%s' is missing",
                 k->w.label, first);
    return FALSE;
  }
  m->levels = k->levels;

  m->layers_per_block = 0;
  for (int j = 0; j < KL_MAX_LAYERS; j++) {
    g_autofree char *dname = g_strdup_printf ("encoder.down_blocks.0.resnets.%d.conv1.weight", j);
    g_autofree char *file_name = NULL;
    if (!kl_find (k, dname, &file_name))
      break;
    m->layers_per_block = j + 1;
  }

  g_autofree char *conv_in = NULL;
  t = kl_find (k, "decoder.conv_in.weight", &conv_in);
  if (!t) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL, "%s: tensor '%s' is missing",
                 k->w.label, conv_in);
    return FALSE;
  }
  if (t->ndim != 4 || t->shape[1] < 1 || t->shape[1] > KL_MAX_LATENT) {
    gint64 shape[4] = { m->block_out_channels[m->levels - 1], 4, 3, 3 };
    if (!vae_tensor_view_check_shape (t, k->w.label, 4, shape, error))
      return FALSE;
  }
  m->latent_channels = (int) t->shape[1];

  /* The decoder's widths from its tensors (FLUX.2's small decoder has its
   * own): up_blocks.I.resnets.0.conv2 [width of level L-1-I, ...]. */
  memcpy (m->decoder_block_out_channels, m->block_out_channels,
          sizeof m->decoder_block_out_channels);
  for (int i = 0; i < m->levels; i++) {
    g_autofree char *dname = g_strdup_printf ("decoder.up_blocks.%d.resnets.0.conv2.weight", i);
    g_autofree char *file_name = NULL;
    const VaeTensorView *u = kl_find (k, dname, &file_name);
    if (u && u->ndim == 4 && u->shape[0] >= 1 && u->shape[0] <= KL_MAX_CHANNELS)
      m->decoder_block_out_channels[m->levels - 1 - i] = (int) u->shape[0];
  }

  g_autofree char *n1 = NULL, *n2 = NULL, *n3 = NULL;
  m->quant_conv = kl_find (k, "quant_conv.weight", &n1) != NULL;
  m->post_quant_conv = kl_find (k, "post_quant_conv.weight", &n2) != NULL;
  *attention = kl_find (k, "encoder.mid_block.attentions.0.to_q.weight", &n3) != NULL;

  /* LDM hard-codes GroupNorm(32). */
  m->norm_groups = 32;

  /* The tensors cannot tell SD1/2 from SDXL, or FLUX.1 from SD3, so pick the
   * common one and let the caller override (VaeModelOptions):
   *   16 latent channels -> FLUX.1's 0.3611 / 0.1159 (BFL's ae.safetensors is
   *                          the usual single 16-channel file; SD3 ships
   *                          diffusers folders with config.json)
   *   anything else      -> 0.18215 / 0: SD 1.x/2.x, and diffusers' own
   *                          default for AutoencoderKL. */
  if (m->variant && g_str_equal (m->variant, "flux2")) {
    /* FLUX.2 has no scalar factors: its normalisation is the BatchNorm's. */
    m->scaling_factor = 1.0;
    m->shift_factor = 0.0;
  } else if (m->latent_channels == 16) {
    m->scaling_factor = 0.3611;
    m->shift_factor = 0.1159;
  } else {
    m->scaling_factor = 0.18215;
    m->shift_factor = 0.0;
  }
  return TRUE;
}

/* FLUX.2's BatchNorm running statistics (bn.running_mean / running_var,
 * [latent_channels * p * p]; bn.num_batches_tracked, an I64 scalar, is not
 * needed) as the per-channel latent normalisation. */
static gboolean
kl_load_batch_norm (Kl *k, VaeModel *m, GError **error)
{
  g_autofree char *mean_name = g_strconcat (k->prefix, "bn.running_mean", NULL);
  g_autofree char *var_name = g_strconcat (k->prefix, "bn.running_var", NULL);
  const VaeTensorView *tm = vae_weights_find (&k->w, mean_name);
  if (!m->latent_patch) {
    /* Single files: the patch from the statistics' length. */
    m->latent_patch = tm && tm->ndim == 1 && tm->shape[0] == 4 * m->latent_channels ? 2 : 1;
  }
  const int p = m->latent_patch;
  gint64 shape[1] = { (gint64) m->latent_channels * p * p };
  g_autofree float *mean = vae_weights_load (&k->w, mean_name, tm, 1, shape);
  g_autofree float *var = vae_weights_load (&k->w, var_name,
                                            vae_weights_find (&k->w, var_name), 1, shape);
  if (k->w.error) {
    g_propagate_error (error, k->w.error);
    k->w.error = NULL;
    return FALSE;
  }
  m->latents_std = g_new (float, shape[0]);
  for (gint64 c = 0; c < shape[0]; c++) {
    /* As the pipeline computes it: sqrt(running_var + eps) in float32. */
    float v = var[c] + (float) m->batch_norm_eps;
    if (!(v > 0.0f) || !isfinite (v) || !isfinite (mean[c])) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL,
                   "%s: bn.running_var[%" G_GINT64_FORMAT "] + eps = %g (mean %g) "
                   "cannot normalise latents", k->w.label, c, v, mean[c]);
      g_clear_pointer (&m->latents_std, g_free);
      return FALSE;
    }
    m->latents_std[c] = sqrtf (v);
  }
  m->latents_mean = g_steal_pointer (&mean);
  return TRUE;
}

gboolean
vae_model_build_kl (VaeModel *m, VaeSafetensors *st, gboolean ldm, gboolean flux2,
                    const char *prefix, JsonObject *config, const char *config_path,
                    GError **error)
{
  Kl k = { { st, vae_safetensors_path (st), NULL }, ldm, flux2 && ldm, prefix, 0, 0 };
  gboolean attention = TRUE;
  const int groups_override = m->norm_groups;

  m->family = VAE_FAMILY_KL;
  m->image_channels = 3;
  if (flux2) {
    m->variant = "flux2";
    m->batch_norm_eps = 1e-4;     /* BFL's BatchNorm2d(eps=1e-4), diffusers' default */
  }
  if (config) {
    if (!kl_read_config (m, config, config_path, flux2, &attention, error))
      return FALSE;
  } else if (!kl_infer (&k, m, &attention, error)) {
    return FALSE;
  }
  if (groups_override > 0)
    m->norm_groups = groups_override;
  if (flux2 && !kl_load_batch_norm (&k, m, error))
    return FALSE;
  k.levels = m->levels;
  k.groups = m->norm_groups;

  const char *source = config ? config_path : k.w.label;
  for (int i = 0; i < m->levels; i++) {
    if (m->block_out_channels[i] % m->norm_groups != 0 ||
        m->decoder_block_out_channels[i] % m->norm_groups != 0) {
      gboolean enc = m->block_out_channels[i] % m->norm_groups != 0;
      g_set_error (error, VAE_ERROR, config ? VAE_ERROR_FORMAT : VAE_ERROR_MODEL,
                   "%s: %sblock_out_channels[%d] = %d is not divisible by the %d norm groups",
                   source, enc ? "" : "decoder_", i,
                   enc ? m->block_out_channels[i] : m->decoder_block_out_channels[i],
                   m->norm_groups);
      return FALSE;
    }
  }

  m->spatial_factor = 1 << (m->levels - 1);
  m->image_min = -1.0f;
  m->encoder_outputs_moments = TRUE;
  m->has_pool = FALSE;

  m->encoder = kl_build_encoder (&k, m, attention);
  if (m->encoder)
    m->decoder = kl_build_decoder (&k, m, attention);
  if (k.w.error) {
    g_propagate_error (error, k.w.error);
    vae_graph_free (m->encoder);
    m->encoder = NULL;
    return FALSE;
  }
  return TRUE;
}
