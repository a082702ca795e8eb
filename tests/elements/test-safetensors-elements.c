/* gst-vae: GstHarness tests of safetensorsmux and safetensorsdemux.
 *
 * The plugin is found through GST_PLUGIN_PATH (set by meson).  Files are
 * checked with the core reader (vae_safetensors_new_from_bytes) and test
 * inputs written with the core writer. */
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <glib/gstdio.h>
#include <unistd.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "gstvaelatentcaps.h"
#include "safetensors.h"

#define N_FRAMES 5
#define FPS_N 6
#define FPS_D 1

/* ---- helpers ---- */

static void
make_info (GstVaeLatentInfo *info, VaeDType dtype, int c, int h, int w)
{
  gst_vae_latent_info_init (info);
  info->dtype = dtype;
  info->channels = c;
  info->latent_height = h;
  info->latent_width = w;
  info->spatial_factor = 8;
  info->width = w * 8 - 3;
  info->height = h * 8 - 5;
  info->scaling_factor = 0.3611;
  info->shift_factor = 0.1159;
  info->model = g_strdup ("test-model");
  info->fps_n = FPS_N;
  info->fps_d = FPS_D;
}

static float
frame_value (int frame, gsize i)
{
  /* exactly representable in F16 */
  return (float) frame * 16.0f + (float) (i % 64) * 0.25f - 4.0f;
}

static GstBuffer *
make_frame (const GstVaeLatentInfo *info, int frame)
{
  gsize n = (gsize) info->channels * info->latent_height * info->latent_width;
  GstBuffer *buf = gst_buffer_new_allocate (NULL, gst_vae_latent_info_frame_size (info), NULL);
  GstMapInfo map;
  fail_unless (gst_buffer_map (buf, &map, GST_MAP_WRITE));
  for (gsize i = 0; i < n; i++) {
    if (info->dtype == VAE_DTYPE_F16) {
      guint16 v = vae_f32_to_f16 (frame_value (frame, i));
      memcpy (map.data + i * 2, &v, 2);
    } else {
      float v = frame_value (frame, i);
      memcpy (map.data + i * 4, &v, 4);
    }
  }
  gst_buffer_unmap (buf, &map);
  return buf;
}

static GstClockTime
frame_pts (int frame)
{
  return gst_util_uint64_scale (frame * GST_SECOND, FPS_D, FPS_N);
}

/* A harness whose element posts to BUS. */
static GstHarness *
harness_with_bus (const char *name, GstBus **bus)
{
  GstHarness *h = gst_harness_new (name);
  *bus = gst_bus_new ();
  gst_element_set_bus (h->element, *bus);
  return h;
}

/* The error on BUS (NULL when none); checks its domain and code. */
static GError *
pop_error (GstBus *bus, GQuark domain, gint code)
{
  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  GError *err = NULL;
  gchar *debug = NULL;
  if (!msg)
    return NULL;
  gst_message_parse_error (msg, &err, &debug);
  GST_INFO ("error: %s (%s)", err->message, debug ? debug : "");
  fail_unless (debug != NULL && debug[0] != '\0', "an element error without debug text");
  fail_unless (err->domain == domain && err->code == code,
      "unexpected error %s %d: %s", g_quark_to_string (err->domain), err->code, err->message);
  g_free (debug);
  gst_message_unref (msg);
  return err;
}

static void
assert_no_error (GstBus *bus)
{
  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  if (msg) {
    GError *err = NULL;
    gchar *debug = NULL;
    gst_message_parse_error (msg, &err, &debug);
    ck_abort_msg ("unexpected error: %s (%s)", err->message, debug ? debug : "");
  }
}

static void
harness_done (GstHarness *h, GstBus *bus)
{
  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
}

/* Muxes N frames described by INFO; returns the file. */
static GBytes *
mux_frames (const GstVaeLatentInfo *info, int n, gboolean pts_hole)
{
  GstBus *bus;
  GstHarness *h = harness_with_bus ("safetensorsmux", &bus);
  GstCaps *caps = gst_vae_latent_info_to_caps (info);
  GstBuffer *out;
  GstMapInfo map;
  GBytes *bytes;
  GstEvent *ev;
  gboolean saw_eos = FALSE;

  gst_harness_set_src_caps (h, caps);
  for (int i = 0; i < n; i++) {
    GstBuffer *buf = make_frame (info, i);
    GST_BUFFER_PTS (buf) = (pts_hole && i == 1) ? GST_CLOCK_TIME_NONE : frame_pts (i);
    GST_BUFFER_DURATION (buf) = frame_pts (i + 1) - frame_pts (i);
    fail_unless_equals_int (gst_harness_push (h, buf), GST_FLOW_OK);
  }
  fail_unless_equals_int (gst_harness_buffers_received (h), 0);
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  assert_no_error (bus);

  fail_unless_equals_int (gst_harness_buffers_received (h), 1);
  out = gst_harness_try_pull (h);
  fail_unless (out != NULL);
  fail_unless (gst_buffer_map (out, &map, GST_MAP_READ));
  bytes = g_bytes_new (map.data, map.size);
  gst_buffer_unmap (out, &map);
  gst_buffer_unref (out);

  {
    GstCaps *outcaps = gst_pad_get_current_caps (h->sinkpad);
    fail_unless (outcaps != NULL);
    fail_unless (gst_structure_has_name (gst_caps_get_structure (outcaps, 0),
            "application/x-safetensors"));
    gst_caps_unref (outcaps);
  }
  while ((ev = gst_harness_try_pull_event (h))) {
    if (GST_EVENT_TYPE (ev) == GST_EVENT_EOS)
      saw_eos = TRUE;
    gst_event_unref (ev);
  }
  fail_unless (saw_eos, "no EOS after the file");
  harness_done (h, bus);
  return bytes;
}

static const char *
meta (const VaeSafetensors *st, const char *key)
{
  const char *v = vae_safetensors_metadata (st, key);
  fail_unless (v != NULL, "metadata '%s' missing", key);
  return v;
}

static void
check_muxed (GBytes *bytes, const GstVaeLatentInfo *info, int n, gboolean pts_hole)
{
  GError *error = NULL;
  VaeSafetensors *st = vae_safetensors_new_from_bytes (bytes, "muxed", &error);
  const VaeTensorView *lat, *pts;
  gsize frame_elems = (gsize) info->channels * info->latent_height * info->latent_width;
  gint64 shape[4] = { n, info->channels, info->latent_height, info->latent_width };
  gint64 pts_shape[1] = { n };
  float *vals;

  fail_unless (st != NULL, "%s", error ? error->message : "?");
  lat = vae_safetensors_lookup (st, "latents");
  fail_unless (lat != NULL);
  fail_unless_equals_int (lat->dtype, info->dtype);
  fail_unless (vae_tensor_view_check_shape (lat, "muxed", 4, shape, &error), "%s",
      error ? error->message : "?");
  vals = g_new (float, lat->n_elements);
  fail_unless (vae_tensor_view_to_f32 (lat, vals, NULL));
  for (int f = 0; f < n; f++)
    for (gsize i = 0; i < frame_elems; i++)
      fail_unless (vals[f * frame_elems + i] == frame_value (f, i),
          "frame %d element %zu: %g != %g", f, i, vals[f * frame_elems + i],
          frame_value (f, i));
  g_free (vals);

  pts = vae_safetensors_lookup (st, "pts");
  fail_unless (pts != NULL);
  fail_unless_equals_int (pts->dtype, VAE_DTYPE_I64);
  fail_unless (vae_tensor_view_check_shape (pts, "muxed", 1, pts_shape, NULL));
  for (int f = 0; f < n; f++) {
    gint64 p;
    memcpy (&p, pts->data + f * 8, 8);
    if (pts_hole && f == 1) {
      fail_unless_equals_int64 (p, -1);
    } else {
      fail_unless_equals_int64 (p, (gint64) frame_pts (f));
    }
  }

  fail_unless_equals_string (meta (st, "model"), "test-model");
  fail_unless_equals_float (g_ascii_strtod (meta (st, "scaling_factor"), NULL), info->scaling_factor);
  fail_unless_equals_float (g_ascii_strtod (meta (st, "shift_factor"), NULL), info->shift_factor);
  fail_unless_equals_string (meta (st, "framerate"), "6/1");
  fail_unless_equals_int (atoi (meta (st, "width")), info->width);
  fail_unless_equals_int (atoi (meta (st, "height")), info->height);
  fail_unless_equals_int (atoi (meta (st, "spatial_factor")), 8);
  vae_safetensors_free (st);
}

/* Waits (20 s at most) for EOS on H's sink pad: the demuxer pushes from a
 * task of its own, so its output is complete only then. */
static void
wait_for_eos (GstHarness *h)
{
  gint64 end = g_get_monotonic_time () + 20 * G_TIME_SPAN_SECOND;
  while (!GST_PAD_IS_EOS (h->sinkpad)) {
    fail_unless (g_get_monotonic_time () < end, "no EOS from the demuxer within 20 s");
    g_usleep (1000);
  }
}

/* Runs the demuxer on BYTES (pushed without caps, as filesrc does, in
 * chunks of CHUNK bytes).  Returns the harness (EOS pushed) for the caller
 * to pull from; the caller tears it down with harness_done. */
static GstHarness *
demux_bytes (GBytes *bytes, gsize chunk, GstBus **bus)
{
  GstHarness *h = harness_with_bus ("safetensorsdemux", bus);
  gsize size;
  const guint8 *data = g_bytes_get_data (bytes, &size);
  GstSegment seg;

  gst_harness_play (h);
  fail_unless (gst_harness_push_event (h, gst_event_new_stream_start ("file")));
  gst_segment_init (&seg, GST_FORMAT_BYTES);
  fail_unless (gst_harness_push_event (h, gst_event_new_segment (&seg)));
  for (gsize off = 0; off < size; off += chunk) {
    gsize n = MIN (chunk, size - off);
    fail_unless_equals_int (gst_harness_push (h, gst_buffer_new_memdup (data + off, n)), GST_FLOW_OK);
  }
  /* nothing comes out before the whole file is in */
  fail_unless_equals_int (gst_harness_buffers_received (h), 0);
  /* a usable file is taken (and played from the demuxer's own thread); a
   * bad one is an element error and the EOS is refused */
  if (gst_harness_push_event (h, gst_event_new_eos ()))
    wait_for_eos (h);
  return h;
}

static GstCaps *
demuxed_caps (GstHarness *h)
{
  GstCaps *caps = gst_pad_get_current_caps (h->sinkpad);
  fail_unless (caps != NULL, "the demuxer set no caps");
  return caps;
}

static void
pull_eos (GstHarness *h)
{
  GstEvent *ev;
  gboolean eos = FALSE, segment = FALSE, start = FALSE;
  while ((ev = gst_harness_try_pull_event (h))) {
    if (GST_EVENT_TYPE (ev) == GST_EVENT_EOS)
      eos = TRUE;
    if (GST_EVENT_TYPE (ev) == GST_EVENT_STREAM_START)
      start = TRUE;
    if (GST_EVENT_TYPE (ev) == GST_EVENT_SEGMENT) {
      const GstSegment *s;
      gst_event_parse_segment (ev, &s);
      fail_unless_equals_int (s->format, GST_FORMAT_TIME);
      segment = TRUE;
    }
    gst_event_unref (ev);
  }
  fail_unless (start && segment && eos, "stream-start %d segment %d eos %d", start, segment, eos);
}

/* ---- safetensorsmux ---- */

static void
run_mux (VaeDType dtype)
{
  GstVaeLatentInfo info;
  GBytes *bytes;
  make_info (&info, dtype, 4, 3, 5);
  bytes = mux_frames (&info, N_FRAMES, FALSE);
  check_muxed (bytes, &info, N_FRAMES, FALSE);
  g_bytes_unref (bytes);
  gst_vae_latent_info_clear (&info);
}

GST_START_TEST (test_mux_f32)
{
  run_mux (VAE_DTYPE_F32);
}
GST_END_TEST;

GST_START_TEST (test_mux_f16)
{
  run_mux (VAE_DTYPE_F16);
}
GST_END_TEST;

GST_START_TEST (test_mux_pts_none)
{
  GstVaeLatentInfo info;
  GBytes *bytes;
  make_info (&info, VAE_DTYPE_F32, 2, 2, 2);
  bytes = mux_frames (&info, 3, TRUE);
  check_muxed (bytes, &info, 3, TRUE);
  g_bytes_unref (bytes);
  gst_vae_latent_info_clear (&info);
}
GST_END_TEST;

GST_START_TEST (test_mux_zero_frames)
{
  GstVaeLatentInfo info;
  GstBus *bus;
  GstHarness *h = harness_with_bus ("safetensorsmux", &bus);
  GError *err;

  make_info (&info, VAE_DTYPE_F32, 4, 3, 5);
  gst_harness_set_src_caps (h, gst_vae_latent_info_to_caps (&info));
  gst_harness_push_event (h, gst_event_new_eos ());
  err = pop_error (bus, GST_STREAM_ERROR, GST_STREAM_ERROR_FAILED);
  fail_unless (err != NULL, "no error for a stream without frames");
  fail_unless (strstr (err->message, "no latent frames") != NULL, "%s", err->message);
  g_error_free (err);
  fail_unless_equals_int (gst_harness_buffers_received (h), 0);
  harness_done (h, bus);
  gst_vae_latent_info_clear (&info);
}
GST_END_TEST;

GST_START_TEST (test_mux_zero_frames_no_caps)
{
  GstBus *bus;
  GstHarness *h = harness_with_bus ("safetensorsmux", &bus);
  GError *err;

  gst_harness_play (h);
  gst_harness_push_event (h, gst_event_new_stream_start ("x"));
  gst_harness_push_event (h, gst_event_new_eos ());
  err = pop_error (bus, GST_STREAM_ERROR, GST_STREAM_ERROR_FAILED);
  fail_unless (err != NULL, "no error for an empty stream");
  g_error_free (err);
  harness_done (h, bus);
}
GST_END_TEST;

GST_START_TEST (test_mux_caps_change)
{
  GstVaeLatentInfo a, b;
  GstBus *bus;
  GstHarness *h = harness_with_bus ("safetensorsmux", &bus);
  GError *err;

  make_info (&a, VAE_DTYPE_F32, 4, 3, 5);
  make_info (&b, VAE_DTYPE_F32, 4, 3, 6);
  gst_harness_set_src_caps (h, gst_vae_latent_info_to_caps (&a));
  fail_unless_equals_int (gst_harness_push (h, make_frame (&a, 0)), GST_FLOW_OK);
  /* same layout, other framerate: fine */
  a.fps_n = 12;
  fail_unless (gst_harness_push_event (h, gst_event_new_caps (gst_vae_latent_info_to_caps (&a))));
  assert_no_error (bus);
  fail_unless_equals_int (gst_harness_push (h, make_frame (&a, 1)), GST_FLOW_OK);
  /* another latent size: an element error (the event is sticky, so
   * gst_pad_push_event may still report it as stored) */
  gst_harness_push_event (h, gst_event_new_caps (gst_vae_latent_info_to_caps (&b)));
  err = pop_error (bus, GST_STREAM_ERROR, GST_STREAM_ERROR_FORMAT);
  fail_unless (err != NULL, "no error for a layout change");
  g_error_free (err);
  harness_done (h, bus);
  gst_vae_latent_info_clear (&a);
  gst_vae_latent_info_clear (&b);
}
GST_END_TEST;

GST_START_TEST (test_mux_wrong_buffer_size)
{
  GstVaeLatentInfo info;
  GstBus *bus;
  GstHarness *h = harness_with_bus ("safetensorsmux", &bus);
  GError *err;

  make_info (&info, VAE_DTYPE_F32, 4, 3, 5);
  gst_harness_set_src_caps (h, gst_vae_latent_info_to_caps (&info));
  fail_if (gst_harness_push (h, gst_buffer_new_allocate (NULL, 7, NULL)) == GST_FLOW_OK);
  err = pop_error (bus, GST_STREAM_ERROR, GST_STREAM_ERROR_FORMAT);
  fail_unless (err != NULL);
  g_error_free (err);
  harness_done (h, bus);
  gst_vae_latent_info_clear (&info);
}
GST_END_TEST;

GST_START_TEST (test_mux_refuses_video)
{
  GstHarness *h = gst_harness_new ("safetensorsmux");
  GstCaps *caps = gst_caps_from_string ("video/x-raw,format=RGB,width=8,height=8,framerate=1/1");
  fail_if (gst_pad_peer_query_accept_caps (h->srcpad, caps));
  gst_caps_unref (caps);
  gst_harness_teardown (h);
}
GST_END_TEST;

/* ---- safetensorsdemux ---- */

GST_START_TEST (test_demux_written_file)
{
  g_autoptr (VaeSafetensorsWriter) w = vae_safetensors_writer_new ();
  const int T = 3, C = 4, H = 2, W = 3;
  gint64 shape[4] = { T, C, H, W }, pshape[1] = { T };
  gint64 pts[3] = { 0, 100, -1 };
  float data[3 * 4 * 2 * 3];
  GBytes *bytes;
  GstBus *bus;
  GstHarness *h;
  GstCaps *caps;
  GstVaeLatentInfo info;
  GError *error = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (data); i++)
    data[i] = (float) i * 0.5f - 3.0f;
  fail_unless (vae_safetensors_writer_add (w, "latents", VAE_DTYPE_F32, 4, shape, data, sizeof data, NULL));
  fail_unless (vae_safetensors_writer_add (w, "pts", VAE_DTYPE_I64, 1, pshape, pts, sizeof pts, NULL));
  vae_safetensors_writer_set_metadata (w, "model", "taef2");
  vae_safetensors_writer_set_metadata (w, "scaling_factor", "0.3611");
  vae_safetensors_writer_set_metadata (w, "shift_factor", "0.1159");
  vae_safetensors_writer_set_metadata (w, "framerate", "25/1");
  vae_safetensors_writer_set_metadata (w, "width", "20");
  vae_safetensors_writer_set_metadata (w, "height", "13");
  vae_safetensors_writer_set_metadata (w, "spatial_factor", "8");
  bytes = vae_safetensors_writer_to_bytes (w);

  h = demux_bytes (bytes, 100, &bus);
  assert_no_error (bus);
  caps = demuxed_caps (h);
  gst_vae_latent_info_init (&info);
  fail_unless (gst_vae_latent_info_from_caps (&info, caps, &error), "%s", error ? error->message : "?");
  fail_unless_equals_int (info.dtype, VAE_DTYPE_F32);
  fail_unless_equals_int (info.channels, C);
  fail_unless_equals_int (info.latent_height, H);
  fail_unless_equals_int (info.latent_width, W);
  fail_unless_equals_int (info.width, 20);
  fail_unless_equals_int (info.height, 13);
  fail_unless_equals_int (info.spatial_factor, 8);
  fail_unless_equals_float (info.scaling_factor, 0.3611);
  fail_unless_equals_float (info.shift_factor, 0.1159);
  fail_unless_equals_string (info.model, "taef2");
  fail_unless_equals_int (info.fps_n, 25);
  fail_unless_equals_int (info.fps_d, 1);
  gst_caps_unref (caps);

  fail_unless_equals_int (gst_harness_buffers_received (h), T);
  for (int f = 0; f < T; f++) {
    GstBuffer *buf = gst_harness_pull (h);
    GstMapInfo map;
    fail_unless (buf != NULL);
    if (pts[f] < 0) {
      fail_if (GST_BUFFER_PTS_IS_VALID (buf));
    } else {
      fail_unless_equals_uint64 (GST_BUFFER_PTS (buf), (guint64) pts[f]);
    }
    fail_unless_equals_uint64 (GST_BUFFER_DURATION (buf), GST_SECOND / 25);
    fail_unless (gst_buffer_map (buf, &map, GST_MAP_READ));
    fail_unless_equals_int (map.size, C * H * W * 4);
    fail_unless (memcmp (map.data, data + f * C * H * W, map.size) == 0);
    gst_buffer_unmap (buf, &map);
    gst_buffer_unref (buf);
  }
  pull_eos (h);
  harness_done (h, bus);
  gst_vae_latent_info_clear (&info);
  g_bytes_unref (bytes);
}
GST_END_TEST;

/* `latents` alone: framerate 0/1, no factors, no model, no timestamps. */
static void
run_latents_only (int ndim, VaeDType dtype)
{
  g_autoptr (VaeSafetensorsWriter) w = vae_safetensors_writer_new ();
  const int T = ndim == 4 ? 2 : 1, C = 4, H = 2, W = 3;
  gint64 shape4[4] = { T, C, H, W }, shape3[3] = { C, H, W };
  float ref[2 * 4 * 2 * 3];
  guint16 half[2 * 4 * 2 * 3];
  gsize n = (gsize) T * C * H * W;
  GBytes *bytes;
  GstBus *bus;
  GstHarness *h;
  GstCaps *caps;
  GstStructure *s;
  GstVaeLatentInfo info;

  for (gsize i = 0; i < n; i++) {
    ref[i] = (float) i * 0.25f - 2.0f;
    half[i] = dtype == VAE_DTYPE_BF16 ? vae_f32_to_bf16 (ref[i]) : vae_f32_to_f16 (ref[i]);
  }
  if (dtype == VAE_DTYPE_F32) {
    fail_unless (vae_safetensors_writer_add (w, "latents", dtype, ndim, ndim == 4 ? shape4 : shape3,
            ref, n * 4, NULL));
  } else {
    fail_unless (vae_safetensors_writer_add (w, "latents", dtype, ndim, ndim == 4 ? shape4 : shape3,
            half, n * 2, NULL));
  }
  bytes = vae_safetensors_writer_to_bytes (w);

  h = demux_bytes (bytes, 4096, &bus);
  assert_no_error (bus);
  caps = demuxed_caps (h);
  s = gst_caps_get_structure (caps, 0);
  fail_if (gst_structure_has_field (s, "scaling-factor"), "%" GST_PTR_FORMAT, caps);
  fail_if (gst_structure_has_field (s, "shift-factor"), "%" GST_PTR_FORMAT, caps);
  fail_if (gst_structure_has_field (s, "model"), "%" GST_PTR_FORMAT, caps);
  gst_vae_latent_info_init (&info);
  fail_unless (gst_vae_latent_info_from_caps (&info, caps, NULL));
  fail_unless_equals_int (info.fps_n, 0);
  fail_unless_equals_int (info.fps_d, 1);
  /* nothing to derive a spatial factor or a source size from: both are
   * left to vaedecode's model */
  fail_if (gst_structure_has_field (s, "spatial-factor"), "%" GST_PTR_FORMAT, caps);
  fail_if (gst_structure_has_field (s, "width"), "%" GST_PTR_FORMAT, caps);
  fail_if (gst_structure_has_field (s, "height"), "%" GST_PTR_FORMAT, caps);
  fail_unless_equals_int (info.channels, C);
  /* BF16 is widened to F32 */
  fail_unless_equals_int (info.dtype, dtype == VAE_DTYPE_F16 ? VAE_DTYPE_F16 : VAE_DTYPE_F32);
  gst_caps_unref (caps);

  fail_unless_equals_int (gst_harness_buffers_received (h), T);
  for (int f = 0; f < T; f++) {
    GstBuffer *buf = gst_harness_pull (h);
    GstMapInfo map;
    gsize fe = (gsize) C * H * W;
    fail_if (GST_BUFFER_PTS_IS_VALID (buf));
    fail_if (GST_BUFFER_DURATION_IS_VALID (buf));
    fail_unless (gst_buffer_map (buf, &map, GST_MAP_READ));
    if (dtype == VAE_DTYPE_F16) {
      fail_unless_equals_int (map.size, fe * 2);
      fail_unless (memcmp (map.data, half + f * fe, map.size) == 0);
    } else {
      fail_unless_equals_int (map.size, fe * 4);
      fail_unless (memcmp (map.data, ref + f * fe, map.size) == 0);
    }
    gst_buffer_unmap (buf, &map);
    gst_buffer_unref (buf);
  }
  pull_eos (h);
  harness_done (h, bus);
  gst_vae_latent_info_clear (&info);
  g_bytes_unref (bytes);
}

GST_START_TEST (test_demux_latents_only)
{
  run_latents_only (4, VAE_DTYPE_F32);
}
GST_END_TEST;

GST_START_TEST (test_demux_one_frame_3d)
{
  run_latents_only (3, VAE_DTYPE_F16);
}
GST_END_TEST;

GST_START_TEST (test_demux_bf16)
{
  run_latents_only (4, VAE_DTYPE_BF16);
}
GST_END_TEST;

/* mux -> demux gives back the caps, the frames and their timestamps */
static void
run_round_trip (VaeDType dtype)
{
  GstVaeLatentInfo info;
  GstCaps *in_caps, *out_caps;
  GBytes *bytes;
  GstBus *bus;
  GstHarness *h;

  make_info (&info, dtype, 16, 4, 6);
  in_caps = gst_vae_latent_info_to_caps (&info);
  bytes = mux_frames (&info, N_FRAMES, FALSE);
  h = demux_bytes (bytes, 1000, &bus);
  assert_no_error (bus);
  out_caps = demuxed_caps (h);
  fail_unless (gst_caps_is_equal (in_caps, out_caps), "%" GST_PTR_FORMAT " != %" GST_PTR_FORMAT,
      in_caps, out_caps);
  fail_unless_equals_int (gst_harness_buffers_received (h), N_FRAMES);
  for (int f = 0; f < N_FRAMES; f++) {
    GstBuffer *buf = gst_harness_pull (h);
    GstBuffer *ref = make_frame (&info, f);
    GstMapInfo a, b;
    fail_unless_equals_uint64 (GST_BUFFER_PTS (buf), frame_pts (f));
    fail_unless_equals_uint64 (GST_BUFFER_DURATION (buf), gst_util_uint64_scale (GST_SECOND, FPS_D, FPS_N));
    fail_unless (gst_buffer_map (buf, &a, GST_MAP_READ));
    fail_unless (gst_buffer_map (ref, &b, GST_MAP_READ));
    fail_unless_equals_int (a.size, b.size);
    fail_unless (memcmp (a.data, b.data, a.size) == 0, "frame %d differs", f);
    gst_buffer_unmap (buf, &a);
    gst_buffer_unmap (ref, &b);
    gst_buffer_unref (buf);
    gst_buffer_unref (ref);
  }
  pull_eos (h);
  harness_done (h, bus);
  gst_caps_unref (in_caps);
  gst_caps_unref (out_caps);
  g_bytes_unref (bytes);
  gst_vae_latent_info_clear (&info);
}

GST_START_TEST (test_round_trip_f32)
{
  run_round_trip (VAE_DTYPE_F32);
}
GST_END_TEST;

GST_START_TEST (test_round_trip_f16)
{
  run_round_trip (VAE_DTYPE_F16);
}
GST_END_TEST;

static void
expect_decode_error (GBytes *bytes, const char *what)
{
  GstBus *bus;
  GstHarness *h = demux_bytes (bytes, 64, &bus);
  GError *err = pop_error (bus, GST_STREAM_ERROR, GST_STREAM_ERROR_DECODE);
  fail_unless (err != NULL, "no element error for %s", what);
  g_error_free (err);
  fail_unless_equals_int (gst_harness_buffers_received (h), 0);
  harness_done (h, bus);
}

GST_START_TEST (test_demux_garbage)
{
  guint8 junk[300];
  GBytes *bytes;
  for (guint i = 0; i < sizeof junk; i++)
    junk[i] = (guint8) (i * 37 + 11);
  bytes = g_bytes_new (junk, sizeof junk);
  expect_decode_error (bytes, "garbage");
  g_bytes_unref (bytes);

  /* a plausible header length with JSON that is not */
  {
    guint8 b[64] = { 40, 0, 0, 0, 0, 0, 0, 0, '{', '"', 'l', 'a', 't' };
    bytes = g_bytes_new (b, sizeof b);
    expect_decode_error (bytes, "broken JSON");
    g_bytes_unref (bytes);
  }
  /* nothing at all */
  bytes = g_bytes_new (NULL, 0);
  expect_decode_error (bytes, "an empty input");
  g_bytes_unref (bytes);
}
GST_END_TEST;

GST_START_TEST (test_demux_truncated)
{
  GstVaeLatentInfo info;
  GBytes *full, *part;
  gsize size;

  make_info (&info, VAE_DTYPE_F32, 4, 3, 5);
  full = mux_frames (&info, 3, FALSE);
  size = g_bytes_get_size (full);
  part = g_bytes_new_from_bytes (full, 0, size - 7);
  expect_decode_error (part, "a file missing its tail");
  g_bytes_unref (part);
  part = g_bytes_new_from_bytes (full, 0, 20);
  expect_decode_error (part, "a file cut inside its header");
  g_bytes_unref (part);
  part = g_bytes_new_from_bytes (full, 0, 5);
  expect_decode_error (part, "a file cut inside its length");
  g_bytes_unref (part);
  g_bytes_unref (full);
  gst_vae_latent_info_clear (&info);
}
GST_END_TEST;

GST_START_TEST (test_demux_unusable_tensors)
{
  gint64 shape2[2] = { 4, 4 }, shape4[4] = { 2, 1, 2, 2 }, pshape[1] = { 3 };
  float f[16] = { 0 };
  gint64 p[3] = { 0 };
  guint8 u[8] = { 0 };
  gint64 shape_u[4] = { 2, 1, 2, 2 };
  struct { const char *what; int kind; } cases[] = {
    { "no 'latents' tensor", 0 }, { "2-D latents", 1 }, { "U8 latents", 2 },
    { "a pts tensor of the wrong length", 3 },
  };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++) {
    g_autoptr (VaeSafetensorsWriter) w = vae_safetensors_writer_new ();
    GBytes *bytes;
    switch (cases[c].kind) {
    case 0:
      fail_unless (vae_safetensors_writer_add (w, "other", VAE_DTYPE_F32, 2, shape2, f, sizeof f, NULL));
      break;
    case 1:
      fail_unless (vae_safetensors_writer_add (w, "latents", VAE_DTYPE_F32, 2, shape2, f, sizeof f, NULL));
      break;
    case 2:
      fail_unless (vae_safetensors_writer_add (w, "latents", VAE_DTYPE_U8, 4, shape_u, u, sizeof u, NULL));
      break;
    case 3:
      fail_unless (vae_safetensors_writer_add (w, "latents", VAE_DTYPE_F32, 4, shape4, f, 8 * 4, NULL));
      fail_unless (vae_safetensors_writer_add (w, "pts", VAE_DTYPE_I64, 1, pshape, p, sizeof p, NULL));
      break;
    }
    bytes = vae_safetensors_writer_to_bytes (w);
    expect_decode_error (bytes, cases[c].what);
    g_bytes_unref (bytes);
  }
}
GST_END_TEST;

GST_START_TEST (test_demux_pipeline_filesrc)
{
  /* filesrc gives buffers without caps: it must link and play */
  GstVaeLatentInfo info;
  GBytes *bytes;
  gchar *path, *desc;
  GError *error = NULL;
  GstElement *pipe;
  GstBus *bus;
  GstMessage *msg;
  GstElement *sink;
  guint64 n = 0;
  int fd;

  make_info (&info, VAE_DTYPE_F16, 4, 3, 5);
  bytes = mux_frames (&info, 4, FALSE);
  fd = g_file_open_tmp ("test-demux-XXXXXX.safetensors", &path, &error);
  fail_unless (fd >= 0, "%s", error ? error->message : "?");
  close (fd);
  fail_unless (g_file_set_contents (path, g_bytes_get_data (bytes, NULL),
          g_bytes_get_size (bytes), NULL));
  desc = g_strdup_printf ("filesrc location=\"%s\" blocksize=97 ! safetensorsdemux ! "
      "fakesink name=sink sync=false", path);
  pipe = gst_parse_launch (desc, &error);
  fail_unless (pipe != NULL, "%s", error ? error->message : "?");
  fail_unless (gst_element_set_state (pipe, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  bus = gst_element_get_bus (pipe);
  msg = gst_bus_timed_pop_filtered (bus, 30 * GST_SECOND, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  fail_unless (msg != NULL, "timed out");
  if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR) {
    GError *e = NULL;
    gchar *dbg = NULL;
    gst_message_parse_error (msg, &e, &dbg);
    ck_abort_msg ("pipeline error: %s (%s)", e->message, dbg);
  }
  gst_message_unref (msg);
  sink = gst_bin_get_by_name (GST_BIN (pipe), "sink");
  {
    GstStructure *stats = NULL;
    g_object_get (sink, "stats", &stats, NULL);
    fail_unless (gst_structure_get_uint64 (stats, "rendered", &n));
    gst_structure_free (stats);
  }
  fail_unless_equals_uint64 (n, 4);
  gst_object_unref (sink);
  gst_element_set_state (pipe, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (pipe);
  g_unlink (path);
  g_free (path);
  g_free (desc);
  g_bytes_unref (bytes);
  gst_vae_latent_info_clear (&info);
}
GST_END_TEST;

/* ---- safetensorsdemux: spatial factor, timestamps, queries and seeks ---- */

/* A file of N F32 frames [N,C,H,W] (element i of frame f is f * 1000 + i),
 * with tensor 'pts' when PTS is not NULL, then metadata as key, value
 * pairs up to a NULL key. */
static GBytes *
make_latent_file (int n, int c, int hh, int ww, const gint64 *pts, ...)
{
  g_autoptr (VaeSafetensorsWriter) w = vae_safetensors_writer_new ();
  gint64 shape[4] = { n, c, hh, ww }, pshape[1] = { n };
  gsize count = (gsize) n * c * hh * ww;
  float *data = g_new (float, count);
  const char *key;
  va_list ap;

  for (gsize i = 0; i < count; i++) {
    gsize fe = (gsize) c * hh * ww;
    data[i] = (float) (i / fe) * 1000.0f + (float) (i % fe);
  }
  fail_unless (vae_safetensors_writer_add (w, "latents", VAE_DTYPE_F32, 4, shape, data,
          count * sizeof (float), NULL));
  g_free (data);
  if (pts)
    fail_unless (vae_safetensors_writer_add (w, "pts", VAE_DTYPE_I64, 1, pshape, pts,
            (gsize) n * sizeof (gint64), NULL));
  va_start (ap, pts);
  while ((key = va_arg (ap, const char *))) {
    const char *value = va_arg (ap, const char *);
    vae_safetensors_writer_set_metadata (w, key, value);
  }
  va_end (ap);
  return vae_safetensors_writer_to_bytes (w);
}

/* The demuxed caps of BYTES as a structure copy (free it). */
static GstStructure *
demuxed_structure (GBytes *bytes)
{
  GstBus *bus;
  GstHarness *h = demux_bytes (bytes, 4096, &bus);
  GstCaps *caps;
  GstStructure *s;

  assert_no_error (bus);
  caps = demuxed_caps (h);
  s = gst_structure_copy (gst_caps_get_structure (caps, 0));
  gst_caps_unref (caps);
  harness_done (h, bus);
  return s;
}

GST_START_TEST (test_demux_spatial_factor_from_size)
{
  GBytes *bytes;
  GstStructure *s;
  int v;

  /* 200x120 source, 50x30 latents: only 4 gives ceil(200/f)=50 and
   * ceil(120/f)=30 */
  bytes = make_latent_file (1, 4, 30, 50, NULL, "width", "200", "height", "120", NULL);
  s = demuxed_structure (bytes);
  fail_unless (gst_structure_get_int (s, "spatial-factor", &v), "%" GST_PTR_FORMAT, s);
  fail_unless_equals_int (v, 4);
  fail_unless (gst_structure_get_int (s, "width", &v));
  fail_unless_equals_int (v, 200);
  fail_unless (gst_structure_get_int (s, "height", &v));
  fail_unless_equals_int (v, 120);
  gst_structure_free (s);
  g_bytes_unref (bytes);

  /* padding: 201x113 -> 26x15 latents at 8 (ceil division on both axes) */
  bytes = make_latent_file (1, 4, 15, 26, NULL, "width", "201", "height", "113", NULL);
  s = demuxed_structure (bytes);
  fail_unless (gst_structure_get_int (s, "spatial-factor", &v), "%" GST_PTR_FORMAT, s);
  fail_unless_equals_int (v, 8);
  gst_structure_free (s);
  g_bytes_unref (bytes);

  /* 20x13 on 3x2 latents fits 7, 8 and 9: not derivable, left to the
   * model; the source size stays */
  bytes = make_latent_file (1, 4, 2, 3, NULL, "width", "20", "height", "13", NULL);
  s = demuxed_structure (bytes);
  fail_if (gst_structure_has_field (s, "spatial-factor"), "%" GST_PTR_FORMAT, s);
  fail_unless (gst_structure_get_int (s, "width", &v));
  fail_unless_equals_int (v, 20);
  gst_structure_free (s);
  g_bytes_unref (bytes);

  /* the axes disagree (4 across, 8 down): no factor fits both */
  bytes = make_latent_file (1, 4, 15, 50, NULL, "width", "200", "height", "120", NULL);
  s = demuxed_structure (bytes);
  fail_if (gst_structure_has_field (s, "spatial-factor"), "%" GST_PTR_FORMAT, s);
  gst_structure_free (s);
  g_bytes_unref (bytes);

  /* the file's own spatial_factor wins */
  bytes = make_latent_file (1, 4, 2, 3, NULL, "width", "20", "height", "13",
      "spatial_factor", "9", NULL);
  s = demuxed_structure (bytes);
  fail_unless (gst_structure_get_int (s, "spatial-factor", &v));
  fail_unless_equals_int (v, 9);
  gst_structure_free (s);
  g_bytes_unref (bytes);
}
GST_END_TEST;

/* A safetensors demux error (STREAM DEMUX) for PTS on a 4-frame file,
 * whose texts name every string in WANT (NULL-terminated). */
static void
expect_pts_error (const gint64 *pts, const char *const *want)
{
  GBytes *bytes = make_latent_file (4, 1, 1, 2, pts, "framerate", "10/1", NULL);
  GstBus *bus;
  GstHarness *h = demux_bytes (bytes, 4096, &bus);
  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  GError *err = NULL;
  gchar *dbg = NULL, *all;

  fail_unless (msg != NULL, "no error for pts %" G_GINT64_FORMAT ",%" G_GINT64_FORMAT
      ",%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT, pts[0], pts[1], pts[2], pts[3]);
  gst_message_parse_error (msg, &err, &dbg);
  fail_unless (err->domain == GST_STREAM_ERROR && err->code == GST_STREAM_ERROR_DEMUX,
      "%s %d: %s", g_quark_to_string (err->domain), err->code, err->message);
  all = g_strdup_printf ("%s | %s", err->message, dbg ? dbg : "");
  for (guint i = 0; want[i]; i++)
    fail_unless (strstr (all, want[i]) != NULL, "'%s' not in: %s", want[i], all);
  fail_unless_equals_int (gst_harness_buffers_received (h), 0);
  g_free (all);
  g_free (dbg);
  g_error_free (err);
  gst_message_unref (msg);
  harness_done (h, bus);
  g_bytes_unref (bytes);
}

GST_START_TEST (test_demux_pts_not_increasing)
{
  const gint64 dup[4] = { 0, 100, 100, 300 };
  const gint64 dec[4] = { 0, 200, -1, 150 };
  const gint64 neg[4] = { 0, 100, -7, 300 };
  const char *const want_dup[] = { "frame 2", "100", NULL };
  const char *const want_dec[] = { "frame 3", "150", "frame 1", "200", NULL };
  const char *const want_neg[] = { "frame 2", "-7", NULL };

  expect_pts_error (dup, want_dup);
  expect_pts_error (dec, want_dec);
  expect_pts_error (neg, want_neg);
}
GST_END_TEST;

static gboolean
query_duration (GstHarness *h, GstFormat fmt, gint64 *dur)
{
  GstQuery *q = gst_query_new_duration (fmt);
  gboolean ok = gst_pad_peer_query (h->sinkpad, q);
  if (ok)
    gst_query_parse_duration (q, NULL, dur);
  gst_query_unref (q);
  return ok;
}

/* SEEKABLE, START and END from a SEEKING query on H in FMT. */
static void
query_seeking (GstHarness *h, GstFormat fmt, gboolean *seekable, gint64 *start, gint64 *end)
{
  GstQuery *q = gst_query_new_seeking (fmt);
  *seekable = FALSE;
  *start = *end = -2;
  if (gst_pad_peer_query (h->sinkpad, q))
    gst_query_parse_seeking (q, NULL, seekable, start, end);
  gst_query_unref (q);
}

#define SEEK_FRAMES 10
static const gint64 seek_pts[SEEK_FRAMES] = {
  0, 100000000, 200000000, 300000000, 400000000,
  500000000, 600000000, 700000000, 800000000, 900000000,
};

GST_START_TEST (test_demux_duration_and_seeking_queries)
{
  GBytes *bytes;
  GstBus *bus;
  GstHarness *h;
  gint64 dur, start, end;
  gboolean seekable;

  /* before the file is in, nothing is known */
  bytes = make_latent_file (SEEK_FRAMES, 2, 2, 2, seek_pts, "framerate", "10/1", NULL);
  h = harness_with_bus ("safetensorsdemux", &bus);
  gst_harness_play (h);
  fail_unless (gst_harness_push_event (h, gst_event_new_stream_start ("file")));
  query_seeking (h, GST_FORMAT_TIME, &seekable, &start, &end);
  fail_if (seekable);
  fail_if (query_duration (h, GST_FORMAT_TIME, &dur));
  harness_done (h, bus);

  /* pts and a frame rate: the last frame ends at 1 s */
  h = demux_bytes (bytes, 4096, &bus);
  assert_no_error (bus);
  fail_unless (query_duration (h, GST_FORMAT_TIME, &dur));
  fail_unless_equals_int64 (dur, GST_SECOND);
  fail_unless (query_duration (h, GST_FORMAT_DEFAULT, &dur));
  fail_unless_equals_int64 (dur, SEEK_FRAMES);
  query_seeking (h, GST_FORMAT_TIME, &seekable, &start, &end);
  fail_unless (seekable);
  fail_unless_equals_int64 (start, 0);
  fail_unless_equals_int64 (end, GST_SECOND);
  query_seeking (h, GST_FORMAT_BYTES, &seekable, &start, &end);
  fail_if (seekable);
  harness_done (h, bus);
  g_bytes_unref (bytes);

  /* pts without a frame rate: the last frame lasts as long as the one before */
  bytes = make_latent_file (SEEK_FRAMES, 2, 2, 2, seek_pts, NULL);
  h = demux_bytes (bytes, 4096, &bus);
  assert_no_error (bus);
  fail_unless (query_duration (h, GST_FORMAT_TIME, &dur));
  fail_unless_equals_int64 (dur, GST_SECOND);
  harness_done (h, bus);
  g_bytes_unref (bytes);

  /* a frame rate without pts: 5 frames at 25/1 */
  bytes = make_latent_file (5, 2, 2, 2, NULL, "framerate", "25/1", NULL);
  h = demux_bytes (bytes, 4096, &bus);
  assert_no_error (bus);
  fail_unless (query_duration (h, GST_FORMAT_TIME, &dur));
  fail_unless_equals_int64 (dur, GST_SECOND / 5);
  query_seeking (h, GST_FORMAT_TIME, &seekable, &start, &end);
  fail_unless (seekable);
  harness_done (h, bus);
  g_bytes_unref (bytes);

  /* no timestamps at all: no duration in time, not seekable */
  bytes = make_latent_file (3, 2, 2, 2, NULL, NULL);
  h = demux_bytes (bytes, 4096, &bus);
  assert_no_error (bus);
  fail_if (query_duration (h, GST_FORMAT_TIME, &dur));
  fail_unless (query_duration (h, GST_FORMAT_DEFAULT, &dur));
  fail_unless_equals_int64 (dur, 3);
  query_seeking (h, GST_FORMAT_TIME, &seekable, &start, &end);
  fail_if (seekable);
  fail_if (gst_harness_push_upstream_event (h, gst_event_new_seek (1.0, GST_FORMAT_TIME,
              GST_SEEK_FLAG_FLUSH, GST_SEEK_TYPE_SET, 0, GST_SEEK_TYPE_NONE, -1)));
  harness_done (h, bus);
  g_bytes_unref (bytes);
}
GST_END_TEST;

/* Pulls every buffer H holds and checks they are frames FIRST .. END-1 of
 * the seek file (timestamps and contents). */
static void
pull_seek_frames (GstHarness *h, int first, int end)
{
  GstBuffer *buf;
  int f = first;
  while ((buf = gst_harness_try_pull (h))) {
    float v;
    fail_unless (f < end, "frame %d after the last expected (%d)", f, end - 1);
    fail_unless_equals_uint64 (GST_BUFFER_PTS (buf), (guint64) seek_pts[f]);
    fail_unless_equals_uint64 (GST_BUFFER_OFFSET (buf), (guint64) f);
    fail_unless (gst_buffer_extract (buf, 0, &v, sizeof v) == sizeof v);
    fail_unless_equals_float (v, f * 1000.0f);
    gst_buffer_unref (buf);
    f++;
  }
  fail_unless_equals_int (f, end);
}

/* Checks H's queued events since the last call: FLUSHED says whether a
 * flush-start / flush-stop pair must come first; then a TIME segment
 * [START, STOP) with SEQNUM, then END_TYPE (EOS or SEGMENT_DONE) with SEQNUM. */
static void
pull_seek_events (GstHarness *h, gboolean flushed, GstClockTime start, GstClockTime stop,
    guint32 seqnum, GstEventType end_type)
{
  GstEvent *ev;
  gboolean flush_start = FALSE, flush_stop = FALSE, segment = FALSE, end = FALSE;

  while ((ev = gst_harness_try_pull_event (h))) {
    switch (GST_EVENT_TYPE (ev)) {
      case GST_EVENT_FLUSH_START:
        fail_if (segment || end);
        fail_unless_equals_int (gst_event_get_seqnum (ev), seqnum);
        flush_start = TRUE;
        break;
      case GST_EVENT_FLUSH_STOP:
        fail_unless (flush_start);
        fail_unless_equals_int (gst_event_get_seqnum (ev), seqnum);
        flush_stop = TRUE;
        break;
      case GST_EVENT_SEGMENT:{
        const GstSegment *seg;
        fail_if (segment, "two segments");
        gst_event_parse_segment (ev, &seg);
        fail_unless_equals_int (seg->format, GST_FORMAT_TIME);
        fail_unless_equals_uint64 (seg->start, start);
        fail_unless_equals_uint64 (seg->stop, stop);
        fail_unless_equals_float (seg->rate, 1.0);
        fail_unless_equals_int (gst_event_get_seqnum (ev), seqnum);
        segment = TRUE;
        break;
      }
      case GST_EVENT_EOS:
      case GST_EVENT_SEGMENT_DONE:
        fail_unless_equals_int (GST_EVENT_TYPE (ev), end_type);
        fail_unless (segment);
        fail_unless_equals_int (gst_event_get_seqnum (ev), seqnum);
        end = TRUE;
        break;
      default:
        break;
    }
    gst_event_unref (ev);
  }
  fail_unless_equals_int (flush_start, flushed);
  fail_unless_equals_int (flush_stop, flushed);
  fail_unless (segment && end, "segment %d end %d", segment, end);
}

/* Waits (20 s at most) until H holds N events, without taking any. */
static void
wait_for_events (GstHarness *h, guint n)
{
  gint64 end = g_get_monotonic_time () + 20 * G_TIME_SPAN_SECOND;
  while (gst_harness_events_in_queue (h) < n) {
    fail_unless (g_get_monotonic_time () < end, "fewer than %u events within 20 s", n);
    g_usleep (1000);
  }
}

static guint32
seek (GstHarness *h, GstSeekFlags flags, GstSeekType start_type, gint64 start,
    GstSeekType stop_type, gint64 stop)
{
  GstEvent *ev = gst_event_new_seek (1.0, GST_FORMAT_TIME, flags, start_type, start,
      stop_type, stop);
  guint32 seqnum = gst_event_get_seqnum (ev);
  fail_unless (gst_harness_push_upstream_event (h, ev), "seek refused");
  return seqnum;
}

/* The seek file, played through once (frames and events taken). */
static GstHarness *
seek_harness (GBytes **bytes, GstBus **bus)
{
  GstHarness *h;
  *bytes = make_latent_file (SEEK_FRAMES, 2, 2, 2, seek_pts, "framerate", "10/1", NULL);
  h = demux_bytes (*bytes, 4096, bus);
  assert_no_error (*bus);
  pull_seek_frames (h, 0, SEEK_FRAMES);
  pull_eos (h);
  return h;
}

GST_START_TEST (test_demux_flushing_seek)
{
  GBytes *bytes;
  GstBus *bus;
  GstHarness *h = seek_harness (&bytes, &bus);
  guint32 seqnum;

  /* [350 ms, 750 ms): the first frame at or after 350 ms is 4, the last
   * before 750 ms is 7 */
  seqnum = seek (h, GST_SEEK_FLAG_FLUSH, GST_SEEK_TYPE_SET, 350 * GST_MSECOND,
      GST_SEEK_TYPE_SET, 750 * GST_MSECOND);
  wait_for_eos (h);
  pull_seek_events (h, TRUE, 350 * GST_MSECOND, 750 * GST_MSECOND, seqnum, GST_EVENT_EOS);
  pull_seek_frames (h, 4, 8);

  /* KEY_UNIT snaps the segment to the first frame at or after 610 ms; a
   * stop of type NONE keeps the last one (750 ms) */
  seqnum = seek (h, GST_SEEK_FLAG_FLUSH | GST_SEEK_FLAG_KEY_UNIT, GST_SEEK_TYPE_SET,
      610 * GST_MSECOND, GST_SEEK_TYPE_NONE, -1);
  wait_for_eos (h);
  pull_seek_events (h, TRUE, 700 * GST_MSECOND, 750 * GST_MSECOND, seqnum, GST_EVENT_EOS);
  pull_seek_frames (h, 7, 8);

  /* a position on a frame starts at that frame */
  seqnum = seek (h, GST_SEEK_FLAG_FLUSH, GST_SEEK_TYPE_SET, 600 * GST_MSECOND,
      GST_SEEK_TYPE_SET, -1);
  wait_for_eos (h);
  pull_seek_events (h, TRUE, 600 * GST_MSECOND, GST_CLOCK_TIME_NONE, seqnum, GST_EVENT_EOS);
  pull_seek_frames (h, 6, SEEK_FRAMES);

  /* past the end: the segment (clamped to the duration), then EOS */
  seqnum = seek (h, GST_SEEK_FLAG_FLUSH, GST_SEEK_TYPE_SET, 5 * GST_SECOND,
      GST_SEEK_TYPE_NONE, -1);
  wait_for_eos (h);
  pull_seek_events (h, TRUE, GST_SECOND, GST_CLOCK_TIME_NONE, seqnum, GST_EVENT_EOS);
  pull_seek_frames (h, 0, 0);

  /* what the demuxer cannot do is refused, and it still plays after */
  fail_if (gst_harness_push_upstream_event (h, gst_event_new_seek (2.0, GST_FORMAT_TIME,
              GST_SEEK_FLAG_FLUSH, GST_SEEK_TYPE_SET, 0, GST_SEEK_TYPE_NONE, -1)));
  fail_if (gst_harness_push_upstream_event (h, gst_event_new_seek (-1.0, GST_FORMAT_TIME,
              GST_SEEK_FLAG_FLUSH, GST_SEEK_TYPE_SET, 0, GST_SEEK_TYPE_NONE, -1)));
  fail_if (gst_harness_push_upstream_event (h, gst_event_new_seek (1.0, GST_FORMAT_BYTES,
              GST_SEEK_FLAG_FLUSH, GST_SEEK_TYPE_SET, 0, GST_SEEK_TYPE_NONE, -1)));
  fail_unless_equals_int (gst_harness_events_in_queue (h), 0);
  seqnum = seek (h, GST_SEEK_FLAG_FLUSH, GST_SEEK_TYPE_SET, 0, GST_SEEK_TYPE_SET,
      250 * GST_MSECOND);
  wait_for_eos (h);
  pull_seek_events (h, TRUE, 0, 250 * GST_MSECOND, seqnum, GST_EVENT_EOS);
  pull_seek_frames (h, 0, 3);
  assert_no_error (bus);
  harness_done (h, bus);
  g_bytes_unref (bytes);
}
GST_END_TEST;

GST_START_TEST (test_demux_non_flushing_and_segment_seek)
{
  GBytes *bytes;
  GstBus *bus;
  GstHarness *h = seek_harness (&bytes, &bus);
  GstMessage *msg;
  GstFormat fmt;
  gint64 pos;
  guint32 seqnum;

  /* a segment seek ends with SEGMENT_DONE (event and message), not EOS */
  seqnum = seek (h, GST_SEEK_FLAG_FLUSH | GST_SEEK_FLAG_SEGMENT, GST_SEEK_TYPE_SET,
      200 * GST_MSECOND, GST_SEEK_TYPE_SET, 400 * GST_MSECOND);
  wait_for_events (h, 4);
  pull_seek_events (h, TRUE, 200 * GST_MSECOND, 400 * GST_MSECOND, seqnum,
      GST_EVENT_SEGMENT_DONE);
  pull_seek_frames (h, 2, 4);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_SEGMENT_DONE);
  fail_unless (msg != NULL, "no segment-done message");
  gst_message_parse_segment_done (msg, &fmt, &pos);
  fail_unless_equals_int (fmt, GST_FORMAT_TIME);
  fail_unless_equals_int64 (pos, 400 * GST_MSECOND);
  fail_unless_equals_int (gst_message_get_seqnum (msg), seqnum);
  gst_message_unref (msg);

  /* then, as an application looping on SEGMENT_DONE does, a non-flushing
   * seek: it plays on from the new position (a stream that is EOS
   * downstream takes only flushing ones) */
  seqnum = seek (h, GST_SEEK_FLAG_NONE, GST_SEEK_TYPE_SET, 500 * GST_MSECOND,
      GST_SEEK_TYPE_SET, -1);
  wait_for_eos (h);
  pull_seek_events (h, FALSE, 500 * GST_MSECOND, GST_CLOCK_TIME_NONE, seqnum, GST_EVENT_EOS);
  pull_seek_frames (h, 5, SEEK_FRAMES);
  assert_no_error (bus);
  harness_done (h, bus);
  g_bytes_unref (bytes);
}
GST_END_TEST;

static gchar *
write_temp_file (GBytes *bytes)
{
  GError *error = NULL;
  gchar *path;
  int fd = g_file_open_tmp ("test-demux-XXXXXX.safetensors", &path, &error);
  fail_unless (fd >= 0, "%s", error ? error->message : "?");
  close (fd);
  fail_unless (g_file_set_contents (path, g_bytes_get_data (bytes, NULL),
          g_bytes_get_size (bytes), NULL));
  return path;
}

typedef struct {
  GMutex lock;
  GArray *pts;
} Rendered;

static void
on_handoff (GstElement *sink, GstBuffer *buf, GstPad *pad, Rendered *r)
{
  GstClockTime t = GST_BUFFER_PTS (buf);
  g_mutex_lock (&r->lock);
  g_array_append_val (r->pts, t);
  g_mutex_unlock (&r->lock);
}

/* The next ERROR, EOS or ASYNC_DONE on BUS (10 s at most); an error fails. */
static GstMessageType
wait_bus (GstBus *bus)
{
  GstMessage *msg = gst_bus_timed_pop_filtered (bus, 10 * GST_SECOND,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR | GST_MESSAGE_ASYNC_DONE);
  GstMessageType t;
  fail_unless (msg != NULL, "timed out");
  if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR) {
    GError *e = NULL;
    gchar *dbg = NULL;
    gst_message_parse_error (msg, &e, &dbg);
    ck_abort_msg ("pipeline error: %s (%s)", e->message, dbg);
  }
  t = GST_MESSAGE_TYPE (msg);
  gst_message_unref (msg);
  return t;
}

GST_START_TEST (test_demux_pipeline_seek)
{
  GBytes *bytes = make_latent_file (SEEK_FRAMES, 2, 2, 2, seek_pts, "framerate", "10/1", NULL);
  gchar *path = write_temp_file (bytes);
  gchar *desc = g_strdup_printf ("filesrc location=\"%s\" ! safetensorsdemux ! "
      "fakesink name=sink sync=false signal-handoffs=true", path);
  GError *error = NULL;
  GstElement *pipe = gst_parse_launch (desc, &error), *sink;
  GstBus *bus;
  Rendered r;
  gint64 dur = -1;

  fail_unless (pipe != NULL, "%s", error ? error->message : "?");
  g_mutex_init (&r.lock);
  r.pts = g_array_new (FALSE, FALSE, sizeof (GstClockTime));
  sink = gst_bin_get_by_name (GST_BIN (pipe), "sink");
  g_signal_connect (sink, "handoff", G_CALLBACK (on_handoff), &r);
  bus = gst_element_get_bus (pipe);

  fail_unless (gst_element_set_state (pipe, GST_STATE_PAUSED) != GST_STATE_CHANGE_FAILURE);
  fail_unless_equals_int (wait_bus (bus), GST_MESSAGE_ASYNC_DONE);
  fail_unless (gst_element_query_duration (pipe, GST_FORMAT_TIME, &dur));
  fail_unless_equals_int64 (dur, GST_SECOND);
  fail_unless (gst_element_seek_simple (pipe, GST_FORMAT_TIME,
          GST_SEEK_FLAG_FLUSH | GST_SEEK_FLAG_ACCURATE, 450 * GST_MSECOND));
  fail_unless_equals_int (wait_bus (bus), GST_MESSAGE_ASYNC_DONE);
  fail_unless (gst_element_set_state (pipe, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  fail_unless_equals_int (wait_bus (bus), GST_MESSAGE_EOS);

  /* the preroll frame 0 was flushed unrendered: frames 5..9 */
  fail_unless_equals_int (r.pts->len, SEEK_FRAMES - 5);
  for (guint i = 0; i < r.pts->len; i++)
    fail_unless_equals_uint64 (g_array_index (r.pts, GstClockTime, i), (guint64) seek_pts[5 + i]);

  gst_element_set_state (pipe, GST_STATE_NULL);
  gst_object_unref (sink);
  gst_object_unref (bus);
  gst_object_unref (pipe);
  g_array_free (r.pts, TRUE);
  g_mutex_clear (&r.lock);
  g_unlink (path);
  g_free (path);
  g_free (desc);
  g_bytes_unref (bytes);
}
GST_END_TEST;

/* ---- pipelines with vaedecode (test data) ---- */

static gchar *
taef2_path (void)
{
  const char *td = g_getenv ("VAE_TESTDATA");
  gchar *p;
  if (!td || !td[0]) {
    g_printerr ("SKIP: VAE_TESTDATA is not set: the vaedecode pipeline checks did not run\n");
    return NULL;
  }
  p = g_build_filename (td, "models", "taef2", NULL);
  if (!g_file_test (p, G_FILE_TEST_IS_DIR)) {
    g_printerr ("SKIP: %s is missing: the vaedecode pipeline checks did not run\n", p);
    g_free (p);
    return NULL;
  }
  return p;
}

/* Plays PATH through safetensorsdemux ! vaedecode model=MODEL ! fakesink to
 * PAUSED: the error (NULL when it prerolls, then *W x *H are the decoded
 * frame size). */
static GError *
decode_file (const gchar *path, const gchar *model, int *w, int *h)
{
  gchar *desc = g_strdup_printf ("filesrc location=\"%s\" ! safetensorsdemux ! "
      "vaedecode model=\"%s\" ! fakesink name=sink", path, model);
  GError *error = NULL;
  GstElement *pipe = gst_parse_launch (desc, &error);
  GstBus *bus;
  GstMessage *msg;

  fail_unless (pipe != NULL, "%s", error ? error->message : "?");
  bus = gst_element_get_bus (pipe);
  gst_element_set_state (pipe, GST_STATE_PAUSED);
  msg = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
      GST_MESSAGE_ERROR | GST_MESSAGE_ASYNC_DONE);
  fail_unless (msg != NULL, "timed out");
  if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR) {
    gst_message_parse_error (msg, &error, NULL);
  } else {
    GstElement *sink = gst_bin_get_by_name (GST_BIN (pipe), "sink");
    GstPad *pad = gst_element_get_static_pad (sink, "sink");
    GstCaps *caps = gst_pad_get_current_caps (pad);
    GstStructure *s = gst_caps_get_structure (caps, 0);
    fail_unless (gst_structure_get_int (s, "width", w));
    fail_unless (gst_structure_get_int (s, "height", h));
    gst_caps_unref (caps);
    gst_object_unref (pad);
    gst_object_unref (sink);
  }
  gst_message_unref (msg);
  gst_element_set_state (pipe, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (pipe);
  g_free (desc);
  return error;
}

GST_START_TEST (test_demux_decode_spatial_factor)
{
  gchar *model = taef2_path (), *path;
  GBytes *bytes;
  GError *err;
  int w = 0, h = 0;

  if (!model)
    return;
  /* no spatial_factor, width or height: vaedecode takes its model's 8 */
  bytes = make_latent_file (1, 32, 2, 3, NULL, NULL);
  path = write_temp_file (bytes);
  err = decode_file (path, model, &w, &h);
  fail_unless (err == NULL, "%s", err ? err->message : "");
  fail_unless_equals_int (w, 24);
  fail_unless_equals_int (h, 16);
  g_unlink (path);
  g_free (path);
  g_bytes_unref (bytes);

  /* 200x120 on 50x30 latents is factor 4, which taef2 (8) must refuse
   * rather than decode 400x240 and crop */
  bytes = make_latent_file (1, 32, 30, 50, NULL, "width", "200", "height", "120", NULL);
  path = write_temp_file (bytes);
  err = decode_file (path, model, &w, &h);
  fail_unless (err != NULL, "a factor-4 file decoded with a factor-8 model");
  fail_unless (err->domain == GST_CORE_ERROR && err->code == GST_CORE_ERROR_NEGOTIATION,
      "%s", err->message);
  fail_unless (strstr (err->message, "spatial factor 4") != NULL, "%s", err->message);
  g_clear_error (&err);
  g_unlink (path);
  g_free (path);
  g_bytes_unref (bytes);

  g_free (model);
}
GST_END_TEST;

static gint spin_stop;

static gpointer
spin (gpointer data)
{
  volatile guint64 n = 0;
  while (!g_atomic_int_get (&spin_stop))
    n++;
  return NULL;
}

/* Runs DESC RUNS times to PAUSED with two busy threads beside it: every run
 * must post an error (a CORE NEGOTIATION one when NEGOTIATION_ERROR), never
 * preroll, and go back to NULL, each within 10 s. */
static void
repeat_refused_caps (const gchar *desc, int runs, gboolean negotiation_error)
{
  GThread *spinners[2];

  g_atomic_int_set (&spin_stop, 0);
  for (int i = 0; i < 2; i++)
    spinners[i] = g_thread_new ("spin", spin, NULL);
  for (int run = 0; run < runs; run++) {
    GError *error = NULL;
    GstElement *pipe = gst_parse_launch (desc, &error);
    GstBus *bus;
    GstMessage *msg;
    gboolean errored = FALSE, negotiation = FALSE;

    fail_unless (pipe != NULL, "%s", error ? error->message : "?");
    bus = gst_element_get_bus (pipe);
    gst_element_set_state (pipe, GST_STATE_PAUSED);
    /* the state change never completes: it waits on preroll, which the
     * refused caps prevent; errors are what ends it */
    while ((msg = gst_bus_timed_pop_filtered (bus,
                (errored && (negotiation || !negotiation_error)) ? 0 : 10 * GST_SECOND,
                GST_MESSAGE_ERROR | GST_MESSAGE_ASYNC_DONE))) {
      GError *e = NULL;
      fail_if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ASYNC_DONE,
          "run %d prerolled with refused caps", run);
      gst_message_parse_error (msg, &e, NULL);
      errored = TRUE;
      if (e->domain == GST_CORE_ERROR && e->code == GST_CORE_ERROR_NEGOTIATION)
        negotiation = TRUE;
      g_error_free (e);
      gst_message_unref (msg);
    }
    fail_unless (errored, "run %d: no error within 10 s", run);
    fail_unless (negotiation || !negotiation_error,
        "run %d: no negotiation error within 10 s", run);
    fail_unless_equals_int (gst_element_set_state (pipe, GST_STATE_NULL),
        GST_STATE_CHANGE_SUCCESS);
    gst_object_unref (bus);
    gst_object_unref (pipe);
  }
  g_atomic_int_set (&spin_stop, 1);
  for (int i = 0; i < 2; i++)
    g_thread_join (spinners[i]);
}

GST_START_TEST (test_demux_refused_caps_repeated)
{
  GBytes *bytes = make_latent_file (3, 4, 8, 8, seek_pts, "framerate", "25/1", NULL);
  gchar *path = write_temp_file (bytes), *desc, *model = taef2_path ();

  /* refused by a stock element */
  desc = g_strdup_printf ("filesrc location=\"%s\" ! safetensorsdemux ! "
      "capsfilter caps=\"other/tensors,types=float16\" ! fakesink", path);
  repeat_refused_caps (desc, 20, FALSE);
  g_free (desc);
  /* issue 9's case: 4 channels for taef2's 32 */
  if (model) {
    desc = g_strdup_printf ("filesrc location=\"%s\" ! safetensorsdemux ! "
        "vaedecode model=\"%s\" ! videoconvert ! fakesink", path, model);
    repeat_refused_caps (desc, 30, TRUE);
    g_free (desc);
  }
  g_unlink (path);
  g_free (path);
  g_free (model);
  g_bytes_unref (bytes);
}
GST_END_TEST;

static Suite *
safetensors_elements_suite (void)
{
  Suite *s = suite_create ("safetensors-elements");
  TCase *tc = tcase_create ("general");

  tcase_set_timeout (tc, 60);
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_mux_f32);
  tcase_add_test (tc, test_mux_f16);
  tcase_add_test (tc, test_mux_pts_none);
  tcase_add_test (tc, test_mux_zero_frames);
  tcase_add_test (tc, test_mux_zero_frames_no_caps);
  tcase_add_test (tc, test_mux_caps_change);
  tcase_add_test (tc, test_mux_wrong_buffer_size);
  tcase_add_test (tc, test_mux_refuses_video);
  tcase_add_test (tc, test_demux_written_file);
  tcase_add_test (tc, test_demux_latents_only);
  tcase_add_test (tc, test_demux_one_frame_3d);
  tcase_add_test (tc, test_demux_bf16);
  tcase_add_test (tc, test_round_trip_f32);
  tcase_add_test (tc, test_round_trip_f16);
  tcase_add_test (tc, test_demux_garbage);
  tcase_add_test (tc, test_demux_truncated);
  tcase_add_test (tc, test_demux_unusable_tensors);
  tcase_add_test (tc, test_demux_pipeline_filesrc);
  tcase_add_test (tc, test_demux_spatial_factor_from_size);
  tcase_add_test (tc, test_demux_pts_not_increasing);
  tcase_add_test (tc, test_demux_duration_and_seeking_queries);
  tcase_add_test (tc, test_demux_flushing_seek);
  tcase_add_test (tc, test_demux_non_flushing_and_segment_seek);
  tcase_add_test (tc, test_demux_pipeline_seek);
  tcase_add_test (tc, test_demux_decode_spatial_factor);

  /* 50 pipelines under load, each bounded to 10 s */
  tc = tcase_create ("refused-caps");
  tcase_set_timeout (tc, 240);
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_demux_refused_caps_repeated);
  return s;
}

GST_CHECK_MAIN (safetensors_elements);
