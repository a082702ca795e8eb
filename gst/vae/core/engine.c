#include "engine.h"
#include "vae-error.h"

#include "engine-registry.h"

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

  VaeEngine *engine = g_malloc0 (vt->instance_size);
  engine->vt = vt;
  engine->model = model;
  engine->options = options ? *options : defaults;
  engine->endpoint = g_strdup (engine->options.endpoint);
  engine->options.endpoint = engine->endpoint;
  gboolean ok = vt->open (engine, error);
  /* Only open may read the token: the caller's string is not kept, so it
   * cannot outlive the caller's copy or turn up anywhere later. */
  engine->options.token = NULL;
  if (!ok) {
    g_free (engine->endpoint);
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
  g_free (engine->endpoint);
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

void
vae_engine_stats (VaeEngine *engine, VaeEngineStats *stats)
{
  stats->device_bytes_peak = 0;
  stats->last_device_ms = -1;
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
                 "frame size %dx%d: a %s stream's frames must be a multiple of the "
                 "spatial factor %d", w, h,
                 direction == VAE_DIRECTION_ENCODE ? "encoder" : "decoder", f);
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
