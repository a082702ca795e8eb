/* gst-vae: helpers shared by the element tests (GstHarness). */
#include "element-test-util.h"

#include <gst/check/gstcheck.h>
#include <math.h>
#include <string.h>
#include "engine.h"
#include "safetensors.h"

char *testdata;

gboolean
have_testdata (void)
{
  if (testdata && g_file_test (testdata, G_FILE_TEST_IS_DIR))
    return TRUE;
  g_test_skip ("VAE_TESTDATA is not set or missing: cannot run element tests without "
               "../shared/testdata (models and references)");
  return FALSE;
}

char *
model_path (const char *name)
{
  return g_build_filename (testdata, "models", name, NULL);
}

GstHarness *
harness_for_model (const char *factory, const char *model, const char *extra)
{
  g_autofree char *path = model_path (model);
  g_autofree char *desc = g_strdup_printf ("%s model=\"%s\" %s", factory, path,
                                           extra ? extra : "");
  return gst_harness_new_parse (desc);
}

VaeSafetensors *
open_reference (const char *name)
{
  g_autofree char *path = g_build_filename (testdata, "reference", name, NULL);
  GError *err = NULL;
  VaeSafetensors *st = vae_safetensors_open (path, &err);
  g_assert_no_error (err);
  return st;
}

GstMessage *
pop_error (GstBus *bus, GError **err, char **dbg)
{
  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  g_assert_nonnull (msg);
  gst_message_parse_error (msg, err, dbg);
  return msg;
}

GstMessage *
push_refused (GstHarness *h, GstBus *bus, GstBuffer *buf, const char *what, GError **err,
              char **dbg)
{
  g_assert_cmpint (gst_harness_push (h, buf), !=, GST_FLOW_OK);
  GstMessage *msg = pop_error (bus, err, dbg);
  g_test_message ("%s: %s (%s)", what, (*err)->message, dbg && *dbg ? *dbg : "-");
  return msg;
}

GstMessage *
start_and_get_error (GstElement *element, GstStateChangeReturn *ret)
{
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (element, bus);
  *ret = gst_element_set_state (element, GST_STATE_PAUSED);
  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  gst_element_set_state (element, GST_STATE_NULL);
  gst_element_set_bus (element, NULL);
  gst_object_unref (bus);
  return msg;
}

GstElement *
start_missing_model (const char *factory, const char *model)
{
  GstElement *e = gst_element_factory_make (factory, NULL);
  g_assert_nonnull (e);
  g_object_set (e, "model", model, NULL);
  GstStateChangeReturn ret;
  GstMessage *msg = start_and_get_error (e, &ret);
  g_assert_cmpint (ret, ==, GST_STATE_CHANGE_FAILURE);
  g_assert_nonnull (msg);
  GError *err = NULL;
  char *dbg = NULL;
  gst_message_parse_error (msg, &err, &dbg);
  g_assert_error (err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (dbg, model));
  clear_error (msg, &err, &dbg);
  return e;
}

static GstPadProbeReturn
eos_probe (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  if (GST_EVENT_TYPE (GST_PAD_PROBE_INFO_EVENT (info)) == GST_EVENT_EOS)
    g_atomic_int_set ((gint *) data, 1);
  return GST_PAD_PROBE_OK;
}

guint
count_errors (const char *desc, const char *name)
{
  GError *err = NULL;
  GstElement *pipeline = gst_parse_launch (desc, &err);
  g_assert_no_error (err);
  GstBus *bus = gst_element_get_bus (pipeline);
  GstElement *element = gst_bin_get_by_name (GST_BIN (pipeline), name);
  g_assert_nonnull (element);
  GstPad *sink = gst_element_get_static_pad (element, "sink");
  GstMessage *msg;
  gboolean src_done = FALSE;
  gint eos = 0;
  guint n = 0;

  gst_pad_add_probe (sink, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, eos_probe, &eos, NULL);
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  /* The source's own error (not-negotiated) follows the element's first.
   * Then the source pushes EOS, which upstream precedes with the refused
   * caps once more: wait until the EOS has reached the element, so that
   * every retry has run before the pipeline stops. */
  while (!src_done
         && (msg = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
                                               GST_MESSAGE_ERROR | GST_MESSAGE_EOS))) {
    if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS
        || g_strcmp0 (GST_OBJECT_NAME (GST_MESSAGE_SRC (msg)), "src") == 0)
      src_done = TRUE;
    else if (g_strcmp0 (GST_OBJECT_NAME (GST_MESSAGE_SRC (msg)), name) == 0)
      n++;
    gst_message_unref (msg);
  }
  g_assert_true (src_done);
  gint64 end = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  while (!g_atomic_int_get (&eos) && g_get_monotonic_time () < end)
    g_usleep (10000);
  g_assert_true (g_atomic_int_get (&eos));
  /* Before the state change: going to NULL flushes the bus. */
  while ((msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR))) {
    if (g_strcmp0 (GST_OBJECT_NAME (GST_MESSAGE_SRC (msg)), name) == 0)
      n++;
    gst_message_unref (msg);
  }
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (sink);
  gst_object_unref (element);
  gst_object_unref (bus);
  gst_object_unref (pipeline);
  return n;
}

void
assert_setup_error_once (const char *head, const char *name, const char *const *cases,
                         guint n_cases)
{
  for (guint i = 0; i < n_cases; i++) {
    g_autofree char *desc = g_strdup_printf ("%s %s ! fakesink", head, cases[i]);
    guint n = count_errors (desc, name);
    g_test_message ("%s: %u error(s)", cases[i], n);
    g_assert_cmpuint (n, ==, 1);
  }
}

/* Another valid value for PSPEC than CUR (of PSPEC's type) in OTHER. */
static void
other_value (GParamSpec *pspec, const GValue *cur, GValue *other)
{
  g_value_init (other, G_PARAM_SPEC_VALUE_TYPE (pspec));
  if (G_IS_PARAM_SPEC_ENUM (pspec)) {
    GEnumClass *ec = G_PARAM_SPEC_ENUM (pspec)->enum_class;
    for (guint i = 0; i < ec->n_values; i++)
      if (ec->values[i].value != g_value_get_enum (cur)) {
        g_value_set_enum (other, ec->values[i].value);
        return;
      }
    g_assert_not_reached ();
  } else if (G_IS_PARAM_SPEC_UINT (pspec)) {
    guint v = g_value_get_uint (cur);
    g_value_set_uint (other, v < G_PARAM_SPEC_UINT (pspec)->maximum ? v + 1 : v - 1);
  } else if (G_IS_PARAM_SPEC_INT (pspec)) {
    gint v = g_value_get_int (cur);
    g_value_set_int (other, v < G_PARAM_SPEC_INT (pspec)->maximum ? v + 1 : v - 1);
  } else if (G_IS_PARAM_SPEC_UINT64 (pspec)) {
    guint64 v = g_value_get_uint64 (cur);
    g_value_set_uint64 (other, v < G_PARAM_SPEC_UINT64 (pspec)->maximum ? v + 1 : v - 1);
  } else if (G_IS_PARAM_SPEC_DOUBLE (pspec)) {
    double v = g_value_get_double (cur);
    g_value_set_double (other, isnan (v) ? 0.5 : v < 1000.0 ? v + 0.5 : v - 0.5);
  } else if (G_IS_PARAM_SPEC_BOOLEAN (pspec)) {
    g_value_set_boolean (other, !g_value_get_boolean (cur));
  } else if (G_IS_PARAM_SPEC_STRING (pspec)) {
    g_value_take_string (other, g_strdup_printf ("changed-%s", pspec->name));
  } else {
    g_error ("no other value for property '%s' of type %s", pspec->name,
             g_type_name (G_PARAM_SPEC_VALUE_TYPE (pspec)));
  }
}

void
check_running_property_changes (GstElement *element, GstBus *bus)
{
  guint n;
  GParamSpec **props = g_object_class_list_properties (G_OBJECT_GET_CLASS (element), &n);

  for (guint i = 0; i < n; i++) {
    GParamSpec *p = props[i];
    if (!g_type_is_a (p->owner_type, GST_TYPE_ELEMENT) || p->owner_type == GST_TYPE_ELEMENT
        || g_type_is_a (GST_TYPE_ELEMENT, p->owner_type))
      continue;                           /* GstObject's name and parent */
    const gboolean playing = (p->flags & GST_PARAM_MUTABLE_PLAYING) != 0;
    const gboolean readable = (p->flags & G_PARAM_READABLE) != 0;
    g_assert_true (playing || (p->flags & GST_PARAM_MUTABLE_READY));
    if (!(p->flags & G_PARAM_WRITABLE))
      continue;
    GValue cur = G_VALUE_INIT, other = G_VALUE_INIT, after = G_VALUE_INIT;
    g_value_init (&cur, G_PARAM_SPEC_VALUE_TYPE (p));
    if (readable)
      g_object_get_property (G_OBJECT (element), p->name, &cur);
    else
      g_param_value_set_default (p, &cur);
    other_value (p, &cur, &other);
    g_object_set_property (G_OBJECT (element), p->name, &other);
    GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
    g_test_message ("%s (%s): %s", p->name, playing ? "mutable in PLAYING" : "refused",
                    msg ? "warning" : "no warning");
    if (playing) {
      g_assert_null (msg);
    } else {
      GError *err = NULL;
      g_assert_nonnull (msg);
      gst_message_parse_warning (msg, &err, NULL);
      g_assert_nonnull (strstr (err->message, p->name));
      g_clear_error (&err);
      gst_message_unref (msg);
    }
    if (readable) {
      g_value_init (&after, G_PARAM_SPEC_VALUE_TYPE (p));
      g_object_get_property (G_OBJECT (element), p->name, &after);
      g_assert_cmpint (g_param_values_cmp (p, &after, playing ? &other : &cur), ==, 0);
      g_value_unset (&after);
    }
    g_value_unset (&cur);
    g_value_unset (&other);
  }
  g_free (props);
}

gpointer
buffer_dup_data (GstBuffer *buf, gsize *size)
{
  GstMapInfo map;
  g_assert_true (gst_buffer_map (buf, &map, GST_MAP_READ));
  gpointer d = g_memdup2 (map.data, map.size);
  *size = map.size;
  gst_buffer_unmap (buf, &map);
  return d;
}

void
clear_error (GstMessage *msg, GError **err, char **dbg)
{
  g_clear_error (err);
  if (dbg)
    g_clear_pointer (dbg, g_free);
  gst_message_unref (msg);
}

GstBus *
harness_bus (GstHarness *h)
{
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (h->element, bus);
  return bus;
}

void
harness_teardown_bus (GstHarness *h, GstBus *bus)
{
  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
}

void
pull_offsets (GstHarness *h, guint first, guint end)
{
  for (guint i = first; i < end; i++) {
    GstBuffer *out = gst_harness_pull (h);
    g_assert_cmpuint (GST_BUFFER_OFFSET (out), ==, i);
    gst_buffer_unref (out);
  }
}

void
wait_for_buffers (GstHarness *h, guint n)
{
  gint64 end = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  while (gst_harness_buffers_received (h) < n && g_get_monotonic_time () < end)
    g_usleep (10000);
}

struct _ArrivalLog {
  GstPad *pad;
  gulong probe;
  gint inputs;        /* atomic */
  GMutex lock;
  GArray *seen;       /* guint per output */
};

static GstPadProbeReturn
arrival_probe (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  ArrivalLog *log = data;
  guint n = (guint) g_atomic_int_get (&log->inputs);
  g_mutex_lock (&log->lock);
  g_array_append_val (log->seen, n);
  g_mutex_unlock (&log->lock);
  return GST_PAD_PROBE_OK;
}

ArrivalLog *
arrival_log_new (GstHarness *h)
{
  ArrivalLog *log = g_new0 (ArrivalLog, 1);
  g_mutex_init (&log->lock);
  log->seen = g_array_new (FALSE, FALSE, sizeof (guint));
  log->pad = gst_object_ref (h->sinkpad);
  log->probe = gst_pad_add_probe (log->pad, GST_PAD_PROBE_TYPE_BUFFER, arrival_probe, log, NULL);
  return log;
}

void
arrival_log_input (ArrivalLog *log)
{
  g_atomic_int_inc (&log->inputs);
}

guint
arrival_log_inputs_at (ArrivalLog *log, guint i)
{
  guint n;
  g_mutex_lock (&log->lock);
  g_assert_cmpuint (i, <, log->seen->len);
  n = g_array_index (log->seen, guint, i);
  g_mutex_unlock (&log->lock);
  return n;
}

void
arrival_log_free (ArrivalLog *log)
{
  gst_pad_remove_probe (log->pad, log->probe);
  gst_object_unref (log->pad);
  g_array_unref (log->seen);
  g_mutex_clear (&log->lock);
  g_free (log);
}

void
push_time_segment (GstHarness *h)
{
  GstSegment seg;
  gst_segment_init (&seg, GST_FORMAT_TIME);
  g_assert_true (gst_harness_push_event (h, gst_event_new_segment (&seg)));
}

void
element_test_init (int *argc, char ***argv)
{
  g_test_init (argc, argv, NULL);
  gst_check_init (NULL, NULL);
  testdata = g_strdup (g_getenv ("VAE_TESTDATA"));
  /* Names the engines; this also links them (and the libraries they use,
   * oneDNN included) into the test at startup, rather than only through
   * the dlopen()ed plugin: LeakSanitizer cannot walk the dynamic TLS of a
   * library that only arrives with dlopen (it crashes in its tracer). */
  g_autofree char *engines = g_strjoinv (", ", (char **) vae_engine_backends ());
  g_test_message ("engines in this build: %s", engines);
}

int
element_test_run (void)
{
  int ret = g_test_run ();
  g_clear_pointer (&testdata, g_free);
  return ret;
}
