/* A 300-frame encode -> decode pipeline run in-process, so that the ASan
 * build of the suite checks a long stream for leaks (LeakSanitizer runs at
 * exit) and every build checks that no frame is lost, duplicated or
 * reordered on the way. */
#include <gst/gst.h>

#define N_FRAMES 300

typedef struct {
  guint count;
  GstClockTime last_pts;
  gboolean in_order;
} Seen;

static void
on_handoff (GstElement *sink, GstBuffer *buf, GstPad *pad, gpointer data)
{
  Seen *seen = data;
  GstClockTime pts = GST_BUFFER_PTS (buf);
  if (seen->count > 0 && !(GST_CLOCK_TIME_IS_VALID (pts) && pts > seen->last_pts))
    seen->in_order = FALSE;
  seen->last_pts = pts;
  seen->count++;
}

static void
test_300_frames (void)
{
  const char *testdata = g_getenv ("VAE_TESTDATA");
  g_autofree char *model = testdata ? g_build_filename (testdata, "models", "taef2", NULL) : NULL;
  if (!model || !g_file_test (model, G_FILE_TEST_IS_DIR)) {
    g_test_skip ("VAE_TESTDATA/models/taef2 is missing: the 300-frame pipeline was not run");
    return;
  }
  g_autofree char *desc = g_strdup_printf (
      "videotestsrc num-buffers=%d pattern=ball ! video/x-raw,width=40,height=24,framerate=30/1 "
      "! vaeencode model=\"%s\" batch-size=4 ! vaedecode model=\"%s\" "
      "! fakesink name=sink signal-handoffs=true sync=false", N_FRAMES, model, model);
  g_autoptr (GError) error = NULL;
  GstElement *pipeline = gst_parse_launch (desc, &error);
  g_assert_no_error (error);

  Seen seen = { 0, GST_CLOCK_TIME_NONE, TRUE };
  GstElement *sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  g_signal_connect (sink, "handoff", G_CALLBACK (on_handoff), &seen);
  gst_object_unref (sink);

  g_assert_cmpint (gst_element_set_state (pipeline, GST_STATE_PLAYING), !=,
                   GST_STATE_CHANGE_FAILURE);
  GstBus *bus = gst_element_get_bus (pipeline);
  GstMessage *msg = gst_bus_timed_pop_filtered (bus, 300 * GST_SECOND,
                                                GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  g_assert_nonnull (msg);
  if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR) {
    g_autoptr (GError) err = NULL;
    g_autofree char *dbg = NULL;
    gst_message_parse_error (msg, &err, &dbg);
    g_error ("pipeline error: %s (%s)", err->message, dbg ? dbg : "");
  }
  gst_message_unref (msg);
  gst_object_unref (bus);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (pipeline);

  g_assert_cmpuint (seen.count, ==, N_FRAMES);
  g_assert_true (seen.in_order);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  gst_init (NULL, NULL);
  g_test_add_func ("/pipeline/300-frames", test_300_frames);
  int ret = g_test_run ();
  gst_deinit ();
  return ret;
}
