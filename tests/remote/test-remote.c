/* The remote engine against a fake Hybrid Inference server of our own
 * (fake_server.py, model-free): order of outputs, unit conversions, retries,
 * and the errors for a bad reply, a 400 and a server that is down. */
#include <gio/gio.h>
#include <math.h>
#include <string.h>

#include "codec.h"
#include "engine.h"
#include "model.h"
#include "safetensors.h"
#include "vae-error.h"

typedef struct {
  GSubprocess *proc;
  int port;
} Server;

static const char *
testdata (void)
{
  const char *d = g_getenv ("VAE_TESTDATA");
  return d ? d : "../shared/testdata";
}

static VaeModel *
load_model (const char *name)
{
  g_autofree char *path = g_build_filename (testdata (), "models", name, NULL);
  if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
    g_autofree char *msg = g_strdup_printf ("SKIPPED: test model %s is missing", path);
    g_printerr ("%s\n", msg);
    g_test_skip (msg);
    return NULL;
  }
  g_autoptr (GError) err = NULL;
  VaeModel *m = vae_model_load (path, NULL, &err);
  g_assert_no_error (err);
  return m;
}

static gboolean
server_start (Server *s, const VaeModel *m)
{
  const char *py = g_getenv ("VAE_PYTHON");
  const char *script = g_getenv ("FAKE_SERVER");
  g_assert_nonnull (script);
  g_autoptr (GError) err = NULL;
  g_autofree char *c = g_strdup_printf ("%d", m->latent_channels);
  g_autofree char *f = g_strdup_printf ("%d", m->spatial_factor);
  s->proc = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDIN_PIPE,
                              &err,
                              py ? py : "python3", script,
                              "--latent-channels", c, "--factor", f, NULL);
  g_assert_no_error (err);
  g_autoptr (GDataInputStream) in =
      g_data_input_stream_new (g_subprocess_get_stdout_pipe (s->proc));
  g_autofree char *line = g_data_input_stream_read_line (in, NULL, NULL, &err);
  g_assert_no_error (err);
  g_assert_nonnull (line);
  const char *p = strstr (line, "127.0.0.1:");
  g_assert_nonnull (p);
  s->port = atoi (p + strlen ("127.0.0.1:"));
  g_assert_cmpint (s->port, >, 0);
  return TRUE;
}

static void
server_stop (Server *s)
{
  if (!s->proc)
    return;
  g_subprocess_force_exit (s->proc);
  g_subprocess_wait (s->proc, NULL, NULL);
  g_clear_object (&s->proc);
}

static VaeEngine *
open_engine (const VaeModel *m, const char *endpoint)
{
  VaeEngineOptions o = VAE_ENGINE_OPTIONS_INIT;
  g_autofree char *ep = g_strconcat ("endpoint=", endpoint, NULL);
  const char *settings[] = { ep, NULL };
  o.settings = settings;
  g_autoptr (GError) err = NULL;
  VaeEngine *e = vae_engine_new ("remote", m, &o, &err);
  g_assert_no_error (err);
  g_assert_nonnull (e);
  return e;
}

/* What the fake server's encode gives, through the engine's conversions:
 * the pixels it sees are 0..255, from the uint8 body, or (F16) (v+1)*127.5
 * of the float16 body's v in [-1,1]. */
static void
expect_encode (const VaeModel *m, const VaeBatch *b, gboolean f16, float *exp)
{
  int f = m->spatial_factor, C = m->latent_channels;
  int oc = vae_engine_output_channels (m, VAE_DIRECTION_ENCODE);
  int lh = b->h / f, lw = b->w / f;
  float lo = m->image_min, inv = 1.0f / (1.0f - m->image_min);
  for (int n = 0; n < b->n; n++)
    for (int c = 0; c < oc; c++)
      for (int y = 0; y < lh; y++)
        for (int x = 0; x < lw; x++) {
          float v = 0.0f;
          if (c < C) {
            const float *src = b->input + ((gsize) n * 3 + (gsize) (c % 3)) * b->h * b->w;
            double s = 0;
            for (int dy = 0; dy < f; dy++)
              for (int dx = 0; dx < f; dx++) {
                float xx = (src[(y * f + dy) * b->w + x * f + dx] - lo) * inv;
                if (f16) {
                  float v = m->image_min == -1.0f ? src[(y * f + dy) * b->w + x * f + dx]
                                                  : xx * 2.0f - 1.0f;
                  s += ((double) vae_f16_to_f32 (vae_f32_to_f16 (v)) + 1.0) * 127.5;
                  continue;
                }
                xx = xx < 0 ? 0 : xx > 1 ? 1 : xx;
                s += (double) lrintf (xx * 255.0f);
              }
            v = (float) (s / (f * f) / 127.5 - 1.0);
          }
          exp[(((gsize) n * oc + c) * lh + y) * lw + x] = v;
        }
}

/* The fake server's uint8 frames (round((v+1)/2 * 255), half to even, of
 * the latent v) mapped back to the model's range as the engine does. */
static void
expect_decode (const VaeModel *m, const VaeBatch *b, float *exp)
{
  int f = m->spatial_factor, C = m->latent_channels;
  int H = b->h * f, W = b->w * f;
  for (int n = 0; n < b->n; n++)
    for (int c = 0; c < 3; c++)
      for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
          double v = b->input[(((gsize) n * C + (c % C)) * b->h + y / f) * b->w + x / f];
          float p = (float) rint (CLAMP ((v + 1.0) / 2.0, 0.0, 1.0) * 255.0);
          exp[(((gsize) n * 3 + c) * H + y) * W + x] =
              p / 255.0f * (1.0f - m->image_min) + m->image_min;
        }
}

typedef struct {
  VaeBatch batch;
  float *in, *out, *exp;
  gsize in_n, out_n;
} TestBatch;

static void
make_batch (const VaeModel *m, VaeDirection dir, int n, int h, int w, int tag, TestBatch *t)
{
  int f = m->spatial_factor;
  memset (t, 0, sizeof *t);
  t->batch.direction = dir;
  t->batch.n = n;
  t->batch.h = h;
  t->batch.w = w;
  t->batch.user_data = GINT_TO_POINTER (tag);
  int ic = dir == VAE_DIRECTION_ENCODE ? 3 : m->latent_channels;
  int oc = vae_engine_output_channels (m, dir);
  int oh = dir == VAE_DIRECTION_ENCODE ? h / f : h * f;
  int ow = dir == VAE_DIRECTION_ENCODE ? w / f : w * f;
  t->in_n = (gsize) n * ic * h * w;
  t->out_n = (gsize) n * oc * oh * ow;
  t->in = g_new (float, t->in_n);
  t->out = g_new (float, t->out_n);
  t->exp = g_new (float, t->out_n);
  GRand *rand = g_rand_new_with_seed ((guint32) tag + 1);
  for (gsize i = 0; i < t->in_n; i++)
    t->in[i] = dir == VAE_DIRECTION_ENCODE
        ? (float) g_rand_double_range (rand, m->image_min, 1.0)
        : (float) g_rand_double_range (rand, -1.0, 1.0);
  g_rand_free (rand);
  for (gsize i = 0; i < t->out_n; i++)
    t->out[i] = NAN;
  t->batch.input = t->in;
  t->batch.output = t->out;
  if (dir == VAE_DIRECTION_ENCODE)
    expect_encode (m, &t->batch, FALSE, t->exp);
  else
    expect_decode (m, &t->batch, t->exp);
}

static void
free_batch (TestBatch *t)
{
  g_free (t->in);
  g_free (t->out);
  g_free (t->exp);
  g_clear_error (&t->batch.error);
}

static void
check_batch (TestBatch *t)
{
  g_assert_no_error (t->batch.error);
  for (gsize i = 0; i < t->out_n; i++)
    if (!(fabsf (t->out[i] - t->exp[i]) <= 1e-5f))
      g_error ("batch %d element %" G_GSIZE_FORMAT ": got %g, expected %g",
               GPOINTER_TO_INT (t->batch.user_data), i, t->out[i], t->exp[i]);
}

/* Several batches over two endpoints whose replies come back in random
 * order: outputs in submission order, equal to the fake transformation. */
static void
run_order (const char *model_name, VaeDirection dir)
{
  g_autoptr (VaeModel) m = load_model (model_name);
  if (!m)
    return;
  Server s = { 0 };
  server_start (&s, m);
  g_autofree char *ep = g_strdup_printf ("http://127.0.0.1:%d/delay, http://127.0.0.1:%d/predict",
                                         s.port, s.port);
  VaeEngine *e = open_engine (m, ep);
  enum { N = 7 };
  TestBatch t[N];
  for (int i = 0; i < N; i++) {
    int h = dir == VAE_DIRECTION_ENCODE ? 32 : 4, w = dir == VAE_DIRECTION_ENCODE ? 24 : 3;
    make_batch (m, dir, 1 + i % 3, h, w, i, &t[i]);
    g_autoptr (GError) err = NULL;
    g_assert_true (vae_engine_submit (e, &t[i].batch, &err));
    g_assert_no_error (err);
  }
  for (int i = 0; i < N; i++) {
    VaeBatch *b = vae_engine_wait (e);
    g_assert_nonnull (b);
    g_assert_cmpint (GPOINTER_TO_INT (b->user_data), ==, i);
    check_batch (&t[i]);
  }
  g_assert_null (vae_engine_wait (e));
  vae_engine_free (e);
  for (int i = 0; i < N; i++)
    free_batch (&t[i]);
  server_stop (&s);
}

static void test_encode_order_tiny (void) { run_order ("tiny-sd-random", VAE_DIRECTION_ENCODE); }
static void test_decode_order_tiny (void) { run_order ("tiny-sd-random", VAE_DIRECTION_DECODE); }
static void test_encode_order_kl (void) { run_order ("kl-sd-mini", VAE_DIRECTION_ENCODE); }
static void test_decode_order_kl (void) { run_order ("kl-sd-mini", VAE_DIRECTION_DECODE); }

/* One encode batch against PATH on a live server (or PORT when no server);
 * returns the batch's error, NULL on success (outputs checked). */
static GError *
run_one (const VaeModel *m, const char *url)
{
  VaeEngine *e = open_engine (m, url);
  TestBatch t;
  make_batch (m, VAE_DIRECTION_ENCODE, 2, 16, 16, 42, &t);
  g_autoptr (GError) err = NULL;
  if (vae_engine_run (e, &t.batch, &err))
    check_batch (&t);
  else
    g_assert_nonnull (err);
  vae_engine_free (e);
  free_batch (&t);
  return g_steal_pointer (&err);
}

static void
test_retry_503 (void)
{
  g_autoptr (VaeModel) m = load_model ("tiny-sd-random");
  if (!m)
    return;
  Server s = { 0 };
  server_start (&s, m);
  g_autofree char *url = g_strdup_printf ("http://127.0.0.1:%d/flaky", s.port);
  g_autoptr (GError) err = run_one (m, url);
  g_assert_no_error (err);
  server_stop (&s);
}

static void
expect_error (const char *path, const char *needle)
{
  g_autoptr (VaeModel) m = load_model ("tiny-sd-random");
  if (!m)
    return;
  Server s = { 0 };
  server_start (&s, m);
  g_autofree char *url = g_strdup_printf ("http://127.0.0.1:%d%s", s.port, path);
  g_autoptr (GError) err = NULL;
  VaeEngine *e = open_engine (m, url);
  TestBatch t;
  make_batch (m, VAE_DIRECTION_ENCODE, 2, 16, 16, 1, &t);
  g_assert_false (vae_engine_run (e, &t.batch, &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_ENGINE);
  g_test_message ("error: %s", err->message);
  g_assert_nonnull (strstr (err->message, url));
  g_assert_nonnull (strstr (err->message, needle));
  vae_engine_free (e);
  free_batch (&t);
  server_stop (&s);
}

/* The number of TCP connections the fake server has accepted. */
static int
server_connections (const Server *s)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GSocketConnection) conn =
      g_socket_client_connect_to_host (client, "127.0.0.1", (guint16) s->port, NULL, &err);
  g_assert_no_error (err);
  const char *req = "GET /connections HTTP/1.0\r\n\r\n";
  GOutputStream *out = g_io_stream_get_output_stream (G_IO_STREAM (conn));
  g_assert_true (g_output_stream_write_all (out, req, strlen (req), NULL, NULL, &err));
  GInputStream *in = g_io_stream_get_input_stream (G_IO_STREAM (conn));
  char buf[4096];
  gsize got = 0, n = 0;
  do {
    g_assert_true (g_input_stream_read_all (in, buf + got, sizeof buf - 1 - got, &n, NULL, &err));
    got += n;
  } while (n > 0 && got < sizeof buf - 1);
  buf[got] = '\0';
  const char *body = strstr (buf, "\r\n\r\n");
  g_assert_nonnull (body);
  return atoi (body + 4);
}

/* Twelve batches, two in flight: kept-alive connections are reused. */
static void
test_keepalive (void)
{
  g_autoptr (VaeModel) m = load_model ("tiny-sd-random");
  if (!m)
    return;
  Server s = { 0 };
  server_start (&s, m);
  g_setenv ("VAE_REMOTE_MAX_INFLIGHT", "2", TRUE);
  g_autofree char *url = g_strdup_printf ("http://127.0.0.1:%d/predict", s.port);
  VaeEngine *e = open_engine (m, url);
  g_unsetenv ("VAE_REMOTE_MAX_INFLIGHT");
  enum { N = 12 };
  TestBatch t[N];
  for (int i = 0; i < N; i++) {
    make_batch (m, VAE_DIRECTION_ENCODE, 1, 16, 16, i, &t[i]);
    g_assert_true (vae_engine_submit (e, &t[i].batch, NULL));
  }
  for (int i = 0; i < N; i++) {
    g_assert_true (vae_engine_wait (e) == &t[i].batch);
    check_batch (&t[i]);
  }
  vae_engine_free (e);
  for (int i = 0; i < N; i++)
    free_batch (&t[i]);
  int conns = server_connections (&s);
  g_test_message ("%d connections for %d requests", conns - 1, N);
  g_assert_cmpint (conns - 1, <=, 2);   /* the last one is ours */
  server_stop (&s);
}

/* HF_TOKEN goes out as a bearer token, and never into an error message. */
static void
test_token (void)
{
  g_autoptr (VaeModel) m = load_model ("tiny-sd-random");
  if (!m)
    return;
  Server s = { 0 };
  server_start (&s, m);
  g_autofree char *url = g_strdup_printf ("http://127.0.0.1:%d/auth", s.port);
  g_setenv ("HF_TOKEN", "sekrit", TRUE);
  g_autoptr (GError) ok = run_one (m, url);
  g_assert_no_error (ok);
  g_setenv ("HF_TOKEN", "wrongtoken", TRUE);
  g_autoptr (GError) err = run_one (m, url);
  g_unsetenv ("HF_TOKEN");
  g_assert_error (err, VAE_ERROR, VAE_ERROR_ENGINE);
  g_test_message ("error: %s", err->message);
  g_assert_nonnull (strstr (err->message, "401"));
  g_assert_null (strstr (err->message, "wrongtoken"));
  server_stop (&s);
}

/* A reply held past the timeout is retried, then reported. */
static void
test_timeout (void)
{
  g_autoptr (VaeModel) m = load_model ("tiny-sd-random");
  if (!m)
    return;
  Server s = { 0 };
  server_start (&s, m);
  g_autofree char *url = g_strdup_printf ("http://127.0.0.1:%d/slow", s.port);
  g_setenv ("VAE_REMOTE_TIMEOUT_MS", "300", TRUE);
  g_setenv ("VAE_REMOTE_RETRIES", "1", TRUE);
  g_autoptr (GError) err = run_one (m, url);
  g_setenv ("VAE_REMOTE_TIMEOUT_MS", "20000", TRUE);
  g_setenv ("VAE_REMOTE_RETRIES", "3", TRUE);
  g_assert_error (err, VAE_ERROR, VAE_ERROR_ENGINE);
  g_test_message ("error: %s", err->message);
  g_assert_nonnull (strstr (err->message, url));
  g_assert_nonnull (strstr (err->message, "2 attempts"));
  g_assert_nonnull (strcasestr (err->message, "timeout"));
  server_stop (&s);
}

static void test_bad_shape (void) { expect_error ("/badshape", "'shape' header [2,5,2,2]"); }
static void test_boom (void) { expect_error ("/boom", "boom"); }

static void
test_server_down (void)
{
  g_autoptr (VaeModel) m = load_model ("tiny-sd-random");
  if (!m)
    return;
  /* A port nobody listens on: bind one, note it, close it. */
  g_autoptr (GError) err = NULL;
  g_autoptr (GSocket) sock = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                                           G_SOCKET_PROTOCOL_TCP, &err);
  g_assert_no_error (err);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) any = g_inet_socket_address_new (lo, 0);
  g_assert_true (g_socket_bind (sock, any, TRUE, &err));
  g_autoptr (GSocketAddress) bound = g_socket_get_local_address (sock, &err);
  int port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  g_socket_close (sock, NULL);

  g_autofree char *url = g_strdup_printf ("http://127.0.0.1:%d/", port);
  VaeEngine *e = open_engine (m, url);
  TestBatch t;
  make_batch (m, VAE_DIRECTION_ENCODE, 1, 16, 16, 1, &t);
  g_assert_false (vae_engine_run (e, &t.batch, &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_ENGINE);
  g_test_message ("error: %s", err->message);
  g_assert_nonnull (strstr (err->message, url));
  g_assert_nonnull (strstr (err->message, "attempts"));
  vae_engine_free (e);
  free_batch (&t);
}

static void
test_bad_endpoint (void)
{
  g_autoptr (VaeModel) m = load_model ("tiny-sd-random");
  if (!m)
    return;
  VaeEngineOptions o = VAE_ENGINE_OPTIONS_INIT;
  g_autoptr (GError) err = NULL;
  const char *blank[] = { "endpoint= , ", NULL };
  o.settings = blank;
  g_assert_null (vae_engine_new ("remote", m, &o, &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_ARGUMENT);
  g_clear_error (&err);
  o.settings = NULL;   /* none at all */
  g_assert_null (vae_engine_new ("remote", m, &o, &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_ARGUMENT);
  g_assert_nonnull (strstr (err->message, "no endpoint"));
  g_clear_error (&err);
  const char *ftp[] = { "endpoint=ftp://user:secret@host/", NULL };
  o.settings = ftp;
  g_assert_null (vae_engine_new ("remote", m, &o, &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_ARGUMENT);
  g_assert_null (strstr (err->message, "secret"));
}

/* remote_input=float16: one float16 [B,3,H,W] tensor in [-1,1] a batch. */
static void
test_encode_float16 (void)
{
  g_autoptr (VaeModel) m = load_model ("kl-sd-mini");
  if (!m)
    return;
  Server s = { 0 };
  server_start (&s, m);
  VaeEngineOptions o = VAE_ENGINE_OPTIONS_INIT;
  g_autofree char *url = g_strdup_printf ("http://127.0.0.1:%d/predict", s.port);
  g_autofree char *ep = g_strconcat ("endpoint=", url, NULL);
  const char *settings[] = { ep, "input=float16", NULL };
  o.settings = settings;
  g_autoptr (GError) err = NULL;
  VaeEngine *e = vae_engine_new ("remote", m, &o, &err);
  g_assert_no_error (err);
  TestBatch t;
  make_batch (m, VAE_DIRECTION_ENCODE, 3, 16, 24, 5, &t);
  expect_encode (m, &t.batch, TRUE, t.exp);
  g_assert_true (vae_engine_run (e, &t.batch, &err));
  check_batch (&t);
  vae_engine_free (e);
  free_batch (&t);
  server_stop (&s);
}

/* The token, timeout and retries options win over the environment, and a
 * refused token is not in the message. */
static void
test_options_over_env (void)
{
  g_autoptr (VaeModel) m = load_model ("tiny-sd-random");
  if (!m)
    return;
  Server s = { 0 };
  server_start (&s, m);
  g_autofree char *auth = g_strdup_printf ("http://127.0.0.1:%d/auth", s.port);
  g_autofree char *slow = g_strdup_printf ("http://127.0.0.1:%d/slow", s.port);
  VaeEngineOptions o = VAE_ENGINE_OPTIONS_INIT;
  TestBatch t;
  g_autoptr (GError) err = NULL;

  g_setenv ("HF_TOKEN", "wrongtoken", TRUE);
  g_autofree char *ep_auth = g_strconcat ("endpoint=", auth, NULL);
  g_autofree char *ep_slow = g_strconcat ("endpoint=", slow, NULL);
  const char *good[] = { ep_auth, "token=sekrit", NULL };
  o.settings = good;
  VaeEngine *e = vae_engine_new ("remote", m, &o, &err);
  g_assert_no_error (err);
  g_assert_null (e->options.settings);   /* not kept past open */
  make_batch (m, VAE_DIRECTION_ENCODE, 1, 16, 16, 3, &t);
  g_assert_true (vae_engine_run (e, &t.batch, &err));
  check_batch (&t);
  vae_engine_free (e);
  free_batch (&t);

  g_unsetenv ("HF_TOKEN");
  const char *bad[] = { ep_auth, "token=badtoken", NULL };
  o.settings = bad;
  e = vae_engine_new ("remote", m, &o, &err);
  make_batch (m, VAE_DIRECTION_ENCODE, 1, 16, 16, 3, &t);
  g_assert_false (vae_engine_run (e, &t.batch, &err));
  g_test_message ("error: %s", err->message);
  g_assert_nonnull (strstr (err->message, "the token was refused"));
  g_assert_null (strstr (err->message, "badtoken"));
  g_clear_error (&err);
  vae_engine_free (e);
  free_batch (&t);

  /* The environment says 20 s and 3 retries; the options 0.3 s, none. */
  const char *fast[] = { ep_slow, "timeout-ms=300", "retries=0", NULL };
  o.settings = fast;
  e = vae_engine_new ("remote", m, &o, &err);
  make_batch (m, VAE_DIRECTION_ENCODE, 1, 16, 16, 3, &t);
  gint64 t0 = g_get_monotonic_time ();
  g_assert_false (vae_engine_run (e, &t.batch, &err));
  g_test_message ("error after %.1f s: %s", (g_get_monotonic_time () - t0) / 1e6, err->message);
  g_assert_nonnull (strstr (err->message, "after 1 attempt)"));
  g_assert_cmpint (g_get_monotonic_time () - t0, <, 2 * G_USEC_PER_SEC);
  vae_engine_free (e);
  free_batch (&t);
  server_stop (&s);
}

/* Engine settings: unknown keys and bad values are errors naming the key
 * and the engine; the text form's escapes. */
static void
test_settings (void)
{
  g_autoptr (VaeModel) m = load_model ("tiny-sd-random");
  if (!m)
    return;
  VaeEngineOptions o = VAE_ENGINE_OPTIONS_INIT;
  g_autoptr (GError) err = NULL;
  struct { const char *backend, *setting, *want[3]; } cases[] = {
    { "remote", "colour=red", { "engine 'remote' has no setting 'colour'", "endpoint, token" } },
    { "cpu", "token=sekrit", { "engine 'cpu' has no setting 'token'",
                               "(it takes: winograd, winograd-max-mib)" } },
    { "cpu", "winograd=fast", { "engine 'cpu'", "winograd='fast'", "auto, off" } },
    { "cpu", "winograd-max-mib=0", { "engine 'cpu'", "winograd-max-mib='0'", "1 to" } },
    { "cpu", "sekrit", { "engine 'cpu': setting 1 is not key=value" } },
    { "remote", "timeout-ms=soon", { "engine 'remote'", "timeout-ms='soon'", "1 to 3600000" } },
    { "remote", "retries=101", { "retries='101'", "0 to 100" } },
    { "remote", "input=jpeg", { "input='jpeg'", "uint8, float16, png" } },
    { "remote", "=x", { "engine 'remote': setting 2 is not key=value" } },
    { "remote", "novalue", { "setting 2 is not key=value" } },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    const gboolean remote = g_str_equal (cases[i].backend, "remote");
    const char *settings[] = { remote ? "endpoint=http://127.0.0.1:9/" : cases[i].setting,
                               remote ? cases[i].setting : NULL, NULL };
    o.settings = settings;
    g_assert_null (vae_engine_new (cases[i].backend, m, &o, &err));
    g_test_message ("%s %s: %s", cases[i].backend, cases[i].setting, err->message);
    g_assert_error (err, VAE_ERROR, VAE_ERROR_ARGUMENT);
    for (int k = 0; k < 3 && cases[i].want[k]; k++)
      g_assert_nonnull (strstr (err->message, cases[i].want[k]));
    g_assert_null (strstr (err->message, "sekrit"));
    g_clear_error (&err);
  }
  /* The last value of a key counts. */
  const char *twice[] = { "endpoint=ftp://x/", "endpoint=http://127.0.0.1:9/", NULL };
  o.settings = twice;
  VaeEngine *e = vae_engine_new ("remote", m, &o, &err);
  g_assert_no_error (err);
  vae_engine_free (e);

  g_auto (GStrv) p = vae_engine_settings_parse (
      " endpoint=http://a/\\,http://b/?x=1 , token=a\\\\b,, retries=2,", &err);
  g_assert_no_error (err);
  g_assert_cmpuint (g_strv_length (p), ==, 3);
  g_assert_cmpstr (p[0], ==, "endpoint=http://a/,http://b/?x=1 ");
  g_assert_cmpstr (p[1], ==, "token=a\\b");
  g_assert_cmpstr (p[2], ==, "retries=2");
  g_auto (GStrv) none = vae_engine_settings_parse (NULL, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (g_strv_length (none), ==, 0);
  g_assert_null (vae_engine_settings_parse ("a=1,sekrit", &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_ARGUMENT);
  g_assert_nonnull (strstr (err->message, "entry 2"));
  g_assert_null (strstr (err->message, "sekrit"));
  g_clear_error (&err);
  g_assert_null (vae_engine_settings_parse (" =1", &err));
  g_clear_error (&err);

  /* What each engine takes is listed. */
  VaeEngineInfo info;
  g_assert_true (vae_engine_backend_info ("remote", &info));
  g_assert_nonnull (info.settings);
  g_assert_cmpstr (info.settings[0].key, ==, "endpoint");
  g_assert_true (vae_engine_backend_info ("cpu", &info));
  g_assert_nonnull (info.settings);
  g_assert_cmpstr (info.settings[0].key, ==, "winograd");
  g_assert_cmpstr (info.settings[1].key, ==, "winograd-max-mib");
  g_assert_null (info.settings[2].key);
  /* Valid cpu settings open. */
  const char *cpu_ok[] = { "winograd=off", "winograd-max-mib=16", NULL };
  o.settings = cpu_ok;
  e = vae_engine_new ("cpu", m, &o, &err);
  g_assert_no_error (err);
  vae_engine_free (e);
}

/* A preset (no weights) runs on the remote engine only. */
static void
test_preset (void)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (VaeModel) m = vae_model_load ("sd", NULL, &err);
  g_assert_no_error (err);
  g_assert_true (m->config_only);
  g_assert_cmpint (m->latent_channels, ==, 4);
  g_assert_cmpfloat (m->scaling_factor, ==, 0.18215);
  g_autoptr (VaeModel) flux = vae_model_load ("flux", NULL, &err);
  g_assert_no_error (err);
  g_assert_cmpint (flux->latent_channels, ==, 16);
  g_assert_cmpfloat (flux->shift_factor, ==, 0.1159);
  /* flux2: 32 channels in 2x2 patches, 128 normalised at 16x (the
   * server's normalisation: identity statistics here), 32 raw at 8x. */
  g_autoptr (VaeModel) flux2 = vae_model_load ("flux2", NULL, &err);
  g_assert_no_error (err);
  g_assert_true (flux2->config_only);
  g_assert_cmpint (flux2->latent_channels, ==, 32);
  g_assert_cmpint (flux2->latent_patch, ==, 2);
  g_assert_cmpint (flux2->spatial_factor, ==, 8);
  g_assert_cmpfloat (flux2->scaling_factor, ==, 1.0);
  g_assert_cmpfloat (flux2->shift_factor, ==, 0.0);
  g_assert_cmpint (vae_latent_format_channels (flux2, VAE_LATENT_FORMAT_NORMALIZED), ==, 128);
  g_assert_cmpint (vae_latent_format_factor (flux2, VAE_LATENT_FORMAT_NORMALIZED), ==, 16);
  g_assert_cmpint (vae_latent_format_channels (flux2, VAE_LATENT_FORMAT_RAW), ==, 32);
  g_assert_cmpint (vae_latent_format_factor (flux2, VAE_LATENT_FORMAT_RAW), ==, 8);
  g_assert_cmpint (vae_engine_output_channels (flux2, VAE_DIRECTION_ENCODE), ==, 64);
  g_assert_cmpstr (vae_latent_normalization_name (flux2, VAE_LATENT_FORMAT_NORMALIZED), ==,
                   "patch2x2-batch-norm");
  for (int c = 0; c < 128; c++) {
    g_assert_cmpfloat (flux2->latents_mean[c], ==, 0.0f);
    g_assert_cmpfloat (flux2->latents_std[c], ==, 1.0f);
  }
  g_assert_nonnull (strstr (vae_model_preset_names (), "flux2"));
  /* The codec round trip through the patches is exact (what the engine
   * does with the server's normalised latents). */
  {
    float net[32 * 4 * 6], patched[32 * 4 * 6], back[32 * 4 * 6];
    for (guint i = 0; i < G_N_ELEMENTS (net); i++)
      net[i] = (float) i;
    vae_latents_patchify (net, 32, 4, 6, 2, patched);
    /* channel c*4 + dy*2 + dx at (y, x) is the network's (c, 2y+dy, 2x+dx) */
    g_assert_cmpfloat (patched[(5 * 4 + 1 * 2 + 0) * 6 + 1 * 3 + 2], ==,
                       net[(5 * 4 + 3) * 6 + 4]);
    vae_latents_unpatchify (patched, 32, 4, 6, 2, back);
    g_assert_cmpmem (back, sizeof back, net, sizeof net);
  }
  g_assert_null (vae_model_load ("sd4", NULL, &err));
  g_assert_nonnull (strstr (err->message, "sd, sdxl, sd3, flux, flux2"));
  g_clear_error (&err);

  VaeEngineOptions o = VAE_ENGINE_OPTIONS_INIT;
  for (const char *const *b = vae_engine_backends (); *b; b++) {
    if (g_str_equal (*b, "remote"))
      continue;
    g_assert_null (vae_engine_new (*b, m, &o, &err));
    g_test_message ("%s: %s", *b, err->message);
    g_assert_nonnull (strstr (err->message, "preset"));
    g_assert_nonnull (strstr (err->message, "remote"));
    g_clear_error (&err);
  }

  Server s = { 0 };
  server_start (&s, m);
  g_autofree char *url = g_strdup_printf ("http://127.0.0.1:%d/delay", s.port);
  VaeEngine *e = open_engine (m, url);
  for (int d = 0; d < 2; d++) {
    TestBatch t;
    make_batch (m, d ? VAE_DIRECTION_DECODE : VAE_DIRECTION_ENCODE, 2,
                d ? 2 : 16, d ? 3 : 24, d, &t);
    g_assert_true (vae_engine_run (e, &t.batch, &err));
    check_batch (&t);
    free_batch (&t);
  }
  vae_engine_free (e);
  server_stop (&s);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_setenv ("VAE_REMOTE_BACKOFF_MS", "10", TRUE);
  g_setenv ("VAE_REMOTE_RETRIES", "3", TRUE);
  g_setenv ("VAE_REMOTE_TIMEOUT_MS", "20000", TRUE);
  g_unsetenv ("HF_TOKEN");
  g_test_add_func ("/remote/encode-order-tiny", test_encode_order_tiny);
  g_test_add_func ("/remote/decode-order-tiny", test_decode_order_tiny);
  g_test_add_func ("/remote/encode-order-kl", test_encode_order_kl);
  g_test_add_func ("/remote/decode-order-kl", test_decode_order_kl);
  g_test_add_func ("/remote/retry-503", test_retry_503);
  g_test_add_func ("/remote/bad-shape", test_bad_shape);
  g_test_add_func ("/remote/boom", test_boom);
  g_test_add_func ("/remote/server-down", test_server_down);
  g_test_add_func ("/remote/bad-endpoint", test_bad_endpoint);
  g_test_add_func ("/remote/settings", test_settings);
  g_test_add_func ("/remote/keepalive", test_keepalive);
  g_test_add_func ("/remote/token", test_token);
  g_test_add_func ("/remote/timeout", test_timeout);
  g_test_add_func ("/remote/encode-float16", test_encode_float16);
  g_test_add_func ("/remote/options-over-env", test_options_over_env);
  g_test_add_func ("/remote/preset", test_preset);
  return g_test_run ();
}
