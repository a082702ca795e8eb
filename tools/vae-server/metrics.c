/* vae-server: metrics.
 *
 * Why a file of its own: the counters are touched from the main thread
 * (requests) and the worker (batches) under the server's lock, and /metrics
 * renders them as Prometheus text; nothing else in the server needs to know
 * their names or buckets. */
#include "vae-server.h"

static const int hist_bounds[7] = { 1, 2, 4, 8, 16, 32, 64 };

/* ---- metrics ---- */

void
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

char *
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

void
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
