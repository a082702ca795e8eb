/* vae-server: the Hybrid Inference VAE protocol over HTTP (libsoup 3).
 *
 * Routes: POST /encode (PNG or JPEG body, or a raw tensor), POST /decode
 * (tensor, PNG or JPEG reply), GET / and GET /health ("Ok"),
 * GET /metrics (Prometheus text).  See
 * ../shared/docs/hybrid-inference-protocol.md for the wire format.
 *
 * Threads: the main thread runs libsoup (parsing, validation, conversion
 * to the engine's float input, replies); one worker thread owns the engine.
 * Requests of the same direction and frame size that arrive within a few
 * milliseconds of each other are merged into one engine batch (up to
 * --max-batch frames).  Messages are paused while queued and unpaused from
 * an idle callback on the main context once their reply is ready.
 *
 * Limits: a frame over --max-pixels is refused (413) from the image header
 * or the tensor's shape before anything of its size is allocated; every
 * buffer whose size follows from a request is allocated fallibly
 * (vae_try_alloc0), and a failure, here or in the engine, is a 503 that
 * leaves the server running.  Connections are followed by the server itself
 * (see "connections" below): idle ones are closed after --idle-timeout,
 * stalled requests cut after --read-timeout. */
#include "engine.h"
#include "codec.h"
#include "model.h"
#include "safetensors.h"
#include "vae-error.h"
#include "jpeg-memory.h"
#include "png-memory.h"
#include "wire-protocol.h"

#include <libsoup/soup.h>
#include <json-glib/json-glib.h>
#include <glib-unix.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_SIDE 8192
#define MAX_FRAMES 1024
#define GATHER_USEC 3000

typedef struct _Server Server;

typedef enum {
  OUT_TENSOR_F32, OUT_TENSOR_F16, OUT_TENSOR_BF16, OUT_U8_NHWC, OUT_PNG, OUT_JPEG
} OutKind;

typedef struct {
  Server *server;
  SoupServerMessage *msg;     /* owned ref */
  const char *route;
  gint64 start_us;
  VaeDirection direction;
  int n, h, w;                /* engine input frames and spatial size */
  float *input;               /* engine input, n frames */
  float *output;              /* engine output, n frames */
  /* encode: latent factors; decode: reply kind */
  double scaling, shift;
  OutKind out;
  /* reply, filled by the worker */
  guint status;
  char *error;
  GBytes *body;
  const char *content_type;
  char *shape_header;
  const char *dtype_header;
  gboolean replied, gone;     /* main thread only */
} Job;

struct _Server {
  VaeModel *model;
  VaeEngine *engine;
  SoupServer *soup;
  GMainLoop *loop;
  char *token;
  int max_batch;
  gint64 max_body;
  int max_queue;
  gint64 max_pixels;          /* per frame */
  gint64 read_timeout_us, idle_timeout_us;
  GHashTable *conns;          /* GSocket* -> Conn*, main thread only */

  GMutex lock;                /* guards the fields below */
  GCond cond;
  GQueue queue;               /* Job*, waiting for the worker */
  gboolean stopping;          /* worker exits when the queue is empty */
  int in_flight;              /* paused messages not yet finished */
  gboolean draining;          /* SIGTERM seen */

  /* metrics */
  GHashTable *requests;       /* "route\tstatus" -> guint64* */
  guint64 frames_encode, frames_decode;
  guint64 batches, batch_frames_sum;
  guint64 batch_hist[8];      /* <=1,2,4,8,16,32,64,+Inf */
  guint64 errors;
  double latency_sum;
  guint64 latency_count;
  double engine_seconds;

  GThread *worker;
};

static const int hist_bounds[7] = { 1, 2, 4, 8, 16, 32, 64 };

/* ---- metrics ---- */

static void
record_request (Server *s, const char *route, guint status, gint64 start_us)
{
  char key[64];
  g_snprintf (key, sizeof key, "%s\t%u", route, status);
  g_mutex_lock (&s->lock);
  guint64 *v = g_hash_table_lookup (s->requests, key);
  if (!v) {
    v = g_new0 (guint64, 1);
    g_hash_table_insert (s->requests, g_strdup (key), v);
  }
  (*v)++;
  if (status >= 400)
    s->errors++;
  if (start_us > 0) {
    s->latency_sum += (g_get_monotonic_time () - start_us) / 1e6;
    s->latency_count++;
  }
  g_mutex_unlock (&s->lock);
}

static char *
metrics_text (Server *s)
{
  GString *t = g_string_new (NULL);
  g_mutex_lock (&s->lock);
  g_string_append (t, "# HELP vae_requests_total HTTP requests by route and status.\n"
                      "# TYPE vae_requests_total counter\n");
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init (&it, s->requests);
  while (g_hash_table_iter_next (&it, &k, &v)) {
    const char *tab = strchr (k, '\t');
    g_string_append_printf (t, "vae_requests_total{route=\"%.*s\",status=\"%s\"} %"
                            G_GUINT64_FORMAT "\n", (int) (tab - (const char *) k),
                            (const char *) k, tab + 1, *(guint64 *) v);
  }
  g_string_append_printf (t,
      "# HELP vae_frames_total Frames run through the engine.\n"
      "# TYPE vae_frames_total counter\n"
      "vae_frames_total{direction=\"encode\"} %" G_GUINT64_FORMAT "\n"
      "vae_frames_total{direction=\"decode\"} %" G_GUINT64_FORMAT "\n",
      s->frames_encode, s->frames_decode);
  g_string_append (t, "# HELP vae_batch_size Frames per engine batch.\n"
                      "# TYPE vae_batch_size histogram\n");
  guint64 cum = 0;
  for (int i = 0; i < 7; i++) {
    cum += s->batch_hist[i];
    g_string_append_printf (t, "vae_batch_size_bucket{le=\"%d\"} %" G_GUINT64_FORMAT "\n",
                            hist_bounds[i], cum);
  }
  cum += s->batch_hist[7];
  g_string_append_printf (t, "vae_batch_size_bucket{le=\"+Inf\"} %" G_GUINT64_FORMAT "\n"
      "vae_batch_size_sum %" G_GUINT64_FORMAT "\n"
      "vae_batch_size_count %" G_GUINT64_FORMAT "\n", cum, s->batch_frames_sum, s->batches);
  g_string_append_printf (t,
      "# HELP vae_errors_total Requests answered with a 4xx or 5xx status.\n"
      "# TYPE vae_errors_total counter\n"
      "vae_errors_total %" G_GUINT64_FORMAT "\n"
      "# HELP vae_request_duration_seconds Time from request to reply.\n"
      "# TYPE vae_request_duration_seconds summary\n"
      "vae_request_duration_seconds_sum %.6f\n"
      "vae_request_duration_seconds_count %" G_GUINT64_FORMAT "\n"
      "# HELP vae_engine_seconds_total Time spent in the engine.\n"
      "# TYPE vae_engine_seconds_total counter\n"
      "vae_engine_seconds_total %.6f\n"
      "# HELP vae_queue_depth Requests waiting for the engine.\n"
      "# TYPE vae_queue_depth gauge\n"
      "vae_queue_depth %u\n"
      "# HELP vae_in_flight Requests accepted and not yet answered.\n"
      "# TYPE vae_in_flight gauge\n"
      "vae_in_flight %d\n"
      "# HELP vae_open_connections Client connections open.\n"
      "# TYPE vae_open_connections gauge\n"
      "vae_open_connections %u\n",
      s->errors, s->latency_sum, s->latency_count, s->engine_seconds,
      s->queue.length, s->in_flight, g_hash_table_size (s->conns));
  g_mutex_unlock (&s->lock);
  return g_string_free (t, FALSE);
}

/* ---- replies (main thread) ---- */

static void
reply_bytes (SoupServerMessage *msg, guint status, const char *content_type,
             const void *data, gsize len)
{
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, content_type, SOUP_MEMORY_COPY, data, len);
}

static void
reply_error (Server *s, SoupServerMessage *msg, const char *route, gint64 start_us,
             guint status, const char *message)
{
  gsize len;
  g_autofree char *text = vae_wire_error_json (message, &len);
  reply_bytes (msg, status, VAE_WIRE_CONTENT_TYPE_JSON, text, len);
  record_request (s, route, status, start_us);
}

/* ---- tensors ---- */

/* The wire dtype of a float tensor reply. */
static VaeWireDtype
out_dtype (OutKind out)
{
  return out == OUT_TENSOR_F16 ? VAE_WIRE_F16 : out == OUT_TENSOR_BF16 ? VAE_WIRE_BF16
                                                                       : VAE_WIRE_F32;
}

/* Float tensor to little-endian bytes of OUT kind (f32, f16, bf16); NULL
 * with ERROR set when the reply does not fit in memory. */
static GBytes *
floats_to_bytes (const float *src, gsize n, OutKind out, GError **error)
{
  const VaeWireDtype dt = out_dtype (out);
  const gsize size = vae_wire_dtype_size (dt);
  guint8 *d = vae_try_alloc0 (n, size, "the reply tensor", error);
  if (!d)
    return NULL;
  vae_wire_from_floats (src, n, dt, d);
  return g_bytes_new_take (d, n * size);
}

/* The HTTP status of a failure: memory running out is the server's state,
 * not the request's fault, and may pass (503); anything else is a 500. */
static guint
status_for_error (const GError *error)
{
  return g_error_matches (error, VAE_ERROR, VAE_ERROR_NO_MEMORY) ? 503 : 500;
}

/* ---- worker ---- */

static void
job_free (Job *job)
{
  if (job->msg)
    g_object_unref (job->msg);
  g_free (job->input);
  g_free (job->output);
  g_free (job->error);
  g_free (job->shape_header);
  if (job->body)
    g_bytes_unref (job->body);
  g_free (job);
}

static gboolean
job_finish_idle (gpointer data)
{
  Job *job = data;
  Server *s = job->server;
  if (job->gone) {          /* the client went away */
    record_request (s, job->route, 499, job->start_us);
    job_free (job);
    return G_SOURCE_REMOVE;
  }
  if (job->status == 200) {
    SoupMessageHeaders *hd = soup_server_message_get_response_headers (job->msg);
    if (job->shape_header)
      soup_message_headers_replace (hd, VAE_WIRE_HEADER_SHAPE, job->shape_header);
    if (job->dtype_header)
      soup_message_headers_replace (hd, VAE_WIRE_HEADER_DTYPE, job->dtype_header);
    soup_server_message_set_status (job->msg, 200, NULL);
    /* The body as it is, not a copy: that would be a second allocation of
     * the reply's size, and one that aborts when memory is short. */
    soup_message_headers_replace (hd, "Content-Type", job->content_type);
    soup_message_body_append_bytes (soup_server_message_get_response_body (job->msg),
                                    job->body);
    record_request (s, job->route, 200, job->start_us);
  } else {
    reply_error (s, job->msg, job->route, job->start_us, job->status,
                 job->error ? job->error : "internal error");
  }
  job->replied = TRUE;
  g_clear_pointer (&job->input, g_free);
  g_clear_pointer (&job->output, g_free);
  g_clear_pointer (&job->body, g_bytes_unref);
  soup_server_message_unpause (job->msg);
  return G_SOURCE_REMOVE;
}

static gsize
frame_in_size (Server *s, const Job *j)
{
  const VaeModel *m = s->model;
  return j->direction == VAE_DIRECTION_ENCODE
             ? (gsize) m->image_channels * j->h * j->w
             : (gsize) m->latent_channels * j->h * j->w;
}

static gsize
frame_out_size (Server *s, const Job *j)
{
  const VaeModel *m = s->model;
  const int f = m->spatial_factor;
  const int c = vae_engine_output_channels (m, j->direction);
  return j->direction == VAE_DIRECTION_ENCODE ? (gsize) c * (j->h / f) * (j->w / f)
                                              : (gsize) c * (j->h * f) * (j->w * f);
}

/* JOB answered with ERROR (PREFIX before its message): 503 when memory ran
 * out, else 500. */
static void
job_set_error (Job *j, const GError *error, const char *prefix)
{
  j->status = status_for_error (error);
  g_free (j->error);
  j->error = g_strdup_printf ("%s%s", prefix, error->message);
}

/* Encode: the engine's output to the reply's latents. */
static void
job_build_latents (Server *s, Job *j)
{
  const VaeModel *m = s->model;
  const int f = m->spatial_factor;
  const int lh = j->h / f, lw = j->w / f;
  const int c = vae_latent_channels_for_mode (m, VAE_LATENT_MODE);
  const gsize fo = frame_out_size (s, j), fl = (gsize) c * lh * lw;
  g_autoptr (GError) error = NULL;
  float *lat = vae_try_alloc0 (j->n, fl * sizeof (float), "the reply's latents", &error);
  if (!lat) {
    job_set_error (j, error, "");
    return;
  }
  for (int i = 0; i < j->n; i++)
    vae_latents_from_encoder (m, j->output + fo * i, lh, lw, VAE_LATENT_MODE, NULL,
                              j->scaling, j->shift, lat + fl * i);
  j->body = floats_to_bytes (lat, fl * j->n, j->out, &error);
  vae_free (lat);
  if (!j->body) {
    job_set_error (j, error, "");
    return;
  }
  const gint64 shape[4] = { j->n, c, lh, lw };
  j->shape_header = vae_wire_shape_format (shape, 4);
  j->dtype_header = vae_wire_dtype_name (out_dtype (j->out));
  j->content_type = VAE_WIRE_CONTENT_TYPE_TENSOR;
  j->status = 200;
}

/* Decode to 8-bit RGB: a uint8 NHWC tensor, or a PNG or JPEG of it. */
static void
job_build_rgb (Server *s, Job *j)
{
  const VaeModel *m = s->model;
  const int f = m->spatial_factor;
  const int oh = j->h * f, ow = j->w * f;
  const gsize fo = frame_out_size (s, j);
  const gsize fb = (gsize) oh * ow * 3;
  g_autoptr (GError) error = NULL;
  guint8 *rgb = vae_try_alloc0 (j->n, fb, "the reply's pixels", &error);
  if (!rgb) {
    job_set_error (j, error, "");
    return;
  }
  for (int i = 0; i < j->n; i++)
    vae_pixels_to_rgb8 (m, j->output + fo * i, oh, ow, rgb + fb * i, ow, oh, ow * 3, 3);
  if (j->out == OUT_U8_NHWC) {
    j->body = g_bytes_new_take (rgb, fb * j->n);
    const gint64 shape[4] = { j->n, oh, ow, 3 };
    j->shape_header = vae_wire_shape_format (shape, 4);
    j->dtype_header = vae_wire_dtype_name (VAE_WIRE_U8);
    j->content_type = VAE_WIRE_CONTENT_TYPE_TENSOR;
    j->status = 200;
    return;
  }
  const gboolean png = j->out == OUT_PNG;
  j->body = png ? vae_png_encode_full (rgb, ow, oh, &error)
                : vae_jpeg_encode (rgb, ow, oh, VAE_JPEG_QUALITY, &error);
  vae_free (rgb);
  if (!j->body) {
    job_set_error (j, error, png ? "PNG encoding failed: " : "JPEG encoding failed: ");
    return;
  }
  j->content_type = png ? VAE_WIRE_CONTENT_TYPE_PNG : VAE_WIRE_CONTENT_TYPE_JPEG;
  j->status = 200;
}

/* Decode to a float tensor in [-1, 1]. */
static void
job_build_pixels (Server *s, Job *j)
{
  const VaeModel *m = s->model;
  const int f = m->spatial_factor;
  const int oh = j->h * f, ow = j->w * f;
  const int oc = vae_engine_output_channels (m, VAE_DIRECTION_DECODE);
  const gsize total = frame_out_size (s, j) * j->n;
  g_autoptr (GError) error = NULL;
  float *px = vae_try_alloc0 (total, sizeof (float), "the reply's pixels", &error);
  if (!px) {
    job_set_error (j, error, "");
    return;
  }
  const float span = 1.0f - m->image_min;
  for (gsize i = 0; i < total; i++)
    px[i] = (j->output[i] - m->image_min) / span * 2.0f - 1.0f;
  j->body = floats_to_bytes (px, total, j->out, &error);
  vae_free (px);
  if (!j->body) {
    job_set_error (j, error, "");
    return;
  }
  const gint64 shape[4] = { j->n, oc, oh, ow };
  j->shape_header = vae_wire_shape_format (shape, 4);
  j->dtype_header = vae_wire_dtype_name (out_dtype (j->out));
  j->content_type = VAE_WIRE_CONTENT_TYPE_TENSOR;
  j->status = 200;
}

/* Post-processing of one job's engine output into its reply body. */
static void
job_build_reply (Server *s, Job *j)
{
  if (j->direction == VAE_DIRECTION_ENCODE)
    job_build_latents (s, j);
  else if (j->out == OUT_U8_NHWC || j->out == OUT_PNG || j->out == OUT_JPEG)
    job_build_rgb (s, j);
  else
    job_build_pixels (s, j);
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

static void
record_batch (Server *s, VaeDirection direction, int n, gint64 us, gboolean ok)
{
  g_mutex_lock (&s->lock);
  s->engine_seconds += us / 1e6;
  s->batches++;
  s->batch_frames_sum += n;
  int b = 7;
  for (int k = 0; k < 7; k++)
    if (n <= hist_bounds[k]) {
      b = k;
      break;
    }
  s->batch_hist[b]++;
  if (ok) {
    if (direction == VAE_DIRECTION_ENCODE)
      s->frames_encode += n;
    else
      s->frames_decode += n;
  }
  g_mutex_unlock (&s->lock);
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

static gpointer
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

/* ---- request handling (main thread) ---- */

static gboolean
authorized (Server *s, SoupServerMessage *msg)
{
  if (!s->token)
    return TRUE;
  const char *a = soup_message_headers_get_one (
      soup_server_message_get_request_headers (msg), "Authorization");
  if (!a || g_ascii_strncasecmp (a, "Bearer ", 7))
    return FALSE;
  a += 7;
  while (*a == ' ')
    a++;
  /* Compare in constant time over the token's length. */
  const gsize tl = strlen (s->token), al = strlen (a);
  guint diff = tl != al;
  for (gsize i = 0; i < tl; i++)
    diff |= (guint) (s->token[i] ^ (i < al ? a[i] : 0));
  return diff == 0;
}

static const char *
route_of (const char *path)
{
  if (!strcmp (path, "/encode"))
    return "/encode";
  if (!strcmp (path, "/decode"))
    return "/decode";
  if (!strcmp (path, "/health"))
    return "/health";
  if (!strcmp (path, "/metrics"))
    return "/metrics";
  if (!strcmp (path, "/"))
    return "/";
  return "other";
}

static gboolean
needs_auth (const char *route)
{
  return !strcmp (route, "/encode") || !strcmp (route, "/decode")
         || !strcmp (route, "/metrics");
}

/* ---- connections (main thread) ----
 *
 * libsoup 3.2 leaks every keep-alive connection that the client closes
 * while it is idle: after a reply it waits for the next request with a new
 * message whose completion callback is only set once a first byte of that
 * request is read, so when the read returns end-of-file instead nothing
 * disconnects the connection, and its socket stays in CLOSE-WAIT for the
 * server's lifetime (fixed in libsoup 3.3, "server: do not leak idle
 * connections closed by the client").  Nor does it time out a request
 * that stalls, or a client that connects and sends nothing.
 *
 * So the server follows each connection itself, from the "request-started"
 * that libsoup emits for a new connection's first message at accept time
 * (and for each later one at its first byte): READING until the body is in
 * (cut with a 408 once --read-timeout passes without progress: the whole
 * header, then each body chunk), BUSY while it is handled, and IDLE between
 * a reply and the next request.  While IDLE a watch on the socket runs at a
 * higher priority than libsoup's own source on it, so the server, not
 * libsoup, sees the client's FIN (or reset) first; then, or once
 * --idle-timeout passes, soup_server_message_steal_connection() on the
 * connection's last message takes the connection out of libsoup (which
 * frees its side of it) and the server closes it.  A pipelined request
 * that the client sent before closing its side is dropped with it. */

typedef enum { CONN_READING, CONN_BUSY, CONN_IDLE } ConnState;

typedef struct {
  Server *server;
  GSocket *socket;            /* owned ref; the key in server->conns */
  SoupServerMessage *msg;     /* owned ref: the connection's latest message */
  ConnState state;
  gboolean unclaimed;         /* READING on bytes seen while IDLE that libsoup
                               * has not started a request with yet */
  gint64 since_us;            /* start of the state, or the last progress */
  GSource *timer;             /* ready at the state's deadline */
  GSource *watch;             /* IDLE: the socket readable or hung up */
} Conn;

static void conn_gone (SoupServerMessage *msg, gpointer data);
static void conn_progress (SoupServerMessage *msg, gpointer data);
static void conn_got_chunk (SoupServerMessage *msg, GBytes *chunk, gpointer data);

static void
conn_drop_message (Conn *c)
{
  if (!c->msg)
    return;
  g_signal_handlers_disconnect_by_data (c->msg, c);
  g_clear_object (&c->msg);
}

static void
conn_set_message (Conn *c, SoupServerMessage *msg)
{
  if (c->msg == msg)
    return;
  conn_drop_message (c);
  c->msg = g_object_ref (msg);
  /* Emitted when libsoup closes the connection (or it is stolen). */
  g_signal_connect (msg, "disconnected", G_CALLBACK (conn_gone), c);
  g_signal_connect (msg, "got-headers", G_CALLBACK (conn_progress), c);
  g_signal_connect (msg, "got-chunk", G_CALLBACK (conn_got_chunk), c);
}

static void
conn_clear_watch (Conn *c)
{
  if (!c->watch)
    return;
  g_source_destroy (c->watch);
  g_clear_pointer (&c->watch, g_source_unref);
}

static void
conn_free (Conn *c)
{
  conn_clear_watch (c);
  g_source_destroy (c->timer);
  g_source_unref (c->timer);
  conn_drop_message (c);
  g_object_unref (c->socket);
  g_free (c);
}

/* When the state times out; G_MAXINT64 when it does not. */
static gint64
conn_deadline (const Conn *c)
{
  const Server *s = c->server;
  switch (c->state) {
  case CONN_READING:
    return c->since_us + s->read_timeout_us;
  case CONN_IDLE:
    return c->since_us + s->idle_timeout_us;
  case CONN_BUSY:
  default:
    return G_MAXINT64;
  }
}

static void
conn_arm_timer (Conn *c)
{
  const gint64 d = conn_deadline (c);
  g_source_set_ready_time (c->timer, d == G_MAXINT64 ? -1 : d);
}

/* The client's 408: written once without blocking (it is small, and the
 * client is not sending, so the socket's buffer has room); a client that
 * does not read it only loses the reason. */
static void
conn_send_timeout_reply (GSocket *socket)
{
  gsize len;
  g_autofree char *json = vae_wire_error_json ("request not received in time (--read-timeout)", &len);
  g_autofree char *text = g_strdup_printf ("HTTP/1.1 408 Request Timeout\r\n"
                                           "Content-Type: application/json\r\n"
                                           "Content-Length: %" G_GSIZE_FORMAT "\r\n"
                                           "Connection: close\r\n\r\n%s", len, json);
  g_socket_send_with_blocking (socket, text, strlen (text), FALSE, NULL, NULL);
}

/* Takes the connection out of libsoup and closes it, with a 408 first when
 * TIMED_OUT_READING; frees C. */
static void
conn_close (Conn *c, gboolean timed_out_reading)
{
  Server *s = c->server;
  SoupServerMessage *msg = g_object_ref (c->msg);
  GSocket *socket = g_object_ref (c->socket);
  GUri *uri = soup_server_message_get_uri (msg);
  const char *route = uri ? route_of (g_uri_get_path (uri)) : "other";
  /* Forgotten first: stealing emits "disconnected". */
  g_hash_table_remove (s->conns, socket);
  GIOStream *stream = soup_server_message_steal_connection (msg);
  if (stream && timed_out_reading) {
    conn_send_timeout_reply (socket);
    record_request (s, route, 408, 0);
  }
  if (stream) {
    g_io_stream_close (stream, NULL, NULL);
    g_object_unref (stream);
  }
  g_object_unref (socket);
  g_object_unref (msg);
}

/* Closes the socket under libsoup, for the one case where stealing is not
 * safe: bytes seen while IDLE never became a request, which means that
 * libsoup's read of them failed (a reset came first) and left the
 * connection in the state described above, with nothing of its own on it
 * and nothing that steal_connection() could take.  Its descriptor is freed
 * here; the little that libsoup keeps of it goes at exit.  Frees C. */
static void
conn_abandon (Conn *c)
{
  GSocket *socket = g_object_ref (c->socket);
  g_hash_table_remove (c->server->conns, socket);
  g_socket_close (socket, NULL);
  g_object_unref (socket);
}

static gboolean
conn_timer_fired (gpointer data)
{
  Conn *c = data;
  if (g_get_monotonic_time () < conn_deadline (c)) {
    conn_arm_timer (c);   /* progress since it was set */
    return G_SOURCE_CONTINUE;
  }
  if (c->unclaimed)
    conn_abandon (c);
  else
    conn_close (c, c->state == CONN_READING);
  return G_SOURCE_REMOVE;
}

static gboolean
conn_timer_dispatch (GSource *source, GSourceFunc callback, gpointer data)
{
  (void) source;
  return callback (data);
}

/* A source that only has a ready time: the deadline moves with the
 * connection's progress without a new source for each body chunk. */
static GSourceFuncs conn_timer_funcs = { NULL, NULL, conn_timer_dispatch, NULL, NULL, NULL };

static void conn_enter (Conn *c, ConnState state);

/* IDLE and the socket is readable: the next request, or the client gone. */
static gboolean
conn_readable (GSocket *socket, GIOCondition cond, gpointer data)
{
  Conn *c = data;
  (void) cond;
  char b;
  const gssize r = recv (g_socket_get_fd (socket), &b, 1, MSG_PEEK | MSG_DONTWAIT);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return G_SOURCE_CONTINUE;
  if (r > 0) {
    /* libsoup reads it, and starts a request with it; from now on the read
     * timeout counts. */
    g_clear_pointer (&c->watch, g_source_unref);
    conn_enter (c, CONN_READING);
    c->unclaimed = TRUE;
    return G_SOURCE_REMOVE;
  }
  g_clear_pointer (&c->watch, g_source_unref);
  conn_close (c, FALSE);   /* end-of-file or an error: the client is gone */
  return G_SOURCE_REMOVE;
}

static void
conn_enter (Conn *c, ConnState state)
{
  c->state = state;
  c->since_us = g_get_monotonic_time ();
  if (state != CONN_IDLE) {
    conn_clear_watch (c);
  } else if (!c->watch) {
    c->watch = g_socket_create_source (c->socket, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
    /* Before libsoup's source on the same socket (G_PRIORITY_DEFAULT). */
    g_source_set_priority (c->watch, G_PRIORITY_HIGH);
    g_source_set_callback (c->watch, (GSourceFunc) (void (*) (void)) conn_readable, c, NULL);
    g_source_attach (c->watch, NULL);
  }
  conn_arm_timer (c);
}

static void
conn_gone (SoupServerMessage *msg, gpointer data)
{
  Conn *c = data;
  (void) msg;
  g_hash_table_remove (c->server->conns, c->socket);
}

static void
conn_progress (SoupServerMessage *msg, gpointer data)
{
  Conn *c = data;
  (void) msg;
  c->since_us = g_get_monotonic_time ();
}

static void
conn_got_chunk (SoupServerMessage *msg, GBytes *chunk, gpointer data)
{
  (void) chunk;
  conn_progress (msg, data);
}

static Conn *
conn_of (Server *s, SoupServerMessage *msg)
{
  GSocket *socket = soup_server_message_get_socket (msg);
  return socket ? g_hash_table_lookup (s->conns, socket) : NULL;
}

static Conn *
conn_new (Server *s, GSocket *socket)
{
  Conn *c = g_new0 (Conn, 1);
  c->server = s;
  c->socket = g_object_ref (socket);
  c->timer = g_source_new (&conn_timer_funcs, sizeof (GSource));
  g_source_set_callback (c->timer, conn_timer_fired, c, NULL);
  g_source_attach (c->timer, NULL);
  g_hash_table_insert (s->conns, socket, c);
  return c;
}

/* A new connection's first message (at accept), or a later one's first
 * byte. */
static void
on_request_started (SoupServer *soup, SoupServerMessage *msg, gpointer data)
{
  Server *s = data;
  (void) soup;
  GSocket *socket = soup_server_message_get_socket (msg);
  if (!socket)
    return;
  Conn *c = g_hash_table_lookup (s->conns, socket);
  if (!c) {
    c = conn_new (s, socket);
    /* Asked now, while the peer is there, libsoup keeps the address: it
     * asks for it when the connection is stolen, and warns when the peer
     * has gone by then. */
    soup_server_message_get_remote_address (msg);
  }
  conn_set_message (c, msg);
  c->unclaimed = FALSE;
  conn_enter (c, CONN_READING);
}

/* The body is in: the request is handled (or queued for the engine). */
static void
on_request_read (SoupServer *soup, SoupServerMessage *msg, gpointer data)
{
  Conn *c = conn_of (data, msg);
  (void) soup;
  if (c && c->msg == msg)
    conn_enter (c, CONN_BUSY);
}

/* The reply is out (or the request failed).  When libsoup keeps the
 * connection for the next request the server now watches it; when it
 * closes it, which it does right after this, "disconnected" forgets it. */
static void
on_request_done (SoupServer *soup, SoupServerMessage *msg, gpointer data)
{
  Conn *c = conn_of (data, msg);
  (void) soup;
  if (c && c->msg == msg)
    conn_enter (c, CONN_IDLE);
}

/* Answers 413 on the raw connection without reading the body the client
 * announced: write the reply, shut our side down, then discard what the
 * client still sends for a short while (so that it reads the reply instead
 * of a connection reset) and close. */
typedef struct {
  GIOStream *stream;
  GSource *source;
  gint64 deadline;
  gsize discarded;
} Drain;

static void
drain_free (Drain *d)
{
  g_io_stream_close (d->stream, NULL, NULL);
  g_object_unref (d->stream);
  g_free (d);
}

static gboolean
drain_ready (GObject *stream, gpointer data)
{
  Drain *d = data;
  char buf[16384];
  for (;;) {
    GError *e = NULL;
    gssize r = g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (stream),
                                                         buf, sizeof buf, NULL, &e);
    gboolean would_block = r < 0 && g_error_matches (e, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
    g_clear_error (&e);
    if (r > 0)
      d->discarded += r;
    const gboolean more = g_get_monotonic_time () < d->deadline
                          && d->discarded < ((gsize) 64 << 20);
    if (r > 0 && more)
      continue;
    if (would_block && more)
      return G_SOURCE_CONTINUE;
    drain_free (d);
    return G_SOURCE_REMOVE;
  }
}

static gboolean
drain_timeout (gpointer data)
{
  (void) data;
  return G_SOURCE_REMOVE;
}

static void
reject_too_large (Server *s, SoupServerMessage *msg, const char *route, const char *message)
{
  gsize len;
  g_autofree char *text = vae_wire_error_json (message, &len);
  g_autofree char *head = g_strdup_printf ("HTTP/1.1 413 Request Entity Too Large\r\n"
                                           "Content-Type: application/json\r\n"
                                           "Content-Length: %" G_GSIZE_FORMAT "\r\n"
                                           "Connection: close\r\n\r\n", len);
  GIOStream *stream = soup_server_message_steal_connection (msg);
  record_request (s, route, 413, 0);
  if (!stream)
    return;
  GOutputStream *out = g_io_stream_get_output_stream (stream);
  g_output_stream_write_all (out, head, strlen (head), NULL, NULL, NULL);
  g_output_stream_write_all (out, text, len, NULL, NULL, NULL);
  g_output_stream_flush (out, NULL, NULL);
  if (G_IS_SOCKET_CONNECTION (stream))
    g_socket_shutdown (g_socket_connection_get_socket (G_SOCKET_CONNECTION (stream)), FALSE,
                       TRUE, NULL);
  GInputStream *in = g_io_stream_get_input_stream (stream);
  Drain *d = g_new0 (Drain, 1);
  d->stream = stream;
  d->deadline = g_get_monotonic_time () + 2 * G_USEC_PER_SEC;
  if (!G_IS_POLLABLE_INPUT_STREAM (in)) {
    drain_free (d);
    return;
  }
  GSource *src = g_pollable_input_stream_create_source (G_POLLABLE_INPUT_STREAM (in), NULL);
  g_source_set_callback (src, (GSourceFunc) (void (*) (void)) drain_ready, d, NULL);
  /* Wake up at the deadline even when the client sends nothing. */
  GSource *t = g_timeout_source_new (2100);
  g_source_set_callback (t, drain_timeout, NULL, NULL);
  g_source_add_child_source (src, t);
  g_source_unref (t);
  g_source_attach (src, NULL);
  g_source_unref (src);
}

/* Runs once the headers are in, before the body is read. */
static void
early_handler (SoupServer *soup, SoupServerMessage *msg, const char *path,
               GHashTable *query, gpointer data)
{
  Server *s = data;
  (void) soup;
  (void) query;
  const char *route = route_of (path);
  if (needs_auth (route) && !authorized (s, msg)) {
    soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                  "WWW-Authenticate", "Bearer");
    reply_error (s, msg, route, 0, 401, "missing or wrong Authorization: Bearer token");
    return;
  }
  SoupMessageHeaders *rh = soup_server_message_get_request_headers (msg);
  if (soup_message_headers_get_encoding (rh) == SOUP_ENCODING_CONTENT_LENGTH
      && soup_message_headers_get_content_length (rh) > s->max_body) {
    const gint64 cl = soup_message_headers_get_content_length (rh);
    g_autofree char *m = g_strdup_printf ("request body of %" G_GINT64_FORMAT
                                          " bytes is larger than the limit of %"
                                          G_GINT64_FORMAT " bytes", cl, s->max_body);
    if (soup_message_headers_get_expectations (rh) & SOUP_EXPECTATION_CONTINUE) {
      /* libsoup answers without reading the body. */
      soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                    "Connection", "close");
      reply_error (s, msg, route, 0, 413, m);
      return;
    }
    reject_too_large (s, msg, route, m);
  }
}

static void
on_finished (SoupServerMessage *msg, gpointer data)
{
  Job *job = data;
  Server *s = job->server;
  g_signal_handlers_disconnect_by_func (msg, on_finished, job);
  job->gone = TRUE;
  if (job->replied)
    job_free (job);
  g_mutex_lock (&s->lock);
  s->in_flight--;
  gboolean done = s->draining && s->in_flight == 0;
  g_mutex_unlock (&s->lock);
  if (done)
    g_main_loop_quit (s->loop);
}

/* The shape/dtype query of a raw tensor body (ND from vae_wire_query_shape), with
 * the protocol's error texts; uint8 only where ALLOW_U8 (image input). */
static gboolean
check_tensor_query (int nd, const char *dts, gboolean allow_u8, VaeWireDtype *dt, char **err)
{
  if (nd == 0) {
    *err = g_strdup ("Expected `shape` in query params.");
    return FALSE;
  }
  if (nd == VAE_WIRE_SHAPE_TOO_LARGE) {
    *err = g_strdup_printf ("`shape` is too large (a dimension over %d)", G_MAXINT32);
    return FALSE;
  }
  if (nd < 0) {
    *err = g_strdup ("`shape` must be a list of positive integers");
    return FALSE;
  }
  if (!dts) {
    *err = g_strdup ("Expected `dtype` in query params.");
    return FALSE;
  }
  if (!vae_wire_dtype_parse (dts, dt) || (!allow_u8 && *dt == VAE_WIRE_U8)) {
    *err = g_strdup_printf ("Supported `dtype`: [%s'float16', 'float32', 'bfloat16']. "
                            "Got `%s`.", allow_u8 ? "'uint8', " : "", dts);
    return FALSE;
  }
  return TRUE;
}

/* A request refused with STATUS and MESSAGE (taken); always FALSE. */
static gboolean
refuse (guint *status, char **err, guint code, char *message)
{
  *status = code;
  *err = message;
  return FALSE;
}

/* A failed allocation or decode (ERROR) as the request's refusal: 503 when
 * memory ran out, else 400 (the body was bad). */
static gboolean
refuse_error (guint *status, char **err, const GError *error)
{
  return refuse (status, err,
                 g_error_matches (error, VAE_ERROR, VAE_ERROR_NO_MEMORY) ? 503 : 400,
                 g_strdup (error->message));
}

/* 413 for a frame of H x W pixels over --max-pixels. */
static gboolean
check_frame_pixels (Server *s, gint64 h, gint64 w, guint *status, char **err)
{
  if (h * w <= s->max_pixels)
    return TRUE;
  return refuse (status, err, 413,
                 g_strdup_printf ("a frame of %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                                  " (%" G_GINT64_FORMAT " pixels) is larger than this "
                                  "server's limit of %" G_GINT64_FORMAT " pixels",
                                  w, h, h * w, s->max_pixels));
}

/* Encode of a PNG or JPEG body: the size from its header is checked
 * against the limits before the pixels are decoded (a 200 KB PNG can
 * claim 8192 x 8192). */
static gboolean
prepare_encode_image (Server *s, Job *job, const guint8 *data, gsize len, gboolean png,
                      guint *status, char **err)
{
  const VaeModel *m = s->model;
  const int f = m->spatial_factor;
  const char *kind = png ? "PNG" : "JPEG";
  int w, h;
  if (png ? !vae_png_read_size (data, len, &w, &h, err)
          : !vae_jpeg_read_size (data, len, &w, &h, err))
    return FALSE;
  if (w < 1 || h < 1 || w > MAX_SIDE || h > MAX_SIDE)
    return refuse (status, err, 400,
                   g_strdup_printf ("%s of %dx%d is empty or larger than %d pixels a side",
                                    kind, w, h, MAX_SIDE));
  if (!check_frame_pixels (s, h, w, status, err))
    return FALSE;
  if (w % f || h % f)
    return refuse (status, err, 400,
                   g_strdup_printf ("image of %dx%d: width and height must be multiples "
                                    "of %d", w, h, f));
  g_autoptr (GError) error = NULL;
  guint8 *rgb = NULL;
  if (png ? !vae_png_decode (data, len, MAX_SIDE, &rgb, &w, &h, &error)
          : !vae_jpeg_decode (data, len, MAX_SIDE, &rgb, &w, &h, &error))
    return refuse_error (status, err, error);
  job->n = 1;
  job->h = h;
  job->w = w;
  job->input = vae_try_alloc0 ((gsize) 3 * h, (gsize) w * sizeof (float),
                               "the engine's input", &error);
  if (job->input)
    vae_pixels_from_rgb8 (m, rgb, w, h, w * 3, 3, job->input, h, w);
  vae_free (rgb);
  return job->input ? TRUE : refuse_error (status, err, error);
}

/* Fills JOB's input from the request; FALSE with the status (400 unless
 * set) and message in *STATUS and *ERR. */
static gboolean
prepare_encode (Server *s, Job *job, const VaeWireQuery *q, GBytes *body, guint *status,
                char **err)
{
  const VaeModel *m = s->model;
  const int f = m->spatial_factor;
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  gint64 dims[VAE_WIRE_MAX_DIMS];
  int nd = vae_wire_query_shape (q, dims, VAE_WIRE_MAX_DIMS);
  const char *dts = vae_wire_query_get (q, VAE_WIRE_KEY_DTYPE);
  gboolean ok = TRUE;
  job->scaling = m->scaling_factor;
  job->shift = m->shift_factor;
  gboolean have_scale = vae_wire_query_double (q, VAE_WIRE_KEY_SCALING, &job->scaling, &ok);
  vae_wire_query_double (q, VAE_WIRE_KEY_SHIFT, &job->shift, &ok);
  if (have_scale && !vae_wire_query_get (q, VAE_WIRE_KEY_SHIFT))
    job->shift = 0.0;
  if (!ok) {
    *err = g_strdup ("scaling_factor and shift_factor must be numbers");
    return FALSE;
  }
  if (!m->encoder) {
    *err = g_strdup ("this model has no encoder");
    return FALSE;
  }
  job->direction = VAE_DIRECTION_ENCODE;
  job->out = OUT_TENSOR_F32;

  if (nd == 0 && !dts) {
    const VaeWireImage image = vae_wire_sniff_image (data, len);
    if (image != VAE_WIRE_IMAGE_NONE)
      return prepare_encode_image (s, job, data, len, image == VAE_WIRE_IMAGE_PNG, status,
                                   err);
    *err = g_strdup ("Expected `shape` in query params (or a PNG or JPEG body).");
    return FALSE;
  }
  VaeWireDtype dt;
  if (!check_tensor_query (nd, dts, TRUE, &dt, err))
    return FALSE;
  gint64 b, c, h, w;
  if (nd == 4) {
    b = dims[0]; c = dims[1]; h = dims[2]; w = dims[3];
  } else if (nd == 3) {
    b = 1; c = dims[0]; h = dims[1]; w = dims[2];
  } else {
    *err = g_strdup_printf ("`shape` must be [B,3,H,W] (got %d dimensions)", nd);
    return FALSE;
  }
  if (c != m->image_channels) {
    *err = g_strdup_printf ("`shape` has %" G_GINT64_FORMAT " channels; the model takes %d",
                            c, m->image_channels);
    return FALSE;
  }
  if (b > MAX_FRAMES || h > MAX_SIDE || w > MAX_SIDE) {
    g_autofree char *t = vae_wire_shape_format (dims, nd);
    *err = g_strdup_printf ("`shape` %s is too large (at most %d frames of %d pixels a "
                            "side)", t, MAX_FRAMES, MAX_SIDE);
    return FALSE;
  }
  if (!check_frame_pixels (s, h, w, status, err))
    return FALSE;
  if (h % f || w % f) {
    *err = g_strdup_printf ("height %" G_GINT64_FORMAT " and width %" G_GINT64_FORMAT
                            " must be multiples of %d", h, w, f);
    return FALSE;
  }
  const gint64 bchw[4] = { b, c, h, w };
  gsize count, bytes;
  if (!vae_wire_shape_bytes (bchw, 4, 1, &count) || !vae_wire_shape_bytes (bchw, 4, vae_wire_dtype_size (dt), &bytes)) {
    *err = g_strdup ("`shape` is too large (its size overflows)");
    return FALSE;
  }
  if (len != bytes) {
    *err = g_strdup_printf ("cannot reshape a body of %" G_GSIZE_FORMAT " bytes into shape [%"
                            G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",%"
                            G_GINT64_FORMAT "] of %s (%" G_GSIZE_FORMAT " bytes)",
                            len, b, c, h, w, dts, bytes);
    return FALSE;
  }
  job->n = (int) b;
  job->h = (int) h;
  job->w = (int) w;
  g_autoptr (GError) error = NULL;
  job->input = vae_try_alloc0 (count, sizeof (float), "the engine's input", &error);
  if (!job->input)
    return refuse_error (status, err, error);
  const float lo = m->image_min, span = 1.0f - m->image_min;
  if (dt == VAE_WIRE_U8) {
    for (gsize i = 0; i < count; i++)
      job->input[i] = data[i] / 255.0f * span + lo;
  } else {
    for (gsize i = 0; i < count; i++)
      job->input[i] = (vae_wire_load (data, dt, i) + 1.0f) * 0.5f * span + lo;
  }
  if (dt == VAE_WIRE_F16)
    job->out = OUT_TENSOR_F16;
  return TRUE;
}

/* Packed Flux latents [B, (H/16)*(W/16), 4C] with height=H&width=W: the
 * B, C, h, w of the unpacked latents; FALSE with *ERR when they do not
 * match. */
static gboolean
packed_dims (const VaeWireQuery *q, const gint64 *dims, gint64 *bchw, char **err)
{
  gint64 H, W;
  if (vae_wire_parse_dim (vae_wire_query_get (q, VAE_WIRE_KEY_HEIGHT), &H) || vae_wire_parse_dim (vae_wire_query_get (q, VAE_WIRE_KEY_WIDTH), &W)
      || H < 16 || W < 16 || H % 16 || W % 16 || dims[2] % 4
      || dims[1] != (H / 16) * (W / 16)) {
    *err = g_strdup ("packed latents: `height`/`width` do not match `shape`");
    return FALSE;
  }
  bchw[0] = dims[0];
  bchw[1] = dims[2] / 4;
  bchw[2] = H / 8;
  bchw[3] = W / 8;
  return TRUE;
}

/* The reply kind of a decode from its query (and Accept header). */
static gboolean
decode_output_kind (const VaeWireQuery *q, SoupServerMessage *msg, VaeWireDtype dt, OutKind *out,
                    char **err)
{
  const char *ot = vae_wire_query_get (q, VAE_WIRE_KEY_OUTPUT_TYPE);
  if (!ot)
    ot = "pt";
  if (!strcmp (ot, "pt")) {
    if (vae_wire_query_bool (q, VAE_WIRE_KEY_PARTIAL, FALSE))
      *out = OUT_U8_NHWC;
    else
      *out = dt == VAE_WIRE_F16 ? OUT_TENSOR_F16 : dt == VAE_WIRE_BF16 ? OUT_TENSOR_BF16 : OUT_TENSOR_F32;
    return TRUE;
  }
  if (strcmp (ot, "pil")) {
    *err = g_strdup_printf ("unsupported output_type `%s` (pt or pil)", ot);
    return FALSE;
  }
  const char *fmt = vae_wire_query_get (q, VAE_WIRE_KEY_IMAGE_FORMAT);
  if (!fmt) {
    const char *acc = soup_message_headers_get_one (
        soup_server_message_get_request_headers (msg), "Accept");
    fmt = acc && strstr (acc, "image/jpeg") ? "jpg" : "png";
  }
  if (!g_ascii_strcasecmp (fmt, "png")) {
    *out = OUT_PNG;
  } else if (!g_ascii_strcasecmp (fmt, "jpg") || !g_ascii_strcasecmp (fmt, "jpeg")) {
    *out = OUT_JPEG;
  } else {
    *err = g_strdup_printf ("unknown image_format `%s` (png or jpg)", fmt);
    return FALSE;
  }
  return TRUE;
}

static gboolean
prepare_decode (Server *s, Job *job, SoupServerMessage *msg, const VaeWireQuery *q, GBytes *body,
                guint *status, char **err)
{
  const VaeModel *m = s->model;
  const int f = m->spatial_factor;
  gsize len;
  const guint8 *data = g_bytes_get_data (body, &len);
  gint64 dims[VAE_WIRE_MAX_DIMS];
  if (!m->decoder) {
    *err = g_strdup ("this model has no decoder");
    return FALSE;
  }
  int nd = vae_wire_query_shape (q, dims, VAE_WIRE_MAX_DIMS);
  const char *dts = vae_wire_query_get (q, VAE_WIRE_KEY_DTYPE);
  VaeWireDtype dt;
  if (!check_tensor_query (nd, dts, FALSE, &dt, err))
    return FALSE;
  /* scaling */
  gboolean ok = TRUE;
  double scaling = 1.0, shift = 0.0;
  gboolean have_scale = vae_wire_query_double (q, VAE_WIRE_KEY_SCALING, &scaling, &ok);
  gboolean have_shift = vae_wire_query_double (q, VAE_WIRE_KEY_SHIFT, &shift, &ok);
  if (!ok || (have_scale && scaling == 0.0)) {
    *err = g_strdup ("scaling_factor and shift_factor must be numbers (scaling not 0)");
    return FALSE;
  }
  if (!have_scale && !have_shift && vae_wire_query_bool (q, VAE_WIRE_KEY_DO_SCALING, FALSE)) {
    scaling = m->scaling_factor;
    shift = m->shift_factor;
  }
  if (!decode_output_kind (q, msg, dt, &job->out, err))
    return FALSE;
  gint64 bchw[4];
  gboolean packed = FALSE;
  if (nd == 4) {
    memcpy (bchw, dims, sizeof bchw);
  } else if (nd == 3 && vae_wire_query_get (q, VAE_WIRE_KEY_HEIGHT) && vae_wire_query_get (q, VAE_WIRE_KEY_WIDTH)) {
    if (!packed_dims (q, dims, bchw, err))
      return FALSE;
    packed = TRUE;
  } else {
    *err = g_strdup_printf ("`shape` must be [B,C,h,w] (got %d dimensions)", nd);
    return FALSE;
  }
  const gint64 b = bchw[0], c = bchw[1], h = bchw[2], w = bchw[3];
  if (c != m->latent_channels) {
    *err = g_strdup_printf ("`shape` has %" G_GINT64_FORMAT " latent channels; the model "
                            "takes %d", c, m->latent_channels);
    return FALSE;
  }
  if (b > MAX_FRAMES || h > MAX_SIDE / f || w > MAX_SIDE / f) {
    g_autofree char *t = vae_wire_shape_format (dims, nd);
    *err = g_strdup_printf ("`shape` %s is too large (at most %d frames of %d pixels a "
                            "side)", t, MAX_FRAMES, MAX_SIDE);
    return FALSE;
  }
  if (!check_frame_pixels (s, h * f, w * f, status, err))
    return FALSE;
  if ((job->out == OUT_PNG || job->out == OUT_JPEG) && b != 1) {
    *err = g_strdup ("output_type=pil takes one frame (B=1); use output_type=pt for batches");
    return FALSE;
  }
  gsize count, bytes;
  if (!vae_wire_shape_bytes (bchw, 4, 1, &count) || !vae_wire_shape_bytes (bchw, 4, vae_wire_dtype_size (dt), &bytes)) {
    *err = g_strdup ("`shape` is too large (its size overflows)");
    return FALSE;
  }
  if (len != bytes) {
    *err = g_strdup_printf ("cannot reshape a body of %" G_GSIZE_FORMAT " bytes into the "
                            "given shape of %s (%" G_GSIZE_FORMAT " bytes)", len, dts, bytes);
    return FALSE;
  }
  job->direction = VAE_DIRECTION_DECODE;
  job->n = (int) b;
  job->h = (int) h;
  job->w = (int) w;
  g_autoptr (GError) error = NULL;
  float *z = vae_try_alloc0 (count, sizeof (float), "the request's latents", &error);
  if (z)
    job->input = vae_try_alloc0 (count, sizeof (float), "the engine's input", &error);
  if (!job->input) {
    vae_free (z);
    return refuse_error (status, err, error);
  }
  if (!packed) {
    for (gsize i = 0; i < count; i++)
      z[i] = vae_wire_load (data, dt, i);
  } else {
    /* view b, h/2, w/2, c, 2, 2 -> permute 0,3,1,4,2,5 -> b, c, h, w */
    const gint64 h2 = h / 2, w2 = w / 2;
    gsize o = 0;
    for (gint64 bi = 0; bi < b; bi++)
      for (gint64 ci = 0; ci < c; ci++)
        for (gint64 y = 0; y < h; y++)
          for (gint64 x = 0; x < w; x++) {
            gsize src = ((((bi * h2 + y / 2) * w2 + x / 2) * c + ci) * 2 + y % 2) * 2 + x % 2;
            z[o++] = vae_wire_load (data, dt, src);
          }
  }
  vae_latents_to_decoder (z, count, scaling, shift, job->input);
  vae_free (z);
  return TRUE;
}

/* The request body in one piece, as soup_message_body_flatten gives it but
 * with a fallible copy (that one aborts when a large body's copy does not
 * fit); NULL with ERROR set (VAE_ERROR_NO_MEMORY). */
static GBytes *
request_body_bytes (SoupMessageBody *rb, GError **error)
{
  g_autoptr (GBytes) first = soup_message_body_get_chunk (rb, 0);
  if (!first)
    return g_bytes_new (NULL, 0);
  if ((goffset) g_bytes_get_size (first) == rb->length)
    return g_steal_pointer (&first);
  guint8 *data = vae_try_alloc0 (1, rb->length, "the request body", error);
  if (!data)
    return NULL;
  goffset off = 0;
  while (off < rb->length) {
    g_autoptr (GBytes) chunk = soup_message_body_get_chunk (rb, off);
    gsize n;
    const void *d = chunk ? g_bytes_get_data (chunk, &n) : NULL;
    if (!d || n == 0 || off + (goffset) n > rb->length)
      break;
    memcpy (data + off, d, n);
    off += n;
  }
  return g_bytes_new_take (data, off);
}

static void
handler (SoupServer *soup, SoupServerMessage *msg, const char *path, GHashTable *query,
         gpointer data)
{
  Server *s = data;
  (void) soup;
  (void) query;
  const char *route = route_of (path);
  const char *method = soup_server_message_get_method (msg);
  const gint64 start = g_get_monotonic_time ();

  if (soup_server_message_get_status (msg) != 0)
    return;   /* answered by the early handler */

  if (!strcmp (route, "/health") || !strcmp (route, "/")) {
    if (strcmp (method, "GET") && strcmp (method, "HEAD")) {
      reply_error (s, msg, route, start, 405, "use GET");
      return;
    }
    reply_bytes (msg, 200, "text/plain", "Ok", 2);
    record_request (s, route, 200, start);
    return;
  }
  if (!strcmp (route, "/metrics")) {
    g_autofree char *t = metrics_text (s);
    reply_bytes (msg, 200, "text/plain; version=0.0.4", t, strlen (t));
    record_request (s, route, 200, start);
    return;
  }
  if (strcmp (route, "/encode") && strcmp (route, "/decode")) {
    reply_error (s, msg, route, start, 404, "not found (routes: /encode, /decode, /health, "
                                            "/metrics)");
    return;
  }
  if (strcmp (method, "POST")) {
    reply_error (s, msg, route, start, 405, "use POST");
    return;
  }
  if (!authorized (s, msg)) {
    reply_error (s, msg, route, start, 401, "missing or wrong Authorization: Bearer token");
    return;
  }
  SoupMessageBody *rb = soup_server_message_get_request_body (msg);
  if (rb->length > s->max_body) {
    reply_error (s, msg, route, start, 413, "request body is larger than the limit");
    return;
  }
  g_autoptr (GError) body_error = NULL;
  g_autoptr (GBytes) body = request_body_bytes (rb, &body_error);
  if (!body) {
    reply_error (s, msg, route, start, 503, body_error->message);
    return;
  }
  /* Only BODY is read from now on: the chunks can go. */
  soup_message_body_truncate (rb);
  g_mutex_lock (&s->lock);
  gboolean draining = s->draining;
  gboolean full = (int) s->queue.length >= s->max_queue;
  g_mutex_unlock (&s->lock);
  if (draining) {
    soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                  "Connection", "close");
    reply_error (s, msg, route, start, 503, "server is shutting down");
    return;
  }
  if (full) {
    soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                  "Retry-After", "1");
    reply_error (s, msg, route, start, 503, "503 Service Unavailable: queue full");
    return;
  }

  GUri *uri = soup_server_message_get_uri (msg);
  VaeWireQuery *q = vae_wire_query_parse (g_uri_get_query (uri));
  Job *job = g_new0 (Job, 1);
  job->server = s;
  job->route = route;
  job->start_us = start;
  char *err = NULL;
  guint status = 400;
  gboolean ok = !strcmp (route, "/encode")
                    ? prepare_encode (s, job, q, body, &status, &err)
                    : prepare_decode (s, job, msg, q, body, &status, &err);
  vae_wire_query_free (q);
  if (!ok) {
    reply_error (s, msg, route, start, status, err ? err : "bad request");
    g_free (err);
    job_free (job);
    return;
  }
  job->msg = g_object_ref (msg);
  g_signal_connect (msg, "finished", G_CALLBACK (on_finished), job);
  soup_server_message_pause (msg);
  g_mutex_lock (&s->lock);
  s->in_flight++;
  g_queue_push_tail (&s->queue, job);
  g_cond_signal (&s->cond);
  g_mutex_unlock (&s->lock);
}

static gboolean
on_sigterm (gpointer data)
{
  Server *s = data;
  g_mutex_lock (&s->lock);
  s->draining = TRUE;
  gboolean idle = s->in_flight == 0;
  g_mutex_unlock (&s->lock);
  /* Stop accepting new connections. */
  for (GSList *l = soup_server_get_listeners (s->soup); l; l = l->next)
    g_socket_close (l->data, NULL);
  g_printerr ("vae-server: SIGTERM, finishing %s requests in flight\n",
              idle ? "no" : "the");
  if (idle)
    g_main_loop_quit (s->loop);
  return G_SOURCE_REMOVE;
}

int
main (int argc, char **argv)
{
  g_autofree char *model_path = NULL, *host = NULL, *backend = NULL, *token = NULL;
  g_auto (GStrv) engine_settings = NULL;
  int port = 0, max_batch = 8, threads = 0, max_queue = 256;
  int idle_timeout = 30, read_timeout = 30;
  gint64 max_body = 256 * 1024 * 1024;
  gint64 max_pixels = 4096 * 4096;
  double max_body_d = -1;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_path, "Model folder or file", "PATH" },
    { "host", 0, 0, G_OPTION_ARG_STRING, &host, "Address to listen on (127.0.0.1)", "HOST" },
    { "port", 'p', 0, G_OPTION_ARG_INT, &port, "Port (0: any free port)", "N" },
    { "backend", 'b', 0, G_OPTION_ARG_STRING, &backend, "Engine (cpu, cuda, auto)", "NAME" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &threads, "Engine threads (0: default)", "N" },
    { "engine-option", 'O', 0, G_OPTION_ARG_STRING_ARRAY, &engine_settings,
      "A setting of the engine (repeatable; 'vae-tool backends' lists them)", "KEY=VALUE" },
    { "token", 0, 0, G_OPTION_ARG_STRING, &token, "Require Authorization: Bearer T", "T" },
    { "max-batch", 0, 0, G_OPTION_ARG_INT, &max_batch, "Frames per engine batch (8)", "N" },
    { "max-body-bytes", 0, 0, G_OPTION_ARG_DOUBLE, &max_body_d,
      "Largest request body (256 MiB)", "N" },
    { "max-queue", 0, 0, G_OPTION_ARG_INT, &max_queue,
      "Requests waiting before 503 (256)", "N" },
    { "max-pixels", 0, 0, G_OPTION_ARG_INT64, &max_pixels,
      "Largest frame in pixels, 413 beyond (16777216: 4096x4096)", "N" },
    { "idle-timeout", 0, 0, G_OPTION_ARG_INT, &idle_timeout,
      "Close a keep-alive connection idle this long (30)", "S" },
    { "read-timeout", 0, 0, G_OPTION_ARG_INT, &read_timeout,
      "Cut a request whose headers take, or whose body stalls, this long: 408 (30)", "S" },
    { NULL, 0, 0, 0, NULL, NULL, NULL }
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- VAE encode/decode over HTTP");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    g_printerr ("vae-server: %s\n", error->message);
    return 2;
  }
  if (!model_path) {
    g_printerr ("vae-server: --model is required\n");
    return 2;
  }
  if (port < 0 || port > 65535 || max_batch < 1 || max_batch > 4096 || max_queue < 1
      || threads < 0) {
    g_printerr ("vae-server: --port, --max-batch, --max-queue or --threads out of range\n");
    return 2;
  }
  if (max_pixels < 1 || idle_timeout < 1 || read_timeout < 1) {
    g_printerr ("vae-server: --max-pixels, --idle-timeout and --read-timeout must be "
                "at least 1\n");
    return 2;
  }
  if (max_body_d >= 0)
    max_body = (gint64) max_body_d;
  if (token && !*token)
    g_clear_pointer (&token, g_free);

  Server srv;
  memset (&srv, 0, sizeof srv);
  Server *s = &srv;
  g_mutex_init (&s->lock);
  g_cond_init (&s->cond);
  g_queue_init (&s->queue);
  s->requests = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  s->max_batch = max_batch;
  s->max_body = max_body;
  s->max_queue = max_queue;
  s->max_pixels = max_pixels;
  s->idle_timeout_us = (gint64) idle_timeout * G_USEC_PER_SEC;
  s->read_timeout_us = (gint64) read_timeout * G_USEC_PER_SEC;
  s->conns = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                    (GDestroyNotify) conn_free);
  s->token = token;

  s->model = vae_model_load (model_path, NULL, &error);
  if (!s->model) {
    g_printerr ("vae-server: %s\n", error->message);
    return 1;
  }
  VaeEngineOptions eo = VAE_ENGINE_OPTIONS_INIT;
  eo.threads = threads;
  eo.settings = (const char *const *) engine_settings;
  s->engine = vae_engine_new (backend && *backend ? backend : "cpu", s->model, &eo, &error);
  if (!s->engine) {
    g_printerr ("vae-server: %s\n", error->message);
    vae_model_free (s->model);
    return 1;
  }

  s->soup = soup_server_new ("server-header", "vae-server ", NULL);
  soup_server_add_early_handler (s->soup, NULL, early_handler, s, NULL);
  soup_server_add_handler (s->soup, NULL, handler, s, NULL);
  g_signal_connect (s->soup, "request-started", G_CALLBACK (on_request_started), s);
  g_signal_connect (s->soup, "request-read", G_CALLBACK (on_request_read), s);
  g_signal_connect (s->soup, "request-finished", G_CALLBACK (on_request_done), s);
  g_signal_connect (s->soup, "request-aborted", G_CALLBACK (on_request_done), s);

  const char *h = host ? host : "127.0.0.1";
  g_autoptr (GInetAddress) addr = g_inet_address_new_from_string (h);
  if (!addr) {
    g_printerr ("vae-server: --host %s is not an IP address\n", h);
    return 1;
  }
  g_autoptr (GSocketAddress) sa = g_inet_socket_address_new (addr, port);
  if (!soup_server_listen (s->soup, sa, 0, &error)) {
    g_printerr ("vae-server: cannot listen on %s:%d: %s\n", h, port, error->message);
    return 1;
  }
  GSList *uris = soup_server_get_uris (s->soup);
  int bound = uris ? g_uri_get_port (uris->data) : port;
  g_slist_free_full (uris, (GDestroyNotify) g_uri_unref);

  s->worker = g_thread_new ("vae-worker", worker_main, s);
  s->loop = g_main_loop_new (NULL, FALSE);
  g_unix_signal_add (SIGTERM, on_sigterm, s);
  g_unix_signal_add (SIGINT, on_sigterm, s);

  printf ("listening on http://%s:%d/\n", h, bound);
  fflush (stdout);
  g_main_loop_run (s->loop);

  /* Let the last replies go out. */
  for (int i = 0; i < 100 && g_main_context_pending (NULL); i++)
    g_main_context_iteration (NULL, FALSE);
  g_mutex_lock (&s->lock);
  s->stopping = TRUE;
  g_cond_broadcast (&s->cond);
  g_mutex_unlock (&s->lock);
  g_thread_join (s->worker);
  /* Disconnecting every client forgets its connection ("disconnected"). */
  soup_server_disconnect (s->soup);
  g_hash_table_unref (s->conns);
  g_object_unref (s->soup);
  g_main_loop_unref (s->loop);
  vae_engine_free (s->engine);
  vae_model_free (s->model);
  g_hash_table_unref (s->requests);
  g_mutex_clear (&s->lock);
  g_cond_clear (&s->cond);
  g_printerr ("vae-server: stopped\n");
  return 0;
}
