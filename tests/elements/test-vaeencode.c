/* gst-vae: vaeencode element tests (GstHarness). */
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <gst/video/video.h>
#include <math.h>
#include <string.h>
#include <glib/gstdio.h>
#include "safetensors.h"
#include "engine.h"
#include "element-test-util.h"

static GstHarness *
new_encoder (const char *model, const char *extra)
{
  return harness_for_model ("vaeencode", model, extra);
}

/* A deterministic RGB test picture (smooth gradients plus a pattern). */
static guint8 *
make_rgb (int w, int h, int seed)
{
  guint8 *rgb = g_malloc ((gsize) w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      guint8 *p = rgb + ((gsize) y * w + x) * 3;
      p[0] = (guint8) ((x * 255) / MAX (w - 1, 1));
      p[1] = (guint8) ((y * 255) / MAX (h - 1, 1));
      p[2] = (guint8) (((x / 4 + y / 4 + seed) % 2) ? 200 : 40 + seed * 7);
    }
  return rgb;
}

/* A buffer of FORMAT holding RGB (w x h), converted with GstVideoConverter. */
static GstBuffer *
frame_from_rgb (const guint8 *rgb, int w, int h, GstVideoFormat format)
{
  GstVideoInfo in, out;
  GstVideoFrame fin, fout;
  gst_video_info_set_format (&in, GST_VIDEO_FORMAT_RGB, w, h);
  gst_video_info_set_format (&out, format, w, h);
  GstBuffer *src = gst_buffer_new_allocate (NULL, in.size, NULL);
  GstBuffer *dst = gst_buffer_new_allocate (NULL, out.size, NULL);
  g_assert_true (gst_video_frame_map (&fin, &in, src, GST_MAP_WRITE));
  for (int y = 0; y < h; y++)
    memcpy ((guint8 *) GST_VIDEO_FRAME_PLANE_DATA (&fin, 0) + y * GST_VIDEO_FRAME_PLANE_STRIDE (&fin, 0),
            rgb + (gsize) y * w * 3, (gsize) w * 3);
  gst_video_frame_unmap (&fin);
  if (format == GST_VIDEO_FORMAT_RGB) {
    gst_buffer_unref (dst);
    return src;
  }
  g_assert_true (gst_video_frame_map (&fin, &in, src, GST_MAP_READ));
  g_assert_true (gst_video_frame_map (&fout, &out, dst, GST_MAP_WRITE));
  GstVideoConverter *c = gst_video_converter_new (&in, &out, NULL);
  g_assert_nonnull (c);
  gst_video_converter_frame (c, &fin, &fout);
  gst_video_converter_free (c);
  gst_video_frame_unmap (&fin);
  gst_video_frame_unmap (&fout);
  gst_buffer_unref (src);
  return dst;
}

static void
set_video_caps (GstHarness *h, const char *format, int w, int hgt)
{
  g_autofree char *caps = g_strdup_printf (
      "video/x-raw,format=%s,width=%d,height=%d,framerate=30/1", format, w, hgt);
  gst_harness_set_src_caps_str (h, caps);
}

static GstBuffer *
stamped (GstBuffer *buf, guint i)
{
  GST_BUFFER_PTS (buf) = i * 33 * GST_MSECOND;
  GST_BUFFER_DTS (buf) = i * 33 * GST_MSECOND;
  GST_BUFFER_DURATION (buf) = 33 * GST_MSECOND;
  GST_BUFFER_OFFSET (buf) = i;
  GST_BUFFER_OFFSET_END (buf) = i + 1;
  return buf;
}

static float *
buffer_floats (GstBuffer *buf, gsize *n)
{
  gsize size;
  float *f = buffer_dup_data (buf, &size);
  *n = size / sizeof (float);
  return f;
}

/* Encodes one RGB picture into latents with EXTRA properties. */
static float *
encode_picture (const char *model, const char *extra, const guint8 *rgb, int w, int h,
                GstVideoFormat format, gsize *n)
{
  GstHarness *hh = new_encoder (model, extra);
  set_video_caps (hh, gst_video_format_to_string (format), w, h);
  g_assert_cmpint (gst_harness_push (hh, stamped (frame_from_rgb (rgb, w, h, format), 0)),
                   ==, GST_FLOW_OK);
  g_assert_true (gst_harness_push_event (hh, gst_event_new_eos ()));
  GstBuffer *out = gst_harness_pull (hh);
  g_assert_nonnull (out);
  float *f = buffer_floats (out, n);
  gst_buffer_unref (out);
  gst_harness_teardown (hh);
  return f;
}

static double
max_abs_diff (const float *a, const float *b, gsize n)
{
  double m = 0;
  for (gsize i = 0; i < n; i++)
    m = MAX (m, fabs ((double) a[i] - b[i]));
  return m;
}

static void
test_formats (void)
{
  static const char *formats[] = { "RGB", "RGBA", "BGRx", "BGRA", "I420", "NV12" };
  if (!have_testdata ())
    return;
  g_autofree guint8 *rgb = make_rgb (64, 64, 0);
  g_autofree float *ref = NULL;
  gsize nref = 0;
  for (guint i = 0; i < G_N_ELEMENTS (formats); i++) {
    GstHarness *h = new_encoder ("taef2", NULL);
    GstVideoFormat f = gst_video_format_from_string (formats[i]);
    set_video_caps (h, formats[i], 64, 64);
    g_assert_cmpint (gst_harness_push (h, stamped (frame_from_rgb (rgb, 64, 64, f), 0)),
                     ==, GST_FLOW_OK);
    g_assert_true (gst_harness_push_event (h, gst_event_new_eos ()));
    GstBuffer *out = gst_harness_pull (h);
    g_assert_nonnull (out);
    GstCaps *caps = gst_pad_get_current_caps (h->sinkpad);
    GstStructure *s = gst_caps_get_structure (caps, 0);
    g_assert_true (gst_structure_has_name (s, "other/tensors"));
    g_assert_cmpstr (gst_structure_get_string (s, "dimensions"), ==, "8:8:32:1");
    g_assert_cmpstr (gst_structure_get_string (s, "types"), ==, "float32");
    g_assert_cmpstr (gst_structure_get_string (s, "model"), ==, "taef2");
    gst_caps_unref (caps);
    gsize n;
    float *lat = buffer_floats (out, &n);
    g_assert_cmpuint (n, ==, 32 * 8 * 8);
    if (!ref) {
      ref = lat;
      nref = n;
    } else {
      double d = max_abs_diff (ref, lat, n);
      g_test_message ("%s vs RGB: max |diff| %g", formats[i], d);
      if (f == GST_VIDEO_FORMAT_RGBA || f == GST_VIDEO_FORMAT_BGRx || f == GST_VIDEO_FORMAT_BGRA)
        g_assert_cmpfloat (d, ==, 0.0);  /* the same pixels */
      else {
        /* 4:2:0: compare with the RGB encoding of what the YUV frame holds
         * (chroma subsampling loses detail, so not with the RGB source). */
        GstVideoInfo yi, ri;
        GstVideoFrame yf, rf;
        gst_video_info_set_format (&yi, f, 64, 64);
        gst_video_info_set_format (&ri, GST_VIDEO_FORMAT_RGB, 64, 64);
        GstBuffer *yb = frame_from_rgb (rgb, 64, 64, f);
        GstBuffer *rb = gst_buffer_new_allocate (NULL, ri.size, NULL);
        g_assert_true (gst_video_frame_map (&yf, &yi, yb, GST_MAP_READ));
        g_assert_true (gst_video_frame_map (&rf, &ri, rb, GST_MAP_WRITE));
        GstVideoConverter *c = gst_video_converter_new (&yi, &ri, NULL);
        gst_video_converter_frame (c, &yf, &rf);
        gst_video_converter_free (c);
        guint8 *back = g_malloc (64 * 64 * 3);
        for (int y = 0; y < 64; y++)
          memcpy (back + y * 64 * 3, (guint8 *) GST_VIDEO_FRAME_PLANE_DATA (&rf, 0)
                  + y * GST_VIDEO_FRAME_PLANE_STRIDE (&rf, 0), 64 * 3);
        gst_video_frame_unmap (&yf);
        gst_video_frame_unmap (&rf);
        gst_buffer_unref (yb);
        gst_buffer_unref (rb);
        gsize nb;
        float *want = encode_picture ("taef2", NULL, back, 64, 64, GST_VIDEO_FORMAT_RGB, &nb);
        g_free (back);
        double num = 0, den = 0;
        for (gsize k = 0; k < n; k++) {
          num += ((double) want[k] - lat[k]) * ((double) want[k] - lat[k]);
          den += (double) want[k] * want[k];
        }
        g_free (want);
        g_test_message ("%s vs its RGB conversion: relative L2 %g", formats[i], sqrt (num / den));
        g_assert_cmpfloat (sqrt (num / den), <, 0.01);
      }
      g_free (lat);
    }
    gst_buffer_unref (out);
    gst_harness_teardown (h);
  }
  g_assert_cmpuint (nref, ==, 32 * 8 * 8);
}

static void
test_refused_caps (void)
{
  if (!have_testdata ())
    return;
  GstHarness *h = new_encoder ("taef2", NULL);
  gst_harness_set_src_caps_str (h, "video/x-raw,format=GRAY8,width=64,height=64,framerate=30/1");
  GstBuffer *buf = gst_buffer_new_allocate (NULL, 64 * 64, NULL);
  g_assert_cmpint (gst_harness_push (h, buf), !=, GST_FLOW_OK);
  g_assert_cmpuint (gst_harness_buffers_received (h), ==, 0);
  gst_harness_teardown (h);

  /* Not video at all. */
  h = new_encoder ("taef2", NULL);
  GstCaps *caps = gst_caps_from_string ("audio/x-raw,format=S16LE,rate=48000,channels=1");
  GstPad *sink = gst_element_get_static_pad (h->element, "sink");
  g_assert_false (gst_pad_query_accept_caps (sink, caps));
  gst_object_unref (sink);
  gst_caps_unref (caps);
  gst_harness_teardown (h);
}

/* 10 frames at batch-size 4: outputs come in batches (4, 8), each after
 * the last frame of its batch, the EOS flushes the last 2, all in order
 * with their timestamps. */
static void
test_batches_and_timestamps (void)
{
  if (!have_testdata ())
    return;
  GstHarness *h = new_encoder ("taef2", "batch-size=4");
  ArrivalLog *log = arrival_log_new (h);
  g_autofree guint8 *rgb = make_rgb (64, 64, 1);
  set_video_caps (h, "RGB", 64, 64);
  for (guint i = 0; i < 10; i++) {
    GstBuffer *b = stamped (frame_from_rgb (rgb, 64, 64, GST_VIDEO_FORMAT_RGB), i);
    if (i == 5)
      GST_BUFFER_FLAG_SET (b, GST_BUFFER_FLAG_DISCONT);
    arrival_log_input (log);
    g_assert_cmpint (gst_harness_push (h, b), ==, GST_FLOW_OK);
    wait_for_buffers (h, ((i + 1) / 4) * 4);
  }
  g_assert_cmpuint (gst_harness_buffers_in_queue (h), ==, 8);
  arrival_log_input (log);
  g_assert_true (gst_harness_push_event (h, gst_event_new_eos ()));
  g_assert_cmpuint (gst_harness_buffers_received (h), ==, 10);
  for (guint i = 0; i < 10; i++)    /* after frame 4, 8, then the EOS (11th) */
    g_assert_cmpuint (arrival_log_inputs_at (log, i), >=, i < 8 ? (i / 4 + 1) * 4 : 11);
  arrival_log_free (log);
  for (guint i = 0; i < 10; i++) {
    GstBuffer *out = gst_harness_pull (h);
    g_assert_cmpuint (GST_BUFFER_PTS (out), ==, i * 33 * GST_MSECOND);
    g_assert_cmpuint (GST_BUFFER_DTS (out), ==, i * 33 * GST_MSECOND);
    g_assert_cmpuint (GST_BUFFER_DURATION (out), ==, 33 * GST_MSECOND);
    g_assert_cmpuint (GST_BUFFER_OFFSET (out), ==, i);
    g_assert_cmpuint (GST_BUFFER_OFFSET_END (out), ==, i + 1);
    g_assert_cmpint (GST_BUFFER_FLAG_IS_SET (out, GST_BUFFER_FLAG_DISCONT), ==, i == 5);
    g_assert_cmpuint (gst_buffer_get_size (out), ==, 32 * 8 * 8 * 4);
    gst_buffer_unref (out);
  }
  /* EOS went downstream after the last frame. */
  GstEvent *ev;
  gboolean eos = FALSE;
  while ((ev = gst_harness_try_pull_event (h))) {
    eos |= GST_EVENT_TYPE (ev) == GST_EVENT_EOS;
    gst_event_unref (ev);
  }
  g_assert_true (eos);
  gst_harness_teardown (h);
}

static void
test_flush_mid_batch (void)
{
  if (!have_testdata ())
    return;
  GstHarness *h = new_encoder ("taef2", "batch-size=4");
  g_autofree guint8 *rgb = make_rgb (64, 64, 2);
  set_video_caps (h, "RGB", 64, 64);
  for (guint i = 0; i < 2; i++)
    g_assert_cmpint (gst_harness_push (h, stamped (frame_from_rgb (rgb, 64, 64,
                     GST_VIDEO_FORMAT_RGB), i)), ==, GST_FLOW_OK);
  g_assert_true (gst_harness_push_event (h, gst_event_new_flush_start ()));
  g_assert_cmpint (gst_harness_push (h, stamped (frame_from_rgb (rgb, 64, 64,
                   GST_VIDEO_FORMAT_RGB), 99)), ==, GST_FLOW_FLUSHING);
  g_assert_true (gst_harness_push_event (h, gst_event_new_flush_stop (TRUE)));
  push_time_segment (h);
  for (guint i = 10; i < 14; i++)
    g_assert_cmpint (gst_harness_push (h, stamped (frame_from_rgb (rgb, 64, 64,
                     GST_VIDEO_FORMAT_RGB), i)), ==, GST_FLOW_OK);
  g_assert_true (gst_harness_push_event (h, gst_event_new_eos ()));
  g_assert_cmpuint (gst_harness_buffers_received (h), ==, 4);
  pull_offsets (h, 10, 14);
  gst_harness_teardown (h);
}

/* A caps change drains the partial batch under the old caps first. */
static void
test_caps_change_drains (void)
{
  if (!have_testdata ())
    return;
  GstHarness *h = new_encoder ("taef2", "batch-size=4");
  g_autofree guint8 *a = make_rgb (64, 64, 1);
  g_autofree guint8 *b = make_rgb (72, 40, 1);
  set_video_caps (h, "RGB", 64, 64);
  for (guint i = 0; i < 2; i++)
    g_assert_cmpint (gst_harness_push (h, stamped (frame_from_rgb (a, 64, 64,
                     GST_VIDEO_FORMAT_RGB), i)), ==, GST_FLOW_OK);
  g_assert_cmpuint (gst_harness_buffers_received (h), ==, 0);
  set_video_caps (h, "BGRx", 72, 40);
  g_assert_cmpint (gst_harness_push (h, stamped (frame_from_rgb (b, 72, 40,
                   GST_VIDEO_FORMAT_BGRx), 2)), ==, GST_FLOW_OK);
  g_assert_cmpuint (gst_harness_buffers_received (h), ==, 2);
  /* A DRAIN query flushes the pending frame too. */
  GstQuery *q = gst_query_new_drain ();
  g_assert_true (gst_pad_peer_query (h->srcpad, q));
  gst_query_unref (q);
  g_assert_cmpuint (gst_harness_buffers_received (h), ==, 3);
  for (guint i = 0; i < 3; i++) {
    GstBuffer *out = gst_harness_pull (h);
    g_assert_cmpuint (GST_BUFFER_OFFSET (out), ==, i);
    g_assert_cmpuint (gst_buffer_get_size (out), ==, i < 2 ? 32 * 8 * 8 * 4 : 32 * 9 * 5 * 4);
    gst_buffer_unref (out);
  }
  gst_harness_teardown (h);
}

static void
test_live_timeout (void)
{
  if (!have_testdata ())
    return;
  GstHarness *h = new_encoder ("taef2", "batch-size=8 batch-timeout=50");
  g_autofree guint8 *rgb = make_rgb (64, 64, 3);
  set_video_caps (h, "RGB", 64, 64);
  for (guint i = 0; i < 2; i++)
    g_assert_cmpint (gst_harness_push (h, stamped (frame_from_rgb (rgb, 64, 64,
                     GST_VIDEO_FORMAT_RGB), i)), ==, GST_FLOW_OK);
  wait_for_buffers (h, 2);
  g_assert_cmpuint (gst_harness_buffers_received (h), ==, 2);
  pull_offsets (h, 0, 2);
  /* Latency: batching adds min(7 frames, 50 ms) = 50 ms to upstream's,
   * and the batch that ran its processing time (with at least 1 ms of
   * headroom; /latency/measured checks the value). */
  GstClockTime lat = gst_harness_query_latency (h);
  g_assert_cmpuint (lat, >=, 51 * GST_MSECOND);
  gst_harness_teardown (h);
}

static void
test_latency_frames (void)
{
  if (!have_testdata ())
    return;
  GstHarness *h = new_encoder ("taef2", "batch-size=4");
  g_autofree guint8 *rgb = make_rgb (64, 64, 3);
  set_video_caps (h, "RGB", 64, 64);
  g_assert_cmpint (gst_harness_push (h, stamped (frame_from_rgb (rgb, 64, 64,
                   GST_VIDEO_FORMAT_RGB), 0)), ==, GST_FLOW_OK);
  GstClockTime lat = gst_harness_query_latency (h);
  g_assert_cmpuint (lat, ==, 3 * gst_util_uint64_scale_int (GST_SECOND, 1, 30));
  gst_harness_teardown (h);
}

static void
test_odd_size (void)
{
  if (!have_testdata ())
    return;
  GstHarness *h = new_encoder ("taef2", NULL);
  g_autofree guint8 *rgb = make_rgb (70, 38, 4);
  set_video_caps (h, "I420", 70, 38);
  g_assert_cmpint (gst_harness_push (h, stamped (frame_from_rgb (rgb, 70, 38,
                   GST_VIDEO_FORMAT_I420), 0)), ==, GST_FLOW_OK);
  g_assert_true (gst_harness_push_event (h, gst_event_new_eos ()));
  GstBuffer *out = gst_harness_pull (h);
  g_assert_cmpuint (gst_buffer_get_size (out), ==, 32 * 9 * 5 * 4);
  GstCaps *caps = gst_pad_get_current_caps (h->sinkpad);
  GstStructure *s = gst_caps_get_structure (caps, 0);
  int w = 0, hh = 0, f = 0;
  g_assert_cmpstr (gst_structure_get_string (s, "dimensions"), ==, "9:5:32:1");
  g_assert_true (gst_structure_get_int (s, "width", &w));
  g_assert_true (gst_structure_get_int (s, "height", &hh));
  g_assert_true (gst_structure_get_int (s, "spatial-factor", &f));
  g_assert_cmpint (w, ==, 70);
  g_assert_cmpint (hh, ==, 38);
  g_assert_cmpint (f, ==, 8);
  gst_caps_unref (caps);
  gst_buffer_unref (out);
  gst_harness_teardown (h);
}

static void
test_distribution (void)
{
  if (!have_testdata ())
    return;
  g_autofree guint8 *rgb = make_rgb (64, 64, 5);
  gsize n_mode, n_dist;
  g_autofree float *mode = encode_picture ("kl-sd-mini", NULL, rgb, 64, 64,
                                           GST_VIDEO_FORMAT_RGB, &n_mode);
  g_autofree float *dist = encode_picture ("kl-sd-mini", "latent-mode=distribution", rgb,
                                           64, 64, GST_VIDEO_FORMAT_RGB, &n_dist);
  g_assert_cmpuint (n_mode, ==, 4 * 8 * 8);
  g_assert_cmpuint (n_dist, ==, 2 * n_mode);
  /* The first C channels are the scaled mean, i.e. mode's output. */
  g_assert_cmpfloat (max_abs_diff (mode, dist, n_mode), ==, 0.0);

  GstHarness *h = new_encoder ("kl-sd-mini", "latent-mode=distribution");
  set_video_caps (h, "RGB", 64, 64);
  g_assert_cmpint (gst_harness_push (h, stamped (frame_from_rgb (rgb, 64, 64,
                   GST_VIDEO_FORMAT_RGB), 0)), ==, GST_FLOW_OK);
  GstCaps *caps = gst_pad_get_current_caps (h->sinkpad);
  g_assert_cmpstr (gst_structure_get_string (gst_caps_get_structure (caps, 0), "dimensions"),
                   ==, "8:8:8:1");
  gst_caps_unref (caps);
  gst_harness_teardown (h);
}

static void
test_sample_seed (void)
{
  if (!have_testdata ())
    return;
  g_autofree guint8 *rgb = make_rgb (64, 64, 6);
  gsize n1, n2, n3, n0;
  g_autofree float *m = encode_picture ("kl-sd-mini", NULL, rgb, 64, 64, GST_VIDEO_FORMAT_RGB, &n0);
  g_autofree float *a = encode_picture ("kl-sd-mini", "latent-mode=sample seed=42", rgb, 64, 64,
                                        GST_VIDEO_FORMAT_RGB, &n1);
  g_autofree float *b = encode_picture ("kl-sd-mini", "latent-mode=sample seed=42", rgb, 64, 64,
                                        GST_VIDEO_FORMAT_RGB, &n2);
  g_autofree float *c = encode_picture ("kl-sd-mini", "latent-mode=sample seed=43", rgb, 64, 64,
                                        GST_VIDEO_FORMAT_RGB, &n3);
  g_assert_cmpuint (n1, ==, n0);
  g_assert_cmpuint (n2, ==, n1);
  g_assert_cmpuint (n3, ==, n1);
  g_assert_cmpfloat (max_abs_diff (a, b, n1), ==, 0.0);
  g_assert_cmpfloat (max_abs_diff (a, c, n1), >, 0.0);
  g_assert_cmpfloat (max_abs_diff (a, m, n1), >, 0.0);
}

static void
encode_clip (const char *extra, int n_frames, float **out, gsize *frame_n)
{
  GstHarness *h = new_encoder ("taef2", extra);
  set_video_caps (h, "RGB", 72, 40);
  for (int i = 0; i < n_frames; i++) {
    g_autofree guint8 *rgb = make_rgb (72, 40, i);
    g_assert_cmpint (gst_harness_push (h, stamped (frame_from_rgb (rgb, 72, 40,
                     GST_VIDEO_FORMAT_RGB), i)), ==, GST_FLOW_OK);
  }
  g_assert_true (gst_harness_push_event (h, gst_event_new_eos ()));
  g_assert_cmpuint (gst_harness_buffers_received (h), ==, n_frames);
  *frame_n = 32 * 9 * 5;
  *out = g_new (float, *frame_n * n_frames);
  for (int i = 0; i < n_frames; i++) {
    GstBuffer *b = gst_harness_pull (h);
    gsize n;
    g_autofree float *f = buffer_floats (b, &n);
    g_assert_cmpuint (n, ==, *frame_n);
    memcpy (*out + *frame_n * i, f, n * sizeof (float));
    gst_buffer_unref (b);
  }
  gst_harness_teardown (h);
}

static void
test_batched_equals_unbatched (void)
{
  if (!have_testdata ())
    return;
  g_autofree float *a = NULL, *b = NULL;
  gsize fn;
  encode_clip ("batch-size=1", 6, &a, &fn);
  encode_clip ("batch-size=4", 6, &b, &fn);
  double num = 0, den = 0;
  for (gsize i = 0; i < fn * 6; i++) {
    num += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
    den += (double) a[i] * a[i];
  }
  double rel = sqrt (num / MAX (den, 1e-30));
  g_test_message ("batched vs unbatched: relative error %g", rel);
  g_assert_cmpfloat (rel, <=, 1e-5);
}

static void
test_reference (void)
{
  if (!have_testdata ())
    return;
  VaeSafetensors *st = open_reference ("taef2__astronaut_64x64.safetensors");
  GError *err = NULL;
  const VaeTensorView *img = vae_safetensors_lookup (st, "image");
  const VaeTensorView *ref = vae_safetensors_lookup (st, "latent_scaled");
  g_assert_nonnull (img);
  g_assert_nonnull (ref);
  g_assert_cmpuint (img->n_bytes, ==, 64 * 64 * 3);
  g_autofree float *want = g_new (float, ref->n_elements);
  g_assert_true (vae_tensor_view_to_f32 (ref, want, &err));
  gsize n;
  g_autofree float *got = encode_picture ("taef2", NULL, img->data, 64, 64,
                                          GST_VIDEO_FORMAT_RGB, &n);
  g_assert_cmpuint (n, ==, ref->n_elements);
  double d = max_abs_diff (got, want, n);
  g_test_message ("reference latent_scaled: max |diff| %g", d);
  g_assert_cmpfloat (d, <=, 1e-3);

  /* float16 output is the same latents, rounded. */
  GstHarness *h = new_encoder ("taef2", "latent-dtype=float16");
  set_video_caps (h, "RGB", 64, 64);
  g_assert_cmpint (gst_harness_push (h, stamped (frame_from_rgb (img->data, 64, 64,
                   GST_VIDEO_FORMAT_RGB), 0)), ==, GST_FLOW_OK);
  GstBuffer *out = gst_harness_pull (h);
  GstMapInfo map;
  g_assert_true (gst_buffer_map (out, &map, GST_MAP_READ));
  g_assert_cmpuint (map.size, ==, n * 2);
  double dh = 0;
  for (gsize i = 0; i < n; i++) {
    guint16 v;
    memcpy (&v, map.data + 2 * i, 2);
    dh = MAX (dh, fabs (vae_f16_to_f32 (v) - got[i]) / MAX (fabs (got[i]), 1.0));
  }
  gst_buffer_unmap (out, &map);
  gst_buffer_unref (out);
  g_assert_cmpfloat (dh, <=, 1e-3);
  GstCaps *caps = gst_pad_get_current_caps (h->sinkpad);
  g_assert_cmpstr (gst_structure_get_string (gst_caps_get_structure (caps, 0), "types"),
                   ==, "float16");
  gst_caps_unref (caps);
  gst_harness_teardown (h);
  vae_safetensors_free (st);
}

/* FLUX.2: the default latents are the pipeline's (2x2 patches, BatchNorm
 * statistics: 128 channels at 16x, named in the caps); latent-format=raw
 * gives the posterior mode (32 channels at 8x). */
static void
test_flux2 (void)
{
  if (!have_testdata ())
    return;
  g_autofree char *path = g_build_filename (g_getenv ("VAE_TESTDATA"), "reference-flux2",
                                            "flux2-mini__astronaut_128x128.safetensors", NULL);
  GError *err = NULL;
  VaeSafetensors *st = vae_safetensors_open (path, &err);
  g_assert_no_error (err);
  const VaeTensorView *img = vae_safetensors_lookup (st, "image");
  g_assert_nonnull (img);
  g_assert_cmpuint (img->n_bytes, ==, 128 * 128 * 3);
  static const struct {
    const char *extra, *tensor, *dims, *format;
  } cases[] = {
    { NULL, "latent_normalized", "8:8:128:1", "normalized" },
    { "latent-format=raw", "latent_mean", "16:16:32:1", "raw" },
  };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++) {
    const VaeTensorView *ref = vae_safetensors_lookup (st, cases[c].tensor);
    g_assert_nonnull (ref);
    g_autofree float *want = g_new (float, ref->n_elements);
    g_assert_true (vae_tensor_view_to_f32 (ref, want, &err));
    GstHarness *h = new_encoder ("flux2-mini", cases[c].extra);
    set_video_caps (h, "RGB", 128, 128);
    g_assert_cmpint (gst_harness_push (h, stamped (frame_from_rgb (img->data, 128, 128,
                     GST_VIDEO_FORMAT_RGB), 0)), ==, GST_FLOW_OK);
    g_assert_true (gst_harness_push_event (h, gst_event_new_eos ()));
    GstBuffer *out = gst_harness_pull (h);
    g_assert_nonnull (out);
    GstCaps *caps = gst_pad_get_current_caps (h->sinkpad);
    GstStructure *s = gst_caps_get_structure (caps, 0);
    g_assert_cmpstr (gst_structure_get_string (s, "dimensions"), ==, cases[c].dims);
    g_assert_cmpstr (gst_structure_get_string (s, "latent-format"), ==, cases[c].format);
    if (c == 0)
      g_assert_nonnull (gst_structure_get_string (s, "normalization"));
    gst_caps_unref (caps);
    gsize n;
    g_autofree float *got = buffer_floats (out, &n);
    gst_buffer_unref (out);
    g_assert_cmpuint (n, ==, ref->n_elements);
    double d = max_abs_diff (got, want, n);
    g_test_message ("flux2-mini %s vs %s: max |diff| %g", cases[c].format, cases[c].tensor, d);
    g_assert_cmpfloat (d, <=, 1e-3);
    gst_harness_teardown (h);
  }
  vae_safetensors_free (st);
}

static void
test_missing_model (void)
{
  GstElement *e = start_missing_model ("vaeencode", "/nonexistent/model-folder");
  GstStateChangeReturn ret;
  GError *err = NULL;
  char *dbg = NULL;

  /* No model at all. */
  g_object_set (e, "model", NULL, NULL);
  GstMessage *msg = start_and_get_error (e, &ret);
  g_assert_cmpint (ret, ==, GST_STATE_CHANGE_FAILURE);
  g_assert_nonnull (msg);
  gst_message_unref (msg);

  /* A corrupt model file. */
  g_autofree char *tmp = g_build_filename (g_get_tmp_dir (), "vae-test-corrupt.safetensors", NULL);
  g_assert_true (g_file_set_contents (tmp, "\x10\0\0\0\0\0\0\0{not json at all", 24, NULL));
  g_object_set (e, "model", tmp, NULL);
  msg = start_and_get_error (e, &ret);
  g_assert_cmpint (ret, ==, GST_STATE_CHANGE_FAILURE);
  g_assert_nonnull (msg);
  gst_message_parse_error (msg, &err, &dbg);
  g_assert_error (err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED);
  g_assert_nonnull (strstr (dbg, "vae-test-corrupt"));
  clear_error (msg, &err, &dbg);
  g_unlink (tmp);
  gst_object_unref (e);
}

static void
test_decoder_only_model (void)
{
  if (!have_testdata ())
    return;
  g_autofree char *path = g_build_filename (testdata, "models", "taef2",
                                            "taef2_decoder.safetensors", NULL);
  g_autofree char *desc = g_strdup_printf ("vaeencode model=\"%s\"", path);
  GstHarness *h = gst_harness_new_parse (desc);
  GstBus *bus = harness_bus (h);
  set_video_caps (h, "RGB", 64, 64);
  g_autofree guint8 *rgb = make_rgb (64, 64, 0);
  GError *err = NULL;
  GstMessage *msg = push_refused (h, bus, frame_from_rgb (rgb, 64, 64, GST_VIDEO_FORMAT_RGB),
                                  "decoder-only model", &err, NULL);
  g_assert_nonnull (strstr (err->message, "no encoder"));
  clear_error (msg, &err, NULL);
  harness_teardown_bus (h, bus);
}

/* backend=cuda: where a GPU is usable, the frames the cpu engine gives
 * within the reduced-precision bound; without one (or without the engine in
 * this build) an element error that names the backend: never a crash, and
 * never a silent fallback to the cpu. */
static void
test_cuda_backend (void)
{
  if (!have_testdata ())
    return;
  g_autofree guint8 *rgb = make_rgb (64, 64, 1);
  if (vae_engine_backend_usable ("cuda")) {
    gsize n_cpu = 0, n_gpu = 0;
    g_autofree float *cpu = encode_picture ("taef2", "backend=cpu", rgb, 64, 64,
                                            GST_VIDEO_FORMAT_RGB, &n_cpu);
    g_autofree float *gpu = encode_picture ("taef2", "backend=cuda", rgb, 64, 64,
                                            GST_VIDEO_FORMAT_RGB, &n_gpu);
    g_assert_cmpuint (n_cpu, ==, n_gpu);
    double num = 0, den = 0;
    for (gsize i = 0; i < n_cpu; i++) {
      num += ((double) gpu[i] - cpu[i]) * ((double) gpu[i] - cpu[i]);
      den += (double) cpu[i] * cpu[i];
    }
    g_test_message ("cuda vs cpu latents: rel L2 %.3g", sqrt (num / den));
    g_assert_cmpfloat (sqrt (num / den), <=, 1e-2);
    return;
  }
  GstHarness *h = new_encoder ("taef2", "backend=cuda");
  GstBus *bus = harness_bus (h);
  set_video_caps (h, "RGB", 64, 64);
  GError *err = NULL;
  char *dbg = NULL;
  GstMessage *msg = push_refused (h, bus, stamped (frame_from_rgb (rgb, 64, 64,
                                                                   GST_VIDEO_FORMAT_RGB), 0),
                                  "backend=cuda without a GPU", &err, &dbg);
  g_assert_true (strstr (err->message, "cuda") || (dbg && strstr (dbg, "cuda")));
  g_assert_null (gst_harness_try_pull (h));
  clear_error (msg, &err, &dbg);
  harness_teardown_bus (h, bus);
}

/* A setup failure posts one ERROR, however often upstream re-sends the
 * refused caps (before every later buffer, event and query). */
static void
test_setup_error_once (void)
{
  if (!have_testdata ())
    return;
  g_autofree char *path = model_path ("taef2");
  g_autofree char *head = g_strdup_printf (
      "videotestsrc name=src num-buffers=5 ! video/x-raw,format=RGB,width=64,height=64 "
      "! vaeencode name=enc model=\"%s\"", path);
  const char *const cases[] = {
    "backend=cuda",               /* without a GPU: the engine cannot open */
    "backend=remote",             /* without an endpoint */
    "tile-size=13",               /* not a multiple of the spatial factor */
    "engine-options=colour=red",  /* a setting the engine does not take */
    "engine-options=novalue",     /* not key=value */
  };
  /* backend=cuda fails only without a GPU. */
  const guint first = vae_engine_backend_usable ("cuda") ? 1 : 0;
  assert_setup_error_once (head, "enc", cases + first, G_N_ELEMENTS (cases) - first);
}

/* engine-options: the engine's own settings; an unknown key is an error
 * naming it and the engine; a token reads back masked. */
static void
test_engine_options (void)
{
  if (!have_testdata ())
    return;
  GstHarness *h = new_encoder ("taef2", "engine-options=colour=red");
  GstElement *enc = gst_harness_find_element (h, "vaeencode");
  GstBus *bus = harness_bus (h);
  g_autofree guint8 *rgb = make_rgb (64, 64, 0);
  set_video_caps (h, "RGB", 64, 64);
  GError *err = NULL;
  char *dbg = NULL;
  GstMessage *msg = push_refused (h, bus, stamped (frame_from_rgb (rgb, 64, 64,
                                                                   GST_VIDEO_FORMAT_RGB), 0),
                                  "engine-options=colour=red", &err, &dbg);
  g_assert_nonnull (dbg);
  g_assert_nonnull (strstr (dbg, "engine 'cpu' has no setting 'colour'"));
  clear_error (msg, &err, &dbg);

  gst_object_unref (enc);
  harness_teardown_bus (h, bus);

  char *shown = NULL;
  enc = gst_element_factory_make ("vaeencode", NULL);
  g_object_set (enc, "engine-options", "endpoint=http://a/\\,http://b/,token=sekrit,retries=2",
                NULL);
  g_object_get (enc, "engine-options", &shown, NULL);
  g_assert_cmpstr (shown, ==, "endpoint=http://a/\\,http://b/,token=***,retries=2");
  g_free (shown);
  gst_object_unref (enc);
}

/* A property set while the element runs keeps the value in use, with a
 * warning: the stream goes on with the model it started with, also across
 * a caps change.  In READY the change is taken. */
static void
test_running_property_changes (void)
{
  if (!have_testdata ())
    return;
  g_autofree char *taef2 = model_path ("taef2");
  g_autofree char *kl = model_path ("kl-sd-mini");
  g_autofree guint8 *square = make_rgb (64, 64, 0);
  g_autofree guint8 *wide = make_rgb (72, 40, 0);
  GstHarness *h = new_encoder ("taef2", "batch-size=1");
  GstElement *enc = gst_harness_find_element (h, "vaeencode");
  GstBus *bus = harness_bus (h);
  GError *err = NULL;
  char *model = NULL;

  set_video_caps (h, "RGB", 64, 64);
  g_assert_cmpint (gst_harness_push (h, stamped (frame_from_rgb (square, 64, 64,
                   GST_VIDEO_FORMAT_RGB), 0)), ==, GST_FLOW_OK);
  GstBuffer *out = gst_harness_pull (h);
  g_assert_cmpuint (gst_buffer_get_size (out), ==, 32 * 8 * 8 * 4);
  gst_buffer_unref (out);

  g_object_set (enc, "model", kl, NULL);
  g_object_get (enc, "model", &model, NULL);
  g_assert_cmpstr (model, ==, taef2);
  g_free (model);
  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  g_assert_nonnull (msg);
  gst_message_parse_warning (msg, &err, NULL);
  g_test_message ("warning: %s", err->message);
  g_assert_nonnull (strstr (err->message, "'model'"));
  clear_error (msg, &err, NULL);

  set_video_caps (h, "RGB", 72, 40);
  g_assert_cmpint (gst_harness_push (h, stamped (frame_from_rgb (wide, 72, 40,
                   GST_VIDEO_FORMAT_RGB), 1)), ==, GST_FLOW_OK);
  out = gst_harness_pull (h);
  g_assert_cmpuint (gst_buffer_get_size (out), ==, 32 * 9 * 5 * 4);   /* taef2's */
  gst_buffer_unref (out);
  GstCaps *caps = gst_pad_get_current_caps (h->sinkpad);
  g_assert_cmpstr (gst_structure_get_string (gst_caps_get_structure (caps, 0), "model"),
                   ==, "taef2");
  gst_caps_unref (caps);

  check_running_property_changes (enc, bus);

  g_assert_cmpint (gst_element_set_state (h->element, GST_STATE_READY), ==,
                   GST_STATE_CHANGE_SUCCESS);
  g_object_set (enc, "model", kl, "latent-mode", 1, NULL);
  g_object_get (enc, "model", &model, NULL);
  g_assert_cmpstr (model, ==, kl);
  g_free (model);
  g_assert_null (gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING));
  gst_object_unref (enc);
  harness_teardown_bus (h, bus);
}

int
main (int argc, char **argv)
{
  element_test_init (&argc, &argv);
  g_test_add_func ("/vaeencode/formats", test_formats);
  g_test_add_func ("/vaeencode/cuda-backend", test_cuda_backend);
  g_test_add_func ("/vaeencode/refused-caps", test_refused_caps);
  g_test_add_func ("/vaeencode/batches-and-timestamps", test_batches_and_timestamps);
  g_test_add_func ("/vaeencode/flush-mid-batch", test_flush_mid_batch);
  g_test_add_func ("/vaeencode/caps-change-drains", test_caps_change_drains);
  g_test_add_func ("/vaeencode/live-timeout", test_live_timeout);
  g_test_add_func ("/vaeencode/latency", test_latency_frames);
  g_test_add_func ("/vaeencode/odd-size", test_odd_size);
  g_test_add_func ("/vaeencode/distribution", test_distribution);
  g_test_add_func ("/vaeencode/sample-seed", test_sample_seed);
  g_test_add_func ("/vaeencode/batched-equals-unbatched", test_batched_equals_unbatched);
  g_test_add_func ("/vaeencode/reference", test_reference);
  g_test_add_func ("/vaeencode/flux2", test_flux2);
  g_test_add_func ("/vaeencode/missing-model", test_missing_model);
  g_test_add_func ("/vaeencode/decoder-only-model", test_decoder_only_model);
  g_test_add_func ("/vaeencode/setup-error-once", test_setup_error_once);
  g_test_add_func ("/vaeencode/engine-options", test_engine_options);
  g_test_add_func ("/vaeencode/running-property-changes", test_running_property_changes);
  return element_test_run ();
}
