/* gst-vae CPU engine on oneDNN: float32 (or bfloat16 activations and
 * weights with float32 accumulation, the bf16 option), multi-threaded
 * through OpenMP.
 *
 * Runs each batch synchronously inside submit and keeps a few plans per
 * direction (plan-cache.h): a plan is built the first time a (graph, n, h,
 * w) is seen and reused, so steady-state runs allocate nothing, also when a
 * caller such as vae-server alternates batch sizes. */
#include "engine.h"
#include "onednn-private.h"
#include "plan-cache.h"
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
  VaeEngine parent;
  OnednnCtx ctx;
  OnednnScratch scratch;
  VaePlanCache plans[2];       /* by VaeDirection */
  GQueue done;                 /* VaeBatch, in submission order */
} OnednnEngine;

static gboolean
onednn_open (VaeEngine *engine, GError **error)
{
  OnednnEngine *self = (OnednnEngine *) engine;
  if (engine->options.precision == VAE_PRECISION_F16) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "the cpu backend runs float32 or bfloat16, not float16");
    return FALSE;
  }
  if (engine->options.precision == VAE_PRECISION_BF16 && !onednn_cpu_has_avx512 ()) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "the cpu backend's bfloat16 needs AVX-512: oneDNN has no bfloat16 "
                 "convolutions for this CPU (%s); use float32", onednn_cpu_isa_name ());
    return FALSE;
  }
  /* Our Winograd (winograd.c): on by default where it runs, for layers
   * whose transformed filter (4x the 3x3 filter) fits the cap. */
  static const char *const wino_modes[] = { "auto", "off", NULL };
  int wino_mode = g_strcmp0 (g_getenv ("VAE_ONEDNN_WINOGRAD"), "0") == 0 ? 1 : 0;
  int wino_mib = 128;
  if (!vae_engine_setting_choice (engine, "winograd", wino_modes, &wino_mode, error)
      || !vae_engine_setting_int (engine, "winograd-max-mib", 1, 1 << 20, &wino_mib, error))
    return FALSE;
  self->ctx.winograd = wino_mode == 0;
  self->ctx.wino_max_bytes = (gsize) wino_mib << 20;
#ifdef _OPENMP
  if (engine->options.threads > 0)
    omp_set_num_threads (engine->options.threads);
#endif
  g_queue_init (&self->done);
  self->ctx.scratch = &self->scratch;
  DNNL_TRY (dnnl_engine_create (&self->ctx.engine, dnnl_cpu, 0), "engine creation", "cpu");
  DNNL_TRY (dnnl_stream_create (&self->ctx.stream, self->ctx.engine,
                                dnnl_stream_default_flags), "stream creation", "cpu");
  self->ctx.weights = onednn_weight_cache_new ();
  /* Once a filter is reordered, its float32 original may leave memory. */
  vae_weight_cache_release_originals (self->ctx.weights, engine->model->weights);
  return TRUE;
fail:
  if (self->ctx.engine)
    dnnl_engine_destroy (self->ctx.engine);
  return FALSE;
}

static gboolean
onednn_submit (VaeEngine *engine, VaeBatch *batch, GError **error)
{
  OnednnEngine *self = (OnednnEngine *) engine;
  const VaeGraph *graph = batch->direction == VAE_DIRECTION_ENCODE
      ? engine->model->encoder : engine->model->decoder;
  VaePlanCache *cache = &self->plans[batch->direction];
  OnednnPlan *plan = vae_plan_cache_find (cache, graph, batch->n, batch->h, batch->w);

  if (!plan) {
    onednn_plan_free (vae_plan_cache_evict (cache));
    plan = onednn_plan_new (&self->ctx, graph, batch->n, batch->h, batch->w,
                            engine->options.precision == VAE_PRECISION_BF16
                            ? dnnl_bf16 : dnnl_f32, &batch->error);
    if (plan)
      vae_plan_cache_put (cache, graph, batch->n, batch->h, batch->w, plan);
  }
  if (plan)
    onednn_plan_run (&self->ctx, plan, batch->input, batch->output, &batch->error);
  g_queue_push_tail (&self->done, batch);
  return TRUE;
}

static VaeBatch *
onednn_wait (VaeEngine *engine)
{
  return g_queue_pop_head (&((OnednnEngine *) engine)->done);
}

static int
onednn_preferred_batch (VaeEngine *engine)
{
  /* Frames are large enough to keep both cores busy one at a time. */
  return 1;
}

static void
free_plan (gpointer plan, gpointer user_data)
{
  onednn_plan_free (plan);
}

static void
onednn_close (VaeEngine *engine)
{
  OnednnEngine *self = (OnednnEngine *) engine;
  for (int i = 0; i < 2; i++)
    vae_plan_cache_clear (&self->plans[i], free_plan, NULL);
  g_queue_clear (&self->done);
  /* After the plans: their steps borrow the prepared weights. */
  vae_weight_cache_free (self->ctx.weights);
  self->ctx.weights = NULL;
  onednn_scratch_free (&self->scratch);
  if (self->ctx.stream)
    dnnl_stream_destroy (self->ctx.stream);
  if (self->ctx.engine)
    dnnl_engine_destroy (self->ctx.engine);
}

/* ---- streams (video models) ----
 * A stream keeps its own plans (one per graph and chunk length: a Wan
 * encoder stream has two, its first frame and its 4-frame chunks) and the
 * state slots they read and write, allocated zeroed the first time a plan
 * that uses the slot is made.  Plans point at the slots through their
 * causal steps, so a stream's plans are its own, never shared. */
typedef struct {
  const VaeGraph *graph;
  int t;
  OnednnPlan *plan;
} StreamPlan;

typedef struct {
  GArray *plans;               /* StreamPlan */
  int n_slots;
  guint8 **slots;              /* [n_slots], NULL until a plan uses it */
  gsize *slot_bytes;
} OnednnStream;

static gboolean
onednn_stream_open (VaeEngine *engine, VaeStream *stream, GError **error)
{
  const VaeModel *m = engine->model;
  const VaeGraph *g = stream->direction == VAE_DIRECTION_ENCODE ? m->encoder : m->decoder;
  if (engine->options.precision == VAE_PRECISION_BF16) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "the cpu backend runs video models in float32 only");
    return FALSE;
  }
  OnednnStream *st = g_new0 (OnednnStream, 1);
  st->plans = g_array_new (FALSE, TRUE, sizeof (StreamPlan));
  st->n_slots = g->n_states;
  st->slots = g_new0 (guint8 *, MAX (st->n_slots, 1));
  st->slot_bytes = g_new0 (gsize, MAX (st->n_slots, 1));
  stream->priv = st;
  return TRUE;
}

static OnednnPlan *
stream_plan (OnednnEngine *self, VaeStream *stream, OnednnStream *st, const VaeGraph *graph,
             int t, GError **error)
{
  for (guint i = 0; i < st->plans->len; i++) {
    StreamPlan *sp = &g_array_index (st->plans, StreamPlan, i);
    if (sp->graph == graph && sp->t == t)
      return sp->plan;
  }
  if (graph->n_states > st->n_slots) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL,
                 "a graph of model '%s' has %d state slots, its stream %d",
                 self->parent.model->name, graph->n_states, st->n_slots);
    return NULL;
  }
  OnednnPlan *plan = onednn_plan_new (&self->ctx, graph, t, stream->h, stream->w,
                                      dnnl_f32, error);
  if (!plan)
    return NULL;
  /* Slots this plan uses: allocated (zero) now, or checked against the
   * size the other plan gave them. */
  for (int s = 0; s < st->n_slots; s++) {
    gsize bytes = onednn_plan_slot_bytes (plan, s);
    if (!bytes)
      continue;
    if (st->slots[s] && st->slot_bytes[s] != bytes) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL,
                   "state slot %d of model '%s': %" G_GSIZE_FORMAT " bytes in one graph, %"
                   G_GSIZE_FORMAT " in another", s, self->parent.model->name,
                   st->slot_bytes[s], bytes);
      onednn_plan_free (plan);
      return NULL;
    }
    if (!st->slots[s]) {
      st->slots[s] = vae_try_aligned_alloc0 (1, bytes, 64, "a video stream's state", error);
      if (!st->slots[s]) {
        onednn_plan_free (plan);
        return NULL;
      }
      st->slot_bytes[s] = bytes;
    }
  }
  StreamPlan sp = { graph, t, plan };
  g_array_append_val (st->plans, sp);
  return plan;
}

static gboolean
onednn_stream_run (VaeEngine *engine, VaeStream *stream, const VaeGraph *graph,
                   gboolean at_start, const float *in, int t, float *out, GError **error)
{
  OnednnEngine *self = (OnednnEngine *) engine;
  OnednnStream *st = stream->priv;
  OnednnPlan *plan = stream_plan (self, stream, st, graph, t, error);
  if (!plan)
    return FALSE;
  return onednn_plan_run_stream (&self->ctx, plan, in, out, st->slots, at_start, error);
}

static void
onednn_stream_reset (VaeEngine *engine, VaeStream *stream)
{
  OnednnStream *st = stream->priv;
  for (int s = 0; s < st->n_slots; s++)
    if (st->slots[s])
      memset (st->slots[s], 0, st->slot_bytes[s]);
}

static void
onednn_stream_close (VaeEngine *engine, VaeStream *stream)
{
  OnednnStream *st = stream->priv;
  if (!st)
    return;
  for (guint i = 0; i < st->plans->len; i++)
    onednn_plan_free (g_array_index (st->plans, StreamPlan, i).plan);
  g_array_unref (st->plans);
  for (int s = 0; s < st->n_slots; s++)
    g_aligned_free (st->slots[s]);
  g_free (st->slots);
  g_free (st->slot_bytes);
  g_free (st);
  stream->priv = NULL;
}

static void
onednn_stats (VaeEngine *engine, VaeEngineStats *stats)
{
  OnednnEngine *self = (OnednnEngine *) engine;
  stats->weights_prepared = self->ctx.weights ? vae_weight_cache_count (self->ctx.weights) : 0;
}

/* oneDNN runs on any x86-64 (or other) CPU it was built for. */
static int
onednn_probe (GError **error)
{
  return VAE_ENGINE_RANK_CPU;
}

static const VaeEngineSetting onednn_settings[] = {
  { "winograd", "auto (default) or off: our Winograd F(4x4,3x3) for 3x3 convolutions on "
                "AVX2 CPUs (oneDNN's own on AVX-512)" },
  { "winograd-max-mib", "largest transformed filter of a layer that runs Winograd, in MiB "
                        "(default 128; a transformed filter is 4x the layer's 3x3 filter)" },
  { NULL, NULL }
};

const VaeEngineVTable vae_engine_onednn = {
  .name = "cpu",
  .settings = onednn_settings,
  .instance_size = sizeof (OnednnEngine),
  .open = onednn_open,
  .submit = onednn_submit,
  .wait = onednn_wait,
  .preferred_batch = onednn_preferred_batch,
  .close = onednn_close,
  .stats = onednn_stats,
  .probe = onednn_probe,
  .stream_open = onednn_stream_open,
  .stream_run = onednn_stream_run,
  .stream_reset = onednn_stream_reset,
  .stream_close = onednn_stream_close,
};
