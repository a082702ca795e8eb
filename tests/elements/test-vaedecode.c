/* gst-vae: vaedecode element tests (GstHarness). */
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <gst/video/video.h>
#include <math.h>
#include <string.h>
#include "safetensors.h"
#include "engine.h"
#include "element-test-util.h"

static GstHarness *
new_decoder (const char *model, const char *extra)
{
  return harness_for_model ("vaedecode", model, extra);
}

static void
set_latent_caps (GstHarness *h, const char *types, int lw, int lh, int c, int w, int hh,
                 double scaling)
{
  g_autofree char *caps = g_strdup_printf (
      "other/tensors,format=static,num_tensors=1,types=%s,dimensions=%d:%d:%d:1,"
      "framerate=30/1,model=test,scaling-factor=%g,shift-factor=0.0,spatial-factor=8,"
      "width=%d,height=%d", types, lw, lh, c, scaling, w, hh);
  gst_harness_set_src_caps_str (h, caps);
}

/* Deterministic latents in a plausible range. */
static GstBuffer *
make_latents (int n, int seed)
{
  GstBuffer *b = gst_buffer_new_allocate (NULL, (gsize) n * 4, NULL);
  GstMapInfo map;
  g_assert_true (gst_buffer_map (b, &map, GST_MAP_WRITE));
  float *f = (float *) map.data;
  for (int i = 0; i < n; i++)
    f[i] = (float) (0.8 * sin (0.37 * i + seed));
  gst_buffer_unmap (b, &map);
  return b;
}

static GstBuffer *
stamped (GstBuffer *buf, guint i)
{
  GST_BUFFER_PTS (buf) = i * 40 * GST_MSECOND;
  GST_BUFFER_DTS (buf) = GST_CLOCK_TIME_NONE;
  GST_BUFFER_DURATION (buf) = 40 * GST_MSECOND;
  GST_BUFFER_OFFSET (buf) = i;
  GST_BUFFER_OFFSET_END (buf) = i + 1;
  return buf;
}

static guint8 *
buffer_bytes (GstBuffer *buf, gsize *n)
{
  return buffer_dup_data (buf, n);
}

static int
max_byte_diff (const guint8 *a, const guint8 *b, gsize n)
{
  int m = 0;
  for (gsize i = 0; i < n; i++)
    m = MAX (m, abs ((int) a[i] - (int) b[i]));
  return m;
}

static void
test_output_formats (void)
{
  static const char *formats[] = { NULL, "RGB", "RGBA", "BGRx", "I420", "NV12" };
  if (!have_testdata ())
    return;
  for (guint i = 0; i < G_N_ELEMENTS (formats); i++) {
    GstHarness *h = new_decoder ("taef2", NULL);
    if (formats[i]) {
      g_autofree char *sc = g_strdup_printf ("video/x-raw,format=%s", formats[i]);
      gst_harness_set_sink_caps_str (h, sc);
    }
    set_latent_caps (h, "float32", 8, 8, 32, 64, 64, 1.0);
    g_assert_cmpint (gst_harness_push (h, stamped (make_latents (32 * 64, 0), 0)), ==,
                     GST_FLOW_OK);
    g_assert_true (gst_harness_push_event (h, gst_event_new_eos ()));
    GstBuffer *out = gst_harness_pull (h);
    GstCaps *caps = gst_pad_get_current_caps (h->sinkpad);
    GstVideoInfo vi;
    g_assert_true (gst_video_info_from_caps (&vi, caps));
    g_assert_cmpstr (gst_video_format_to_string (GST_VIDEO_INFO_FORMAT (&vi)), ==,
                     formats[i] ? formats[i] : "RGB");
    g_assert_cmpint (GST_VIDEO_INFO_WIDTH (&vi), ==, 64);
    g_assert_cmpint (GST_VIDEO_INFO_HEIGHT (&vi), ==, 64);
    g_assert_cmpint (GST_VIDEO_INFO_FPS_N (&vi), ==, 30);
    g_assert_cmpuint (gst_buffer_get_size (out), ==, GST_VIDEO_INFO_SIZE (&vi));
    gst_caps_unref (caps);
    gst_buffer_unref (out);
    gst_harness_teardown (h);
  }
}

static void
test_refused_caps (void)
{
  if (!have_testdata ())
    return;
  GstHarness *h = new_decoder ("taef2", NULL);
  GstPad *sink = gst_element_get_static_pad (h->element, "sink");
  GstCaps *caps = gst_caps_from_string ("video/x-raw,format=RGB,width=64,height=64");
  g_assert_false (gst_pad_query_accept_caps (sink, caps));
  gst_caps_unref (caps);
  caps = gst_caps_from_string ("other/tensors,format=static,num_tensors=1,types=uint8,"
                               "dimensions=8:8:32:1");
  g_assert_false (gst_pad_query_accept_caps (sink, caps));
  gst_caps_unref (caps);
  gst_object_unref (sink);
  gst_harness_teardown (h);
}

static void
test_wrong_channels (void)
{
  if (!have_testdata ())
    return;
  GstHarness *h = new_decoder ("tiny-sd-random", NULL);
  GstBus *bus = harness_bus (h);
  set_latent_caps (h, "float32", 8, 8, 32, 64, 64, 1.0);
  GError *err = NULL;
  char *dbg = NULL;
  GstMessage *msg = push_refused (h, bus, make_latents (32 * 64, 0), "error", &err, &dbg);
  g_assert_error (err, GST_CORE_ERROR, GST_CORE_ERROR_NEGOTIATION);
  g_assert_nonnull (strstr (err->message, "32"));
  g_assert_nonnull (strstr (err->message, "4"));
  clear_error (msg, &err, &dbg);
  g_assert_cmpuint (gst_harness_buffers_received (h), ==, 0);
  harness_teardown_bus (h, bus);
}

static void
test_batches_and_timestamps (void)
{
  if (!have_testdata ())
    return;
  GstHarness *h = new_decoder ("taef2", "batch-size=4");
  ArrivalLog *log = arrival_log_new (h);
  set_latent_caps (h, "float32", 9, 5, 32, 72, 40, 1.0);
  for (guint i = 0; i < 10; i++) {
    arrival_log_input (log);
    g_assert_cmpint (gst_harness_push (h, stamped (make_latents (32 * 45, (int) i), i)), ==,
                     GST_FLOW_OK);
    wait_for_buffers (h, ((i + 1) / 4) * 4);
  }
  arrival_log_input (log);
  g_assert_true (gst_harness_push_event (h, gst_event_new_eos ()));
  g_assert_cmpuint (gst_harness_buffers_received (h), ==, 10);
  /* Each output after the last frame of its batch (4, 8), then the EOS. */
  for (guint i = 0; i < 10; i++)
    g_assert_cmpuint (arrival_log_inputs_at (log, i), >=, i < 8 ? (i / 4 + 1) * 4 : 11);
  arrival_log_free (log);
  for (guint i = 0; i < 10; i++) {
    GstBuffer *out = gst_harness_pull (h);
    g_assert_cmpuint (GST_BUFFER_PTS (out), ==, i * 40 * GST_MSECOND);
    g_assert_false (GST_CLOCK_TIME_IS_VALID (GST_BUFFER_DTS (out)));
    g_assert_cmpuint (GST_BUFFER_DURATION (out), ==, 40 * GST_MSECOND);
    g_assert_cmpuint (GST_BUFFER_OFFSET (out), ==, i);
    g_assert_cmpuint (GST_BUFFER_OFFSET_END (out), ==, i + 1);
    g_assert_cmpuint (gst_buffer_get_size (out), ==, 72 * 40 * 3);
    gst_buffer_unref (out);
  }
  gst_harness_teardown (h);
}

static void
test_flush_mid_batch (void)
{
  if (!have_testdata ())
    return;
  GstHarness *h = new_decoder ("taef2", "batch-size=4");
  set_latent_caps (h, "float32", 8, 8, 32, 64, 64, 1.0);
  for (guint i = 0; i < 3; i++)
    g_assert_cmpint (gst_harness_push (h, stamped (make_latents (32 * 64, 0), i)), ==,
                     GST_FLOW_OK);
  g_assert_true (gst_harness_push_event (h, gst_event_new_flush_start ()));
  g_assert_true (gst_harness_push_event (h, gst_event_new_flush_stop (TRUE)));
  push_time_segment (h);
  for (guint i = 20; i < 22; i++)
    g_assert_cmpint (gst_harness_push (h, stamped (make_latents (32 * 64, 1), i)), ==,
                     GST_FLOW_OK);
  g_assert_cmpuint (gst_harness_buffers_received (h), ==, 0);
  g_assert_true (gst_harness_push_event (h, gst_event_new_eos ()));
  g_assert_cmpuint (gst_harness_buffers_received (h), ==, 2);
  pull_offsets (h, 20, 22);
  gst_harness_teardown (h);
}

static void
test_live_timeout (void)
{
  if (!have_testdata ())
    return;
  GstHarness *h = new_decoder ("taef2", "batch-size=8 batch-timeout=50");
  set_latent_caps (h, "float32", 8, 8, 32, 64, 64, 1.0);
  for (guint i = 0; i < 2; i++)
    g_assert_cmpint (gst_harness_push (h, stamped (make_latents (32 * 64, (int) i), i)), ==,
                     GST_FLOW_OK);
  wait_for_buffers (h, 2);
  g_assert_cmpuint (gst_harness_buffers_received (h), ==, 2);
  pull_offsets (h, 0, 2);
  /* More frames keep flowing after a timeout flush. */
  g_assert_cmpint (gst_harness_push (h, stamped (make_latents (32 * 64, 5), 2)), ==, GST_FLOW_OK);
  g_assert_true (gst_harness_push_event (h, gst_event_new_eos ()));
  GstBuffer *out = gst_harness_pull (h);
  g_assert_cmpuint (GST_BUFFER_OFFSET (out), ==, 2);
  gst_buffer_unref (out);
  gst_harness_teardown (h);
}

/* 70x38 through vaeencode and back: latents 9x5, frames 70x38 again. */
static void
test_odd_size_round_trip (void)
{
  if (!have_testdata ())
    return;
  g_autofree char *m = model_path ("taef2");
  g_autofree char *desc = g_strdup_printf ("vaeencode model=\"%s\" ! vaedecode model=\"%s\"",
                                           m, m);
  GstHarness *h = gst_harness_new_parse (desc);
  gst_harness_set_src_caps_str (h, "video/x-raw,format=RGB,width=70,height=38,framerate=25/1");
  GstVideoInfo vi;
  gst_video_info_set_format (&vi, GST_VIDEO_FORMAT_RGB, 70, 38);
  GstBuffer *in = gst_buffer_new_allocate (NULL, vi.size, NULL);
  GstVideoFrame f;
  g_assert_true (gst_video_frame_map (&f, &vi, in, GST_MAP_WRITE));
  for (int y = 0; y < 38; y++)
    for (int x = 0; x < 70; x++) {
      guint8 *p = (guint8 *) GST_VIDEO_FRAME_PLANE_DATA (&f, 0)
                  + y * GST_VIDEO_FRAME_PLANE_STRIDE (&f, 0) + x * 3;
      p[0] = (guint8) (60 + x * 2);
      p[1] = (guint8) (80 + y * 3);
      p[2] = 128;
    }
  gst_video_frame_unmap (&f);
  GstBuffer *keep = gst_buffer_ref (in);
  g_assert_cmpint (gst_harness_push (h, stamped (in, 7)), ==, GST_FLOW_OK);
  g_assert_true (gst_harness_push_event (h, gst_event_new_eos ()));
  GstBuffer *out = gst_harness_pull (h);
  GstCaps *caps = gst_pad_get_current_caps (h->sinkpad);
  GstVideoInfo vo;
  g_assert_true (gst_video_info_from_caps (&vo, caps));
  gst_caps_unref (caps);
  g_assert_cmpint (GST_VIDEO_INFO_WIDTH (&vo), ==, 70);
  g_assert_cmpint (GST_VIDEO_INFO_HEIGHT (&vo), ==, 38);
  g_assert_cmpint (GST_VIDEO_INFO_FPS_N (&vo), ==, 25);
  g_assert_cmpuint (GST_BUFFER_OFFSET (out), ==, 7);
  GstVideoFrame a, b;
  g_assert_true (gst_video_frame_map (&a, &vi, keep, GST_MAP_READ));
  g_assert_true (gst_video_frame_map (&b, &vo, out, GST_MAP_READ));
  double sum = 0;
  for (int y = 0; y < 38; y++)
    for (int x = 0; x < 70 * 3; x++)
      sum += abs ((int) ((guint8 *) GST_VIDEO_FRAME_PLANE_DATA (&a, 0))[y * GST_VIDEO_FRAME_PLANE_STRIDE (&a, 0) + x]
                  - (int) ((guint8 *) GST_VIDEO_FRAME_PLANE_DATA (&b, 0))[y * GST_VIDEO_FRAME_PLANE_STRIDE (&b, 0) + x]);
  gst_video_frame_unmap (&a);
  gst_video_frame_unmap (&b);
  double mean = sum / (70 * 38 * 3);
  g_test_message ("round trip mean |diff| %.2f levels", mean);
  g_assert_cmpfloat (mean, <, 12.0);
  gst_buffer_unref (keep);
  gst_buffer_unref (out);
  gst_harness_teardown (h);
}

/* Decoding the reference latents gives the reference frame; f16 latents
 * and scaled caps give the same picture. */
static void
test_reference_and_factors (void)
{
  if (!have_testdata ())
    return;
  VaeSafetensors *st = open_reference ("taef2__astronaut_64x64.safetensors");
  GError *err = NULL;
  const VaeTensorView *lat = vae_safetensors_lookup (st, "latent_scaled");
  const VaeTensorView *dec = vae_safetensors_lookup (st, "decoded_u8");
  g_assert_nonnull (lat);
  g_assert_nonnull (dec);
  const gsize n = lat->n_elements;
  g_assert_cmpuint (n, ==, 32 * 8 * 8);
  g_assert_cmpuint (dec->n_bytes, ==, 64 * 64 * 3);
  g_autofree float *z = g_new (float, n);
  g_assert_true (vae_tensor_view_to_f32 (lat, z, &err));

  guint8 *got[4];
  for (int run = 0; run < 4; run++) {
    const char *extra = run == 3 ? "scaling-factor=1.0" : NULL;
    GstHarness *h = new_decoder ("taef2", extra);
    GstBuffer *b;
    double scale = run >= 2 ? 2.0 : 1.0;   /* latents and caps both scaled by 2 */
    if (run == 1) {
      set_latent_caps (h, "float16", 8, 8, 32, 64, 64, 1.0);
      b = gst_buffer_new_allocate (NULL, n * 2, NULL);
      GstMapInfo map;
      gst_buffer_map (b, &map, GST_MAP_WRITE);
      for (gsize i = 0; i < n; i++) {
        guint16 v = vae_f32_to_f16 (z[i]);
        memcpy (map.data + 2 * i, &v, 2);
      }
      gst_buffer_unmap (b, &map);
    } else {
      set_latent_caps (h, "float32", 8, 8, 32, 64, 64, scale);
      b = gst_buffer_new_allocate (NULL, n * 4, NULL);
      GstMapInfo map;
      gst_buffer_map (b, &map, GST_MAP_WRITE);
      for (gsize i = 0; i < n; i++)
        ((float *) map.data)[i] = (float) (z[i] * (run == 2 ? 2.0 : 1.0));
      gst_buffer_unmap (b, &map);
    }
    g_assert_cmpint (gst_harness_push (h, stamped (b, 0)), ==, GST_FLOW_OK);
    g_assert_true (gst_harness_push_event (h, gst_event_new_eos ()));
    GstBuffer *out = gst_harness_pull (h);
    gsize sz;
    got[run] = buffer_bytes (out, &sz);
    g_assert_cmpuint (sz, ==, 64 * 64 * 3);
    gst_buffer_unref (out);
    gst_harness_teardown (h);
  }
  int d0 = max_byte_diff (got[0], dec->data, 64 * 64 * 3);
  int d1 = max_byte_diff (got[1], got[0], 64 * 64 * 3);
  int d2 = max_byte_diff (got[2], got[0], 64 * 64 * 3);
  int d3 = max_byte_diff (got[3], got[0], 64 * 64 * 3);
  g_test_message ("vs decoded_u8 %d, f16 %d, caps-scaled %d, property %d", d0, d1, d2, d3);
  g_assert_cmpint (d0, <=, 1);
  g_assert_cmpint (d1, <=, 3);
  g_assert_cmpint (d2, <=, 1);
  /* Run 3: unscaled latents, caps saying 2.0, property saying 1.0: the
   * property wins, so the picture is run 0's (with the caps' 2.0 it would not be). */
  g_assert_cmpint (d3, <=, 1);
  for (int i = 0; i < 4; i++)
    g_free (got[i]);
  vae_safetensors_free (st);
}

static void
test_missing_model (void)
{
  GstElement *e = start_missing_model ("vaedecode", "/nonexistent/decoder");
  gst_object_unref (e);
}

/* tile-size: frames larger than a tile run in blended tiles (here 3x2
 * tiles of 64 pixels); still one output per input with its timestamps,
 * close to the untiled frames.  An overlap >= tile-size is refused at caps. */
static void
test_tiled (void)
{
  const int lw = 20, lh = 12, c = 32, w = lw * 8, hh = lh * 8;
  const gsize frame = (gsize) w * hh * 3;
  guint8 *first[2] = { NULL, NULL };

  if (!have_testdata ())
    return;
  for (int run = 0; run < 2; run++) {
    GstHarness *h = new_decoder ("taef2", run ? "batch-size=2 tile-size=64 tile-overlap=16"
                                              : "batch-size=2");
    set_latent_caps (h, "float32", lw, lh, c, w, hh, 1.0);
    for (guint i = 0; i < 3; i++)
      g_assert_cmpint (gst_harness_push (h, stamped (make_latents (c * lw * lh, (int) i), i)),
                       ==, GST_FLOW_OK);
    g_assert_true (gst_harness_push_event (h, gst_event_new_eos ()));
    g_assert_cmpuint (gst_harness_buffers_received (h), ==, 3);
    for (guint i = 0; i < 3; i++) {
      GstBuffer *out = gst_harness_pull (h);
      gsize sz;
      g_assert_cmpuint (GST_BUFFER_PTS (out), ==, i * 40 * GST_MSECOND);
      g_assert_cmpuint (GST_BUFFER_OFFSET (out), ==, i);
      guint8 *bytes = buffer_bytes (out, &sz);
      g_assert_cmpuint (sz, ==, frame);
      if (i == 0)
        first[run] = bytes;
      else
        g_free (bytes);
      gst_buffer_unref (out);
    }
    gst_harness_teardown (h);
  }
  double se = 0;
  for (gsize i = 0; i < frame; i++)
    se += ((double) first[0][i] - first[1][i]) * ((double) first[0][i] - first[1][i]);
  double psnr = se > 0 ? 10 * log10 (255.0 * 255.0 * frame / se) : INFINITY;
  g_test_message ("taef2 %dx%d, tiles of 64/16 vs untiled: PSNR %.1f dB", w, hh, psnr);
  /* TAEF2's GroupNorm sees per-tile statistics: close, not equal. */
  g_assert_cmpfloat (psnr, >=, 20.0);
  g_free (first[0]);
  g_free (first[1]);

  GstHarness *h = new_decoder ("taef2", "tile-size=64 tile-overlap=64");
  GstBus *bus = harness_bus (h);
  set_latent_caps (h, "float32", lw, lh, c, w, hh, 1.0);
  GError *err = NULL;
  char *dbg = NULL;
  GstMessage *msg = push_refused (h, bus, make_latents (c * lw * lh, 0), "error", &err, &dbg);
  g_assert_error (err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS);
  g_assert_nonnull (strstr (dbg, "smaller than the tile size"));
  clear_error (msg, &err, &dbg);
  harness_teardown_bus (h, bus);
}

/* A setup failure posts one ERROR, however often upstream re-sends the
 * refused caps. */
static void
test_setup_error_once (void)
{
  if (!have_testdata ())
    return;
  g_autofree char *path = model_path ("taef2");
  g_autofree char *head = g_strdup_printf (
      "videotestsrc name=src num-buffers=3 ! video/x-raw,format=RGB,width=64,height=64 "
      "! vaeencode model=\"%s\" ! vaedecode name=dec model=\"%s\"", path, path);
  const char *const cases[] = { "backend=remote", "tile-size=13" };
  assert_setup_error_once (head, "dec", cases, G_N_ELEMENTS (cases));
}

/* A property set while the element runs keeps the value in use, with a
 * warning, unless it is flagged mutable in PLAYING. */
static void
test_running_property_changes (void)
{
  if (!have_testdata ())
    return;
  g_autofree char *taef2 = model_path ("taef2");
  GstHarness *h = new_decoder ("taef2", NULL);
  GstElement *dec = gst_harness_find_element (h, "vaedecode");
  GstBus *bus = harness_bus (h);
  char *model = NULL;

  set_latent_caps (h, "float32", 8, 8, 32, 64, 64, 1.0);
  g_assert_cmpint (gst_harness_push (h, stamped (make_latents (32 * 8 * 8, 0), 0)), ==,
                   GST_FLOW_OK);
  gst_buffer_unref (gst_harness_pull (h));
  check_running_property_changes (dec, bus);
  g_object_get (dec, "model", &model, NULL);
  g_assert_cmpstr (model, ==, taef2);
  g_free (model);
  /* The stream goes on (max-inflight is 2 now: EOS gets the frame out). */
  g_assert_cmpint (gst_harness_push (h, stamped (make_latents (32 * 8 * 8, 1), 1)), ==,
                   GST_FLOW_OK);
  g_assert_true (gst_harness_push_event (h, gst_event_new_eos ()));
  GstBuffer *out = gst_harness_pull (h);
  g_assert_cmpuint (gst_buffer_get_size (out), ==, 64 * 64 * 3);
  gst_buffer_unref (out);
  gst_object_unref (dec);
  harness_teardown_bus (h, bus);
}

int
main (int argc, char **argv)
{
  element_test_init (&argc, &argv);
  g_test_add_func ("/vaedecode/output-formats", test_output_formats);
  g_test_add_func ("/vaedecode/refused-caps", test_refused_caps);
  g_test_add_func ("/vaedecode/wrong-channels", test_wrong_channels);
  g_test_add_func ("/vaedecode/batches-and-timestamps", test_batches_and_timestamps);
  g_test_add_func ("/vaedecode/flush-mid-batch", test_flush_mid_batch);
  g_test_add_func ("/vaedecode/live-timeout", test_live_timeout);
  g_test_add_func ("/vaedecode/odd-size-round-trip", test_odd_size_round_trip);
  g_test_add_func ("/vaedecode/reference-and-factors", test_reference_and_factors);
  g_test_add_func ("/vaedecode/missing-model", test_missing_model);
  g_test_add_func ("/vaedecode/tiled", test_tiled);
  g_test_add_func ("/vaedecode/setup-error-once", test_setup_error_once);
  g_test_add_func ("/vaedecode/running-property-changes", test_running_property_changes);
  return element_test_run ();
}
