/* gst-vae: model loading - finding out what PATH holds and handing it to the
 * family builder (model-kl.c, model-tiny.c).
 *
 * Layouts recognised:
 *   folder with config.json            diffusers (AutoencoderKL, AutoencoderKLFlux2,
 *                                      AutoencoderTiny, AutoencoderKLWan: by
 *                                      _class_name or, without it, the keys)
 *   folder with *_encoder.safetensors  TAESD pair (either half may be absent)
 *     and/or *_decoder.safetensors
 *   single file, nn.Sequential keys    one TAESD half ("0.weight", "1.conv.0.weight";
 *     or a *_encoder/_decoder name     which half: the name, else the keys)
 *   single file, other keys            AutoencoderKL in LDM layout
 *                                      (encoder.down.0.block.0..., any key prefix
 *                                      such as first_stage_model.), or a bare
 *                                      diffusers state dict without config.json;
 *                                      with bn.running_mean or encoder.quant_conv:
 *                                      FLUX.2's AutoencoderKLFlux2, e.g. BFL's
 *                                      ae.safetensors) */
#include "model-private.h"
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ------------------------------------------------------------------ weights */

void
vae_weights_fail (VaeWeights *w, VaeErrorCode code, const char *format, ...)
{
  if (w->error)
    return;
  va_list ap;
  va_start (ap, format);
  g_autofree char *msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  w->error = g_error_new_literal (VAE_ERROR, code, msg);
}

const VaeTensorView *
vae_weights_find (VaeWeights *w, const char *name)
{
  return vae_safetensors_lookup (w->st, name);
}

float *
vae_weights_load (VaeWeights *w, const char *name, const VaeTensorView *t,
                  int ndim, const gint64 *shape)
{
  if (w->error)
    return NULL;
  if (!t) {
    vae_weights_fail (w, VAE_ERROR_MODEL, "%s: tensor '%s' is missing", w->label, name);
    return NULL;
  }
  if (!vae_tensor_view_check_shape (t, w->label, ndim, shape, &w->error))
    return NULL;
  g_autofree char *what = g_strdup_printf ("%s: tensor '%s'", w->label, name);
  float *dst = vae_try_alloc (t->n_elements, sizeof (float), what, &w->error);
  if (!dst)
    return NULL;
  if (!vae_tensor_view_to_f32 (t, dst, &w->error)) {
    g_free (dst);
    return NULL;
  }
  return dst;
}

float *
vae_weights_load_filter (VaeWeights *w, const char *name, const VaeTensorView *t,
                         int ndim, const gint64 *shape)
{
  g_return_val_if_fail (w->store != NULL, NULL);
  if (w->error)
    return NULL;
  /* Served in place only when the bytes are the float32 values as this
   * host reads them: little-endian F32, aligned for float. */
  g_autoptr (GBytes) mapping = vae_safetensors_ref_file_mapping (w->st);
  if (mapping && t && t->dtype == VAE_DTYPE_F32 && G_BYTE_ORDER == G_LITTLE_ENDIAN
      && t->n_elements > 0 && (guintptr) t->data % G_ALIGNOF (float) == 0) {
    if (!vae_tensor_view_check_shape (t, w->label, ndim, shape, &w->error))
      return NULL;
    return vae_weight_store_add_mapped (w->store, mapping, (const float *) t->data,
                                        t->n_bytes);
  }
  return vae_weight_store_adopt (w->store, vae_weights_load (w, name, t, ndim, shape));
}

int
vae_weights_conv (VaeWeights *w, VaeGraph *g, const char *op_name, int in,
                  int out_channels, int kernel, int stride, int pad_top,
                  int pad_left, int pad_bottom, int pad_right, float *weight,
                  float *bias, int residual, VaeActivation act)
{
  if (w->error || in < 0) {
    g_free (weight);
    g_free (bias);
    return -1;
  }
  return vae_graph_conv (g, op_name, in, out_channels, kernel, stride, pad_top,
                         pad_left, pad_bottom, pad_right, weight, bias, residual, act);
}

int
vae_weights_group_norm (VaeWeights *w, VaeGraph *g, const char *op_name, int in,
                        int groups, float eps, float *gamma, float *beta,
                        VaeActivation act)
{
  if (w->error || in < 0) {
    g_free (gamma);
    g_free (beta);
    return -1;
  }
  return vae_graph_group_norm (g, op_name, in, groups, eps, gamma, beta, act);
}

/* ------------------------------------------------------------------- config */

static JsonNode *
config_value (JsonObject *obj, const char *key)
{
  JsonNode *node = obj ? json_object_get_member (obj, key) : NULL;
  return node && !JSON_NODE_HOLDS_NULL (node) ? node : NULL;
}

static gboolean
node_to_int (JsonNode *node, gint64 *out)
{
  if (!JSON_NODE_HOLDS_VALUE (node))
    return FALSE;
  GType t = json_node_get_value_type (node);
  if (t == G_TYPE_INT64) {
    *out = json_node_get_int (node);
    return TRUE;
  }
  if (t == G_TYPE_DOUBLE) {       /* 4.0 is an integer too */
    double d = json_node_get_double (node);
    if (d != floor (d) || fabs (d) > 1e15)
      return FALSE;
    *out = (gint64) d;
    return TRUE;
  }
  return FALSE;
}

gboolean
vae_config_int (JsonObject *obj, const char *file, const char *key, int def,
                int min, int max, int *out, GError **error)
{
  JsonNode *node = config_value (obj, key);
  if (!node) {
    *out = def;
    return TRUE;
  }
  gint64 v;
  if (!node_to_int (node, &v)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: \"%s\" must be an integer", file, key);
    return FALSE;
  }
  if (v < min || v > max) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: \"%s\" is %" G_GINT64_FORMAT ", expected %d to %d",
                 file, key, v, min, max);
    return FALSE;
  }
  *out = (int) v;
  return TRUE;
}

gboolean
vae_config_double (JsonObject *obj, const char *file, const char *key, double def,
                   double min, double max, double *out, GError **error)
{
  JsonNode *node = config_value (obj, key);
  if (!node) {
    *out = def;
    return TRUE;
  }
  GType t = JSON_NODE_HOLDS_VALUE (node) ? json_node_get_value_type (node) : G_TYPE_INVALID;
  if (t != G_TYPE_INT64 && t != G_TYPE_DOUBLE) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: \"%s\" must be a number", file, key);
    return FALSE;
  }
  double v = json_node_get_double (node);   /* converts integers */
  if (!isfinite (v) || v < min || v > max) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: \"%s\" is %g, expected %g to %g", file, key, v, min, max);
    return FALSE;
  }
  *out = v;
  return TRUE;
}

gboolean
vae_config_bool (JsonObject *obj, const char *file, const char *key, gboolean def,
                 gboolean *out, GError **error)
{
  JsonNode *node = config_value (obj, key);
  if (!node) {
    *out = def;
    return TRUE;
  }
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_BOOLEAN) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: \"%s\" must be true or false", file, key);
    return FALSE;
  }
  *out = json_node_get_boolean (node);
  return TRUE;
}

gboolean
vae_config_int_array (JsonObject *obj, const char *file, const char *key, int n_min,
                      int n_max, int min, int max, int *out, int *n, GError **error)
{
  *n = 0;
  JsonNode *node = config_value (obj, key);
  if (!node)
    return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (node)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: \"%s\" must be an array of integers", file, key);
    return FALSE;
  }
  JsonArray *array = json_node_get_array (node);
  guint len = json_array_get_length (array);
  if (len < (guint) n_min || len > (guint) n_max) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: \"%s\" has %u entries, expected %d to %d",
                 file, key, len, n_min, n_max);
    return FALSE;
  }
  for (guint i = 0; i < len; i++) {
    gint64 v;
    if (!node_to_int (json_array_get_element (array, i), &v)) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                   "%s: \"%s\"[%u] must be an integer", file, key, i);
      return FALSE;
    }
    if (v < min || v > max) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                   "%s: \"%s\"[%u] is %" G_GINT64_FORMAT ", expected %d to %d",
                   file, key, i, v, min, max);
      return FALSE;
    }
    out[i] = (int) v;
  }
  *n = (int) len;
  return TRUE;
}

gboolean
vae_config_string_is (JsonObject *obj, const char *file, const char *key,
                      const char *expected, GError **error)
{
  JsonNode *node = config_value (obj, key);
  if (!node)
    return TRUE;
  const char *s = JSON_NODE_HOLDS_VALUE (node) &&
      json_node_get_value_type (node) == G_TYPE_STRING ? json_node_get_string (node) : NULL;
  if (!s) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: \"%s\" must be a string", file, key);
    return FALSE;
  }
  if (strcmp (s, expected) != 0) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "%s: \"%s\" is \"%s\"; only \"%s\" is supported", file, key, s, expected);
    return FALSE;
  }
  return TRUE;
}

/* Parses PATH into a JSON object (the parser keeps the tree alive, so the
 * caller keeps the parser). */
static JsonParser *
config_load (const char *path, JsonObject **obj, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  if (!json_parser_load_from_file (parser, path, &local)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "%s: not valid JSON: %s",
                 path, local->message);
    return NULL;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: a model config must be a JSON object", path);
    return NULL;
  }
  *obj = json_node_get_object (root);
  return g_steal_pointer (&parser);
}

/* ------------------------------------------------------------------ helpers */

static const char *const taesd_suffixes[2] = { "_encoder.safetensors", "_decoder.safetensors" };

/* 0 encoder, 1 decoder, -1 neither. */
static int
taesd_half_from_name (const char *basename)
{
  for (int i = 0; i < 2; i++)
    if (g_str_has_suffix (basename, taesd_suffixes[i]) &&
        strlen (basename) > strlen (taesd_suffixes[i]))
      return i;
  return -1;
}

/* File stem: the basename without its extension (and, for TAESD files,
 * without _encoder/_decoder). */
static char *
file_stem (const char *path)
{
  g_autofree char *base = g_path_get_basename (path);
  int half = taesd_half_from_name (base);
  if (half >= 0)
    return g_strndup (base, strlen (base) - strlen (taesd_suffixes[half]));
  char *dot = strrchr (base, '.');
  if (dot && dot != base)
    *dot = '\0';
  return g_strdup (base);
}

/* nn.Sequential state dicts have keys that start with an index. */
static gboolean
has_sequential_keys (const VaeSafetensors *st)
{
  guint n = vae_safetensors_n_tensors (st);
  for (guint i = 0; i < n; i++) {
    const char *name = vae_safetensors_tensor_at (st, i)->name;
    if (g_ascii_isdigit (name[0]))
      return TRUE;
  }
  return FALSE;
}

/* The prefix in front of "encoder.conv_in.weight" / "decoder.conv_in.weight"
 * ("" or e.g. "first_stage_model."), or NULL when there is none. */
static char *
kl_key_prefix (const VaeSafetensors *st)
{
  static const char *const anchors[] = { "encoder.conv_in.weight", "decoder.conv_in.weight" };
  guint n = vae_safetensors_n_tensors (st);
  for (guint a = 0; a < G_N_ELEMENTS (anchors); a++) {
    gsize alen = strlen (anchors[a]);
    for (guint i = 0; i < n; i++) {
      const char *name = vae_safetensors_tensor_at (st, i)->name;
      gsize len = strlen (name);
      if (len >= alen && strcmp (name + len - alen, anchors[a]) == 0 &&
          (len == alen || name[len - alen - 1] == '.'))
        return g_strndup (name, len - alen);
    }
  }
  return NULL;
}

static gboolean
has_key (const VaeSafetensors *st, const char *prefix, const char *name)
{
  g_autofree char *full = g_strconcat (prefix, name, NULL);
  return vae_safetensors_lookup (st, full) != NULL;
}

/* ------------------------------------------------------------------ loaders */

/* Wan 2.1's class, and Qwen-Image's (the same network and key names). */
static gboolean
is_wan_class (const char *class_name)
{
  return strcmp (class_name, "AutoencoderKLWan") == 0
         || strcmp (class_name, "AutoencoderKLQwenImage") == 0;
}

static gboolean
load_diffusers_dir (VaeModel *m, const char *dir, GError **error)
{
  g_autofree char *config_path = g_build_filename (dir, "config.json", NULL);
  JsonObject *config = NULL;
  g_autoptr (JsonParser) parser = config_load (config_path, &config, error);
  if (!parser)
    return FALSE;

  g_autofree char *weights = g_build_filename (dir, "diffusion_pytorch_model.safetensors", NULL);
  if (!g_file_test (weights, G_FILE_TEST_IS_REGULAR)) {
    g_autofree char *fp16 = g_build_filename (dir, "diffusion_pytorch_model.fp16.safetensors", NULL);
    if (!g_file_test (fp16, G_FILE_TEST_IS_REGULAR)) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_IO,
                   "%s: no diffusion_pytorch_model.safetensors beside config.json", dir);
      return FALSE;
    }
    g_free (weights);
    weights = g_steal_pointer (&fp16);
  }

  const char *class_name = NULL;
  JsonNode *cn = json_object_get_member (config, "_class_name");
  if (cn && !JSON_NODE_HOLDS_NULL (cn)) {
    if (!JSON_NODE_HOLDS_VALUE (cn) || json_node_get_value_type (cn) != G_TYPE_STRING) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                   "%s: \"_class_name\" must be a string", config_path);
      return FALSE;
    }
    class_name = json_node_get_string (cn);
    if (strcmp (class_name, "AutoencoderKL") != 0 &&
        strcmp (class_name, "AutoencoderKLFlux2") != 0 &&
        strcmp (class_name, "AutoencoderTiny") != 0 && !is_wan_class (class_name)) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                   "%s: \"_class_name\" is \"%s\"; supported: AutoencoderKL, "
                   "AutoencoderKLFlux2, AutoencoderTiny, AutoencoderKLWan, "
                   "AutoencoderKLQwenImage",
                   config_path, class_name);
      return FALSE;
    }
  }

  g_autoptr (VaeSafetensors) st = vae_safetensors_open (weights, error);
  if (!st)
    return FALSE;

  gboolean tiny;
  if (class_name)
    tiny = strcmp (class_name, "AutoencoderTiny") == 0;
  else
    tiny = has_key (st, "", "encoder.layers.0.weight") || has_key (st, "", "decoder.layers.0.weight");

  m->layout = VAE_LAYOUT_DIFFUSERS;
  if (class_name && is_wan_class (class_name))
    return vae_model_build_wan (m, st, FALSE, config, config_path, error);
  if (tiny) {
    VaeTinySource enc = { st, "encoder.layers.", FALSE };
    VaeTinySource dec = { st, "decoder.layers.", FALSE };
    return vae_model_build_tiny (m, &enc, &dec, config, config_path, error);
  }
  gboolean flux2 = class_name ? strcmp (class_name, "AutoencoderKLFlux2") == 0
                              : has_key (st, "", "bn.running_mean");
  return vae_model_build_kl (m, st, FALSE, flux2, "", config, config_path, error);
}

static gboolean
load_taesd_dir (VaeModel *m, char *const files[2], GError **error)
{
  g_autoptr (VaeSafetensors) enc_st = NULL;
  g_autoptr (VaeSafetensors) dec_st = NULL;
  if (files[0] && !(enc_st = vae_safetensors_open (files[0], error)))
    return FALSE;
  if (files[1] && !(dec_st = vae_safetensors_open (files[1], error)))
    return FALSE;
  m->layout = VAE_LAYOUT_TAESD;
  VaeTinySource enc = { enc_st, "", FALSE };
  VaeTinySource dec = { dec_st, "", TRUE };
  return vae_model_build_tiny (m, &enc, &dec, NULL, NULL, error);
}

/* Looks for *_encoder.safetensors / *_decoder.safetensors in DIR.  Returns
 * FALSE with ERROR when they are ambiguous; FILES stay NULL when none. */
static gboolean
find_taesd_files (const char *dir, char *files[2], GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GDir) d = g_dir_open (dir, 0, &local);
  if (!d) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_IO, "%s: %s", dir, local->message);
    return FALSE;
  }
  g_autoptr (GPtrArray) enc_names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) dec_names = g_ptr_array_new_with_free_func (g_free);
  GPtrArray *names[2] = { enc_names, dec_names };
  const char *entry;
  while ((entry = g_dir_read_name (d))) {
    int half = taesd_half_from_name (entry);
    if (half >= 0)
      g_ptr_array_add (names[half], g_strdup (entry));
  }
  g_autofree char *stem = NULL;
  for (int i = 0; i < 2; i++) {
    if (names[i]->len == 0)
      continue;
    for (guint j = 0; j < names[i]->len; j++) {
      const char *n = g_ptr_array_index (names[i], j);
      g_autofree char *s = g_strndup (n, strlen (n) - strlen (taesd_suffixes[i]));
      if (!stem)
        stem = g_steal_pointer (&s);
      else if (strcmp (stem, s) != 0) {
        g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                     "%s: holds more than one TAESD model (%s, %s); name the file instead",
                     dir, stem, s);
        return FALSE;
      }
    }
  }
  for (int i = 0; i < 2; i++)
    if (names[i]->len)
      files[i] = g_build_filename (dir, (const char *) g_ptr_array_index (names[i], 0), NULL);
  return TRUE;
}

static gboolean
load_single_file (VaeModel *m, const char *path, GError **error)
{
  g_autoptr (VaeSafetensors) st = vae_safetensors_open (path, error);
  if (!st)
    return FALSE;

  /* Video models first: a diffusers-layout Wan file has AutoencoderKL's
   * encoder.conv_in too.  The markers are the ones diffusers and ComfyUI
   * test (docs/video-architectures.md, key names). */
  if (has_key (st, "", "decoder.middle.0.residual.0.gamma")) {
    m->layout = VAE_LAYOUT_WAN;
    return vae_model_build_wan (m, st, TRUE, NULL, NULL, error);
  }
  if (has_key (st, "", "decoder.mid_block.resnets.0.norm1.gamma")) {
    m->layout = VAE_LAYOUT_DIFFUSERS;
    return vae_model_build_wan (m, st, FALSE, NULL, NULL, error);
  }
  if (has_key (st, "", "encoder.0.weight") || has_key (st, "", "decoder.1.weight")) {
    m->layout = VAE_LAYOUT_TAEHV;
    return vae_model_build_taehv (m, st, error);
  }

  g_autofree char *base = g_path_get_basename (path);
  int half = taesd_half_from_name (base);

  if (has_sequential_keys (st)) {
    /* One TAESD half.  The decoder's index 0 is the parameterless Clamp, so
     * without a telling name "0.weight" means encoder. */
    if (half < 0)
      half = vae_safetensors_lookup (st, "0.weight") ? 0 : 1;
    m->layout = VAE_LAYOUT_TAESD;
    VaeTinySource none = { NULL, "", FALSE };
    VaeTinySource src = { st, "", half == 1 };
    return vae_model_build_tiny (m, half == 0 ? &src : &none, half == 1 ? &src : &none,
                                 NULL, NULL, error);
  }

  if (has_key (st, "", "encoder.layers.0.weight") || has_key (st, "", "decoder.layers.0.weight")) {
    /* A diffusers AutoencoderTiny state dict without its config.json. */
    m->layout = VAE_LAYOUT_DIFFUSERS;
    VaeTinySource enc = { has_key (st, "", "encoder.layers.0.weight") ? st : NULL,
                          "encoder.layers.", FALSE };
    VaeTinySource dec = { has_key (st, "", "decoder.layers.0.weight") ? st : NULL,
                          "decoder.layers.", FALSE };
    return vae_model_build_tiny (m, &enc, &dec, NULL, NULL, error);
  }

  g_autofree char *prefix = kl_key_prefix (st);
  if (prefix) {
    gboolean diffusers = has_key (st, prefix, "encoder.down_blocks.0.resnets.0.conv1.weight") ||
        has_key (st, prefix, "decoder.up_blocks.0.resnets.0.conv1.weight");
    /* FLUX.2: the BatchNorm statistics, or (BFL's files without them) the
     * quant conv inside the encoder. */
    gboolean flux2 = has_key (st, prefix, "bn.running_mean") ||
        has_key (st, prefix, "encoder.quant_conv.weight");
    m->layout = diffusers ? VAE_LAYOUT_DIFFUSERS : VAE_LAYOUT_LDM;
    return vae_model_build_kl (m, st, !diffusers, flux2, prefix, NULL, NULL, error);
  }

  g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
               "%s: no VAE found (neither AutoencoderKL tensors such as "
               "'encoder.conv_in.weight' nor TAESD tensors such as '0.weight')", path);
  return FALSE;
}

/* ---------------------------------------------------------------- interface */

static char *
folder_name (const char *path)
{
  g_autofree char *copy = g_strdup (path);
  gsize len = strlen (copy);
  while (len > 1 && G_IS_DIR_SEPARATOR (copy[len - 1]))
    copy[--len] = '\0';
  return g_path_get_basename (copy);
}

static gboolean
apply_options (VaeModel *m, const VaeModelOptions *options, GError **error)
{
  if (!options)
    return TRUE;
  if (options->norm_groups < 0) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT, "norm groups %d: must be positive",
                 options->norm_groups);
    return FALSE;
  }
  double s = options->scaling_factor, sh = options->shift_factor;
  if (!isnan (s) && s >= 0) {
    if (s == 0 || !isfinite (s)) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                   "scaling factor %g is not usable (latents would be divided by it)", s);
      return FALSE;
    }
    m->scaling_factor = s;
  }
  if (!isnan (sh)) {
    if (!isfinite (sh)) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT, "shift factor %g is not usable", sh);
      return FALSE;
    }
    m->shift_factor = sh;
  }
  return TRUE;
}

VaeModel *
vae_model_load (const char *path, const VaeModelOptions *options, GError **error)
{
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  if (!path || !*path) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT, "no model path given");
    return NULL;
  }
  if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
    /* A file or folder of that name wins over a preset. */
    VaeModel *preset = vae_model_preset_new (path);
    if (preset && !apply_options (preset, options, error)) {
      vae_model_free (preset);
      return NULL;
    }
    if (preset)
      return preset;
    g_set_error (error, VAE_ERROR, VAE_ERROR_IO,
                 "%s: no such file or folder (nor a preset: %s)", path,
                 vae_model_preset_names ());
    return NULL;
  }

  g_autoptr (VaeModel) m = g_new0 (VaeModel, 1);
  m->weights = vae_weight_store_new ();
  m->path = g_strdup (path);
  m->image_channels = 3;
  m->norm_groups = options ? options->norm_groups : 0;   /* builders may override */
  gboolean ok;

  if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
    m->name = folder_name (path);
    g_autofree char *config = g_build_filename (path, "config.json", NULL);
    if (g_file_test (config, G_FILE_TEST_EXISTS)) {
      ok = load_diffusers_dir (m, path, error);
    } else {
      char *files[2] = { NULL, NULL };
      ok = find_taesd_files (path, files, error);
      if (ok && !files[0] && !files[1]) {
        g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                     "%s: no model here (expected config.json with "
                     "diffusion_pytorch_model.safetensors, or *_encoder.safetensors / "
                     "*_decoder.safetensors)", path);
        ok = FALSE;
      } else if (ok) {
        ok = load_taesd_dir (m, files, error);
      }
      g_free (files[0]);
      g_free (files[1]);
    }
  } else {
    m->name = file_stem (path);
    ok = load_single_file (m, path, error);
  }

  if (!ok || !apply_options (m, options, error))
    return NULL;

  m->n_params = (m->encoder ? vae_graph_n_params (m->encoder) : 0) +
      (m->decoder ? vae_graph_n_params (m->decoder) : 0);
  return g_steal_pointer (&m);
}

void
vae_model_free (VaeModel *model)
{
  if (!model)
    return;
  vae_graph_free (model->encoder);
  vae_graph_free (model->decoder);
  vae_graph_free (model->encoder_first);
  vae_graph_free (model->decoder_first);
  g_free (model->latents_mean);
  g_free (model->latents_std);
  vae_weight_store_unref (model->weights);
  g_free (model->path);
  g_free (model->name);
  g_free (model);
}

gboolean
vae_model_has_half (const VaeModel *model, gboolean encoder)
{
  return model->config_only || (encoder ? model->encoder : model->decoder) != NULL;
}

const char *
vae_family_name (VaeFamily family)
{
  switch (family) {
    case VAE_FAMILY_KL:
      return "AutoencoderKL";
    case VAE_FAMILY_TINY:
      return "AutoencoderTiny";
    case VAE_FAMILY_WAN:
      return "AutoencoderKLWan";
    case VAE_FAMILY_TAEHV:
      return "TAEHV";
  }
  return "unknown";
}

const char *
vae_layout_name (VaeLayout layout)
{
  switch (layout) {
    case VAE_LAYOUT_DIFFUSERS:
      return "diffusers";
    case VAE_LAYOUT_LDM:
      return "ldm";
    case VAE_LAYOUT_TAESD:
      return "taesd";
    case VAE_LAYOUT_WAN:
      return "wan";
    case VAE_LAYOUT_TAEHV:
      return "taehv";
  }
  return "unknown";
}
