/* gst-vae: AutoencoderTiny (TAESD, TAESDXL, TAESD3, TAEF1, TAEF2).
 *
 * Both file layouts hold TAESD's nn.Sequential (madebyollin/taesd, taesd.py):
 *
 *   Encoder: conv(3,64) Block | conv(s2, no bias) Block Block Block | x3 ... conv(64,latent)
 *   Decoder: Clamp conv(latent,64) ReLU | Block Block Block Upsample conv(no bias) | x3
 *            Block conv(64,3)
 *   Block(n_in, n_out) = relu(conv(relu(conv(relu(conv(x))))) + skip(x)),
 *     skip = conv1x1 without bias when n_in != n_out, else identity;
 *     TAEF2 ("flux_2") adds before it x = x + pool(x) in the three deepest
 *     encoder Blocks and the first three decoder Blocks, with
 *     pool = Sequential(conv1x1(n, 4n, no bias), GroupNorm(4, 4n) [eps 1e-5,
 *     PyTorch's default], ReLU, conv1x1(4n, n, no bias)).
 *
 * TAESD files use the Sequential indices as keys ("0.weight",
 * "1.conv.0.weight", "11.pool.0.weight"; the decoder's index 0 is the Clamp,
 * which has no tensors).  diffusers' AutoencoderTiny stores the same layers as
 * encoder.layers.{k} and decoder.layers.{k-1} (its Clamp sits outside the
 * Sequential).
 *
 * Rather than hard-coding the indices, the structure is read off the keys:
 * each index holds a conv ("k.weight" [+ "k.bias"]), a Block ("k.conv.*",
 * "k.skip.*", "k.pool.*") or nothing (Clamp, ReLU, Upsample), and the
 * sequence is then checked against the grammar above (any number of Blocks
 * per stage, any number of stages up to VAE_MAX_LEVELS).  Unknown tensors
 * are errors, so every tensor of the file ends up in the graph.
 *
 * Graph input/output pixels are TAESD's [0, 1]; diffusers' AutoencoderTiny
 * maps [-1, 1] around the same layers, which the caller does (image_min 0). */
#include "model-private.h"
#include <stdlib.h>
#include <string.h>

#define TINY_MAX_INDEX 1024
#define TINY_MAX_CHANNELS 65536
#define TINY_CLAMP 3.0f
#define TINY_POOL_GROUPS 4
#define TINY_POOL_EPS 1e-5f

typedef enum { SLOT_EMPTY, SLOT_CONV, SLOT_BLOCK } SlotKind;

typedef struct {
  SlotKind kind;
  gboolean bias;       /* conv: has k.bias */
  gboolean skip;       /* block: has k.skip.weight */
  gboolean pool;       /* block: has k.pool.* */
} Slot;

typedef struct {
  VaeWeights w;
  VaeWeightStore *store;     /* the model's: where the graphs' weights go */
  const char *prefix;        /* of the keys in the file */
  const char *what;          /* "encoder" / "decoder" */
  char *op_prefix;           /* for graph op names */
  Slot *slots;
  int n;                     /* max index + 1 */
  gboolean has_pool;
  /* Results. */
  int stages;
  int stage_blocks[VAE_MAX_LEVELS];
  int stage_channels[VAE_MAX_LEVELS];
  int latent;
} Tiny;

static const char *const block_keys[] = {
  "conv.0.weight", "conv.0.bias", "conv.2.weight", "conv.2.bias", "conv.4.weight",
  "conv.4.bias", "skip.weight", "pool.0.weight", "pool.1.weight", "pool.1.bias",
  "pool.3.weight",
};

static void
tiny_clear (Tiny *t)
{
  g_free (t->op_prefix);
  g_free (t->slots);
  g_clear_error (&t->w.error);
}

static gboolean
tiny_scan (Tiny *t)
{
  VaeSafetensors *st = t->w.st;
  gsize plen = strlen (t->prefix);
  t->slots = g_new0 (Slot, TINY_MAX_INDEX);
  t->n = 0;
  for (guint i = 0; i < vae_safetensors_n_tensors (st); i++) {
    const char *name = vae_safetensors_tensor_at (st, i)->name;
    if (strncmp (name, t->prefix, plen) != 0)
      continue;
    const char *rest = name + plen;
    char *end = NULL;
    long idx = g_ascii_isdigit (rest[0]) ? strtol (rest, &end, 10) : -1;
    gboolean canonical = idx >= 0 && idx < TINY_MAX_INDEX && *end == '.' &&
        (rest[0] != '0' || end == rest + 1);
    if (!canonical) {
      vae_weights_fail (&t->w, VAE_ERROR_MODEL,
                        "%s: unexpected tensor '%s' in a TAESD %s (expected %s<index>.*)",
                        t->w.label, name, t->what, t->prefix);
      return FALSE;
    }
    const char *suffix = end + 1;
    Slot *s = &t->slots[idx];
    SlotKind kind = SLOT_EMPTY;
    if (strcmp (suffix, "weight") == 0 || strcmp (suffix, "bias") == 0) {
      kind = SLOT_CONV;
      if (strcmp (suffix, "bias") == 0)
        s->bias = TRUE;
    } else {
      for (guint k = 0; k < G_N_ELEMENTS (block_keys); k++)
        if (strcmp (suffix, block_keys[k]) == 0)
          kind = SLOT_BLOCK;
      if (kind == SLOT_BLOCK && g_str_has_prefix (suffix, "skip."))
        s->skip = TRUE;
      if (kind == SLOT_BLOCK && g_str_has_prefix (suffix, "pool."))
        s->pool = TRUE;
    }
    if (kind == SLOT_EMPTY || (s->kind != SLOT_EMPTY && s->kind != kind)) {
      vae_weights_fail (&t->w, VAE_ERROR_MODEL,
                        "%s: unexpected tensor '%s' in a TAESD %s", t->w.label, name, t->what);
      return FALSE;
    }
    s->kind = kind;
    t->n = MAX (t->n, (int) idx + 1);
  }
  if (t->n == 0) {
    vae_weights_fail (&t->w, VAE_ERROR_MODEL, "%s: no TAESD %s tensors (%s0.weight, ...)",
                      t->w.label, t->what, t->prefix);
    return FALSE;
  }
  return TRUE;
}

static const char *
slot_desc (const Slot *s)
{
  switch (s->kind) {
    case SLOT_CONV:
      return s->bias ? "a conv with bias" : "a conv without bias";
    case SLOT_BLOCK:
      return "a Block";
    case SLOT_EMPTY:
      break;
  }
  return "no tensors";
}

static void
tiny_structure_error (Tiny *t, int idx, const char *expected)
{
  vae_weights_fail (&t->w, VAE_ERROR_MODEL,
                    "%s: not a TAESD %s: index %s%d holds %s where %s was expected",
                    t->w.label, t->what, t->prefix, idx,
                    idx < t->n ? slot_desc (&t->slots[idx]) : "nothing", expected);
}

static char *
tiny_key (const Tiny *t, int idx, const char *sub, const char *leaf)
{
  return g_strdup_printf ("%s%d%s%s.%s", t->prefix, idx, sub ? "." : "", sub ? sub : "", leaf);
}

/* Dimension DIM of the 4-D conv weight at IDX[.SUB]; sets the error when it
 * is missing or not a conv weight. */
static int
tiny_weight_dim (Tiny *t, int idx, const char *sub, int dim)
{
  if (t->w.error)
    return -1;
  g_autofree char *name = tiny_key (t, idx, sub, "weight");
  const VaeTensorView *tv = vae_weights_find (&t->w, name);
  if (!tv) {
    vae_weights_fail (&t->w, VAE_ERROR_MODEL, "%s: tensor '%s' is missing", t->w.label, name);
    return -1;
  }
  if (tv->ndim != 4 || tv->shape[dim] < 1 || tv->shape[dim] > TINY_MAX_CHANNELS) {
    GString *s = g_string_new ("[");
    for (int i = 0; i < tv->ndim; i++)
      g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? "," : "", tv->shape[i]);
    g_string_append_c (s, ']');
    vae_weights_fail (&t->w, VAE_ERROR_MODEL,
                      "%s: tensor '%s' has shape %s where a conv weight "
                      "[out,in,kernel,kernel] was expected", t->w.label, name, s->str);
    g_string_free (s, TRUE);
    return -1;
  }
  return (int) tv->shape[dim];
}

/* The conv at IDX[.SUB]; OUT_CH < 0: as many outputs as its weight has. */
static int
tiny_conv (Tiny *t, VaeGraph *g, int idx, const char *sub, int in, int out_ch,
           int kernel, int stride, gboolean bias, int residual, VaeActivation act)
{
  if (t->w.error)
    return -1;
  if (out_ch < 0 && (out_ch = tiny_weight_dim (t, idx, sub, 0)) < 0)
    return -1;
  g_autofree char *wname = tiny_key (t, idx, sub, "weight");
  g_autofree char *bname = tiny_key (t, idx, sub, "bias");
  g_autofree char *op = g_strdup_printf ("%s%d%s%s", t->op_prefix, idx, sub ? "." : "",
                                         sub ? sub : "");
  gint64 shape[4] = { out_ch, vae_graph_channels (g, in), kernel, kernel };
  float *w = vae_weights_load (&t->w, wname, vae_weights_find (&t->w, wname), 4, shape);
  float *b = bias ? vae_weights_load (&t->w, bname, vae_weights_find (&t->w, bname), 1, shape)
                  : NULL;
  int pad = kernel / 2;
  return vae_weights_conv (&t->w, g, op, in, out_ch, kernel, stride, pad, pad, pad, pad,
                           w, b, residual, act);
}

static int
tiny_block (Tiny *t, VaeGraph *g, int idx, int x)
{
  if (t->w.error)
    return -1;
  const Slot *s = &t->slots[idx];
  int c = vae_graph_channels (g, x);

  if (s->pool) {
    /* TAEF2: x = x + conv1x1(relu(gn(conv1x1(x)))). */
    t->has_pool = TRUE;
    int gc = tiny_weight_dim (t, idx, "pool.0", 0);
    if (gc > 0 && gc % TINY_POOL_GROUPS != 0) {
      vae_weights_fail (&t->w, VAE_ERROR_MODEL,
                        "%s: tensor '%s%d.pool.0.weight' has %d output channels, not a "
                        "multiple of the %d GroupNorm groups", t->w.label, t->prefix, idx,
                        gc, TINY_POOL_GROUPS);
      return -1;
    }
    int p = tiny_conv (t, g, idx, "pool.0", x, gc, 1, 1, FALSE, -1, VAE_ACT_NONE);
    if (t->w.error)
      return -1;
    g_autofree char *gname = tiny_key (t, idx, "pool.1", "weight");
    g_autofree char *bname = tiny_key (t, idx, "pool.1", "bias");
    g_autofree char *op = g_strdup_printf ("%s%d.pool.1", t->op_prefix, idx);
    gint64 shape[1] = { gc };
    float *gamma = vae_weights_load (&t->w, gname, vae_weights_find (&t->w, gname), 1, shape);
    float *beta = vae_weights_load (&t->w, bname, vae_weights_find (&t->w, bname), 1, shape);
    p = vae_weights_group_norm (&t->w, g, op, p, TINY_POOL_GROUPS, TINY_POOL_EPS, gamma,
                                beta, VAE_ACT_RELU);
    x = tiny_conv (t, g, idx, "pool.3", p, c, 1, 1, FALSE, x, VAE_ACT_NONE);
  }

  int out = tiny_weight_dim (t, idx, "conv.0", 0);
  if (t->w.error)
    return -1;
  int skip = x;
  if (out != c) {
    skip = tiny_conv (t, g, idx, "skip", x, out, 1, 1, FALSE, -1, VAE_ACT_NONE);
  } else if (s->skip) {
    vae_weights_fail (&t->w, VAE_ERROR_MODEL,
                      "%s: unexpected tensor '%s%d.skip.weight': the Block keeps its %d "
                      "channels, so its skip is the identity", t->w.label, t->prefix, idx, c);
    return -1;
  }
  int h = tiny_conv (t, g, idx, "conv.0", x, out, 3, 1, TRUE, -1, VAE_ACT_RELU);
  h = tiny_conv (t, g, idx, "conv.2", h, out, 3, 1, TRUE, -1, VAE_ACT_RELU);
  return tiny_conv (t, g, idx, "conv.4", h, out, 3, 1, TRUE, skip, VAE_ACT_RELU);
}

static gboolean
tiny_new_stage (Tiny *t, int channels)
{
  if (t->stages == VAE_MAX_LEVELS) {
    vae_weights_fail (&t->w, VAE_ERROR_UNSUPPORTED, "%s: TAESD %s with more than %d stages",
                      t->w.label, t->what, VAE_MAX_LEVELS);
    return FALSE;
  }
  t->stage_blocks[t->stages] = 0;
  t->stage_channels[t->stages] = channels;
  t->stages++;
  return TRUE;
}

/* conv(3, c) Block+ [conv(s2, no bias) Block+]* conv(c, latent) */
static VaeGraph *
tiny_build_encoder (Tiny *t)
{
  const Slot *s = t->slots;
  int last = t->n - 1;
  if (s[0].kind != SLOT_CONV || !s[0].bias) {
    tiny_structure_error (t, 0, "the input conv (with bias)");
    return NULL;
  }
  VaeGraph *g = vae_graph_new_shared (3, t->store);
  int x = tiny_conv (t, g, 0, NULL, 0, -1, 3, 1, TRUE, -1, VAE_ACT_NONE);
  if (x >= 0)
    tiny_new_stage (t, vae_graph_channels (g, x));
  for (int i = 1; i < last && !t->w.error; i++) {
    if (s[i].kind == SLOT_BLOCK) {
      x = tiny_block (t, g, i, x);
      t->stage_blocks[t->stages - 1]++;
    } else if (s[i].kind == SLOT_CONV && !s[i].bias && t->stage_blocks[t->stages - 1] > 0) {
      x = tiny_conv (t, g, i, NULL, x, -1, 3, 2, FALSE, -1, VAE_ACT_NONE);
      if (x >= 0)
        tiny_new_stage (t, vae_graph_channels (g, x));
    } else {
      tiny_structure_error (t, i, "a Block or a stride-2 conv without bias after a Block");
    }
  }
  if (!t->w.error) {
    if (last < 2 || s[last].kind != SLOT_CONV || !s[last].bias ||
        t->stage_blocks[t->stages - 1] == 0)
      tiny_structure_error (t, last, "the output conv (with bias) after a Block");
    x = tiny_conv (t, g, last, NULL, x, -1, 3, 1, TRUE, -1, VAE_ACT_NONE);
  }
  if (t->w.error) {
    vae_graph_free (g);
    return NULL;
  }
  t->latent = vae_graph_channels (g, x);
  return g;
}

/* [Clamp] conv(latent, c) ReLU Block+ [Upsample conv(no bias) Block+]* conv(c, 3) */
static VaeGraph *
tiny_build_decoder (Tiny *t, gboolean clamp_index)
{
  const Slot *s = t->slots;
  int first = clamp_index ? 1 : 0;
  int last = t->n - 1;
  if (clamp_index && s[0].kind != SLOT_EMPTY) {
    tiny_structure_error (t, 0, "the Clamp (no tensors)");
    return NULL;
  }
  if (last < first + 3 || s[first].kind != SLOT_CONV || !s[first].bias) {
    tiny_structure_error (t, first, "the input conv (with bias)");
    return NULL;
  }
  if (s[first + 1].kind != SLOT_EMPTY) {
    tiny_structure_error (t, first + 1, "a ReLU (no tensors)");
    return NULL;
  }
  t->latent = tiny_weight_dim (t, first, NULL, 1);
  if (t->latent < 0)
    return NULL;

  VaeGraph *g = vae_graph_new_shared (t->latent, t->store);
  g_autofree char *clamp = clamp_index ? g_strdup_printf ("%s0", t->op_prefix)
                                       : g_strdup_printf ("%sclamp", t->op_prefix);
  int x = vae_graph_tanh_clamp (g, clamp, 0, TINY_CLAMP);
  x = tiny_conv (t, g, first, NULL, x, -1, 3, 1, TRUE, -1, VAE_ACT_RELU);
  if (x >= 0)
    tiny_new_stage (t, vae_graph_channels (g, x));
  for (int i = first + 2; i < last && !t->w.error; i++) {
    if (s[i].kind == SLOT_BLOCK) {
      x = tiny_block (t, g, i, x);
      t->stage_blocks[t->stages - 1]++;
    } else if (s[i].kind == SLOT_EMPTY && i + 1 < last && s[i + 1].kind == SLOT_CONV &&
               !s[i + 1].bias && t->stage_blocks[t->stages - 1] > 0) {
      g_autofree char *up = g_strdup_printf ("%s%d", t->op_prefix, i);
      x = vae_graph_upsample2x (g, up, x);
      i++;
      x = tiny_conv (t, g, i, NULL, x, -1, 3, 1, FALSE, -1, VAE_ACT_NONE);
      if (x >= 0)
        tiny_new_stage (t, vae_graph_channels (g, x));
    } else {
      tiny_structure_error (t, i, "a Block, or an Upsample (no tensors) then a conv "
                            "without bias after a Block");
    }
  }
  if (!t->w.error) {
    if (s[last].kind != SLOT_CONV || !s[last].bias || t->stage_blocks[t->stages - 1] == 0)
      tiny_structure_error (t, last, "the output conv (with bias) after a Block");
    x = tiny_conv (t, g, last, NULL, x, 3, 3, 1, TRUE, -1, VAE_ACT_NONE);
  }
  if (t->w.error) {
    vae_graph_free (g);
    return NULL;
  }
  return g;
}

/* One half; FALSE with ERROR set on failure.  T->w.error is moved to ERROR. */
static gboolean
tiny_build_half (Tiny *t, const VaeTinySource *src, gboolean encoder, VaeGraph **graph,
                 GError **error)
{
  t->w.st = src->st;
  t->w.label = vae_safetensors_path (src->st);
  t->prefix = src->prefix;
  t->what = encoder ? "encoder" : "decoder";
  t->op_prefix = src->prefix[0] ? g_strdup (src->prefix)
                                : g_strdup (encoder ? "encoder." : "decoder.");
  if (tiny_scan (t))
    *graph = encoder ? tiny_build_encoder (t) : tiny_build_decoder (t, src->clamp_index);
  if (t->w.error) {
    g_propagate_error (error, g_steal_pointer (&t->w.error));
    return FALSE;
  }
  return TRUE;
}

static gboolean
check_array (JsonObject *config, const char *file, const char *key, const int *have,
             int n_have, GError **error)
{
  int want[VAE_MAX_LEVELS];
  int n;
  if (!vae_config_int_array (config, file, key, 1, VAE_MAX_LEVELS, 0, TINY_MAX_CHANNELS,
                             want, &n, error))
    return FALSE;
  if (n == 0)
    return TRUE;
  gboolean same = n == n_have;
  for (int i = 0; same && i < n; i++)
    same = want[i] == have[i];
  if (!same) {
    GString *s = g_string_new (NULL);
    for (int i = 0; i < n_have; i++)
      g_string_append_printf (s, "%s%d", i ? "," : "", have[i]);
    g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL,
                 "%s: \"%s\" does not match the weights, which have [%s]", file, key, s->str);
    g_string_free (s, TRUE);
    return FALSE;
  }
  return TRUE;
}

gboolean
vae_model_build_tiny (VaeModel *m, const VaeTinySource *enc_src, const VaeTinySource *dec_src,
                      JsonObject *config, const char *config_path, GError **error)
{
  int latent_cfg = 0, in_ch = 3, out_ch = 3, up = 2;
  m->family = VAE_FAMILY_TINY;
  m->image_channels = 3;
  m->scaling_factor = 1.0;     /* TAESD latents are diffusion-space already */
  m->shift_factor = 0.0;
  if (config &&
      (!vae_config_int (config, config_path, "latent_channels", 0, 1, 4096, &latent_cfg, error) ||
       !vae_config_int (config, config_path, "in_channels", 3, 1, 4096, &in_ch, error) ||
       !vae_config_int (config, config_path, "out_channels", 3, 1, 4096, &out_ch, error) ||
       !vae_config_int (config, config_path, "upsampling_scaling_factor", 2, 1, 64, &up, error) ||
       !vae_config_string_is (config, config_path, "act_fn", "relu", error) ||
       !vae_config_string_is (config, config_path, "upsample_fn", "nearest", error) ||
       !vae_config_double (config, config_path, "scaling_factor", 1.0, 1e-6, 1e6,
                           &m->scaling_factor, error) ||
       !vae_config_double (config, config_path, "shift_factor", 0.0, -1e6, 1e6,
                           &m->shift_factor, error)))
    return FALSE;
  if (in_ch != 3 || out_ch != 3 || up != 2) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "%s: only RGB models with 2x upsampling are supported "
                 "(in_channels %d, out_channels %d, upsampling_scaling_factor %d)",
                 config_path, in_ch, out_ch, up);
    return FALSE;
  }

  Tiny e = { 0 }, d = { 0 };
  e.store = d.store = m->weights;
  gboolean ok = TRUE;
  if (enc_src && enc_src->st)
    ok = tiny_build_half (&e, enc_src, TRUE, &m->encoder, error);
  if (ok && dec_src && dec_src->st)
    ok = tiny_build_half (&d, dec_src, FALSE, &m->decoder, error);
  if (ok && !m->encoder && !m->decoder) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL, "no TAESD encoder or decoder given");
    ok = FALSE;
  }
  if (ok && m->encoder && m->decoder && (e.latent != d.latent || e.stages != d.stages)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL,
                 "%s and %s do not belong together: the encoder has %d latent channels "
                 "and %d stages, the decoder %d and %d", e.w.label, d.w.label, e.latent,
                 e.stages, d.latent, d.stages);
    ok = FALSE;
  }

  if (ok) {
    const Tiny *ref = m->encoder ? &e : &d;
    m->latent_channels = ref->latent;
    m->levels = ref->stages;
    for (int i = 0; i < ref->stages; i++)     /* encoder order */
      m->block_out_channels[i] = m->encoder ? e.stage_channels[i]
                                            : d.stage_channels[d.stages - 1 - i];
    m->spatial_factor = 1 << (m->levels - 1);
    m->has_pool = e.has_pool || d.has_pool;
    m->image_min = 0.0f;
    m->encoder_outputs_moments = FALSE;
    m->layers_per_block = 0;
    m->norm_groups = 0;
    m->quant_conv = m->post_quant_conv = FALSE;
  }

  if (ok && config) {
    if (latent_cfg && latent_cfg != m->latent_channels) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL,
                   "%s: \"latent_channels\" is %d but the weights have %d",
                   config_path, latent_cfg, m->latent_channels);
      ok = FALSE;
    }
    ok = ok && (!m->encoder ||
                (check_array (config, config_path, "num_encoder_blocks", e.stage_blocks,
                              e.stages, error) &&
                 check_array (config, config_path, "encoder_block_out_channels",
                              e.stage_channels, e.stages, error)));
    ok = ok && (!m->decoder ||
                (check_array (config, config_path, "num_decoder_blocks", d.stage_blocks,
                              d.stages, error) &&
                 check_array (config, config_path, "decoder_block_out_channels",
                              d.stage_channels, d.stages, error)));
  }

  tiny_clear (&e);
  tiny_clear (&d);
  if (!ok) {
    g_clear_pointer (&m->encoder, vae_graph_free);
    g_clear_pointer (&m->decoder, vae_graph_free);
  }
  return ok;
}
