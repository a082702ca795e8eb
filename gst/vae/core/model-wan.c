/* gst-vae: AutoencoderKLWan (Wan 2.1, Wan 2.2, Qwen-Image) as graphs.
 *
 * See docs/video-architectures.md (shared docs, sections 2-6).  A Wan VAE
 * is streamed: the encoder takes frame 0 alone, then chunks of 4 frames;
 * the decoder one latent per call.  Each direction has a first-chunk graph
 * and a steady-state graph over the same weights (model->weights) and the
 * same state slots; both are built in one pass (Wan.g[0] = first chunk,
 * Wan.g[1] = steady), so every tensor is read once and a cached conv gets
 * the same slot number in both.  They differ only in the resamplers:
 *   - downsample3d (encoder): the time conv (kt 3, stride 2, one history
 *     frame) is a time passthrough in the first chunk, which leaves the
 *     frame in its slot;
 *   - upsample3d (decoder): the time conv (kt 3, stride 1, two history
 *     frames) and the frame doubling after it are left out of the first
 *     chunk; its slot stays zero, as diffusers' "Rep" marker does;
 *   - Wan 2.2's DupUp3D shortcuts drop their first ft - 1 frames in the
 *     first chunk.
 * One slot per cached conv input, numbered in execution order: every
 * 3x3x3 conv (K = 2) and every resample time conv.
 *
 * Tensors are asked for by their diffusers names; for original Wan files
 * (Wan2.1_VAE.pth, Wan2.2_VAE.pth as safetensors, ComfyUI's copies)
 * wan_original_name() translates (section 6 of the doc).  Ops are named by
 * the diffusers name whatever the layout. */
#include "model-private.h"
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define WAN_MAX_CHANNELS 65536
#define WAN_MAX_Z 4096
#define WAN_MAX_RES 64

/* The real models' latent normalisation (diffusers' defaults and the Wan
 * 2.2 TI2V-5B config), for files that come without config.json. */
static const float wan21_mean[16] = {
  -0.7571f, -0.7089f, -0.9113f, 0.1075f, -0.1745f, 0.9653f, -0.1517f, 1.5508f,
  0.4134f, -0.0715f, 0.5517f, -0.3632f, -0.1922f, -0.9497f, 0.2503f, -0.2921f,
};
static const float wan21_std[16] = {
  2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f, 2.6052f, 2.0743f,
  3.2687f, 2.1526f, 2.8652f, 1.5579f, 1.6382f, 1.1253f, 2.8251f, 1.916f,
};
static const float wan22_mean[48] = {
  -0.2289f, -0.0052f, -0.1323f, -0.2339f, -0.2799f, 0.0174f, 0.1838f, 0.1557f,
  -0.1382f, 0.0542f, 0.2813f, 0.0891f, 0.157f, -0.0098f, 0.0375f, -0.1825f,
  -0.2246f, -0.1207f, -0.0698f, 0.5109f, 0.2665f, -0.2108f, -0.2158f, 0.2502f,
  -0.2055f, -0.0322f, 0.1109f, 0.1567f, -0.0729f, 0.0899f, -0.2799f, -0.123f,
  -0.0313f, -0.1649f, 0.0117f, 0.0723f, -0.2839f, -0.2083f, -0.052f, 0.3748f,
  0.0152f, 0.1957f, 0.1433f, -0.2944f, 0.3573f, -0.0548f, -0.1681f, -0.0667f,
};
static const float wan22_std[48] = {
  0.4765f, 1.0364f, 0.4514f, 1.1677f, 0.5313f, 0.499f, 0.4818f, 0.5013f,
  0.8158f, 1.0344f, 0.5894f, 1.0901f, 0.6885f, 0.6165f, 0.8454f, 0.4978f,
  0.5759f, 0.3523f, 0.7135f, 0.6804f, 0.5833f, 1.4146f, 0.8986f, 0.5659f,
  0.7069f, 0.5338f, 0.4889f, 0.4917f, 0.4069f, 0.4999f, 0.6866f, 0.4093f,
  0.5709f, 0.6065f, 0.6415f, 0.4944f, 0.5726f, 1.2042f, 0.5458f, 1.6887f,
  0.3971f, 1.06f, 0.3943f, 0.5537f, 0.5444f, 0.4089f, 0.7468f, 0.7744f,
};

typedef struct {
  int base_dim, dec_base_dim, z, n_res, levels;
  int mult[VAE_MAX_LEVELS];
  gboolean tdown[VAE_MAX_LEVELS];     /* levels - 1 entries */
  gboolean residual;                  /* Wan 2.2's residual blocks */
  int patch;                          /* 1: none */
  int in_ch, out_ch;
  float *mean, *std;                  /* owned until handed to the model */
} WanConfig;

/* A value in the first-chunk graph (v[0]) and in the steady graph (v[1]). */
typedef struct {
  int v[2];
} Val;

static const Val none = { { -1, -1 } };

typedef struct {
  VaeWeights w;
  gboolean original;
  gboolean v22;                       /* residual blocks and their key names */
  int n_res;
  VaeGraph *g[2];
  int next_state;
  GHashTable *used;                   /* file tensor names read */
} Wan;

/* ------------------------------------------------------------------ names */

/* Inside a residual block: diffusers -> original. */
static const char *
resnet_part (const char *a)
{
  static const char *const map[][2] = {
    { "norm1", "residual.0" }, { "conv1", "residual.2" }, { "norm2", "residual.3" },
    { "conv2", "residual.6" }, { "conv_shortcut", "shortcut" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (map); i++)
    if (strcmp (a, map[i][0]) == 0)
      return map[i][1];
  return a;
}

/* diffusers name -> original Wan name (docs/video-architectures.md, 6). */
static char *
wan_original_name (const Wan *k, const char *dname)
{
  g_auto (GStrv) t = g_strsplit (dname, ".", -1);
  const guint n = g_strv_length (t);
  GString *out = g_string_new (NULL);
  guint rest = n;   /* first token copied through resnet_part */
#define EMIT(s) g_string_append_printf (out, "%s%s", out->len ? "." : "", (s))
#define EMITF(...) do { g_autofree char *s_ = g_strdup_printf (__VA_ARGS__); EMIT (s_); } while (0)
  const char *t1 = n > 1 ? t[1] : "", *t2 = n > 2 ? t[2] : "", *t3 = n > 3 ? t[3] : "";
  const char *t4 = n > 4 ? t[4] : "";
  if (strcmp (t[0], "quant_conv") == 0 || strcmp (t[0], "post_quant_conv") == 0) {
    EMIT (t[0][0] == 'q' ? "conv1" : "conv2");
    rest = 1;
  } else if (strcmp (t[0], "encoder") == 0 || strcmp (t[0], "decoder") == 0) {
    EMIT (t[0]);
    if (strcmp (t1, "conv_in") == 0) {
      EMIT ("conv1");
      rest = 2;
    } else if (strcmp (t1, "norm_out") == 0) {
      EMIT ("head.0");
      rest = 2;
    } else if (strcmp (t1, "conv_out") == 0) {
      EMIT ("head.2");
      rest = 2;
    } else if (strcmp (t1, "mid_block") == 0 && strcmp (t2, "resnets") == 0 && n > 3) {
      EMITF ("middle.%d", atoi (t3) == 0 ? 0 : 2);
      rest = 4;
    } else if (strcmp (t1, "mid_block") == 0 && strcmp (t2, "attentions") == 0 && n > 3) {
      EMIT ("middle.1");
      rest = 4;
    } else if (strcmp (t1, "down_blocks") == 0 && n > 2) {
      EMITF ("downsamples.%s", t2);
      rest = 3;
      if (k->v22 && strcmp (t3, "resnets") == 0 && n > 4) {
        EMITF ("downsamples.%s", t4);
        rest = 5;
      } else if (k->v22 && strcmp (t3, "downsampler") == 0) {
        EMITF ("downsamples.%d", k->n_res);
        rest = 4;
      }
    } else if (strcmp (t1, "up_blocks") == 0 && n > 4) {
      int i = atoi (t2), j = atoi (t4);
      if (k->v22 && strcmp (t3, "resnets") == 0) {
        EMITF ("upsamples.%d.upsamples.%d", i, j);
        rest = 5;
      } else if (k->v22 && strcmp (t3, "upsampler") == 0) {
        EMITF ("upsamples.%d.upsamples.%d", i, k->n_res + 1);
        rest = 4;
      } else if (strcmp (t3, "resnets") == 0) {
        EMITF ("upsamples.%d", (k->n_res + 2) * i + j);
        rest = 5;
      } else if (strcmp (t3, "upsamplers") == 0) {
        EMITF ("upsamples.%d", (k->n_res + 2) * i + k->n_res + 1);
        rest = 5;
      } else {
        rest = 1;
      }
    } else {
      rest = 1;
    }
  } else {
    rest = 0;
  }
  for (guint i = rest; i < n; i++)
    EMIT (i == rest ? resnet_part (t[i]) : t[i]);
#undef EMITF
#undef EMIT
  return g_string_free (out, FALSE);
}

static const VaeTensorView *
wan_find (Wan *k, const char *dname, char **file_name)
{
  *file_name = k->original ? wan_original_name (k, dname) : g_strdup (dname);
  return vae_weights_find (&k->w, *file_name);
}

static gboolean
wan_has (Wan *k, const char *dname)
{
  g_autofree char *file_name = NULL;
  return wan_find (k, dname, &file_name) != NULL;
}

/* DNAME's tensor, or NULL (no error). */
static const VaeTensorView *
wan_view (Wan *k, const char *dname)
{
  g_autofree char *file_name = NULL;
  return wan_find (k, dname, &file_name);
}

/* DNAME's tensor as a caller-owned array, or (FILTER) as a convolution
 * filter that the model's store holds (vae_weights_load_filter: served
 * from the file's mapping where it can be), which the caller never frees. */
static float *
wan_load_as (Wan *k, const char *dname, int ndim, const gint64 *shape, gboolean filter)
{
  if (k->w.error)
    return NULL;
  g_autofree char *file_name = NULL;
  const VaeTensorView *t = wan_find (k, dname, &file_name);
  float *data = filter ? vae_weights_load_filter (&k->w, file_name, t, ndim, shape)
                       : vae_weights_load (&k->w, file_name, t, ndim, shape);
  if (data)
    g_hash_table_add (k->used, g_strdup (file_name));
  return data;
}

static float *
wan_load (Wan *k, const char *dname, int ndim, const gint64 *shape)
{
  return wan_load_as (k, dname, ndim, shape, FALSE);
}

static float *
wan_load_f (Wan *k, int ndim, const gint64 *shape, const char *fmt, ...) G_GNUC_PRINTF (4, 5);

static float *
wan_load_f (Wan *k, int ndim, const gint64 *shape, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *dname = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  return wan_load (k, dname, ndim, shape);
}

/* PREFIX.weight as a filter (the store's, never freed here). */
static float *
wan_filter (Wan *k, int ndim, const gint64 *shape, const char *prefix)
{
  g_autofree char *dname = g_strconcat (prefix, ".weight", NULL);
  return wan_load_as (k, dname, ndim, shape, TRUE);
}

/* ---------------------------------------------------------------- helpers */

/* X's channels; 0 for a value a failed step left (-1): the builder's error
 * is set then and every later step does nothing. */
static int
chans (Wan *k, Val x)
{
  return x.v[1] >= 0 ? vae_graph_channels (k->g[1], x.v[1]) : 0;
}

static gboolean
bad (Wan *k, Val x)
{
  return k->w.error || x.v[1] < 0;
}

/* RMS norm (+ act); gamma [C,1,1,1] (3-D layers) or [C,1,1] (attention):
 * any [C] followed by ones is taken. */
static Val
wan_rms (Wan *k, const char *dname, Val x, VaeActivation act, int ndim)
{
  if (bad (k, x))
    return none;
  g_autofree char *gname = g_strconcat (dname, ".gamma", NULL);
  const VaeTensorView *t = wan_view (k, gname);
  if (t && t->ndim >= 1 && t->ndim <= 4)
    ndim = t->ndim;
  gint64 shape[4] = { chans (k, x), 1, 1, 1 };
  float *gamma = wan_load (k, gname, ndim, shape);
  if (!gamma)
    return none;
  Val r;
  for (int i = 0; i < 2; i++)
    r.v[i] = vae_graph_rms_norm (k->g[i], dname, x.v[i], gamma, act);
  return r;
}

/* A cached 3x3x3 causal conv (kt 3, padding 1, two history frames). */
static Val
wan_conv3d (Wan *k, const char *dname, Val x, int cout, Val residual)
{
  if (bad (k, x))
    return none;
  gint64 shape[5] = { cout, chans (k, x), 3, 3, 3 };
  float *weight = wan_filter (k, 5, shape, dname);
  float *bias = wan_load_f (k, 1, shape, "%s.bias", dname);
  if (k->w.error) {
    g_free (bias);
    return none;
  }
  int state = k->next_state++;
  Val r;
  for (int i = 0; i < 2; i++)
    r.v[i] = vae_graph_causal_conv3d (k->g[i], dname, x.v[i], cout, 3, 1, 3, 1, weight, bias,
                                      state, residual.v[i], VAE_ACT_NONE);
  return r;
}

/* A conv on each frame: KERNEL x KERNEL, weight [cout, cin, kernel, kernel]
 * (NDIM 4) or a 1x1x1 conv [cout, cin, 1, 1, 1] (NDIM 5). */
static Val
wan_conv2d (Wan *k, const char *dname, Val x, int cout, int kernel, int stride, int pt,
            int pl, int pb, int pr, int ndim, Val residual)
{
  if (bad (k, x))
    return none;
  gint64 shape[5] = { cout, chans (k, x), kernel, kernel, 1 };
  float *weight = wan_filter (k, ndim, shape, dname);
  float *bias = wan_load_f (k, 1, shape, "%s.bias", dname);
  if (k->w.error) {
    g_free (bias);
    return none;
  }
  Val r;
  for (int i = 0; i < 2; i++)
    r.v[i] = vae_graph_conv (k->g[i], dname, x.v[i], cout, kernel, stride, pt, pl, pb, pr,
                             weight, bias, residual.v[i], VAE_ACT_NONE);
  return r;
}

static Val
wan_conv1x1 (Wan *k, const char *dname, Val x, int cout, Val residual)
{
  return wan_conv2d (k, dname, x, cout, 1, 1, 0, 0, 0, 0, 5, residual);
}

/* WanResidualBlock: conv2(silu(rms2(conv1(silu(rms1(x)))))) + shortcut(x). */
static Val
wan_resnet (Wan *k, const char *dname, Val x, int cout)
{
  if (bad (k, x))
    return none;
  g_autofree char *norm1 = g_strconcat (dname, ".norm1", NULL);
  g_autofree char *conv1 = g_strconcat (dname, ".conv1", NULL);
  g_autofree char *norm2 = g_strconcat (dname, ".norm2", NULL);
  g_autofree char *conv2 = g_strconcat (dname, ".conv2", NULL);
  g_autofree char *shortcut = g_strconcat (dname, ".conv_shortcut", NULL);
  Val h = wan_rms (k, norm1, x, VAE_ACT_SILU, 4);
  h = wan_conv3d (k, conv1, h, cout, none);
  h = wan_rms (k, norm2, h, VAE_ACT_SILU, 4);
  Val res = x;
  if (chans (k, x) != cout)
    res = wan_conv1x1 (k, shortcut, x, cout, none);
  return wan_conv3d (k, conv2, h, cout, res);
}

/* WanAttentionBlock: per frame, one head of C channels; to_qkv split into
 * three 1x1 convs; the projection adds the block input. */
static Val
wan_attention (Wan *k, const char *dname, Val x)
{
  if (bad (k, x))
    return none;
  const int c = chans (k, x);
  g_autofree char *norm = g_strconcat (dname, ".norm", NULL);
  g_autofree char *qkv = g_strconcat (dname, ".to_qkv", NULL);
  g_autofree char *proj = g_strconcat (dname, ".proj", NULL);
  Val n = wan_rms (k, norm, x, VAE_ACT_NONE, 3);
  gint64 shape[4] = { 3 * c, c, 1, 1 };
  float *w = wan_filter (k, 4, shape, qkv);   /* the store's */
  g_autofree float *b = wan_load_f (k, 1, shape, "%s.bias", qkv);
  if (bad (k, n))
    return none;
  Val part[3];
  float *wj[3];
  vae_weight_store_split (k->w.store, w, 3, (gsize) c * c, wj);
  static const char *const names[3] = { "q", "k", "v" };
  for (int j = 0; j < 3; j++) {
    g_autofree char *op_name = g_strdup_printf ("%s.%s", qkv, names[j]);
    float *bj = g_memdup2 (b + (gsize) j * c, (gsize) c * sizeof (float));
    for (int i = 0; i < 2; i++)
      part[j].v[i] = vae_graph_conv (k->g[i], op_name, n.v[i], c, 1, 1, 0, 0, 0, 0, wj[j],
                                     bj, -1, VAE_ACT_NONE);
  }
  Val a;
  for (int i = 0; i < 2; i++)
    a.v[i] = vae_graph_attention (k->g[i], dname, part[0].v[i], part[1].v[i], part[2].v[i]);
  return wan_conv2d (k, proj, a, c, 1, 1, 0, 0, 0, 0, 4, x);
}

static Val
wan_mid (Wan *k, const char *half, Val x)
{
  const int c = chans (k, x);
  g_autofree char *r0 = g_strdup_printf ("%s.mid_block.resnets.0", half);
  g_autofree char *at = g_strdup_printf ("%s.mid_block.attentions.0", half);
  g_autofree char *r1 = g_strdup_printf ("%s.mid_block.resnets.1", half);
  x = wan_resnet (k, r0, x, c);
  x = wan_attention (k, at, x);
  return wan_resnet (k, r1, x, c);
}

/* AvgDown3D / DupUp3D need the channel counts to divide. */
static gboolean
wan_check_reshape (Wan *k, const char *what, int cin, int cout, int ft, int fs, gboolean up)
{
  const int f = ft * fs * fs;
  if (up ? (cout * f) % cin == 0 : (cin * f) % cout == 0)
    return TRUE;
  vae_weights_fail (&k->w, VAE_ERROR_UNSUPPORTED,
                    "%s: %s(%d, %d, %d, %d): the channel counts do not divide", k->w.label,
                    up ? "DupUp3D" : "AvgDown3D", cin, cout, ft, fs);
  (void) what;
  return FALSE;
}

/* Level I's resnet J and resampler, by diffusers name. */
static char *
enc_resnet_name (Wan *k, int i, int j)
{
  return k->v22 ? g_strdup_printf ("encoder.down_blocks.%d.resnets.%d", i, j)
                : g_strdup_printf ("encoder.down_blocks.%d", i * (k->n_res + 1) + j);
}

static char *
enc_down_name (Wan *k, int i)
{
  return k->v22 ? g_strdup_printf ("encoder.down_blocks.%d.downsampler", i)
                : g_strdup_printf ("encoder.down_blocks.%d", i * (k->n_res + 1) + k->n_res);
}

static char *
dec_up_name (Wan *k, int i)
{
  return k->v22 ? g_strdup_printf ("decoder.up_blocks.%d.upsampler", i)
                : g_strdup_printf ("decoder.up_blocks.%d.upsamplers.0", i);
}

/* ---------------------------------------------------------------- graphs */

static void
wan_encoder (Wan *k, const WanConfig *c)
{
  const int L = c->levels;
  int dims[VAE_MAX_LEVELS + 1];
  dims[0] = c->base_dim;
  for (int i = 0; i < L; i++)
    dims[i + 1] = c->base_dim * c->mult[i];

  Val x = { { 0, 0 } };
  if (c->patch > 1)
    for (int i = 0; i < 2; i++)
      x.v[i] = vae_graph_space_to_channels (k->g[i], "patchify", 0, c->patch, TRUE);
  x = wan_conv3d (k, "encoder.conv_in", x, dims[0], none);
  for (int i = 0; i < L && !bad (k, x); i++) {
    const Val x_copy = x;
    const gboolean down = i < L - 1, tdown = down && c->tdown[i];
    for (int j = 0; j < c->n_res; j++) {
      g_autofree char *name = enc_resnet_name (k, i, j);
      x = wan_resnet (k, name, x, dims[i + 1]);
    }
    if (bad (k, x))
      break;
    /* Wan 2.2: + AvgDown3D(block input) */
    Val avg = none;
    if (k->v22) {
      const int ft = tdown ? 2 : 1, fs = down ? 2 : 1;
      if (dims[i] == dims[i + 1] && ft == 1 && fs == 1) {
        avg = x_copy;
      } else if (wan_check_reshape (k, "avg", dims[i], dims[i + 1], ft, fs, FALSE)) {
        g_autofree char *name = g_strdup_printf ("encoder.down_blocks.%d.avg_shortcut", i);
        for (int g = 0; g < 2; g++)
          avg.v[g] = vae_graph_avg_down3d (k->g[g], name, x_copy.v[g], dims[i + 1], ft, fs);
      } else {
        break;
      }
    }
    if (!down) {
      if (k->v22) {
        g_autofree char *name = g_strdup_printf ("encoder.down_blocks.%d.add", i);
        for (int g = 0; g < 2; g++)
          x.v[g] = vae_graph_add (k->g[g], name, x.v[g], avg.v[g]);
      }
      break;
    }
    g_autofree char *prefix = enc_down_name (k, i);
    g_autofree char *conv = g_strconcat (prefix, ".resample.1", NULL);
    g_autofree char *tconv = g_strconcat (prefix, ".time_conv", NULL);
    /* downsample2d: zero pad right and bottom by one, 3x3 stride 2. */
    x = wan_conv2d (k, conv, x, dims[i + 1], 3, 2, 0, 0, 1, 1, 4, tdown ? none : avg);
    if (!tdown || bad (k, x))
      continue;
    /* downsample3d's time conv: kt 3, stride 2, one frame of history; the
     * first chunk passes its frame through (and leaves it in the slot). */
    const int C = dims[i + 1];
    gint64 shape[5] = { C, C, 3, 1, 1 };
    float *weight = wan_filter (k, 5, shape, tconv);
    float *bias = wan_load_f (k, 1, shape, "%s.bias", tconv);
    if (k->w.error) {
      g_free (bias);
      break;
    }
    const int state = k->next_state++;
    x.v[0] = vae_graph_time_passthrough (k->g[0], tconv, x.v[0], 3, 2, state);
    if (k->v22) {
      g_autofree char *name = g_strdup_printf ("%s.add", prefix);
      x.v[0] = vae_graph_add (k->g[0], name, x.v[0], avg.v[0]);
    }
    x.v[1] = vae_graph_causal_conv3d (k->g[1], tconv, x.v[1], C, 3, 2, 1, 0, weight, bias,
                                      state, avg.v[1], VAE_ACT_NONE);
  }
  x = wan_mid (k, "encoder", x);
  x = wan_rms (k, "encoder.norm_out", x, VAE_ACT_SILU, 4);
  x = wan_conv3d (k, "encoder.conv_out", x, 2 * c->z, none);
  x = wan_conv1x1 (k, "quant_conv", x, 2 * c->z, none);
}

static void
wan_decoder (Wan *k, const WanConfig *c)
{
  const int L = c->levels;
  int dims[VAE_MAX_LEVELS + 1];
  dims[0] = c->dec_base_dim * c->mult[L - 1];
  for (int i = 0; i < L; i++)
    dims[i + 1] = c->dec_base_dim * c->mult[L - 1 - i];

  Val x = { { 0, 0 } };
  x = wan_conv1x1 (k, "post_quant_conv", x, c->z, none);
  x = wan_conv3d (k, "decoder.conv_in", x, dims[0], none);
  x = wan_mid (k, "decoder", x);
  for (int i = 0; i < L && !bad (k, x); i++) {
    const int cout = dims[i + 1];
    const gboolean up = i < L - 1, tup = up && c->tdown[L - 2 - i];
    const Val x_copy = x;
    for (int j = 0; j < c->n_res + 1; j++) {
      g_autofree char *name = g_strdup_printf ("decoder.up_blocks.%d.resnets.%d", i, j);
      x = wan_resnet (k, name, x, cout);
    }
    if (!up || bad (k, x))
      continue;
    /* Wan 2.2: + DupUp3D(block input), its first ft - 1 frames dropped in
     * the first chunk. */
    Val dup = none;
    if (k->v22) {
      const int ft = tup ? 2 : 1, cin = chans (k, x_copy);
      if (!wan_check_reshape (k, "dup", cin, cout, ft, 2, TRUE))
        break;
      g_autofree char *name = g_strdup_printf ("decoder.up_blocks.%d.avg_shortcut", i);
      for (int g = 0; g < 2; g++)
        dup.v[g] = vae_graph_dup_up3d (k->g[g], name, x_copy.v[g], cout, ft, 2, g == 0);
    }
    g_autofree char *prefix = dec_up_name (k, i);
    g_autofree char *conv = g_strconcat (prefix, ".resample.1", NULL);
    g_autofree char *tconv = g_strconcat (prefix, ".time_conv", NULL);
    g_autofree char *tframes = g_strconcat (prefix, ".time_to_frames", NULL);
    g_autofree char *upname = g_strconcat (prefix, ".upsample", NULL);
    if (tup) {
      /* upsample3d's time conv C -> 2C (kt 3, stride 1, two frames of
       * history), channel halves becoming frames 2t, 2t+1; left out of the
       * first chunk, whose slot stays zero. */
      gint64 shape[5] = { 2 * cout, cout, 3, 1, 1 };
      float *weight = wan_filter (k, 5, shape, tconv);
      float *bias = wan_load_f (k, 1, shape, "%s.bias", tconv);
      if (k->w.error) {
        g_free (bias);
        break;
      }
      const int state = k->next_state++;
      x.v[1] = vae_graph_causal_conv3d (k->g[1], tconv, x.v[1], 2 * cout, 3, 1, 1, 0, weight,
                                        bias, state, -1, VAE_ACT_NONE);
      x.v[1] = vae_graph_channels_to_frames (k->g[1], tframes, x.v[1], 2);
    }
    for (int g = 0; g < 2; g++)
      x.v[g] = vae_graph_upsample2x (k->g[g], upname, x.v[g]);
    /* upsample2d's conv: C -> C/2 (2.1) or C (2.2). */
    x = wan_conv2d (k, conv, x, k->v22 ? cout : cout / 2, 3, 1, 1, 1, 1, 1, 4, dup);
  }
  x = wan_rms (k, "decoder.norm_out", x, VAE_ACT_SILU, 4);
  x = wan_conv3d (k, "decoder.conv_out", x, c->out_ch, none);
  if (c->patch > 1 && !bad (k, x))
    for (int g = 0; g < 2; g++)
      x.v[g] = vae_graph_channels_to_space (k->g[g], "unpatchify", x.v[g], c->patch, TRUE);
}

/* ---------------------------------------------------------------- config */

static gboolean
config_float_array (JsonObject *obj, const char *file, const char *key, int n_want,
                    float **out, GError **error)
{
  JsonNode *node = json_object_get_member (obj, key);
  if (!node || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  JsonArray *a = JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
  if (!a || json_array_get_length (a) != (guint) n_want) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: \"%s\" must be an array of %d numbers (z_dim)", file, key, n_want);
    return FALSE;
  }
  float *v = g_new (float, n_want);
  for (int i = 0; i < n_want; i++) {
    JsonNode *e = json_array_get_element (a, i);
    GType t = JSON_NODE_HOLDS_VALUE (e) ? json_node_get_value_type (e) : G_TYPE_INVALID;
    if (t != G_TYPE_DOUBLE && t != G_TYPE_INT64) {
      g_free (v);
      g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "%s: \"%s\"[%d] is not a number",
                   file, key, i);
      return FALSE;
    }
    double d = t == G_TYPE_DOUBLE ? json_node_get_double (e) : (double) json_node_get_int (e);
    if (!isfinite (d) || fabs (d) > 1e6) {
      g_free (v);
      g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "%s: \"%s\"[%d] = %g is not usable",
                   file, key, i, d);
      return FALSE;
    }
    v[i] = (float) d;
  }
  *out = v;
  return TRUE;
}

static gboolean
wan_read_config (WanConfig *c, JsonObject *config, const char *file, GError **error)
{
  int n;
  /* attn_scales: attention inside the levels, which AutoencoderKLWan
   * builds for no released model. */
  JsonNode *attn = json_object_get_member (config, "attn_scales");
  if (attn && !JSON_NODE_HOLDS_NULL (attn)) {
    if (!JSON_NODE_HOLDS_ARRAY (attn)) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "%s: \"attn_scales\" must be an array",
                   file);
      return FALSE;
    }
    if (json_array_get_length (json_node_get_array (attn)) != 0) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                   "%s: \"attn_scales\" is not empty: attention inside the down/up levels "
                   "is not supported (only the mid-block attention of the released models)",
                   file);
      return FALSE;
    }
  }
  if (!vae_config_int (config, file, "base_dim", 96, 1, WAN_MAX_CHANNELS, &c->base_dim, error) ||
      !vae_config_int (config, file, "decoder_base_dim", c->base_dim, 1, WAN_MAX_CHANNELS,
                       &c->dec_base_dim, error) ||
      !vae_config_int (config, file, "z_dim", 16, 1, WAN_MAX_Z, &c->z, error) ||
      !vae_config_int (config, file, "num_res_blocks", 2, 1, WAN_MAX_RES, &c->n_res, error) ||
      !vae_config_bool (config, file, "is_residual", FALSE, &c->residual, error) ||
      !vae_config_int (config, file, "patch_size", 1, 1, 16, &c->patch, error) ||
      !vae_config_int_array (config, file, "dim_mult", 1, VAE_MAX_LEVELS, 1, 1024, c->mult,
                             &n, error))
    return FALSE;
  if (n == 0) {
    static const int def[4] = { 1, 2, 4, 4 };
    memcpy (c->mult, def, sizeof def);
    n = 4;
  }
  c->levels = n;
  for (int i = 0; i < n; i++)
    if ((gint64) c->base_dim * c->mult[i] > WAN_MAX_CHANNELS ||
        (gint64) c->dec_base_dim * c->mult[i] > WAN_MAX_CHANNELS) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "%s: \"dim_mult\"[%d] = %d: too wide",
                   file, i, c->mult[i]);
      return FALSE;
    }

  /* temperal_downsample (sic): levels - 1 booleans. */
  JsonNode *td = json_object_get_member (config, "temperal_downsample");
  if (td && !JSON_NODE_HOLDS_NULL (td)) {
    JsonArray *a = JSON_NODE_HOLDS_ARRAY (td) ? json_node_get_array (td) : NULL;
    if (!a || json_array_get_length (a) != (guint) (n - 1)) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                   "%s: \"temperal_downsample\" must be an array of %d booleans "
                   "(one per level but the last)", file, n - 1);
      return FALSE;
    }
    for (int i = 0; i < n - 1; i++) {
      JsonNode *e = json_array_get_element (a, i);
      if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_BOOLEAN) {
        g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                     "%s: \"temperal_downsample\"[%d] is not a boolean", file, i);
        return FALSE;
      }
      c->tdown[i] = json_node_get_boolean (e);
    }
  } else {
    for (int i = 0; i < n - 1; i++)
      c->tdown[i] = i > 0;   /* (False, True, True) for 4 levels */
  }

  /* Channels: AutoencoderKLQwenImage has one input_channels for both. */
  const int def_ch = 3 * c->patch * c->patch;
  int qwen_ch;
  if (!vae_config_int (config, file, "input_channels", def_ch, 1, WAN_MAX_CHANNELS, &qwen_ch,
                       error) ||
      !vae_config_int (config, file, "in_channels", qwen_ch, 1, WAN_MAX_CHANNELS, &c->in_ch,
                       error) ||
      !vae_config_int (config, file, "out_channels", qwen_ch, 1, WAN_MAX_CHANNELS, &c->out_ch,
                       error))
    return FALSE;
  if (c->in_ch != def_ch || c->out_ch != def_ch) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "%s: in_channels %d / out_channels %d with patch_size %d: only RGB models "
                 "(3 x patch_size^2 = %d channels) are supported", file, c->in_ch, c->out_ch,
                 c->patch, def_ch);
    return FALSE;
  }

  /* The scale factors, when given, must be what the structure gives. */
  int down = 0, tdown = 0, sf, tf;
  for (int i = 0; i < n - 1; i++) {
    down++;
    tdown += c->tdown[i];
  }
  if (!vae_config_int (config, file, "scale_factor_spatial", (1 << down) * c->patch, 1, 1 << 20,
                       &sf, error) ||
      !vae_config_int (config, file, "scale_factor_temporal", 1 << tdown, 1, 1 << 20, &tf,
                       error))
    return FALSE;
  if (sf != (1 << down) * c->patch || tf != 1 << tdown) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: scale_factor_spatial %d / scale_factor_temporal %d, but the structure "
                 "gives %d / %d", file, sf, tf, (1 << down) * c->patch, 1 << tdown);
    return FALSE;
  }

  if (!config_float_array (config, file, "latents_mean", c->z, &c->mean, error) ||
      !config_float_array (config, file, "latents_std", c->z, &c->std, error))
    return FALSE;
  if (c->std)
    for (int i = 0; i < c->z; i++)
      if (!(c->std[i] > 0)) {
        g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                     "%s: \"latents_std\"[%d] = %g: must be positive", file, i, c->std[i]);
        return FALSE;
      }
  if ((c->mean == NULL) != (c->std == NULL)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: \"latents_mean\" and \"latents_std\" come together", file);
    return FALSE;
  }
  return TRUE;
}

/* A [N, ...] tensor's dimension D, or an error naming it. */
static int
wan_dim (Wan *k, const char *dname, int ndim, int d)
{
  if (k->w.error)
    return -1;
  g_autofree char *file_name = NULL;
  const VaeTensorView *t = wan_find (k, dname, &file_name);
  if (!t) {
    vae_weights_fail (&k->w, VAE_ERROR_MODEL, "%s: tensor '%s' is missing", k->w.label,
                      file_name);
    return -1;
  }
  if (t->ndim != ndim || t->shape[d] < 1 || t->shape[d] > WAN_MAX_CHANNELS) {
    g_autofree char *dims = g_strdup ("");
    for (int i = 0; i < t->ndim; i++) {
      char *s = g_strdup_printf ("%s%s%" G_GINT64_FORMAT, dims, i ? "," : "", t->shape[i]);
      g_free (dims);
      dims = s;
    }
    vae_weights_fail (&k->w, VAE_ERROR_MODEL, "%s: tensor '%s' has shape [%s]; a %d-D "
                      "convolution weight was expected", k->w.label, file_name, dims, ndim);
    return -1;
  }
  return (int) t->shape[d];
}

/* The configuration from the tensor shapes (single files). */
static gboolean
wan_infer (Wan *k, WanConfig *c)
{
  c->residual = k->v22;
  c->base_dim = wan_dim (k, "encoder.conv_in.weight", 5, 0);
  c->in_ch = wan_dim (k, "encoder.conv_in.weight", 5, 1);
  if (k->w.error)
    return FALSE;
  c->patch = 1;
  while (3 * c->patch * c->patch < c->in_ch)
    c->patch++;
  if (3 * c->patch * c->patch != c->in_ch) {
    vae_weights_fail (&k->w, VAE_ERROR_UNSUPPORTED, "%s: encoder.conv_in takes %d channels: "
                      "only RGB models (3 x patch^2) are supported", k->w.label, c->in_ch);
    return FALSE;
  }
  c->out_ch = c->in_ch;

  /* Residual blocks per level: level 0's, up to its resampler. */
  k->n_res = 0;
  for (int j = 0; j < WAN_MAX_RES; j++) {
    g_autofree char *name = k->v22 ? g_strdup_printf ("encoder.down_blocks.0.resnets.%d.conv1.weight", j)
                                   : g_strdup_printf ("encoder.down_blocks.%d.conv1.weight", j);
    if (!wan_has (k, name))
      break;
    k->n_res = j + 1;
  }
  if (k->n_res == 0) {
    g_autofree char *name = k->v22 ? g_strdup ("encoder.down_blocks.0.resnets.0.conv1.weight")
                                   : g_strdup ("encoder.down_blocks.0.conv1.weight");
    wan_dim (k, name, 5, 0);   /* the missing-tensor error */
    return FALSE;
  }
  c->n_res = k->n_res;

  /* Levels and widths: each level's first conv1; the last level has no
   * resampler. */
  c->levels = 0;
  for (int i = 0; i < VAE_MAX_LEVELS; i++) {
    g_autofree char *res = enc_resnet_name (k, i, 0);
    g_autofree char *conv1 = g_strconcat (res, ".conv1.weight", NULL);
    int w = wan_dim (k, conv1, 5, 0);
    if (w < 0)
      return FALSE;
    if (w % c->base_dim != 0) {
      vae_weights_fail (&k->w, VAE_ERROR_MODEL, "%s: level %d is %d channels wide, not a "
                        "multiple of base_dim %d", k->w.label, i, w, c->base_dim);
      return FALSE;
    }
    c->mult[i] = w / c->base_dim;
    c->levels = i + 1;
    g_autofree char *down = enc_down_name (k, i);
    g_autofree char *conv = g_strconcat (down, ".resample.1.weight", NULL);
    g_autofree char *tconv = g_strconcat (down, ".time_conv.weight", NULL);
    if (!wan_has (k, conv))
      break;
    c->tdown[i] = wan_has (k, tconv);
    if (i == VAE_MAX_LEVELS - 1) {
      vae_weights_fail (&k->w, VAE_ERROR_UNSUPPORTED, "%s: more than %d encoder levels",
                        k->w.label, VAE_MAX_LEVELS);
      return FALSE;
    }
  }
  c->z = wan_dim (k, "post_quant_conv.weight", 5, 0);
  int dec_in = wan_dim (k, "decoder.conv_in.weight", 5, 0);
  if (k->w.error)
    return FALSE;
  if (c->z > WAN_MAX_Z || dec_in % c->mult[c->levels - 1] != 0) {
    vae_weights_fail (&k->w, VAE_ERROR_MODEL, "%s: decoder.conv_in gives %d channels, not a "
                      "multiple of the last dim_mult %d", k->w.label, dec_in,
                      c->mult[c->levels - 1]);
    return FALSE;
  }
  c->dec_base_dim = dec_in / c->mult[c->levels - 1];
  return TRUE;
}

/* Original files hold encoder.*, decoder.*, conv1.* and conv2.* only. */
static gboolean
wan_check_prefixes (VaeSafetensors *st, GError **error)
{
  static const char *const prefixes[] = { "encoder.", "decoder.", "conv1.", "conv2." };
  for (guint i = 0; i < vae_safetensors_n_tensors (st); i++) {
    const char *name = vae_safetensors_tensor_at (st, i)->name;
    gboolean known = FALSE;
    for (guint j = 0; j < G_N_ELEMENTS (prefixes); j++)
      known |= g_str_has_prefix (name, prefixes[j]);
    if (!known) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                   "%s: tensor '%s' has an unknown key prefix: an original-layout Wan VAE "
                   "file holds only encoder.*, decoder.*, conv1.* (quant_conv) and conv2.* "
                   "(post_quant_conv)", vae_safetensors_path (st), name);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean
vae_model_build_wan (VaeModel *m, VaeSafetensors *st, gboolean original,
                     JsonObject *config, const char *config_path, GError **error)
{
  WanConfig c = { 0 };
  Wan k = { { st, vae_safetensors_path (st), NULL, m->weights }, original, FALSE, 0,
            { NULL, NULL }, 0, g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL) };
  gboolean ok = FALSE;

  if (original && !wan_check_prefixes (st, error))
    goto out;
  if (config) {
    if (!wan_read_config (&c, config, config_path, error))
      goto out;
    k.v22 = c.residual;
    k.n_res = c.n_res;
  } else {
    k.v22 = original
        ? vae_safetensors_lookup (st, "decoder.upsamples.0.upsamples.0.residual.2.weight") != NULL
        : vae_safetensors_lookup (st, "encoder.down_blocks.0.resnets.0.conv1.weight") != NULL;
    if (!wan_infer (&k, &c)) {
      g_propagate_error (error, g_steal_pointer (&k.w.error));
      goto out;
    }
  }
  if (!c.mean) {
    /* The real models' values (single files; configs without them). */
    if (c.z == 16 && !c.residual) {
      c.mean = g_memdup2 (wan21_mean, sizeof wan21_mean);
      c.std = g_memdup2 (wan21_std, sizeof wan21_std);
    } else if (c.z == 48) {
      c.mean = g_memdup2 (wan22_mean, sizeof wan22_mean);
      c.std = g_memdup2 (wan22_std, sizeof wan22_std);
    }
  }

  int tdown = 0;
  for (int i = 0; i < c.levels - 1; i++)
    tdown += c.tdown[i];

  m->family = VAE_FAMILY_WAN;
  m->image_channels = 3;
  m->latent_channels = c.z;
  m->levels = c.levels;
  for (int i = 0; i < c.levels; i++)
    m->block_out_channels[i] = c.base_dim * c.mult[i];
  m->layers_per_block = c.n_res;
  m->quant_conv = m->post_quant_conv = TRUE;
  m->spatial_factor = (1 << (c.levels - 1)) * c.patch;
  m->temporal_factor = 1 << tdown;
  m->encode_first_frames = 1;
  m->encode_chunk_frames = 1 << tdown;
  m->decode_drop_frames = 0;
  m->patch_size = c.patch;
  m->variant = c.residual ? "wan2.2" : "wan2.1";
  m->scaling_factor = 1.0;
  m->shift_factor = 0.0;
  m->image_min = -1.0f;
  m->encoder_outputs_moments = TRUE;

  /* Encoder: first chunk and steady state. */
  k.g[0] = vae_graph_new_shared (3, m->weights);
  k.g[1] = vae_graph_new_shared (3, m->weights);
  wan_encoder (&k, &c);
  if (k.w.error)
    goto fail;
  k.g[0]->n_states = k.g[1]->n_states = k.next_state;
  m->encoder_first = k.g[0];
  m->encoder = k.g[1];

  k.next_state = 0;
  k.g[0] = vae_graph_new_shared (c.z, m->weights);
  k.g[1] = vae_graph_new_shared (c.z, m->weights);
  wan_decoder (&k, &c);
  if (k.w.error)
    goto fail;
  k.g[0]->n_states = k.g[1]->n_states = k.next_state;
  m->decoder_first = k.g[0];
  m->decoder = k.g[1];
  k.g[0] = k.g[1] = NULL;

  /* Every tensor of the file belongs to the network. */
  for (guint i = 0; i < vae_safetensors_n_tensors (st); i++) {
    const char *name = vae_safetensors_tensor_at (st, i)->name;
    if (!g_hash_table_contains (k.used, name)) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL,
                   "%s: tensor '%s' is not part of a %s VAE with this configuration "
                   "(%d levels, %d residual blocks per level)", k.w.label, name,
                   c.residual ? "Wan 2.2" : "Wan 2.1", c.levels, c.n_res);
      goto out_graphs;
    }
  }

  m->latents_mean = g_steal_pointer (&c.mean);
  m->latents_std = g_steal_pointer (&c.std);
  ok = TRUE;
  goto out;

fail:
  g_propagate_error (error, g_steal_pointer (&k.w.error));
out_graphs:
  vae_graph_free (k.g[0]);
  vae_graph_free (k.g[1]);
  vae_graph_free (m->encoder_first);
  vae_graph_free (m->encoder);
  vae_graph_free (m->decoder_first);
  vae_graph_free (m->decoder);
  m->encoder_first = m->encoder = m->decoder_first = m->decoder = NULL;
out:
  g_clear_error (&k.w.error);
  g_hash_table_unref (k.used);
  g_free (c.mean);
  g_free (c.std);
  return ok;
}
