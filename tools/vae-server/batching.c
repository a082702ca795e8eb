/* vae-server: the worker thread and request merging.
 *
 * Why a file of its own: one thread owns the engine; requests of the same
 * direction and frame size that arrive within GATHER_USEC of each other
 * are merged into one engine batch (up to --max-batch frames), others are
 * set aside for the next batch, and each job's share of the output is
 * handed back to the main thread.  HTTP and the protocol stay outside. */
#include "vae-server.h"

gsize
frame_in_size (Server *s, const Job *j)
{
  const VaeModel *m = s->model;
  return j->direction == VAE_DIRECTION_ENCODE
             ? (gsize) m->image_channels * j->h * j->w
             : (gsize) m->latent_channels * j->h * j->w;
}

gsize
frame_out_size (Server *s, const Job *j)
{
  const VaeModel *m = s->model;
  const int f = m->spatial_factor;
  const int c = vae_engine_output_channels (m, j->direction);
  return j->direction == VAE_DIRECTION_ENCODE ? (gsize) c * (j->h / f) * (j->w / f)
                                              : (gsize) c * (j->h * f) * (j->w * f);
}

static gboolean
compatible (const Job *a, const Job *b)
{
  return a->direction == b->direction && a->h == b->h && a->w == b->w;
}

/* The engine's input for JOBS (N frames of FI floats): the single job's own
 * buffer, or the jobs' inputs one after the other in a new one; NULL with
 * ERROR set when that does not fit in memory. */
static float *
batch_input (GPtrArray *jobs, gsize fi, int n, GError **error)
{
  if (jobs->len == 1)
    return ((Job *) jobs->pdata[0])->input;
  float *in = vae_try_alloc0 (n, fi * sizeof (float), "the engine's input batch", error);
  if (!in)
    return NULL;
  gsize off = 0;
  for (guint i = 0; i < jobs->len; i++) {
    Job *j = jobs->pdata[i];
    memcpy (in + off, j->input, fi * j->n * sizeof (float));
    off += fi * j->n;
  }
  return in;
}

/* JOB's frames of the batch output *OUT from float OFF on: all of *OUT
 * when JOB is alone in the batch (taken over, *OUT set to NULL), else a
 * copy.  FALSE with ERROR set when the copy does not fit in memory. */
static gboolean
job_take_output (Job *j, float **out, gsize fo, gsize off, gboolean alone, GError **error)
{
  if (alone) {
    j->output = g_steal_pointer (out);
    return TRUE;
  }
  j->output = vae_try_alloc0 (j->n, fo * sizeof (float), "a reply's share of the batch",
                              error);
  if (!j->output)
    return FALSE;
  memcpy (j->output, *out + off, fo * j->n * sizeof (float));
  return TRUE;
}

static void
run_batch (Server *s, GPtrArray *jobs)
{
  Job *first = jobs->pdata[0];
  int n = 0;
  for (guint i = 0; i < jobs->len; i++)
    n += ((Job *) jobs->pdata[i])->n;
  const gsize fi = frame_in_size (s, first), fo = frame_out_size (s, first);
  const gboolean single = jobs->len == 1;
  g_autoptr (GError) error = NULL;
  const char *prefix = "";     /* before the message of a failure */
  float *out = NULL;
  float *in = batch_input (jobs, fi, n, &error);
  if (in)
    out = vae_try_alloc0 (n, fo * sizeof (float), "the engine's output batch", &error);
  if (out) {
    VaeBatch batch = { first->direction, n, first->h, first->w, in, out, NULL, NULL };
    gint64 t0 = g_get_monotonic_time ();
    vae_engine_run (s->engine, &batch, &error);
    record_batch (s, first->direction, n, g_get_monotonic_time () - t0, error == NULL);
    prefix = "engine failed: ";
  }
  gsize off = 0;
  for (guint i = 0; i < jobs->len; i++) {
    Job *j = jobs->pdata[i];
    g_autoptr (GError) copy_error = NULL;
    if (error)
      job_set_error (j, error, prefix);
    else if (!job_take_output (j, &out, fo, off, single, &copy_error))
      job_set_error (j, copy_error, "");
    else
      job_build_reply (s, j);
    off += fo * j->n;
    g_main_context_invoke (NULL, job_finish_idle, j);
  }
  if (!single)
    vae_free (in);
  vae_free (out);
}

gpointer
worker_main (gpointer data)
{
  Server *s = data;
  GQueue pending = G_QUEUE_INIT;   /* jobs set aside: another size/direction */
  for (;;) {
    g_mutex_lock (&s->lock);
    while (!pending.length && !s->queue.length && !s->stopping)
      g_cond_wait (&s->cond, &s->lock);
    if (!pending.length && !s->queue.length && s->stopping) {
      g_mutex_unlock (&s->lock);
      break;
    }
    GPtrArray *jobs = g_ptr_array_new ();
    Job *first = pending.length ? g_queue_pop_head (&pending) : g_queue_pop_head (&s->queue);
    g_ptr_array_add (jobs, first);
    int frames = first->n;
    /* Compatible jobs already set aside. */
    for (GList *l = pending.head; l && frames < s->max_batch;) {
      GList *next = l->next;
      Job *j = l->data;
      if (compatible (first, j) && frames + j->n <= s->max_batch) {
        g_ptr_array_add (jobs, j);
        frames += j->n;
        g_queue_delete_link (&pending, l);
      }
      l = next;
    }
    /* Then whatever arrives within the gather window. */
    const gint64 deadline = g_get_monotonic_time () + GATHER_USEC;
    while (frames < s->max_batch) {
      if (!s->queue.length) {
        if (s->stopping || !g_cond_wait_until (&s->cond, &s->lock, deadline))
          if (!s->queue.length)
            break;
        continue;
      }
      Job *j = g_queue_pop_head (&s->queue);
      if (compatible (first, j) && frames + j->n <= s->max_batch) {
        g_ptr_array_add (jobs, j);
        frames += j->n;
      } else {
        g_queue_push_tail (&pending, j);
      }
    }
    g_mutex_unlock (&s->lock);
    run_batch (s, jobs);
    g_ptr_array_unref (jobs);
  }
  return NULL;
}
