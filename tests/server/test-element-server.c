/* vaeencode / vaedecode with backend=remote against vae-server on
 * 127.0.0.1 (real HTTP, the same CPU engine on the server's side), compared
 * with the elements running the local CPU engine:
 *   encode, remote-input=uint8 and png: float32 tolerance (max |diff| 1e-3);
 *   encode, remote-input=float16: the reduced-precision bound of the test
 *     data (relative L2 <= 1e-2; pixels and latents travel as float16);
 *   decode (uint8 frames from the server): within 1 level;
 *   model=sd (a preset, no weights) against a server running kl-sd-mini
 *     (the same channels and factors): as uint8;
 * plus a preset with backend=cpu (an error that names the cause) and the
 * token property (sent, and never in an error).
 * VAE_SERVER: the vae-server program; VAE_TESTDATA: the test data. */
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <gst/gst.h>
#include <math.h>
#include <string.h>

#define MODEL "kl-sd-mini"
#define FRAMES 7
#define SRC "videotestsrc num-buffers=" G_STRINGIFY (FRAMES) " pattern=smpte " \
            "! video/x-raw,format=RGB,width=64,height=48,framerate=10/1"

typedef struct {
  GSubprocess *proc;
  char *url;                   /* http://127.0.0.1:PORT */
} Server;

static char *model_path;
static char *tmpdir;
static Server server;

static void
server_start (Server *s, const char *token)
{
  g_autoptr (GError) err = NULL;
  const char *prog = g_getenv ("VAE_SERVER");
  g_assert_nonnull (prog);
  s->proc = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE, &err, prog, "--model", model_path,
                              "--host", "127.0.0.1", "--port", "0", "--backend", "cpu",
                              "--max-batch", "8", token ? "--token" : NULL, token, NULL);
  g_assert_no_error (err);
  g_autoptr (GDataInputStream) in =
      g_data_input_stream_new (g_subprocess_get_stdout_pipe (s->proc));
  g_autofree char *line = g_data_input_stream_read_line (in, NULL, NULL, &err);
  g_assert_no_error (err);
  g_assert_nonnull (line);
  g_assert_true (g_str_has_prefix (line, "listening on http://127.0.0.1:"));
  s->url = g_strndup (line + strlen ("listening on "),
                      strlen (line) - strlen ("listening on ") - 1);   /* no trailing / */
}

static void
server_stop (Server *s)
{
  if (!s->proc)
    return;
  g_subprocess_send_signal (s->proc, SIGTERM);
  g_subprocess_wait (s->proc, NULL, NULL);
  g_clear_object (&s->proc);
  g_clear_pointer (&s->url, g_free);
}

/* Runs DESC, whose last element is "filesink location=OUT", and returns
 * what it wrote; NULL with *ERROR_TEXT (message and debug text) when the
 * pipeline posted an error. */
static GBytes *
run (const char *desc, char **error_text)
{
  static int serial;
  g_autofree char *out = g_strdup_printf ("%s/out-%d.raw", tmpdir, serial++);
  g_autofree char *full = g_strdup_printf ("%s ! filesink location=%s", desc, out);
  g_autoptr (GError) err = NULL;
  g_test_message ("pipeline: %s", full);
  GstElement *p = gst_parse_launch (full, &err);
  g_assert_no_error (err);
  gst_element_set_state (p, GST_STATE_PLAYING);
  GstBus *bus = gst_element_get_bus (p);
  GstMessage *msg = gst_bus_timed_pop_filtered (bus, 300 * GST_SECOND,
                                                GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  g_assert_nonnull (msg);
  GBytes *bytes = NULL;
  if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR) {
    g_autoptr (GError) e = NULL;
    g_autofree char *dbg = NULL;
    gst_message_parse_error (msg, &e, &dbg);
    g_assert_nonnull (error_text);
    *error_text = g_strdup_printf ("%s | %s", e->message, dbg ? dbg : "");
    g_test_message ("pipeline error: %s", *error_text);
  }
  gst_message_unref (msg);
  gst_object_unref (bus);
  gst_element_set_state (p, GST_STATE_NULL);
  gst_object_unref (p);
  if (!error_text || !*error_text) {
    char *data = NULL;
    gsize len = 0;
    g_assert_true (g_file_get_contents (out, &data, &len, NULL));
    bytes = g_bytes_new_take (data, len);
  }
  g_unlink (out);
  return bytes;
}

static GBytes *
run_ok (const char *desc)
{
  g_autofree char *error_text = NULL;
  GBytes *b = run (desc, &error_text);
  if (!b)
    g_error ("pipeline failed: %s", error_text);
  return b;
}

static GBytes *
encode_local (void)
{
  g_autofree char *d = g_strdup_printf (SRC " ! vaeencode model=%s backend=cpu", model_path);
  return run_ok (d);
}

static void
compare_latents (GBytes *want, GBytes *got, gboolean reduced)
{
  gsize n = 0, m = 0;
  const float *a = g_bytes_get_data (want, &n);
  const float *b = g_bytes_get_data (got, &m);
  g_assert_cmpuint (n, ==, m);
  g_assert_cmpuint (n, >, 0);
  n /= sizeof (float);
  double maxd = 0, num = 0, den = 0;
  for (gsize i = 0; i < n; i++) {
    double d = fabs ((double) a[i] - b[i]);
    maxd = MAX (maxd, d);
    num += d * d;
    den += (double) a[i] * a[i];
  }
  double rel = sqrt (num / MAX (den, 1e-30));
  g_test_message ("%" G_GSIZE_FORMAT " latents: max |diff| %.3g, relative L2 %.3g", n, maxd, rel);
  if (reduced)
    g_assert_cmpfloat (rel, <=, 1e-2);
  else
    g_assert_cmpfloat (maxd, <=, 1e-3);
}

static void
encode_remote (const char *model, const char *input, gboolean reduced)
{
  if (!server.url) {
    g_test_skip ("no test data");
    return;
  }
  g_autoptr (GBytes) want = encode_local ();
  g_autofree char *d = g_strdup_printf (SRC " ! vaeencode model=%s backend=remote "
                                        "endpoint=%s/encode remote-input=%s batch-size=3 "
                                        "max-inflight=2 timeout=120 retries=1",
                                        model, server.url, input);
  g_autoptr (GBytes) got = run_ok (d);
  compare_latents (want, got, reduced);
}

static void test_encode_uint8 (void) { encode_remote (model_path, "uint8", FALSE); }
static void test_encode_png (void) { encode_remote (model_path, "png", FALSE); }
static void test_encode_float16 (void) { encode_remote (model_path, "float16", TRUE); }
/* kl-sd-mini has SD's 4 channels, factor 8 and scaling 0.18215. */
static void test_encode_preset (void) { encode_remote ("sd", "uint8", FALSE); }

static void
test_decode_uint8 (void)
{
  if (!server.url) {
    g_test_skip ("no test data");
    return;
  }
  const char *enc = SRC " ! vaeencode model=%s backend=cpu ! vaedecode model=%s";
  g_autofree char *ld = g_strdup_printf (enc, model_path, model_path);
  g_autofree char *local = g_strdup_printf ("%s backend=cpu ! video/x-raw,format=RGB", ld);
  g_autofree char *remote = g_strdup_printf ("%s backend=remote endpoint=%s/decode "
                                             "batch-size=3 max-inflight=2 "
                                             "! video/x-raw,format=RGB", ld, server.url);
  g_autofree char *preset_d = g_strdup_printf (enc, model_path, "sd");
  g_autofree char *preset = g_strdup_printf ("%s backend=remote endpoint=%s/decode "
                                             "! video/x-raw,format=RGB", preset_d, server.url);
  g_autoptr (GBytes) want = run_ok (local);
  const char *cases[2] = { remote, preset };
  for (int c = 0; c < 2; c++) {
    g_autoptr (GBytes) got = run_ok (cases[c]);
    gsize n = 0, m = 0;
    const guint8 *a = g_bytes_get_data (want, &n), *b = g_bytes_get_data (got, &m);
    g_assert_cmpuint (n, ==, (gsize) FRAMES * 64 * 48 * 3);
    g_assert_cmpuint (n, ==, m);
    int maxd = 0;
    gsize off = 0;
    for (gsize i = 0; i < n; i++) {
      int d = abs ((int) a[i] - (int) b[i]);
      maxd = MAX (maxd, d);
      off += d != 0;
    }
    g_test_message ("%s: %" G_GSIZE_FORMAT " bytes, %" G_GSIZE_FORMAT " differ, max %d",
                    c ? "model=sd" : "model=" MODEL, n, off, maxd);
    g_assert_cmpint (maxd, <=, 1);
  }
}

static void
test_preset_needs_remote (void)
{
  g_autofree char *error_text = NULL;
  g_autoptr (GBytes) b = run (SRC " ! vaeencode model=sdxl backend=cpu", &error_text);
  g_assert_null (b);
  g_assert_nonnull (strstr (error_text, "preset"));
  g_assert_nonnull (strstr (error_text, "backend=remote"));
}

static void
test_token (void)
{
  if (!server.url) {
    g_test_skip ("no test data");
    return;
  }
  Server s = { 0 };
  server_start (&s, "s3cret");
  const char *fmt = SRC " ! vaeencode model=%s backend=remote endpoint=%s/encode token=%s";
  g_autofree char *good = g_strdup_printf (fmt, model_path, s.url, "s3cret");
  g_autofree char *bad = g_strdup_printf (fmt, model_path, s.url, "n0tTheT0ken");
  g_autoptr (GBytes) ok = run_ok (good);
  g_assert_cmpuint (g_bytes_get_size (ok), >, 0);
  g_autofree char *error_text = NULL;
  g_autoptr (GBytes) no = run (bad, &error_text);
  g_assert_null (no);
  g_assert_nonnull (strstr (error_text, "401"));
  g_assert_null (strstr (error_text, "n0tTheT0ken"));
  /* Write-only: nobody reads it back. */
  GstElement *e = gst_element_factory_make ("vaeencode", NULL);
  GParamSpec *ps = g_object_class_find_property (G_OBJECT_GET_CLASS (e), "token");
  g_assert_nonnull (ps);
  g_assert_false (ps->flags & G_PARAM_READABLE);
  gst_object_unref (e);
  server_stop (&s);
}

int
main (int argc, char **argv)
{
  gst_init (&argc, &argv);
  g_test_init (&argc, &argv, NULL);
  const char *td = g_getenv ("VAE_TESTDATA");
  model_path = g_build_filename (td ? td : "../shared/testdata", "models", MODEL, NULL);
  tmpdir = g_dir_make_tmp ("vae-element-server-XXXXXX", NULL);
  g_assert_nonnull (tmpdir);
  if (g_file_test (model_path, G_FILE_TEST_IS_DIR))
    server_start (&server, NULL);
  else
    g_printerr ("SKIPPED: test model %s is missing: the element/vae-server round trips did "
                "NOT run\n", model_path);
  g_test_add_func ("/element-server/encode-uint8", test_encode_uint8);
  g_test_add_func ("/element-server/encode-png", test_encode_png);
  g_test_add_func ("/element-server/encode-float16", test_encode_float16);
  g_test_add_func ("/element-server/encode-preset-sd", test_encode_preset);
  g_test_add_func ("/element-server/decode-uint8", test_decode_uint8);
  g_test_add_func ("/element-server/preset-needs-remote", test_preset_needs_remote);
  g_test_add_func ("/element-server/token", test_token);
  int rc = g_test_run ();
  server_stop (&server);
  g_rmdir (tmpdir);
  g_free (tmpdir);
  g_free (model_path);
  return rc;
}
