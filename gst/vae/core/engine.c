#include "engine.h"
#include "vae-error.h"

#include <errno.h>
#include <string.h>

#include "engine-registry.h"

/* The keys VT takes, for messages: "endpoint, token" or "none". */
static char *
settings_keys (const VaeEngineVTable *vt)
{
  GString *t = g_string_new (NULL);
  for (const VaeEngineSetting *k = vt->settings; k && k->key; k++)
    g_string_append_printf (t, "%s%s", t->len ? ", " : "", k->key);
  if (!t->len)
    g_string_append (t, "none");
  return g_string_free (t, FALSE);
}

/* Every entry of SETTINGS is "key=value" with a key that VT declares. */
static gboolean
check_settings (const VaeEngineVTable *vt, const char *const *settings, GError **error)
{
  for (guint i = 0; settings && settings[i]; i++) {
    const char *eq = strchr (settings[i], '=');
    if (!eq || eq == settings[i]) {
      /* Not printed: it could be a token given without its key. */
      g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                   "engine '%s': setting %u is not key=value", vt->name, i + 1);
      return FALSE;
    }
    gboolean known = FALSE;
    for (const VaeEngineSetting *k = vt->settings; k && k->key && !known; k++)
      known = strlen (k->key) == (gsize) (eq - settings[i])
              && !strncmp (k->key, settings[i], (gsize) (eq - settings[i]));
    if (!known) {
      g_autofree char *keys = settings_keys (vt);
      g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                   "engine '%s' has no setting '%.*s' (it takes: %s)", vt->name,
                   (int) (eq - settings[i]), settings[i], keys);
      return FALSE;
    }
  }
  return TRUE;
}

VaeEngine *
vae_engine_new (const char *backend, const VaeModel *model,
                const VaeEngineOptions *options, GError **error)
{
  const VaeEngineVTable *vt = NULL;
  VaeEngineOptions defaults = VAE_ENGINE_OPTIONS_INIT;

  /* auto: whichever usable engine ranks highest (engine-registry.c). */
  if (!backend || g_str_equal (backend, "auto"))
    backend = vae_engine_backend_auto (error);
  if (!backend)
    return NULL;
  vt = vae_engine_registry_get (backend, error);
  if (!vt)
    return NULL;

  if (model->config_only && !vt->takes_config_only) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "model '%s' is a preset (the public model's channels and factors, "
                 "no weights) and only backend 'remote' can use it; backend '%s' "
                 "needs a model folder or file", model->name, vt->name);
    return NULL;
  }
  if (model->temporal_factor > 1 && !vt->stream_open) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "model '%s' is a video model (%s) and backend '%s' does not run video "
                 "models yet; use backend 'cpu'", model->name,
                 vae_family_name (model->family), vt->name);
    return NULL;
  }
  /* Its probe: no GPU, say. */
  if (!vae_engine_backend_check (backend, error))
    return NULL;
  if (options && !check_settings (vt, options->settings, error))
    return NULL;

  VaeEngine *engine = g_malloc0 (vt->instance_size);
  engine->vt = vt;
  engine->model = model;
  engine->options = options ? *options : defaults;
  gboolean ok = vt->open (engine, error);
  /* Only open may read the settings: the caller's strings are not kept, so
   * a token among them cannot outlive the caller's copy or turn up
   * anywhere later. */
  engine->options.settings = NULL;
  if (!ok) {
    g_free (engine);
    return NULL;
  }
  return engine;
}

void
vae_engine_free (VaeEngine *engine)
{
  if (!engine)
    return;
  engine->vt->close (engine);
  g_free (engine);
}

const char *
vae_engine_name (const VaeEngine *engine)
{
  return engine->vt->name;
}

gboolean
vae_engine_submit (VaeEngine *engine, VaeBatch *batch, GError **error)
{
  if (engine->model->temporal_factor > 1) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "model '%s' is a video model: it runs as a stream (vae_stream_new), "
                 "not as batches of images", engine->model->name);
    return FALSE;
  }
  if (!vae_model_has_half (engine->model, batch->direction == VAE_DIRECTION_ENCODE)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "model '%s' has no %s", engine->model->name,
                 batch->direction == VAE_DIRECTION_ENCODE ? "encoder" : "decoder");
    return FALSE;
  }
  int f = engine->model->spatial_factor;
  if (batch->n < 1 || batch->h < 1 || batch->w < 1
      || (batch->direction == VAE_DIRECTION_ENCODE && (batch->h % f || batch->w % f))) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "bad batch shape n=%d h=%d w=%d (encoder input must be a "
                 "multiple of the spatial factor %d)", batch->n, batch->h, batch->w, f);
    return FALSE;
  }
  return engine->vt->submit (engine, batch, error);
}

VaeBatch *
vae_engine_wait (VaeEngine *engine)
{
  return engine->vt->wait (engine);
}

int
vae_engine_preferred_batch (VaeEngine *engine)
{
  return engine->vt->preferred_batch ? engine->vt->preferred_batch (engine) : 1;
}

int
vae_engine_batch_for_size (VaeEngine *engine, VaeDirection direction, int h, int w)
{
  int n = engine->vt->batch_for_size ? engine->vt->batch_for_size (engine, direction, h, w)
                                     : vae_engine_preferred_batch (engine);
  return MAX (n, 1);
}

void
vae_engine_stats (VaeEngine *engine, VaeEngineStats *stats)
{
  stats->device_bytes_peak = 0;
  stats->last_device_ms = -1;
  stats->weights_prepared = 0;
  if (engine->vt->stats)
    engine->vt->stats (engine, stats);
}

gboolean
vae_engine_run (VaeEngine *engine, VaeBatch *batch, GError **error)
{
  if (!vae_engine_submit (engine, batch, error))
    return FALSE;
  VaeBatch *done = vae_engine_wait (engine);
  g_assert (done == batch);
  if (done->error) {
    g_propagate_error (error, done->error);
    done->error = NULL;
    return FALSE;
  }
  return TRUE;
}

int
vae_engine_output_channels (const VaeModel *model, VaeDirection direction)
{
  const VaeGraph *g = direction == VAE_DIRECTION_ENCODE ? model->encoder : model->decoder;
  if (g)
    return vae_graph_channels (g, g->output);
  if (!model->config_only)
    return 0;
  /* What the server's model gives: moments (2C) or C channels, or pixels. */
  if (direction == VAE_DIRECTION_DECODE)
    return model->image_channels;
  return model->encoder_outputs_moments ? 2 * model->latent_channels : model->latent_channels;
}

/* ------------------------------------------------------------------ streams */

static const VaeGraph *
stream_graph (const VaeModel *m, VaeDirection direction, gboolean first)
{
  if (direction == VAE_DIRECTION_ENCODE)
    return first && m->encoder_first ? m->encoder_first : m->encoder;
  return first && m->decoder_first ? m->decoder_first : m->decoder;
}

VaeStream *
vae_stream_new (VaeEngine *engine, VaeDirection direction, int h, int w, GError **error)
{
  const VaeModel *m = engine->model;
  if (m->temporal_factor <= 1 || !engine->vt->stream_open) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "model '%s' is an image model: streams are for video models", m->name);
    return NULL;
  }
  if (!stream_graph (m, direction, FALSE)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED, "model '%s' has no %s", m->name,
                 direction == VAE_DIRECTION_ENCODE ? "encoder" : "decoder");
    return NULL;
  }
  int f = m->spatial_factor;
  if (h < 1 || w < 1 || (direction == VAE_DIRECTION_ENCODE && (h % f || w % f))) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "frame size %dx%d: %s stream's frames must be a multiple of the "
                 "spatial factor %d", w, h,
                 direction == VAE_DIRECTION_ENCODE ? "an encoder" : "a decoder", f);
    return NULL;
  }
  VaeStream *s = g_new0 (VaeStream, 1);
  s->engine = engine;
  s->direction = direction;
  s->h = h;
  s->w = w;
  if (!engine->vt->stream_open (engine, s, error)) {
    g_free (s);
    return NULL;
  }
  return s;
}

const VaeGraph *
vae_stream_graph (const VaeStream *s)
{
  return stream_graph (s->engine->model, s->direction, !s->started);
}

int
vae_stream_chunk_frames (const VaeStream *s)
{
  const VaeModel *m = s->engine->model;
  if (s->direction == VAE_DIRECTION_DECODE)
    return 1;
  return s->started ? m->encode_chunk_frames : m->encode_first_frames;
}

int
vae_stream_output_shape (const VaeStream *s, int t, int *c, int *h, int *w)
{
  const VaeGraph *g = vae_stream_graph (s);
  int n = g->values->len;
  g_autofree int *ts = g_new (int, n);
  g_autofree int *hs = g_new (int, n);
  g_autofree int *ws = g_new (int, n);
  if (!vae_graph_infer_shapes (g, t, s->h, s->w, ts, hs, ws))
    return -1;
  if (c)
    *c = vae_graph_channels (g, g->output);
  if (h)
    *h = hs[g->output];
  if (w)
    *w = ws[g->output];
  return ts[g->output];
}

gboolean
vae_stream_run (VaeStream *s, const float *in, int t, float *out, GError **error)
{
  if (vae_stream_output_shape (s, t, NULL, NULL, NULL) < 0) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "a chunk of %d frames does not fit model '%s' here (the %s takes %d)", t,
                 s->engine->model->name, s->started ? "next chunk" : "first chunk",
                 vae_stream_chunk_frames (s));
    return FALSE;
  }
  const VaeGraph *g = vae_stream_graph (s);
  if (!s->engine->vt->stream_run (s->engine, s, g, !s->started, in, t, out, error))
    return FALSE;
  s->started = TRUE;
  return TRUE;
}

void
vae_stream_reset (VaeStream *s)
{
  s->engine->vt->stream_reset (s->engine, s);
  s->started = FALSE;
}

void
vae_stream_free (VaeStream *s)
{
  if (!s)
    return;
  s->engine->vt->stream_close (s->engine, s);
  g_free (s);
}

/* ---- settings ---- */

const char *
vae_engine_setting (const VaeEngine *engine, const char *key)
{
  const char *const *settings = engine->options.settings;
  const gsize kl = strlen (key);
  const char *value = NULL;
  for (guint i = 0; settings && settings[i]; i++)
    if (!strncmp (settings[i], key, kl) && settings[i][kl] == '=')
      value = settings[i] + kl + 1;
  return value;
}

gboolean
vae_engine_setting_int (const VaeEngine *engine, const char *key, int lo, int hi, int *value,
                        GError **error)
{
  const char *s = vae_engine_setting (engine, key);
  if (!s)
    return TRUE;
  char *end = NULL;
  errno = 0;
  gint64 v = g_ascii_strtoll (s, &end, 10);
  if (!*s || !end || *end || errno || v < lo || v > hi) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "engine '%s': setting %s='%s' is not an integer from %d to %d",
                 engine->vt->name, key, s, lo, hi);
    return FALSE;
  }
  *value = (int) v;
  return TRUE;
}

gboolean
vae_engine_setting_choice (const VaeEngine *engine, const char *key,
                           const char *const *choices, int *index, GError **error)
{
  const char *s = vae_engine_setting (engine, key);
  if (!s)
    return TRUE;
  for (int i = 0; choices[i]; i++)
    if (!g_ascii_strcasecmp (s, choices[i])) {
      *index = i;
      return TRUE;
    }
  g_autofree char *list = g_strjoinv (", ", (char **) choices);
  g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
               "engine '%s': setting %s='%s' is not one of %s", engine->vt->name, key, s,
               list);
  return FALSE;
}

char **
vae_engine_settings_parse (const char *text, GError **error)
{
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func (g_free);
  GString *cur = g_string_new (NULL);
  for (const char *p = text ? text : "";; p++) {
    if (*p == '\\' && (p[1] == ',' || p[1] == '\\')) {
      g_string_append_c (cur, *++p);
      continue;
    }
    if (*p && *p != ',') {
      g_string_append_c (cur, *p);
      continue;
    }
    /* One entry: KEY=VALUE, spaces around the key dropped. */
    char *eq = strchr (cur->str, '=');
    g_autofree char *key = eq ? g_strndup (cur->str, (gsize) (eq - cur->str)) : NULL;
    if (key)
      g_strstrip (key);
    if (cur->len && (!key || !*key)) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                   "engine options: entry %u is not key=value", out->len + 1);
      memset (cur->str, 0, cur->len);
      g_string_free (cur, TRUE);
      return NULL;
    }
    if (cur->len)
      g_ptr_array_add (out, g_strconcat (key, eq, NULL));
    memset (cur->str, 0, cur->len);
    g_string_truncate (cur, 0);
    if (!*p)
      break;
  }
  g_string_free (cur, TRUE);
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (g_steal_pointer (&out), FALSE);
}
