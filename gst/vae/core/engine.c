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
