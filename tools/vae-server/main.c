/* vae-server: the Hybrid Inference VAE protocol over HTTP (libsoup 3).
 *
 * This file: the options, set-up, the main loop and SIGTERM; the parts
 * are listed in vae-server.h.
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
#include "vae-server.h"

#include <glib-unix.h>
#include <stdio.h>

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
