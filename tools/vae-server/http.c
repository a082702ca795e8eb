/* vae-server: HTTP.
 *
 * Why a file of its own: this is where libsoup's messages become jobs and
 * jobs become replies: routes (POST /encode, POST /decode, GET / and
 * /health, GET /metrics), the early checks before a body is read (token,
 * body size, 413 without reading it), queueing a job for the worker with
 * its message paused, and the reply once the worker is done.  The
 * protocol's meaning of a request is request.c's, the bodies reply.c's. */
#include "vae-server.h"

/* ---- replies (main thread) ---- */

static void
reply_bytes (SoupServerMessage *msg, guint status, const char *content_type,
             const void *data, gsize len)
{
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, content_type, SOUP_MEMORY_COPY, data, len);
}

void
reply_error (Server *s, SoupServerMessage *msg, const char *route, gint64 start_us,
             guint status, const char *message)
{
  gsize len;
  g_autofree char *text = vae_wire_error_json (message, &len);
  reply_bytes (msg, status, VAE_WIRE_CONTENT_TYPE_JSON, text, len);
  record_request (s, route, status, start_us);
}

void
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

gboolean
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

const char *
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
void
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

void
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
