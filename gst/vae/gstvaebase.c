/* gst-vae: GstVaeBase, the shared streaming core of vaeencode and vaedecode.
 *
 * Threading: everything about batches happens under the stream lock
 * (priv->lock): chain, serialized events, drain queries and the
 * batch-timeout thread all take it, so batches run one at a time, in input
 * order.  Their output buffers go, in that order, to a queue that the src
 * pad's task pushes downstream (see output_loop for why).  Serialized
 * events and queries first drain the pending batch and wait for the queue
 * to empty, so they stay behind the frames before them.  FLUSH_START raises
 * the flags, drops the queue and forwards the event (which unblocks a push
 * in progress); FLUSH_STOP takes the lock and drops whatever is pending.
 *
 * Latency: batching holds a frame until its batch is full (or batch-timeout
 * fires), then the batch takes its processing time; both are reported
 * (the processing time measured, see record_processing). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "gstvaebase.h"
#include "gstvaealloc.h"
#include "tiling.h"
#include "vae-error.h"
#include <gst/video/video.h>
#include <math.h>
#include <string.h>

GST_DEBUG_CATEGORY_STATIC (gst_vae_base_debug);
#define GST_CAT_DEFAULT gst_vae_base_debug

#define DEFAULT_BACKEND GST_VAE_BACKEND_AUTO
#define DEFAULT_MODEL NULL
#define DEFAULT_BATCH_SIZE 0
#define DEFAULT_BATCH_TIMEOUT 0
#define DEFAULT_MAX_INFLIGHT 1
#define DEFAULT_THREADS 0
#define DEFAULT_DEVICE_ID 0
#define DEFAULT_ENDPOINT NULL
#define DEFAULT_SCALING_FACTOR (-1.0)
#define DEFAULT_SHIFT_FACTOR NAN
#define DEFAULT_TILE_SIZE 0
#define DEFAULT_TILE_OVERLAP VAE_TILE_OVERLAP_DEFAULT
#define DEFAULT_TIMEOUT 60.0
#define DEFAULT_RETRIES 3
#define DEFAULT_PRECISION GST_VAE_PRECISION_AUTO

/* Batches whose processing time the reported latency follows. */
#define LAT_WINDOW 32

enum {
  PROP_0,
  PROP_BACKEND,
  PROP_MODEL,
  PROP_BATCH_SIZE,
  PROP_BATCH_TIMEOUT,
  PROP_MAX_INFLIGHT,
  PROP_THREADS,
  PROP_DEVICE_ID,
  PROP_ENDPOINT,
  PROP_SCALING_FACTOR,
  PROP_SHIFT_FACTOR,
  PROP_TILE_SIZE,
  PROP_TILE_OVERLAP,
  PROP_TOKEN,
  PROP_TIMEOUT,
  PROP_RETRIES,
  PROP_PRECISION,
  PROP_ENGINE_OPTIONS,
};

/* What an output buffer inherits from its input frame. */
typedef struct {
  GstClockTime pts, dts, duration;
  guint64 offset, offset_end;
  guint flags;
} FrameMeta;

typedef struct {
  VaeBatch vb;
  guint n, capacity;
  float *in, *out;
  FrameMeta *metas;
  gboolean ran;                /* run in tiles already: nothing to wait for */
  gint64 closed_us, done_us;   /* monotonic: submitted; back (tiled runs) */
} Batch;

typedef struct {
  GstPad *sinkpad, *srcpad;

  /* Properties, under the object lock. */
  GstVaeBackend backend;
  char *model_path;
  guint batch_size_prop;
  guint batch_timeout;
  guint max_inflight;
  gint threads;
  gint device_id;
  char *endpoint;
  double scaling_factor, shift_factor;
  guint tile_size, tile_overlap;
  char *token;                 /* never printed, logged or read back */
  double timeout;              /* seconds */
  guint retries;
  /* Whether timeout / retries were set: when not, the remote engine takes
   * VAE_REMOTE_TIMEOUT_MS / VAE_REMOTE_RETRIES from the environment. */
  gboolean timeout_set, retries_set;
  GstVaePrecision precision;
  char *engine_options;        /* "key=value,..." for the engine, or NULL */
  /* From READY->PAUSED until the element is back in READY: what was read
   * at start or at caps time is in use, so only GST_PARAM_MUTABLE_PLAYING
   * properties may change (the others would read back a value not in use). */
  gboolean started;

  /* Stream state, under priv->lock. */
  GMutex lock;
  GCond cond;
  VaeModel *model;
  VaeEngine *engine;
  gboolean configured;
  gboolean caps_failed;        /* an error was posted for the current caps */
  /* Setup failures, each posted once.  Upstream re-sends a refused CAPS
   * event before every later buffer, serialized event and query, so a
   * failure that would only repeat is remembered instead of retried: the
   * engine's (it depends on no caps) until the element restarts, refused
   * caps until then, other caps, or a RECONFIGURE from downstream. */
  gboolean engine_failed;
  GstCaps *failed_caps;
  gint renegotiate;            /* atomic: a RECONFIGURE came from downstream */
  GstVaeFrameGeometry geom;
  guint batch_size;            /* effective */
  gboolean tiled;              /* frames larger than tile-size: run in tiles */
  int tile, overlap;           /* tile-size / tile-overlap for this stream */
  Batch *filling;              /* frames waiting for their batch, or NULL */
  GQueue inflight;             /* submitted Batch *, oldest first */
  gint64 oldest_us;            /* monotonic time filling's first frame came */
  GstFlowReturn timer_flow;    /* a push result from the timer thread */
  GThread *timer;
  gboolean timer_stop;
  gint flushing;               /* atomic */

  /* Output buffers, pushed by the src pad's task; under out_lock, which
   * is taken after priv->lock where both are held. */
  GMutex out_lock;
  GCond out_cond;
  GQueue out_queue;            /* GstBuffer *, in order */
  guint out_limit;             /* queued buffers before a producer waits */
  gboolean out_busy;           /* the task is pushing one */
  gboolean out_flushing;
  GstFlowReturn out_flow;      /* the first failed push: nothing after it goes */
  gboolean out_flow_told;      /* out_flow was returned upstream (or posted) */

  /* For the LATENCY query, which must not take the stream lock (a batch
   * may hold it for its processing time); under the object lock. */
  guint lat_batch_size;
  gint lat_fps_n, lat_fps_d;
  GstClockTime proc[LAT_WINDOW];   /* processing times of the last batches */
  guint proc_n, proc_next;
  GstClockTime lat_reported;   /* own latency in the last answer, or NONE */
  gboolean lat_posted;         /* a LATENCY message is out, not answered yet */
} GstVaeBasePrivate;

G_DEFINE_ABSTRACT_TYPE_WITH_PRIVATE (GstVaeBase, gst_vae_base, GST_TYPE_ELEMENT)

#define PRIV(b) ((GstVaeBasePrivate *) gst_vae_base_get_instance_private (GST_VAE_BASE (b)))

/* ---- latency ---- */

/* How long a frame may wait for its batch to be run: until the batch is
 * full at the stream's framerate, or batch-timeout, whichever comes first.
 * Object lock held. */
static GstClockTime
accumulation_locked (GstVaeBasePrivate *priv)
{
  GstClockTime lat = 0, frame = GST_CLOCK_TIME_NONE;
  guint bs = priv->lat_batch_size ? priv->lat_batch_size : MAX (priv->batch_size_prop, 1);

  if (priv->lat_fps_n > 0 && priv->lat_fps_d > 0)
    frame = gst_util_uint64_scale_int (GST_SECOND, priv->lat_fps_d, priv->lat_fps_n);
  if (bs > 1 && GST_CLOCK_TIME_IS_VALID (frame))
    lat = frame * (bs - 1);
  if (bs > 1 && priv->batch_timeout > 0) {
    GstClockTime t = (GstClockTime) priv->batch_timeout * GST_MSECOND;
    lat = GST_CLOCK_TIME_IS_VALID (frame) ? MIN (lat, t) : t;
  }
  return lat;
}

static int
cmp_clock_time (gconstpointer a, gconstpointer b)
{
  GstClockTime x = *(const GstClockTime *) a, y = *(const GstClockTime *) b;
  return x < y ? -1 : x > y;
}

/* The 95th percentile of the recorded processing times (0: none yet), as
 * encoders that measure themselves report: the slowest few batches of a
 * loaded machine do not set it, one slow batch in a while does not move
 * it.  Object lock held. */
static GstClockTime
processing_p95_locked (GstVaeBasePrivate *priv)
{
  GstClockTime sorted[LAT_WINDOW];

  if (priv->proc_n == 0)
    return 0;
  memcpy (sorted, priv->proc, priv->proc_n * sizeof (sorted[0]));
  qsort (sorted, priv->proc_n, sizeof (sorted[0]), cmp_clock_time);
  return sorted[(95 * priv->proc_n + 99) / 100 - 1];
}

/* The latency a frame sees: its batch closes ACC after it came (full, or
 * batch-timeout), but not before the batch before it is done, which
 * holds the stream lock (and often the upstream thread) for its processing
 * time PROC, up to PROC after the frame came; then its own batch takes
 * PROC. */
static GstClockTime
own_latency (GstClockTime acc, GstClockTime proc)
{
  return MAX (acc, proc) + proc;
}

/* TRUE, once until the next LATENCY query, when the element needs more
 * latency than it last reported.  Object lock held. */
static gboolean
latency_grew_locked (GstVaeBasePrivate *priv)
{
  if (!GST_CLOCK_TIME_IS_VALID (priv->lat_reported) || priv->lat_posted)
    return FALSE;
  if (own_latency (accumulation_locked (priv), processing_p95_locked (priv))
      <= priv->lat_reported)
    return FALSE;
  priv->lat_posted = TRUE;
  return TRUE;
}

static void
post_latency (GstVaeBase *self)
{
  GST_INFO_OBJECT (self, "needs more latency than it reported: posting LATENCY");
  gst_element_post_message (GST_ELEMENT (self), gst_message_new_latency (GST_OBJECT (self)));
}

/* Records the processing time of a batch: from its submission until its
 * last output buffer was made (what a frame waits beyond its batch's
 * accumulation; with max-inflight > 1 this includes the time the batch
 * stays in flight behind later ones).  Asks the pipeline for a new latency
 * when that no longer covers it. */
static void
record_processing (GstVaeBase *self, gint64 us)
{
  GstVaeBasePrivate *priv = PRIV (self);
  gboolean post;

  GST_OBJECT_LOCK (self);
  priv->proc[priv->proc_next] = (GstClockTime) MAX (us, 0) * GST_USECOND;
  priv->proc_next = (priv->proc_next + 1) % LAT_WINDOW;
  priv->proc_n = MIN (priv->proc_n + 1, LAT_WINDOW);
  post = latency_grew_locked (priv);
  GST_OBJECT_UNLOCK (self);
  GST_LOG_OBJECT (self, "batch processing took %" G_GINT64_FORMAT " us", us);
  if (post)
    post_latency (self);
}

/* ---- output ---- */

static void
set_output_flushing (GstVaeBase *self, gboolean flushing)
{
  GstVaeBasePrivate *priv = PRIV (self);

  g_mutex_lock (&priv->out_lock);
  priv->out_flushing = flushing;
  if (flushing) {
    g_queue_clear_full (&priv->out_queue, (GDestroyNotify) gst_buffer_unref);
  } else {
    priv->out_flow = GST_FLOW_OK;
    priv->out_flow_told = FALSE;
  }
  g_cond_broadcast (&priv->out_cond);
  g_mutex_unlock (&priv->out_lock);
}

/* Hands OUT (taken) to the task, waiting while the queue is full.  Not OK
 * when nothing more goes downstream: flushing, or a push failed. */
static GstFlowReturn
queue_output (GstVaeBase *self, GstBuffer *out)
{
  GstVaeBasePrivate *priv = PRIV (self);
  GstFlowReturn ret;

  g_mutex_lock (&priv->out_lock);
  while (!priv->out_flushing && priv->out_flow == GST_FLOW_OK
         && g_queue_get_length (&priv->out_queue) >= priv->out_limit)
    g_cond_wait (&priv->out_cond, &priv->out_lock);
  ret = priv->out_flushing ? GST_FLOW_FLUSHING : priv->out_flow;
  if (ret == GST_FLOW_OK) {
    g_queue_push_tail (&priv->out_queue, out);
    g_cond_broadcast (&priv->out_cond);
    out = NULL;
  }
  g_mutex_unlock (&priv->out_lock);
  if (out)
    gst_buffer_unref (out);
  return ret;
}

/* Waits until the task has pushed every queued buffer (or flushing). */
static void
wait_output (GstVaeBase *self)
{
  GstVaeBasePrivate *priv = PRIV (self);

  g_mutex_lock (&priv->out_lock);
  while (!priv->out_flushing && (priv->out_busy || !g_queue_is_empty (&priv->out_queue)))
    g_cond_wait (&priv->out_cond, &priv->out_lock);
  g_mutex_unlock (&priv->out_lock);
}

/* What upstream's next buffer is told: flushing, or the failed push. */
static GstFlowReturn
output_flow (GstVaeBase *self)
{
  GstVaeBasePrivate *priv = PRIV (self);
  GstFlowReturn ret;

  g_mutex_lock (&priv->out_lock);
  ret = priv->out_flushing ? GST_FLOW_FLUSHING : priv->out_flow;
  if (priv->out_flow != GST_FLOW_OK)
    priv->out_flow_told = TRUE;
  g_mutex_unlock (&priv->out_lock);
  return ret;
}

/* The src pad's task.  Output buffers are pushed here, not by the thread
 * that ran their batch: a synchronising sink holds each push until its
 * frame is due, and a batch's frames are due one frame apart, so pushing
 * them from the upstream or timer thread (and under the stream lock) would
 * keep the next batch's frames out for most of a batch period, and make
 * them late whatever latency was reported. */
static void
output_loop (gpointer data)
{
  GstVaeBase *self = data;
  GstVaeBasePrivate *priv = PRIV (self);
  GstBuffer *buf;
  GstFlowReturn ret;

  g_mutex_lock (&priv->out_lock);
  while (!priv->out_flushing && g_queue_is_empty (&priv->out_queue))
    g_cond_wait (&priv->out_cond, &priv->out_lock);
  if (priv->out_flushing) {
    g_mutex_unlock (&priv->out_lock);
    gst_pad_pause_task (priv->srcpad);
    return;
  }
  buf = g_queue_pop_head (&priv->out_queue);
  priv->out_busy = TRUE;
  g_cond_broadcast (&priv->out_cond);
  g_mutex_unlock (&priv->out_lock);

  ret = gst_pad_push (priv->srcpad, buf);

  g_mutex_lock (&priv->out_lock);
  priv->out_busy = FALSE;
  if (ret != GST_FLOW_OK && priv->out_flow == GST_FLOW_OK) {
    /* What follows would leave a gap: drop it, and tell upstream. */
    GST_DEBUG_OBJECT (self, "push: %s, dropping %u queued buffers", gst_flow_get_name (ret),
                      g_queue_get_length (&priv->out_queue));
    priv->out_flow = ret;
    g_queue_clear_full (&priv->out_queue, (GDestroyNotify) gst_buffer_unref);
  }
  g_cond_broadcast (&priv->out_cond);
  g_mutex_unlock (&priv->out_lock);
}

/* At EOS a failed push may be left that no later buffer returns upstream:
 * post it, as the element that pushed. */
static void
post_untold_flow (GstVaeBase *self)
{
  GstVaeBasePrivate *priv = PRIV (self);
  GstFlowReturn flow;
  gboolean told;

  g_mutex_lock (&priv->out_lock);
  flow = priv->out_flow;
  told = priv->out_flow_told || priv->out_flushing;
  priv->out_flow_told = TRUE;
  g_mutex_unlock (&priv->out_lock);
  if (!told && (flow == GST_FLOW_NOT_LINKED || flow < GST_FLOW_EOS))
    GST_ELEMENT_FLOW_ERROR (self, flow);
}

static gboolean
gst_vae_base_src_activate_mode (GstPad *pad, GstObject *parent, GstPadMode mode,
                                gboolean active)
{
  GstVaeBase *self = GST_VAE_BASE (parent);

  if (mode != GST_PAD_MODE_PUSH)
    return FALSE;
  if (active) {
    set_output_flushing (self, FALSE);
    return gst_pad_start_task (pad, output_loop, self, NULL);
  }
  set_output_flushing (self, TRUE);
  return gst_pad_stop_task (pad);
}

/* ---- batches ---- */

static void
batch_free (Batch *b)
{
  if (!b)
    return;
  g_free (b->in);
  g_free (b->out);
  g_free (b->metas);
  g_free (b);
}

static Batch *
batch_new (const GstVaeFrameGeometry *g, guint capacity)
{
  Batch *b = g_new0 (Batch, 1);
  b->capacity = capacity;
  b->in = g_try_new (float, g->in_floats * capacity);
  b->out = g_try_new (float, g->out_floats * capacity);
  b->metas = g_new0 (FrameMeta, capacity);
  if (!b->in || !b->out) {
    batch_free (b);
    return NULL;
  }
  return b;
}

/* The element error for this stream's frames not fitting in memory, with
 * their image size (decode: the engine input is latents). */
static void
post_no_memory (GstVaeBase *self, guint frames, const char *detail)
{
  GstVaeBasePrivate *priv = PRIV (self);
  const int f = priv->geom.direction == VAE_DIRECTION_DECODE ? priv->model->spatial_factor : 1;
  gst_vae_post_no_memory (GST_ELEMENT (self), priv->geom.w * f, priv->geom.h * f, frames,
                          detail);
}

/* Submits the filling batch to the engine. */
static gboolean
submit_filling (GstVaeBase *self)
{
  GstVaeBasePrivate *priv = PRIV (self);
  Batch *b = priv->filling;
  GError *err = NULL;

  if (!b || b->n == 0)
    return TRUE;
  priv->filling = NULL;
  b->closed_us = g_get_monotonic_time ();
  b->vb.direction = priv->geom.direction;
  b->vb.n = (int) b->n;
  b->vb.h = priv->geom.h;
  b->vb.w = priv->geom.w;
  b->vb.input = b->in;
  b->vb.output = b->out;
  b->vb.user_data = b;
  b->vb.error = NULL;
  if (priv->tiled) {
    /* The tiles are submitted and waited for inside; the batch comes back
     * done (an error stays in vb.error for complete_oldest to post) and
     * waits in the queue only to keep the output order. */
    GST_LOG_OBJECT (self, "running a batch of %u frames in tiles", b->n);
    vae_tiled_run (priv->engine, &b->vb, priv->tile, priv->overlap, &b->vb.error);
    b->ran = TRUE;
    b->done_us = g_get_monotonic_time ();
    g_queue_push_tail (&priv->inflight, b);
    return TRUE;
  }
  GST_LOG_OBJECT (self, "submitting a batch of %u frames", b->n);
  if (!vae_engine_submit (priv->engine, &b->vb, &err)) {
    if (g_error_matches (err, VAE_ERROR, VAE_ERROR_NO_MEMORY))
      post_no_memory (self, b->n, err->message);
    else
      GST_ELEMENT_ERROR (self, STREAM, FAILED,
        ("The '%s' engine refused a batch of %u frames.", vae_engine_name (priv->engine), b->n),
        ("%s", err ? err->message : "unknown error"));
    g_clear_error (&err);
    batch_free (b);
    return FALSE;
  }
  g_queue_push_tail (&priv->inflight, b);
  return TRUE;
}

/* Waits for the oldest in-flight batch and pushes its frames. */
static GstFlowReturn
complete_oldest (GstVaeBase *self)
{
  GstVaeBasePrivate *priv = PRIV (self);
  GstVaeBaseClass *klass = GST_VAE_BASE_GET_CLASS (self);
  GstFlowReturn ret = GST_FLOW_OK;
  Batch *b = g_queue_pop_head (&priv->inflight);
  VaeBatch *vb;
  gint64 done_us, making_us = 0;

  if (!b)
    return GST_FLOW_OK;
  vb = b->ran ? &b->vb : vae_engine_wait (priv->engine);
  done_us = b->ran ? b->done_us : g_get_monotonic_time ();
  if (vb != &b->vb) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED,
        ("The '%s' engine returned batches out of order.", vae_engine_name (priv->engine)),
        ("expected batch %p, got %p", (void *) &b->vb, (void *) vb));
    batch_free (b);
    return GST_FLOW_ERROR;
  }
  if (vb->error) {
    if (g_error_matches (vb->error, VAE_ERROR, VAE_ERROR_NO_MEMORY))
      post_no_memory (self, b->n, vb->error->message);
    else
      GST_ELEMENT_ERROR (self, STREAM, FAILED,
        ("The '%s' engine failed on a batch of %u frames.", vae_engine_name (priv->engine), b->n),
        ("%s", vb->error->message));
    g_clear_error (&vb->error);
    batch_free (b);
    return GST_FLOW_ERROR;
  }
  for (guint i = 0; i < b->n && ret == GST_FLOW_OK; i++) {
    GstBuffer *out = NULL;
    const FrameMeta *m = &b->metas[i];
    gint64 t0;

    if (g_atomic_int_get (&priv->flushing)) {
      ret = GST_FLOW_FLUSHING;
      break;
    }
    t0 = g_get_monotonic_time ();
    ret = klass->make_output (self, b->out + priv->geom.out_floats * i, &out);
    making_us += g_get_monotonic_time () - t0;
    if (ret != GST_FLOW_OK)
      break;
    GST_BUFFER_PTS (out) = m->pts;
    GST_BUFFER_DTS (out) = m->dts;
    GST_BUFFER_DURATION (out) = m->duration;
    GST_BUFFER_OFFSET (out) = m->offset;
    GST_BUFFER_OFFSET_END (out) = m->offset_end;
    GST_BUFFER_FLAGS (out) |= m->flags;
    /* A full queue is downstream's time, not the batch's: not counted. */
    ret = queue_output (self, out);
  }
  if (ret == GST_FLOW_OK)
    record_processing (self, done_us - b->closed_us + making_us);
  batch_free (b);
  return ret;
}

/* Waits for every in-flight batch and drops it without pushing. */
static void
discard_inflight (GstVaeBase *self)
{
  GstVaeBasePrivate *priv = PRIV (self);
  Batch *b;
  while ((b = g_queue_pop_head (&priv->inflight))) {
    VaeBatch *vb = b->ran ? &b->vb : vae_engine_wait (priv->engine);
    if (vb)
      g_clear_error (&vb->error);
    GST_DEBUG_OBJECT (self, "dropping a batch of %u frames", b->n);
    batch_free (b);
  }
}

/* Runs what is pending.  ALL: the filling batch however full, and every
 * in-flight batch; else keeps up to max-inflight - 1 batches in flight. */
static GstFlowReturn
run_pending (GstVaeBase *self, gboolean all)
{
  GstVaeBasePrivate *priv = PRIV (self);
  GstFlowReturn ret = GST_FLOW_OK;
  guint keep = 0;

  if (!priv->engine)
    return GST_FLOW_OK;
  if (!submit_filling (self))
    ret = GST_FLOW_ERROR;
  if (!all) {
    GST_OBJECT_LOCK (self);
    keep = MAX (priv->max_inflight, 1) - 1;
    GST_OBJECT_UNLOCK (self);
  }
  while (ret == GST_FLOW_OK && g_queue_get_length (&priv->inflight) > keep)
    ret = complete_oldest (self);
  /* After a failed batch nothing later may be pushed: the stream would go
   * on with a gap.  The error already posted names the cause. */
  if (ret == GST_FLOW_ERROR)
    discard_inflight (self);
  return ret;
}

/* Drops pending frames; waits for in-flight batches without pushing them. */
static void
drop_pending (GstVaeBase *self)
{
  GstVaeBasePrivate *priv = PRIV (self);

  if (priv->filling)
    GST_DEBUG_OBJECT (self, "dropping %u pending frames", priv->filling->n);
  g_clear_pointer (&priv->filling, batch_free);
  discard_inflight (self);
}

static GstFlowReturn
drain (GstVaeBase *self)
{
  return run_pending (self, TRUE);
}

/* ---- batch-timeout thread ---- */

static gpointer
timer_thread (gpointer data)
{
  GstVaeBase *self = data;
  GstVaeBasePrivate *priv = PRIV (self);

  g_mutex_lock (&priv->lock);
  while (!priv->timer_stop) {
    guint timeout;
    GST_OBJECT_LOCK (self);
    timeout = priv->batch_timeout;
    GST_OBJECT_UNLOCK (self);
    if (timeout > 0 && priv->filling && priv->filling->n > 0
        && !g_atomic_int_get (&priv->flushing)) {
      gint64 deadline = priv->oldest_us + (gint64) timeout * 1000;
      if (g_get_monotonic_time () >= deadline) {
        GST_DEBUG_OBJECT (self, "batch-timeout: flushing %u frames", priv->filling->n);
        GstFlowReturn r = drain (self);
        if (r != GST_FLOW_OK && priv->timer_flow == GST_FLOW_OK)
          priv->timer_flow = r;
        continue;
      }
      g_cond_wait_until (&priv->cond, &priv->lock, deadline);
    } else {
      g_cond_wait (&priv->cond, &priv->lock);
    }
  }
  g_mutex_unlock (&priv->lock);
  return NULL;
}

static void
stop_timer (GstVaeBase *self)
{
  GstVaeBasePrivate *priv = PRIV (self);
  GThread *t;

  g_mutex_lock (&priv->lock);
  t = priv->timer;
  priv->timer = NULL;
  priv->timer_stop = TRUE;
  g_cond_broadcast (&priv->cond);
  g_mutex_unlock (&priv->lock);
  if (t)
    g_thread_join (t);
}

/* ---- engine and model ---- */

const VaeModel *
gst_vae_base_get_model (GstVaeBase *base)
{
  return PRIV (base)->model;
}

GstPad *
gst_vae_base_get_srcpad (GstVaeBase *base)
{
  return PRIV (base)->srcpad;
}

double
gst_vae_base_get_scaling_property (GstVaeBase *base)
{
  GstVaeBasePrivate *priv = PRIV (base);
  double v;
  GST_OBJECT_LOCK (base);
  v = priv->scaling_factor;
  GST_OBJECT_UNLOCK (base);
  return (isnan (v) || v < 0) ? NAN : v;
}

double
gst_vae_base_get_shift_property (GstVaeBase *base)
{
  GstVaeBasePrivate *priv = PRIV (base);
  double v;
  GST_OBJECT_LOCK (base);
  v = priv->shift_factor;
  GST_OBJECT_UNLOCK (base);
  return v;
}

void
gst_vae_rgb_conversion_clear (GstVaeRgbConversion *conv)
{
  g_clear_pointer (&conv->convert, gst_video_converter_free);
  gst_clear_buffer (&conv->rgb);
}

gboolean
gst_vae_base_setup_rgb_conversion (GstVaeBase *base, GstVaeRgbConversion *conv,
                                   const GstVideoInfo *video, gboolean to_rgb,
                                   GstCaps *caps)
{
  const GstVideoFormat fmt = GST_VIDEO_INFO_FORMAT (video);
  const int w = GST_VIDEO_INFO_WIDTH (video), h = GST_VIDEO_INFO_HEIGHT (video);
  GstVideoInfo *rgb_info = &conv->rgb_info;
  GError *err = NULL;

  gst_vae_rgb_conversion_clear (conv);
  if (fmt == GST_VIDEO_FORMAT_RGB || fmt == GST_VIDEO_FORMAT_RGBA)
    return TRUE;

  gst_video_info_set_format (rgb_info, GST_VIDEO_FORMAT_RGB, w, h);
  GST_VIDEO_INFO_FPS_N (rgb_info) = GST_VIDEO_INFO_FPS_N (video);
  GST_VIDEO_INFO_FPS_D (rgb_info) = GST_VIDEO_INFO_FPS_D (video);
  GST_VIDEO_INFO_PAR_N (rgb_info) = GST_VIDEO_INFO_PAR_N (video);
  GST_VIDEO_INFO_PAR_D (rgb_info) = GST_VIDEO_INFO_PAR_D (video);
  GST_VIDEO_INFO_INTERLACE_MODE (rgb_info) = GST_VIDEO_INFO_INTERLACE_MODE (video);
  if (to_rgb) {
    rgb_info->colorimetry = video->colorimetry;
    if (GST_VIDEO_INFO_IS_YUV (video)) {
      /* RGB output: full range, same primaries/transfer, no matrix. */
      rgb_info->colorimetry.range = GST_VIDEO_COLOR_RANGE_0_255;
      rgb_info->colorimetry.matrix = GST_VIDEO_COLOR_MATRIX_RGB;
    }
  }
  conv->convert = gst_video_converter_new (to_rgb ? video : rgb_info,
      to_rgb ? rgb_info : video,
      gst_structure_new ("GstVideoConverter",
          GST_VIDEO_CONVERTER_OPT_DITHER_METHOD, GST_TYPE_VIDEO_DITHER_METHOD,
          GST_VIDEO_DITHER_NONE, GST_VIDEO_CONVERTER_OPT_THREADS, G_TYPE_UINT, 1,
          NULL));
  if (!conv->convert) {
    const char *name = gst_video_format_to_string (fmt);
    g_autofree char *what = to_rgb ? g_strdup_printf ("Cannot convert %s to RGB.", name)
                                   : g_strdup_printf ("Cannot convert RGB to %s.", name);
    if (caps)
      GST_ELEMENT_ERROR (base, CORE, NEGOTIATION, ("%s", what), ("%" GST_PTR_FORMAT, caps));
    else
      GST_ELEMENT_ERROR (base, CORE, NEGOTIATION, ("%s", what), (NULL));
    return FALSE;
  }
  conv->rgb = gst_vae_buffer_try_new (GST_VIDEO_INFO_SIZE (rgb_info),
                                      "the RGB conversion frame", &err);
  if (!conv->rgb) {
    gst_vae_post_no_memory (GST_ELEMENT (base), w, h, 1, err->message);
    g_clear_error (&err);
    gst_vae_rgb_conversion_clear (conv);
    return FALSE;
  }
  return TRUE;
}

static VaePrecision
precision_for_engine (GstVaePrecision p)
{
  switch (p) {
    case GST_VAE_PRECISION_F32: return VAE_PRECISION_F32;
    case GST_VAE_PRECISION_BF16: return VAE_PRECISION_BF16;
    case GST_VAE_PRECISION_F16: return VAE_PRECISION_F16;
    case GST_VAE_PRECISION_AUTO:
    default: return VAE_PRECISION_AUTO;
  }
}

/* Wipes and frees settings, which may hold a token. */
static void
free_settings (GPtrArray *settings)
{
  for (guint i = 0; i < settings->len; i++)
    if (settings->pdata[i])
      vae_clear_secret ((char **) &settings->pdata[i]);
  g_ptr_array_free (settings, TRUE);
}

/* TEXT ("key=value,...") with every token's value masked, for reading the
 * engine-options property back. */
static char *
engine_options_shown (const char *text)
{
  if (!text)
    return NULL;
  g_auto (GStrv) settings = vae_engine_settings_parse (text, NULL);
  if (!settings)
    return g_strdup ("(not key=value,...)");
  GString *t = g_string_new (NULL);
  for (guint i = 0; settings[i]; i++) {
    const char *eq = strchr (settings[i], '=');
    if (t->len)
      g_string_append_c (t, ',');
    g_string_append_len (t, settings[i], eq - settings[i] + 1);
    if (g_str_has_prefix (settings[i], "token="))
      g_string_append (t, "***");
    else
      for (const char *c = eq + 1; *c; c++) {
        if (*c == ',' || *c == '\\')
          g_string_append_c (t, '\\');
        g_string_append_c (t, *c);
      }
    memset (settings[i], 0, strlen (settings[i]));
  }
  return g_string_free (t, FALSE);
}

/* The remote engine's settings from the remote properties: only for
 * backend=remote (the other engines take none of them, and the elements
 * have always ignored them there). */
static void
add_remote_settings (GstVaeBasePrivate *priv, GPtrArray *settings)
{
  if (priv->endpoint && *priv->endpoint)
    g_ptr_array_add (settings, g_strconcat ("endpoint=", priv->endpoint, NULL));
  if (priv->token && *priv->token)
    g_ptr_array_add (settings, g_strconcat ("token=", priv->token, NULL));
  if (priv->timeout_set)
    g_ptr_array_add (settings, g_strdup_printf ("timeout-ms=%ld",
                                                MAX (lrint (priv->timeout * 1000.0), 1L)));
  if (priv->retries_set)
    g_ptr_array_add (settings, g_strdup_printf ("retries=%u", priv->retries));
}

void
gst_vae_base_add_engine_setting (GPtrArray *settings, const char *key, const char *value)
{
  g_ptr_array_add (settings, g_strconcat (key, "=", value, NULL));
}

gboolean
gst_vae_base_ensure_engine (GstVaeBase *base)
{
  GstVaeBasePrivate *priv = PRIV (base);
  VaeEngineOptions eo = VAE_ENGINE_OPTIONS_INIT;
  GPtrArray *settings = NULL;
  g_autofree char *engine_options = NULL;
  GstVaeBackend backend;
  GError *err = NULL;

  if (priv->engine)
    return TRUE;
  if (priv->engine_failed) {
    GST_DEBUG_OBJECT (base, "the engine failed to open before; not retrying");
    return FALSE;
  }
  if (!priv->model) {
    GST_ELEMENT_ERROR (base, RESOURCE, NOT_FOUND, ("No model is loaded."),
                       ("the element was not started with a model"));
    return FALSE;
  }
  settings = g_ptr_array_new ();
  GST_OBJECT_LOCK (base);
  backend = priv->backend;
  eo.threads = priv->threads;
  eo.device_id = priv->device_id;
  eo.max_inflight = (int) priv->max_inflight;
  eo.precision = precision_for_engine (priv->precision);
  if (backend == GST_VAE_BACKEND_REMOTE)
    add_remote_settings (priv, settings);
  engine_options = g_strdup (priv->engine_options);
  GST_OBJECT_UNLOCK (base);
  if (GST_VAE_BASE_GET_CLASS (base)->engine_settings)
    GST_VAE_BASE_GET_CLASS (base)->engine_settings (base, gst_vae_backend_nick (backend),
                                                    settings);
  /* engine-options last: they win over the properties. */
  char **extra = vae_engine_settings_parse (engine_options, &err);
  if (engine_options)
    memset (engine_options, 0, strlen (engine_options));
  if (!extra) {
    free_settings (settings);
    priv->engine_failed = TRUE;
    GST_ELEMENT_ERROR (base, RESOURCE, SETTINGS, ("Invalid engine-options."),
                       ("%s", err->message));
    g_clear_error (&err);
    return FALSE;
  }
  for (guint i = 0; extra[i]; i++)
    g_ptr_array_add (settings, extra[i]);
  g_free (extra);   /* the strings moved into SETTINGS */
  g_ptr_array_add (settings, NULL);
  eo.settings = (const char *const *) settings->pdata;
  priv->engine = vae_engine_new (gst_vae_backend_nick (backend), priv->model, &eo, &err);
  free_settings (settings);
  if (!priv->engine) {
    priv->engine_failed = TRUE;
    GST_ELEMENT_ERROR (base, RESOURCE, FAILED,
        ("Could not open the '%s' engine.", gst_vae_backend_nick (backend)),
        ("%s", err ? err->message : "unknown error"));
    g_clear_error (&err);
    return FALSE;
  }
  GST_INFO_OBJECT (base, "opened the '%s' engine for model '%s'",
                   vae_engine_name (priv->engine), priv->model->name);
  return TRUE;
}

static gboolean
load_model (GstVaeBase *self)
{
  GstVaeBasePrivate *priv = PRIV (self);
  g_autofree char *path = NULL;
  GError *err = NULL;

  GST_OBJECT_LOCK (self);
  path = g_strdup (priv->model_path);
  GST_OBJECT_UNLOCK (self);
  if (!path || !*path) {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND, ("No model given."),
        ("set the 'model' property to a diffusers folder, an LDM safetensors file "
         "or a TAESD file or folder"));
    return FALSE;
  }
  priv->model = vae_model_load (path, NULL, &err);
  if (!priv->model) {
    if (!g_file_test (path, G_FILE_TEST_EXISTS))
      GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
          ("Model '%s' not found.", path), ("%s", err ? err->message : path));
    else
      GST_ELEMENT_ERROR (self, RESOURCE, FAILED,
          ("Could not load model '%s'.", path), ("%s", err ? err->message : path));
    g_clear_error (&err);
    return FALSE;
  }
  GST_OBJECT_LOCK (self);
  GstVaeBackend backend = priv->backend;
  GST_OBJECT_UNLOCK (self);
  if (priv->model->config_only && backend != GST_VAE_BACKEND_REMOTE) {
    /* Say it now rather than when the engine opens at the first caps. */
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("Model '%s' is a preset: only backend=remote can use it.", path),
        ("a preset has the public model's channels and factors but no weights; "
         "backend '%s' needs a model folder or file", gst_vae_backend_nick (backend)));
    g_clear_pointer (&priv->model, vae_model_free);
    return FALSE;
  }
  GST_INFO_OBJECT (self, "loaded model '%s' (%s, %d latent channels, factor %d)",
                   priv->model->name, vae_family_name (priv->model->family),
                   priv->model->latent_channels, priv->model->spatial_factor);
  return TRUE;
}

static void
reset_stream (GstVaeBase *self)
{
  GstVaeBaseClass *klass = GST_VAE_BASE_GET_CLASS (self);
  if (klass->reset)
    klass->reset (self);
}

/* ---- pads ---- */

static guint
effective_batch_size (GstVaeBase *self)
{
  GstVaeBasePrivate *priv = PRIV (self);
  guint bs;
  GST_OBJECT_LOCK (self);
  bs = priv->batch_size_prop;
  GST_OBJECT_UNLOCK (self);
  if (bs == 0 && priv->engine)
    bs = (guint) MAX (vae_engine_preferred_batch (priv->engine), 1);
  return MAX (bs, 1);
}

/* tile-size / tile-overlap for a new frame geometry: whether batches run
 * in tiles.  FALSE with an element error for values the model refuses. */
static gboolean
configure_tiles (GstVaeBase *self, const GstVaeFrameGeometry *geom)
{
  GstVaeBasePrivate *priv = PRIV (self);
  VaeTileGrid grid;
  GError *err = NULL;
  guint tile, overlap;

  GST_OBJECT_LOCK (self);
  tile = priv->tile_size;
  overlap = priv->tile_overlap;
  GST_OBJECT_UNLOCK (self);
  if (!vae_tile_grid (priv->model, geom->direction, geom->h, geom->w, (int) tile,
                      (int) overlap, &grid, &err)) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS, ("Invalid tile-size or tile-overlap."),
                       ("%s", err->message));
    g_clear_error (&err);
    return FALSE;
  }
  priv->tile = (int) tile;
  priv->overlap = (int) overlap;
  priv->tiled = grid.tiles_y * grid.tiles_x > 1;
  if (priv->tiled)
    GST_INFO_OBJECT (self, "frames run in %dx%d tiles of %dx%d engine input",
                     grid.tiles_x, grid.tiles_y, grid.tile_w, grid.tile_h);
  return TRUE;
}

static gboolean
handle_caps (GstVaeBase *self, GstCaps *caps)
{
  GstVaeBasePrivate *priv = PRIV (self);
  GstVaeBaseClass *klass = GST_VAE_BASE_GET_CLASS (self);
  GstVaeFrameGeometry geom = { 0 };

  GST_DEBUG_OBJECT (self, "sink caps %" GST_PTR_FORMAT, caps);
  priv->configured = FALSE;
  priv->caps_failed = TRUE;
  if (g_atomic_int_compare_and_exchange (&priv->renegotiate, 1, 0))
    gst_clear_caps (&priv->failed_caps);
  if (priv->failed_caps && gst_caps_is_equal (caps, priv->failed_caps)) {
    GST_DEBUG_OBJECT (self, "these caps failed before, the error is posted already");
    return FALSE;
  }
  if (!priv->model) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("No model is loaded."),
                       ("caps arrived before the element was started"));
    goto failed;
  }
  if (!klass->set_caps (self, caps, &geom))
    goto failed;
  if (!gst_vae_base_ensure_engine (self))
    goto failed;
  if (!configure_tiles (self, &geom))
    goto failed;
  gst_clear_caps (&priv->failed_caps);
  priv->caps_failed = FALSE;
  priv->geom = geom;
  priv->batch_size = effective_batch_size (self);
  priv->configured = TRUE;
  /* Room for the batch being pushed and the next one, so that a batch can
   * be run while the one before is still going downstream. */
  g_mutex_lock (&priv->out_lock);
  priv->out_limit = 2 * priv->batch_size;
  g_mutex_unlock (&priv->out_lock);
  GST_OBJECT_LOCK (self);
  priv->lat_batch_size = priv->batch_size;
  priv->lat_fps_n = geom.fps_n;
  priv->lat_fps_d = geom.fps_d;
  GST_OBJECT_UNLOCK (self);
  GST_INFO_OBJECT (self, "batch size %u, engine input %dx%d", priv->batch_size, geom.w, geom.h);
  return TRUE;

failed:
  gst_caps_replace (&priv->failed_caps, caps);
  return FALSE;
}

static GstFlowReturn
gst_vae_base_chain (GstPad *pad, GstObject *parent, GstBuffer *buf)
{
  GstVaeBase *self = GST_VAE_BASE (parent);
  GstVaeBasePrivate *priv = PRIV (self);
  GstVaeBaseClass *klass = GST_VAE_BASE_GET_CLASS (self);
  GstFlowReturn ret = GST_FLOW_OK;
  guint timeout;
  /* Before the lock, which a batch run by the timer thread may hold: the
   * frame's batch-timeout counts from when it came. */
  gint64 arrival = g_get_monotonic_time ();

  if (g_atomic_int_get (&priv->flushing)) {
    gst_buffer_unref (buf);
    return GST_FLOW_FLUSHING;
  }
  g_mutex_lock (&priv->lock);
  if (g_atomic_int_get (&priv->flushing)) {
    ret = GST_FLOW_FLUSHING;
    goto out;
  }
  if (!priv->configured) {
    if (!priv->caps_failed)   /* else the caps error is already posted */
      GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, (NULL),
                         ("a buffer arrived before caps were negotiated"));
    ret = GST_FLOW_NOT_NEGOTIATED;
    goto out;
  }
  if (priv->timer_flow != GST_FLOW_OK) {
    ret = priv->timer_flow;
    priv->timer_flow = GST_FLOW_OK;
    goto out;
  }
  if ((ret = output_flow (self)) != GST_FLOW_OK)
    goto out;
  if (!priv->filling) {
    priv->filling = batch_new (&priv->geom, priv->batch_size);
    if (!priv->filling) {
      g_autofree char *size = vae_format_bytes ((guint64) (priv->geom.in_floats
          + priv->geom.out_floats) * priv->batch_size * sizeof (float));
      g_autofree char *detail = g_strdup_printf ("could not allocate a batch of %u frames "
                                                 "(%s of engine input and output)",
                                                 priv->batch_size, size);
      post_no_memory (self, priv->batch_size, detail);
      ret = GST_FLOW_ERROR;
      goto out;
    }
  }
  Batch *b = priv->filling;
  ret = klass->fill_slot (self, buf, b->in + priv->geom.in_floats * b->n);
  if (ret != GST_FLOW_OK)
    goto out;
  FrameMeta *m = &b->metas[b->n];
  m->pts = GST_BUFFER_PTS (buf);
  m->dts = GST_BUFFER_DTS (buf);
  m->duration = GST_BUFFER_DURATION (buf);
  m->offset = GST_BUFFER_OFFSET (buf);
  m->offset_end = GST_BUFFER_OFFSET_END (buf);
  m->flags = GST_BUFFER_FLAGS (buf) & ~(GST_BUFFER_FLAG_TAG_MEMORY
                                       | (GST_MINI_OBJECT_FLAG_LAST - 1));
  if (b->n++ == 0)
    priv->oldest_us = arrival;

  if (b->n >= b->capacity) {
    ret = run_pending (self, FALSE);
  } else {
    GST_OBJECT_LOCK (self);
    timeout = priv->batch_timeout;
    GST_OBJECT_UNLOCK (self);
    if (timeout > 0) {
      if (!priv->timer) {
        GError *err = NULL;
        priv->timer_stop = FALSE;
        priv->timer = g_thread_try_new ("vae-batch-timer", timer_thread, self, &err);
        if (!priv->timer) {
          GST_ELEMENT_ERROR (self, RESOURCE, FAILED, ("Could not start a thread."),
                             ("%s", err->message));
          g_clear_error (&err);
          ret = GST_FLOW_ERROR;
          goto out;
        }
      }
      g_cond_broadcast (&priv->cond);
    }
  }
out:
  g_mutex_unlock (&priv->lock);
  gst_buffer_unref (buf);
  return ret;
}

static gboolean
gst_vae_base_sink_event (GstPad *pad, GstObject *parent, GstEvent *event)
{
  GstVaeBase *self = GST_VAE_BASE (parent);
  GstVaeBasePrivate *priv = PRIV (self);
  gboolean res = TRUE;

  GST_LOG_OBJECT (self, "event %" GST_PTR_FORMAT, event);
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_FLUSH_START:
      g_atomic_int_set (&priv->flushing, 1);
      set_output_flushing (self, TRUE);
      res = gst_pad_push_event (priv->srcpad, event);
      /* Waits for the task's push in progress, which the flush ends. */
      gst_pad_pause_task (priv->srcpad);
      return res;
    case GST_EVENT_FLUSH_STOP:
      g_mutex_lock (&priv->lock);
      drop_pending (self);
      priv->timer_flow = GST_FLOW_OK;
      reset_stream (self);
      set_output_flushing (self, FALSE);
      g_atomic_int_set (&priv->flushing, 0);
      res = gst_pad_push_event (priv->srcpad, event);
      if (GST_PAD_MODE (priv->srcpad) == GST_PAD_MODE_PUSH)
        gst_pad_start_task (priv->srcpad, output_loop, self, NULL);
      g_mutex_unlock (&priv->lock);
      return res;
    case GST_EVENT_CAPS: {
      GstCaps *caps;
      gst_event_parse_caps (event, &caps);
      g_mutex_lock (&priv->lock);
      drain (self);
      wait_output (self);
      res = handle_caps (self, caps);
      g_mutex_unlock (&priv->lock);
      gst_event_unref (event);
      return res;
    }
    case GST_EVENT_STREAM_START:
      g_mutex_lock (&priv->lock);
      drain (self);
      wait_output (self);
      reset_stream (self);
      g_mutex_unlock (&priv->lock);
      break;
    case GST_EVENT_TAG:
      break;
    case GST_EVENT_EOS:
      g_mutex_lock (&priv->lock);
      drain (self);
      wait_output (self);
      g_mutex_unlock (&priv->lock);
      post_untold_flow (self);
      break;
    default:
      if (GST_EVENT_IS_SERIALIZED (event)) {
        g_mutex_lock (&priv->lock);
        drain (self);
        wait_output (self);
        g_mutex_unlock (&priv->lock);
      }
      break;
  }
  return gst_pad_event_default (pad, parent, event);
}

static gboolean
gst_vae_base_sink_query (GstPad *pad, GstObject *parent, GstQuery *query)
{
  GstVaeBase *self = GST_VAE_BASE (parent);
  GstVaeBasePrivate *priv = PRIV (self);

  switch (GST_QUERY_TYPE (query)) {
    case GST_QUERY_DRAIN:
      g_mutex_lock (&priv->lock);
      drain (self);
      wait_output (self);
      g_mutex_unlock (&priv->lock);
      return TRUE;
    case GST_QUERY_ALLOCATION: {
      GstCaps *caps = NULL;
      g_mutex_lock (&priv->lock);
      drain (self);
      g_mutex_unlock (&priv->lock);
      gst_query_parse_allocation (query, &caps, NULL);
      if (caps && gst_caps_get_size (caps) > 0
          && gst_structure_has_name (gst_caps_get_structure (caps, 0), "video/x-raw"))
        gst_query_add_allocation_meta (query, GST_VIDEO_META_API_TYPE, NULL);
      return TRUE;
    }
    default:
      return gst_pad_query_default (pad, parent, query);
  }
}

static gboolean
gst_vae_base_src_event (GstPad *pad, GstObject *parent, GstEvent *event)
{
  /* Downstream changed: caps refused before may be taken now. */
  if (GST_EVENT_TYPE (event) == GST_EVENT_RECONFIGURE)
    g_atomic_int_set (&PRIV (parent)->renegotiate, 1);
  return gst_pad_event_default (pad, parent, event);
}

static gboolean
gst_vae_base_src_query (GstPad *pad, GstObject *parent, GstQuery *query)
{
  GstVaeBase *self = GST_VAE_BASE (parent);
  GstVaeBasePrivate *priv = PRIV (self);

  switch (GST_QUERY_TYPE (query)) {
    case GST_QUERY_LATENCY: {
      gboolean live;
      GstClockTime min, max, acc, p95, proc, lat;

      if (!gst_pad_peer_query (priv->sinkpad, query))
        return FALSE;
      gst_query_parse_latency (query, &live, &min, &max);
      GST_OBJECT_LOCK (self);
      acc = accumulation_locked (priv);
      p95 = processing_p95_locked (priv);
      /* Headroom over the percentile, for the batches slower than it, and
       * so that the next small change does not ask the whole pipeline
       * for a new latency (latency_grew_locked compares without it). */
      proc = p95 ? p95 + MAX (p95 / 4, GST_MSECOND) : 0;
      lat = own_latency (acc, proc);
      priv->lat_reported = lat;
      priv->lat_posted = FALSE;
      GST_OBJECT_UNLOCK (self);
      GST_DEBUG_OBJECT (self, "latency: batching %" GST_TIME_FORMAT ", processing %"
                        GST_TIME_FORMAT " (95th percentile %" GST_TIME_FORMAT ")",
                        GST_TIME_ARGS (acc), GST_TIME_ARGS (proc), GST_TIME_ARGS (p95));
      min += lat;
      if (GST_CLOCK_TIME_IS_VALID (max))
        max += lat;
      gst_query_set_latency (query, live, min, max);
      return TRUE;
    }
    default:
      return gst_pad_query_default (pad, parent, query);
  }
}

/* ---- state ---- */

static void
stop_stream (GstVaeBase *self)
{
  GstVaeBasePrivate *priv = PRIV (self);
  GstVaeBaseClass *klass = GST_VAE_BASE_GET_CLASS (self);

  stop_timer (self);
  g_mutex_lock (&priv->lock);
  if (priv->engine)
    drop_pending (self);
  else
    g_clear_pointer (&priv->filling, batch_free);
  g_clear_pointer (&priv->engine, vae_engine_free);
  g_clear_pointer (&priv->model, vae_model_free);
  priv->configured = FALSE;
  GST_OBJECT_LOCK (self);
  priv->lat_batch_size = 0;
  priv->lat_fps_n = 0;
  priv->proc_n = priv->proc_next = 0;
  priv->lat_reported = GST_CLOCK_TIME_NONE;
  priv->lat_posted = FALSE;
  GST_OBJECT_UNLOCK (self);
  set_output_flushing (self, TRUE);
  priv->timer_flow = GST_FLOW_OK;
  if (klass->stop)
    klass->stop (self);
  g_mutex_unlock (&priv->lock);
}

static void
set_started (GstVaeBase *self, gboolean started)
{
  GST_OBJECT_LOCK (self);
  PRIV (self)->started = started;
  GST_OBJECT_UNLOCK (self);
}

static GstStateChangeReturn
gst_vae_base_change_state (GstElement *element, GstStateChange transition)
{
  GstVaeBase *self = GST_VAE_BASE (element);
  GstVaeBasePrivate *priv = PRIV (self);
  GstStateChangeReturn ret;

  switch (transition) {
    case GST_STATE_CHANGE_READY_TO_PAUSED:
      /* Before anything reads the properties. */
      set_started (self, TRUE);
      g_mutex_lock (&priv->lock);
      g_atomic_int_set (&priv->flushing, 0);
      priv->timer_flow = GST_FLOW_OK;
      priv->configured = FALSE;
      priv->caps_failed = FALSE;
      /* A restart tries again what failed (settings may have changed). */
      priv->engine_failed = FALSE;
      gst_clear_caps (&priv->failed_caps);
      g_atomic_int_set (&priv->renegotiate, 0);
      gboolean ok = load_model (self);
      if (ok)
        reset_stream (self);
      g_mutex_unlock (&priv->lock);
      if (!ok) {
        set_started (self, FALSE);
        return GST_STATE_CHANGE_FAILURE;
      }
      break;
    case GST_STATE_CHANGE_PAUSED_TO_READY:
      /* Wakes a producer waiting for room in the output queue, and the
       * task, before the pads are deactivated (which waits for both). */
      g_atomic_int_set (&priv->flushing, 1);
      set_output_flushing (self, TRUE);
      break;
    default:
      break;
  }
  ret = GST_ELEMENT_CLASS (gst_vae_base_parent_class)->change_state (element, transition);
  switch (transition) {
    case GST_STATE_CHANGE_PAUSED_TO_READY:
      stop_stream (self);
      set_started (self, FALSE);
      break;
    case GST_STATE_CHANGE_READY_TO_PAUSED:
      if (ret == GST_STATE_CHANGE_FAILURE) {
        stop_stream (self);
        set_started (self, FALSE);
      }
      break;
    default:
      break;
  }
  return ret;
}

/* ---- GObject ---- */

gboolean
gst_vae_base_change_refused (GstVaeBase *base, GParamSpec *pspec)
{
  return PRIV (base)->started && !(pspec->flags & GST_PARAM_MUTABLE_PLAYING);
}

void
gst_vae_base_warn_refused_change (GstVaeBase *base, GParamSpec *pspec)
{
  GST_ELEMENT_WARNING (base, RESOURCE, SETTINGS,
      ("The '%s' property cannot change while the element runs: it keeps the "
       "value in use.", pspec->name),
      ("'%s' can change only in the NULL or READY state", pspec->name));
}

static void
gst_vae_base_set_property (GObject *object, guint prop_id, const GValue *value,
                           GParamSpec *pspec)
{
  GstVaeBasePrivate *priv = PRIV (object);
  gboolean post = FALSE;

  GST_OBJECT_LOCK (object);
  if (gst_vae_base_change_refused (GST_VAE_BASE (object), pspec)) {
    GST_OBJECT_UNLOCK (object);
    gst_vae_base_warn_refused_change (GST_VAE_BASE (object), pspec);
    return;
  }
  switch (prop_id) {
    case PROP_BACKEND: priv->backend = g_value_get_enum (value); break;
    case PROP_MODEL:
      g_free (priv->model_path);
      priv->model_path = g_value_dup_string (value);
      break;
    case PROP_BATCH_SIZE: priv->batch_size_prop = g_value_get_uint (value); break;
    case PROP_BATCH_TIMEOUT:
      priv->batch_timeout = g_value_get_uint (value);
      post = latency_grew_locked (priv);   /* frames may now wait longer */
      break;
    case PROP_MAX_INFLIGHT: priv->max_inflight = g_value_get_uint (value); break;
    case PROP_THREADS: priv->threads = g_value_get_int (value); break;
    case PROP_DEVICE_ID: priv->device_id = g_value_get_int (value); break;
    case PROP_ENDPOINT:
      g_free (priv->endpoint);
      priv->endpoint = g_value_dup_string (value);
      break;
    case PROP_SCALING_FACTOR: priv->scaling_factor = g_value_get_double (value); break;
    case PROP_SHIFT_FACTOR: priv->shift_factor = g_value_get_double (value); break;
    case PROP_TILE_SIZE: priv->tile_size = g_value_get_uint (value); break;
    case PROP_TILE_OVERLAP: priv->tile_overlap = g_value_get_uint (value); break;
    case PROP_TOKEN:
      vae_clear_secret (&priv->token);
      priv->token = g_value_dup_string (value);
      break;
    case PROP_TIMEOUT:
      priv->timeout = g_value_get_double (value);
      priv->timeout_set = TRUE;
      break;
    case PROP_RETRIES:
      priv->retries = g_value_get_uint (value);
      priv->retries_set = TRUE;
      break;
    case PROP_PRECISION: priv->precision = g_value_get_enum (value); break;
    case PROP_ENGINE_OPTIONS:
      vae_clear_secret (&priv->engine_options);
      priv->engine_options = g_value_dup_string (value);
      break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec); break;
  }
  GST_OBJECT_UNLOCK (object);
  if (post)
    post_latency (GST_VAE_BASE (object));
}

static void
gst_vae_base_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  GstVaeBasePrivate *priv = PRIV (object);

  GST_OBJECT_LOCK (object);
  switch (prop_id) {
    case PROP_BACKEND: g_value_set_enum (value, priv->backend); break;
    case PROP_MODEL: g_value_set_string (value, priv->model_path); break;
    case PROP_BATCH_SIZE: g_value_set_uint (value, priv->batch_size_prop); break;
    case PROP_BATCH_TIMEOUT: g_value_set_uint (value, priv->batch_timeout); break;
    case PROP_MAX_INFLIGHT: g_value_set_uint (value, priv->max_inflight); break;
    case PROP_THREADS: g_value_set_int (value, priv->threads); break;
    case PROP_DEVICE_ID: g_value_set_int (value, priv->device_id); break;
    case PROP_ENDPOINT: g_value_set_string (value, priv->endpoint); break;
    case PROP_SCALING_FACTOR: g_value_set_double (value, priv->scaling_factor); break;
    case PROP_SHIFT_FACTOR: g_value_set_double (value, priv->shift_factor); break;
    case PROP_TILE_SIZE: g_value_set_uint (value, priv->tile_size); break;
    case PROP_TILE_OVERLAP: g_value_set_uint (value, priv->tile_overlap); break;
    case PROP_TIMEOUT: g_value_set_double (value, priv->timeout); break;
    case PROP_RETRIES: g_value_set_uint (value, priv->retries); break;
    case PROP_PRECISION: g_value_set_enum (value, priv->precision); break;
    case PROP_ENGINE_OPTIONS:
      g_value_take_string (value, engine_options_shown (priv->engine_options));
      break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec); break;
  }
  GST_OBJECT_UNLOCK (object);
}

static void
gst_vae_base_finalize (GObject *object)
{
  GstVaeBasePrivate *priv = PRIV (object);

  stop_timer (GST_VAE_BASE (object));
  g_clear_pointer (&priv->filling, batch_free);
  g_clear_pointer (&priv->engine, vae_engine_free);
  g_clear_pointer (&priv->model, vae_model_free);
  gst_clear_caps (&priv->failed_caps);
  g_queue_clear_full (&priv->out_queue, (GDestroyNotify) gst_buffer_unref);
  g_mutex_clear (&priv->out_lock);
  g_cond_clear (&priv->out_cond);
  g_free (priv->model_path);
  g_free (priv->endpoint);
  vae_clear_secret (&priv->token);
  vae_clear_secret (&priv->engine_options);
  g_mutex_clear (&priv->lock);
  g_cond_clear (&priv->cond);
  G_OBJECT_CLASS (gst_vae_base_parent_class)->finalize (object);
}

static void
gst_vae_base_constructed (GObject *object)
{
  GstVaeBase *self = GST_VAE_BASE (object);
  GstVaeBasePrivate *priv = PRIV (self);
  GstElementClass *eclass = GST_ELEMENT_GET_CLASS (self);
  GstPadTemplate *t;

  G_OBJECT_CLASS (gst_vae_base_parent_class)->constructed (object);

  t = gst_element_class_get_pad_template (eclass, "sink");
  g_return_if_fail (t != NULL);
  priv->sinkpad = gst_pad_new_from_template (t, "sink");
  gst_pad_set_chain_function (priv->sinkpad, gst_vae_base_chain);
  gst_pad_set_event_function (priv->sinkpad, gst_vae_base_sink_event);
  gst_pad_set_query_function (priv->sinkpad, gst_vae_base_sink_query);
  gst_element_add_pad (GST_ELEMENT (self), priv->sinkpad);

  t = gst_element_class_get_pad_template (eclass, "src");
  g_return_if_fail (t != NULL);
  priv->srcpad = gst_pad_new_from_template (t, "src");
  gst_pad_set_query_function (priv->srcpad, gst_vae_base_src_query);
  gst_pad_set_event_function (priv->srcpad, gst_vae_base_src_event);
  gst_pad_set_activatemode_function (priv->srcpad, gst_vae_base_src_activate_mode);
  gst_pad_use_fixed_caps (priv->srcpad);
  gst_element_add_pad (GST_ELEMENT (self), priv->srcpad);
}

static void
gst_vae_base_init (GstVaeBase *self)
{
  GstVaeBasePrivate *priv = PRIV (self);

  g_mutex_init (&priv->lock);
  g_cond_init (&priv->cond);
  g_queue_init (&priv->inflight);
  g_mutex_init (&priv->out_lock);
  g_cond_init (&priv->out_cond);
  g_queue_init (&priv->out_queue);
  priv->out_limit = 2;
  priv->out_flushing = TRUE;
  priv->out_flow = GST_FLOW_OK;
  priv->lat_reported = GST_CLOCK_TIME_NONE;
  priv->backend = DEFAULT_BACKEND;
  priv->model_path = g_strdup (DEFAULT_MODEL);
  priv->batch_size_prop = DEFAULT_BATCH_SIZE;
  priv->batch_timeout = DEFAULT_BATCH_TIMEOUT;
  priv->max_inflight = DEFAULT_MAX_INFLIGHT;
  priv->threads = DEFAULT_THREADS;
  priv->device_id = DEFAULT_DEVICE_ID;
  priv->endpoint = g_strdup (DEFAULT_ENDPOINT);
  priv->scaling_factor = DEFAULT_SCALING_FACTOR;
  priv->shift_factor = DEFAULT_SHIFT_FACTOR;
  priv->tile_size = DEFAULT_TILE_SIZE;
  priv->tile_overlap = DEFAULT_TILE_OVERLAP;
  priv->timeout = DEFAULT_TIMEOUT;
  priv->retries = DEFAULT_RETRIES;
  priv->precision = DEFAULT_PRECISION;
  priv->timer_flow = GST_FLOW_OK;
}

static void
gst_vae_base_class_init (GstVaeBaseClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
  GParamSpec *shift;

  GST_DEBUG_CATEGORY_INIT (gst_vae_base_debug, "vaebase", 0, "VAE element base");

  gobject_class->constructed = gst_vae_base_constructed;
  gobject_class->set_property = gst_vae_base_set_property;
  gobject_class->get_property = gst_vae_base_get_property;
  gobject_class->finalize = gst_vae_base_finalize;
  element_class->change_state = GST_DEBUG_FUNCPTR (gst_vae_base_change_state);

  g_object_class_install_property (gobject_class, PROP_BACKEND,
      g_param_spec_enum ("backend", "Backend",
          "Engine that runs the model: auto picks cuda when usable, else cpu",
          GST_TYPE_VAE_BACKEND, DEFAULT_BACKEND, rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_MODEL,
      g_param_spec_string ("model", "Model",
          "Model path: a diffusers folder, a single LDM safetensors file, or a TAESD "
          "file or folder (loaded when the element starts); with backend=remote also "
          "a preset: sd, sdxl, sd3 or flux (the public models' channels and factors)",
          DEFAULT_MODEL, rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_BATCH_SIZE,
      g_param_spec_uint ("batch-size", "Batch size",
          "Frames per engine run (0 = what the engine prefers); every frame still "
          "gives its own output buffer", 0, 4096, DEFAULT_BATCH_SIZE,
          rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_BATCH_TIMEOUT,
      g_param_spec_uint ("batch-timeout", "Batch timeout",
          "Milliseconds after the oldest pending frame when a partial batch is run "
          "anyway (0 = wait for a full batch); use with live sources",
          0, G_MAXUINT / 1000, DEFAULT_BATCH_TIMEOUT, rw | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_MAX_INFLIGHT,
      g_param_spec_uint ("max-inflight", "Max in flight",
          "Batches submitted to the engine before the oldest is waited for "
          "(asynchronous engines: cuda, remote)", 1, 64, DEFAULT_MAX_INFLIGHT,
          rw | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_THREADS,
      g_param_spec_int ("threads", "Threads",
          "CPU threads of the engine (0 = the engine's default)", 0, 1024,
          DEFAULT_THREADS, rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_DEVICE_ID,
      g_param_spec_int ("device-id", "Device ID", "GPU index for GPU engines", 0, 1024,
          DEFAULT_DEVICE_ID, rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_ENDPOINT,
      g_param_spec_string ("endpoint", "Endpoint",
          "Server URL for the remote backend", DEFAULT_ENDPOINT,
          rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_SCALING_FACTOR,
      g_param_spec_double ("scaling-factor", "Scaling factor",
          "Latent scaling factor: diffusion = (mean - shift) * scaling "
          "(negative = from the model, or on vaedecode from the caps, then the model)",
          -G_MAXDOUBLE, G_MAXDOUBLE, DEFAULT_SCALING_FACTOR, rw | GST_PARAM_MUTABLE_READY));
  /* NaN cannot pass g_param_spec_double's range check; set it afterwards. */
  shift = g_param_spec_double ("shift-factor", "Shift factor",
      "Latent shift factor (NaN = from the model, or on vaedecode from the caps, "
      "then the model)", -G_MAXDOUBLE, G_MAXDOUBLE, 0.0, rw | GST_PARAM_MUTABLE_READY);
  G_PARAM_SPEC_DOUBLE (shift)->default_value = DEFAULT_SHIFT_FACTOR;
  g_object_class_install_property (gobject_class, PROP_SHIFT_FACTOR, shift);
  g_object_class_install_property (gobject_class, PROP_TILE_SIZE,
      g_param_spec_uint ("tile-size", "Tile size",
          "Run frames larger than this many pixels (either side) in overlapping "
          "tiles of this size, blended (0 = never tile); a multiple of the model's "
          "spatial factor.  Bounds memory for large frames; models with GroupNorm "
          "(AutoencoderKL, TAEF2) normalise each tile on its own, so tiled output "
          "differs from untiled: use tiles as large as memory allows",
          0, 65536, DEFAULT_TILE_SIZE, rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_TILE_OVERLAP,
      g_param_spec_uint ("tile-overlap", "Tile overlap",
          "Least overlap of neighbouring tiles in pixels, blended linearly (used "
          "with tile-size; a multiple of the spatial factor, smaller than tile-size)",
          0, 65536, DEFAULT_TILE_OVERLAP, rw | GST_PARAM_MUTABLE_READY));
  /* Write-only: a token must not be readable, printed or logged. */
  g_object_class_install_property (gobject_class, PROP_TOKEN,
      g_param_spec_string ("token", "Token",
          "Bearer token for the remote backend (Authorization: Bearer ...); "
          "unset: the HF_TOKEN environment variable.  Write-only",
          NULL, G_PARAM_WRITABLE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_TIMEOUT,
      g_param_spec_double ("timeout", "Timeout",
          "Seconds a remote request may take before it is retried or fails "
          "(unset: VAE_REMOTE_TIMEOUT_MS from the environment when given)",
          0.001, 3600.0, DEFAULT_TIMEOUT, rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_RETRIES,
      g_param_spec_uint ("retries", "Retries",
          "Retries of a remote request after connection errors, timeouts, 429, 502, "
          "503 and 504, with exponential backoff (unset: VAE_REMOTE_RETRIES from the "
          "environment when given)", 0, 100, DEFAULT_RETRIES,
          rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_PRECISION,
      g_param_spec_enum ("precision", "Precision",
          "Activation precision of the engine (engines refuse what they cannot do; "
          "the remote backend leaves it to the server)",
          GST_TYPE_VAE_PRECISION, DEFAULT_PRECISION, rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_ENGINE_OPTIONS,
      g_param_spec_string ("engine-options", "Engine options",
          "The engine's own settings, \"key=value,key=value\" (\\\\, for a comma in a "
          "value); they win over the properties that map onto them (endpoint, token, "
          "timeout, retries, remote-input for backend=remote).  An engine refuses keys "
          "it does not take; docs/engine-settings.md lists them.  A token reads back "
          "as ***", NULL, rw | GST_PARAM_MUTABLE_READY));

  gst_type_mark_as_plugin_api (GST_TYPE_VAE_BASE, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_VAE_BACKEND, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_VAE_PRECISION, 0);
}
