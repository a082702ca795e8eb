/* vae-server: what its parts share (the server's state, a request's job)
 * and the functions one part calls in another.
 *
 * The server is split by job, one file each (tools/vae-server/):
 *   main.c         options, set-up, the main loop, SIGTERM
 *   http.c         routes, the libsoup handlers, replies and their status
 *   auth.c         the bearer token check
 *   connections.c  following each connection: read and idle timeouts
 *   request.c      a request in the protocol's terms to the engine's input
 *   reply.c        the engine's output to the protocol's reply bodies
 *   batching.c     the worker thread: merging requests into engine batches
 *   metrics.c      counters and /metrics (Prometheus text)
 * The wire format itself (dtypes, shapes, query, error bodies) is
 * gst/vae/core/wire-protocol.h, shared with the remote engine. */
#pragma once
#include "engine.h"
#include "codec.h"
#include "model.h"
#include "safetensors.h"
#include "vae-error.h"
#include "wire-protocol.h"

#include <libsoup/soup.h>
#include <string.h>

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
  /* The latents' format (codec.h; query latent_format, on decode else by
   * the channel count): n, h, w above stay the engine's (the network's
   * latent size on decode; FLUX.2 normalised latents are half of it). */
  VaeLatentFormat format;
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

/* metrics.c */
void record_request (Server *s, const char *route, guint status, gint64 start_us);
void record_batch (Server *s, VaeDirection direction, int n, gint64 us, gboolean ok);
char *metrics_text (Server *s);

/* auth.c: whether MSG carries the server's token (TRUE when it has none). */
gboolean authorized (Server *s, SoupServerMessage *msg);

/* http.c */
const char *route_of (const char *path);
void reply_error (Server *s, SoupServerMessage *msg, const char *route, gint64 start_us,
                  guint status, const char *message);
void job_free (Job *job);
/* On the main context once JOB's reply is ready (from the worker). */
gboolean job_finish_idle (gpointer data);
void early_handler (SoupServer *soup, SoupServerMessage *msg, const char *path,
                    GHashTable *query, gpointer data);
void handler (SoupServer *soup, SoupServerMessage *msg, const char *path, GHashTable *query,
              gpointer data);

/* connections.c: libsoup's request signals, and the free function of
 * Server.conns. */
typedef struct _Conn Conn;
void conn_free (Conn *c);
void on_request_started (SoupServer *soup, SoupServerMessage *msg, gpointer data);
void on_request_read (SoupServer *soup, SoupServerMessage *msg, gpointer data);
void on_request_done (SoupServer *soup, SoupServerMessage *msg, gpointer data);

/* request.c: fill JOB's engine input from the request; FALSE with the
 * status (400 unless set) and message in *STATUS and *ERR. */
gboolean prepare_encode (Server *s, Job *job, const VaeWireQuery *q, GBytes *body,
                         guint *status, char **err);
gboolean prepare_decode (Server *s, Job *job, SoupServerMessage *msg, const VaeWireQuery *q,
                         GBytes *body, guint *status, char **err);

/* reply.c */
void job_set_error (Job *j, const GError *error, const char *prefix);
void job_build_reply (Server *s, Job *j);

/* batching.c */
gsize frame_in_size (Server *s, const Job *j);
gsize frame_out_size (Server *s, const Job *j);
gpointer worker_main (gpointer data);
