/* gst-vae: helpers shared by the element tests (GstHarness). */
#include "element-test-util.h"

#include <gst/check/gstcheck.h>
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
