/* gst-vae: helpers shared by the element tests (GstHarness). */
#pragma once

#include <gst/gst.h>
#include <gst/check/gstharness.h>
#include "safetensors.h"

G_BEGIN_DECLS

/* The testdata folder ($VAE_TESTDATA), set by element_test_init (). */
extern char *testdata;

/* TRUE when testdata is there; otherwise marks the test skipped. */
gboolean have_testdata (void);

/* testdata/models/NAME (free with g_free). */
char *model_path (const char *name);

/* A harness around a FACTORY element (vaeencode, vaedecode) with
 * model=testdata/models/MODEL and the properties EXTRA ("name=value ...";
 * NULL: none). */
GstHarness *harness_for_model (const char *factory, const char *model, const char *extra);

/* Opens testdata/reference/NAME, asserting that it opens. */
VaeSafetensors *open_reference (const char *name);

/* Pops the ERROR message from BUS (asserting there is one) and parses it
 * into ERR and DBG; the caller frees all three. */
GstMessage *pop_error (GstBus *bus, GError **err, char **dbg);

/* Pushes BUF into H, asserting that the element refuses it, and pops the
 * ERROR that it posted on BUS (pop_error), saying it under WHAT. */
GstMessage *push_refused (GstHarness *h, GstBus *bus, GstBuffer *buf, const char *what,
                          GError **err, char **dbg);

/* Starts ELEMENT (to PAUSED, storing the result in RET), takes the ERROR
 * message it posted (or NULL) and sets it back to NULL. */
GstMessage *start_and_get_error (GstElement *element, GstStateChangeReturn *ret);

/* Makes a FACTORY element with model=MODEL (a path that is not there) and
 * asserts that starting it fails with RESOURCE NOT_FOUND naming MODEL;
 * returns the element (stopped) for the caller to go on with or unref. */
GstElement *start_missing_model (const char *factory, const char *model);

/* Runs the pipeline DESC, whose source is named "src", until that source
 * stops on an error (or the stream ends) and the EOS has reached the
 * element named NAME, then sets it to NULL; returns
 * how many ERROR messages the element named NAME posted in all. */
guint count_errors (const char *desc, const char *name);

/* A setup failure posts one ERROR, however often upstream re-sends the
 * refused caps: for each of the N_CASES properties in CASES, the pipeline
 * "HEAD CASE ! fakesink" (HEAD ending with the element NAME, to which
 * CASE is added) must post one ERROR from NAME (count_errors). */
void assert_setup_error_once (const char *head, const char *name, const char *const *cases,
                              guint n_cases);

/* For every property that ELEMENT (running) adds to GstElement: it is
 * flagged GST_PARAM_MUTABLE_READY or GST_PARAM_MUTABLE_PLAYING; set to
 * another value, one that is not MUTABLE_PLAYING keeps its value with a
 * WARNING on BUS naming it, one that is takes the new value silently. */
void check_running_property_changes (GstElement *element, GstBus *bus);

/* A copy of BUF's bytes (free with g_free); SIZE gets their number. */
gpointer buffer_dup_data (GstBuffer *buf, gsize *size);

/* Frees what pop_error () gave: MSG, ERR and DBG (which may be NULL). */
void clear_error (GstMessage *msg, GError **err, char **dbg);

/* A new bus set on H's element, to pop its messages from. */
GstBus *harness_bus (GstHarness *h);

/* Unsets BUS from H's element, drops it and tears H down. */
void harness_teardown_bus (GstHarness *h, GstBus *bus);

/* Pulls the buffers with offsets FIRST .. END-1 from H, asserting each offset. */
void pull_offsets (GstHarness *h, guint first, guint end);

/* Waits up to 20 s until H has received N buffers. */
void wait_for_buffers (GstHarness *h, guint n);

/* For each buffer H receives, how many inputs the test had counted by then
 * (arrival_log_input before each push): outputs are pushed by the
 * element's own thread, so a test sees when they came from this, not
 * from what H holds when a push returns. */
typedef struct _ArrivalLog ArrivalLog;
ArrivalLog *arrival_log_new (GstHarness *h);
void arrival_log_input (ArrivalLog *log);
/* Inputs counted when output number I (from 0) came. */
guint arrival_log_inputs_at (ArrivalLog *log, guint i);
void arrival_log_free (ArrivalLog *log);

/* Pushes a TIME segment event into H, asserting it is taken. */
void push_time_segment (GstHarness *h);

/* g_test_init, gst_check_init, reads VAE_TESTDATA and names the engines. */
void element_test_init (int *argc, char ***argv);

/* g_test_run, then frees testdata. */
int element_test_run (void);

G_END_DECLS
