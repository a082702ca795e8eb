/* vae-server: connections.
 *
 * Why a file of its own: libsoup 3.2 neither closes keep-alive connections
 * that the client closed while idle nor times out stalled requests, so the
 * server follows every connection itself (a state machine per socket; the
 * long comment below says how).  Nothing here knows the protocol. */
#include "vae-server.h"

#include <errno.h>
#include <sys/socket.h>

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

struct _Conn {
  Server *server;
  GSocket *socket;            /* owned ref; the key in server->conns */
  SoupServerMessage *msg;     /* owned ref: the connection's latest message */
  ConnState state;
  gboolean unclaimed;         /* READING on bytes seen while IDLE that libsoup
                               * has not started a request with yet */
  gint64 since_us;            /* start of the state, or the last progress */
  GSource *timer;             /* ready at the state's deadline */
  GSource *watch;             /* IDLE: the socket readable or hung up */
};

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

void
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
void
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
void
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
void
on_request_done (SoupServer *soup, SoupServerMessage *msg, gpointer data)
{
  Conn *c = conn_of (data, msg);
  (void) soup;
  if (c && c->msg == msg)
    conn_enter (c, CONN_IDLE);
}
