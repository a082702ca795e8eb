/* gst-vae: safetensorsdemux
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
/**
 * SECTION:element-safetensorsdemux
 * @title: safetensorsdemux
 *
 * Reads a safetensors file of latents (as `safetensorsmux` writes it) and
 * plays it back as a latent stream, one buffer per frame, for `vaedecode`.
 *
 * The whole file is collected in memory and parsed at EOS of its input
 * (the header is untrusted: every offset and shape is checked; a bad file
 * is an element error naming the problem). It needs a tensor `latents`
 * [T,C,h,w] (or [C,h,w] for one frame) in F32 or F16 (BF16 and F64 are
 * widened to F32). Optional:
 *
 * - tensor `pts` (I64 [T], nanoseconds, -1 = none): the frames' timestamps;
 *   without it frames are stamped from the framerate (none when unknown);
 * - `__metadata__` `framerate` ("N/D"; 0/1 when absent), `width` and `height`
 *   (the source frame size; else h and w times the spatial factor),
 *   `spatial_factor` (8 when absent), `model`, `scaling_factor` and
 *   `shift_factor`. Factors missing from the file are left out of the caps,
 *   so that `vaedecode` takes its model's.
 *
 * The sink pad accepts buffers without caps, so `filesrc` links directly.
 * Seeking is not supported.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=z.safetensors ! safetensorsdemux ! \
 *     vaedecode model=/path/to/taef2 ! videoconvert ! pngenc ! filesink location=out.png
 * ]|
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gst/base/gstadapter.h>

#include "gstsafetensorsdemux.h"
#include "gstvaealloc.h"
#include "gstvaeelements.h"
#include "gstvaelatentcaps.h"
#include "safetensors.h"
#include "vae-error.h"

GST_DEBUG_CATEGORY_STATIC (gst_safetensors_demux_debug);
#define GST_CAT_DEFAULT gst_safetensors_demux_debug

#define DEFAULT_SPATIAL_FACTOR 8

struct _GstSafetensorsDemux
{
  GstElement parent;

  GstPad *sinkpad, *srcpad;
  GstAdapter *adapter;        /* the file, until EOS */
};

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS ("application/x-safetensors"));

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS (GST_VAE_LATENT_CAPS_TEMPLATE));

#define gst_safetensors_demux_parent_class parent_class
G_DEFINE_TYPE (GstSafetensorsDemux, gst_safetensors_demux, GST_TYPE_ELEMENT);
GST_ELEMENT_REGISTER_DEFINE (safetensorsdemux, "safetensorsdemux",
    GST_RANK_NONE, GST_TYPE_SAFETENSORS_DEMUX);

/* A positive integer from the metadata; FALSE when absent or malformed. */
static gboolean
meta_int (GstSafetensorsDemux * self, const VaeSafetensors * st,
    const char *key, int *out)
{
  const char *s = vae_safetensors_metadata (st, key);
  gint64 v;
  char *end = NULL;

  if (!s)
    return FALSE;
  v = g_ascii_strtoll (s, &end, 10);
  if (end == s || *end != '\0' || v <= 0 || v > G_MAXINT) {
    GST_WARNING_OBJECT (self, "ignoring metadata %s='%s': not a positive "
        "integer", key, s);
    return FALSE;
  }
  *out = (int) v;
  return TRUE;
}

/* A finite double from the metadata, NaN when absent or malformed. */
static double
meta_double (GstSafetensorsDemux * self, const VaeSafetensors * st,
    const char *key)
{
  const char *s = vae_safetensors_metadata (st, key);
  char *end = NULL;
  double v;

  if (!s)
    return NAN;
  v = g_ascii_strtod (s, &end);
  if (end == s || *end != '\0' || !isfinite (v)) {
    GST_WARNING_OBJECT (self, "ignoring metadata %s='%s': not a number",
        key, s);
    return NAN;
  }
  return v;
}

static void
meta_framerate (GstSafetensorsDemux * self, const VaeSafetensors * st,
    int *fps_n, int *fps_d)
{
  const char *s = vae_safetensors_metadata (st, "framerate");
  gint64 n, d = 1;
  char *end = NULL;

  *fps_n = 0;
  *fps_d = 1;
  if (!s)
    return;
  n = g_ascii_strtoll (s, &end, 10);
  if (end == s)
    goto bad;
  if (*end == '/') {
    const char *ds = end + 1;
    d = g_ascii_strtoll (ds, &end, 10);
    if (end == ds)
      goto bad;
  }
  if (*end != '\0' || n < 0 || n > G_MAXINT || d <= 0 || d > G_MAXINT)
    goto bad;
  if (n == 0)
    d = 1;
  *fps_n = (int) n;
  *fps_d = (int) d;
  return;
bad:
  GST_WARNING_OBJECT (self, "ignoring metadata framerate='%s': not N/D", s);
}

/* Factors that are NaN and a NULL model are left out of the caps. */
static gboolean
gst_safetensors_demux_push_events (GstSafetensorsDemux * self,
    const GstVaeLatentInfo * info)
{
  GstCaps *caps;
  GstSegment segment;
  gchar *stream_id;
  GstEvent *ev;

  stream_id = gst_pad_create_stream_id (self->srcpad, GST_ELEMENT (self),
      "latents");
  ev = gst_event_new_stream_start (stream_id);
  gst_event_set_group_id (ev, gst_util_group_id_next ());
  g_free (stream_id);
  gst_pad_push_event (self->srcpad, ev);

  caps = gst_vae_latent_info_to_caps (info);
  if (!caps)
    return FALSE;
  GST_DEBUG_OBJECT (self, "caps %" GST_PTR_FORMAT, caps);
  if (!gst_pad_push_event (self->srcpad, gst_event_new_caps (caps))) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, (NULL),
        ("downstream refused the latent caps %" GST_PTR_FORMAT, caps));
    gst_caps_unref (caps);
    return FALSE;
  }
  gst_caps_unref (caps);

  gst_segment_init (&segment, GST_FORMAT_TIME);
  gst_pad_push_event (self->srcpad, gst_event_new_segment (&segment));
  return TRUE;
}

#define DECODE_ERROR(self, ...) \
  GST_ELEMENT_ERROR (self, STREAM, DECODE, \
      ("not a usable safetensors latent file"), (__VA_ARGS__))

/* Parses the collected file and plays it; FALSE after posting an element
 * error (or when downstream stopped with an error). */
static gboolean
gst_safetensors_demux_play (GstSafetensorsDemux * self)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VaeSafetensors) st = NULL;
  GBytes *bytes;
  gsize avail = gst_adapter_available (self->adapter);
  const VaeTensorView *lat, *pts_t;
  GstVaeLatentInfo info;
  gint64 n_frames, c, h, w;
  gboolean widen, ok = FALSE;
  gsize frame_elems, frame_bytes;
  GstClockTime duration = GST_CLOCK_TIME_NONE;

  if (avail == 0) {
    DECODE_ERROR (self, "the input ended before any byte arrived");
    return FALSE;
  }
  /* gst_adapter_take would g_malloc the whole file, which aborts when it
   * does not fit: copy it into a fallible allocation instead. */
  {
    guint8 *data = vae_try_alloc (1, avail, "the latent file", &error);
    if (!data) {
      GST_ELEMENT_ERROR (self, RESOURCE, NO_SPACE_LEFT, (NULL), ("%s", error->message));
      return FALSE;
    }
    gst_adapter_copy (self->adapter, data, 0, avail);
    gst_adapter_flush (self->adapter, avail);
    bytes = g_bytes_new_take (data, avail);
  }
  st = vae_safetensors_new_from_bytes (bytes, "safetensorsdemux input",
      &error);
  g_bytes_unref (bytes);
  if (!st) {
    DECODE_ERROR (self, "%s", error->message);
    return FALSE;
  }

  lat = vae_safetensors_lookup (st, "latents");
  if (!lat) {
    DECODE_ERROR (self, "the file has no tensor 'latents' (%u tensors)",
        vae_safetensors_n_tensors (st));
    return FALSE;
  }
  if (lat->ndim == 4) {
    n_frames = lat->shape[0];
    c = lat->shape[1];
    h = lat->shape[2];
    w = lat->shape[3];
  } else if (lat->ndim == 3) {
    n_frames = 1;
    c = lat->shape[0];
    h = lat->shape[1];
    w = lat->shape[2];
  } else {
    DECODE_ERROR (self, "tensor 'latents' has %d dimensions where "
        "[T,C,h,w] or [C,h,w] was expected", lat->ndim);
    return FALSE;
  }
  if (n_frames <= 0) {
    DECODE_ERROR (self, "tensor 'latents' holds no frame");
    return FALSE;
  }
  if (c <= 0 || h <= 0 || w <= 0 || c > G_MAXINT || h > G_MAXINT
      || w > G_MAXINT) {
    DECODE_ERROR (self, "tensor 'latents' has an empty or oversized frame "
        "shape [%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT
        "]", c, h, w);
    return FALSE;
  }
  switch (lat->dtype) {
    case VAE_DTYPE_F32:
    case VAE_DTYPE_F16:
      widen = FALSE;
      break;
    case VAE_DTYPE_BF16:
    case VAE_DTYPE_F64:
      widen = TRUE;
      break;
    default:
      DECODE_ERROR (self, "tensor 'latents' is %s where F32, F16 or BF16 "
          "was expected", vae_dtype_name (lat->dtype));
      return FALSE;
  }

  pts_t = vae_safetensors_lookup (st, "pts");
  if (pts_t) {
    if (pts_t->dtype != VAE_DTYPE_I64 || pts_t->ndim != 1
        || pts_t->shape[0] != n_frames) {
      DECODE_ERROR (self, "tensor 'pts' must be I64 [%" G_GINT64_FORMAT
          "] (one per frame), it is %s with %d dimensions",
          n_frames, vae_dtype_name (pts_t->dtype), pts_t->ndim);
      return FALSE;
    }
  }

  gst_vae_latent_info_init (&info);
  info.dtype = widen ? VAE_DTYPE_F32 : lat->dtype;
  info.channels = (int) c;
  info.latent_height = (int) h;
  info.latent_width = (int) w;
  info.spatial_factor = DEFAULT_SPATIAL_FACTOR;
  meta_int (self, st, "spatial_factor", &info.spatial_factor);
  if (!meta_int (self, st, "width", &info.width))
    info.width = (int) MIN (w * info.spatial_factor, G_MAXINT);
  if (!meta_int (self, st, "height", &info.height))
    info.height = (int) MIN (h * info.spatial_factor, G_MAXINT);
  info.scaling_factor = meta_double (self, st, "scaling_factor");
  info.shift_factor = meta_double (self, st, "shift_factor");
  {
    const char *model = vae_safetensors_metadata (st, "model");
    info.model = model && model[0] ? g_strdup (model) : NULL;
  }
  meta_framerate (self, st, &info.fps_n, &info.fps_d);
  if (info.fps_n > 0)
    duration = gst_util_uint64_scale_int (GST_SECOND, info.fps_d, info.fps_n);

  frame_elems = (gsize) (c * h * w);
  frame_bytes = gst_vae_latent_info_frame_size (&info);
  GST_INFO_OBJECT (self, "%" G_GINT64_FORMAT " frames of %s [%"
      G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT "]%s",
      n_frames, vae_dtype_name (lat->dtype), c, h, w,
      widen ? " (widened to F32)" : "");

  if (!gst_safetensors_demux_push_events (self, &info))
    goto out;

  for (gint64 i = 0; i < n_frames; i++) {
    GstBuffer *buf = gst_vae_buffer_try_new (frame_bytes, "a latent frame",
        &error);
    GstMapInfo map;
    GstFlowReturn ret;
    gsize src_frame_bytes = frame_elems * vae_dtype_size (lat->dtype);
    const guint8 *src = lat->data + (gsize) i * src_frame_bytes;

    if (!buf || !gst_buffer_map (buf, &map, GST_MAP_WRITE)) {
      if (buf)
        gst_buffer_unref (buf);
      GST_ELEMENT_ERROR (self, RESOURCE, NO_SPACE_LEFT, (NULL),
          ("could not allocate a %" G_GSIZE_FORMAT "-byte frame: %s",
              frame_bytes, error ? error->message : "map failed"));
      goto out;
    }
    if (widen) {
      VaeTensorView frame = *lat;
      g_autoptr (GError) werr = NULL;
      frame.ndim = 1;
      frame.shape[0] = (gint64) frame_elems;
      frame.n_elements = frame_elems;
      frame.n_bytes = src_frame_bytes;
      frame.data = src;
      if (!vae_tensor_view_to_f32 (&frame, (float *) map.data, &werr)) {
        gst_buffer_unmap (buf, &map);
        gst_buffer_unref (buf);
        DECODE_ERROR (self, "%s", werr->message);
        goto out;
      }
    } else {
      memcpy (map.data, src, frame_bytes);
    }
    gst_buffer_unmap (buf, &map);

    if (pts_t) {
      gint64 p;
      memcpy (&p, pts_t->data + (gsize) i * sizeof (gint64), sizeof p);
      GST_BUFFER_PTS (buf) = p >= 0 ? (GstClockTime) p : GST_CLOCK_TIME_NONE;
    } else if (info.fps_n > 0) {
      GST_BUFFER_PTS (buf) = gst_util_uint64_scale ((guint64) i * GST_SECOND,
          info.fps_d, info.fps_n);
    }
    GST_BUFFER_DURATION (buf) = duration;
    GST_BUFFER_OFFSET (buf) = (guint64) i;
    GST_BUFFER_OFFSET_END (buf) = (guint64) i + 1;

    ret = gst_pad_push (self->srcpad, buf);
    if (ret == GST_FLOW_FLUSHING || ret == GST_FLOW_EOS) {
      GST_DEBUG_OBJECT (self, "downstream returned %s after %" G_GINT64_FORMAT
          " frames", gst_flow_get_name (ret), i + 1);
      ok = ret == GST_FLOW_EOS;
      goto out;
    }
    if (ret != GST_FLOW_OK) {
      GST_ELEMENT_FLOW_ERROR (self, ret);
      goto out;
    }
  }
  ok = TRUE;

out:
  gst_vae_latent_info_clear (&info);
  return ok;
}

static GstFlowReturn
gst_safetensors_demux_chain (GstPad * pad, GstObject * parent, GstBuffer * buf)
{
  GstSafetensorsDemux *self = GST_SAFETENSORS_DEMUX (parent);

  gst_adapter_push (self->adapter, buf);
  return GST_FLOW_OK;
}

static gboolean
gst_safetensors_demux_sink_event (GstPad * pad, GstObject * parent,
    GstEvent * event)
{
  GstSafetensorsDemux *self = GST_SAFETENSORS_DEMUX (parent);

  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_STREAM_START:
    case GST_EVENT_CAPS:
    case GST_EVENT_SEGMENT:
      /* the output stream's own are pushed once the file is parsed */
      gst_event_unref (event);
      return TRUE;
    case GST_EVENT_FLUSH_STOP:
      gst_adapter_clear (self->adapter);
      return gst_pad_event_default (pad, parent, event);
    case GST_EVENT_EOS:
      if (!gst_safetensors_demux_play (self)) {
        gst_event_unref (event);
        return FALSE;
      }
      return gst_pad_push_event (self->srcpad, event);
    default:
      return gst_pad_event_default (pad, parent, event);
  }
}

static gboolean
gst_safetensors_demux_src_event (GstPad * pad, GstObject * parent,
    GstEvent * event)
{
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_SEEK:
      GST_DEBUG_OBJECT (parent, "seeking is not supported");
      gst_event_unref (event);
      return FALSE;
    default:
      return gst_pad_event_default (pad, parent, event);
  }
}

static gboolean
gst_safetensors_demux_src_query (GstPad * pad, GstObject * parent,
    GstQuery * query)
{
  switch (GST_QUERY_TYPE (query)) {
    case GST_QUERY_SEEKING:{
      GstFormat fmt;
      gst_query_parse_seeking (query, &fmt, NULL, NULL, NULL);
      gst_query_set_seeking (query, fmt, FALSE, -1, -1);
      return TRUE;
    }
    default:
      return gst_pad_query_default (pad, parent, query);
  }
}

static GstStateChangeReturn
gst_safetensors_demux_change_state (GstElement * element,
    GstStateChange transition)
{
  GstSafetensorsDemux *self = GST_SAFETENSORS_DEMUX (element);
  GstStateChangeReturn ret;

  ret = GST_ELEMENT_CLASS (parent_class)->change_state (element, transition);
  if (ret == GST_STATE_CHANGE_FAILURE)
    return ret;
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY)
    gst_adapter_clear (self->adapter);
  return ret;
}

static void
gst_safetensors_demux_finalize (GObject * object)
{
  GstSafetensorsDemux *self = GST_SAFETENSORS_DEMUX (object);

  g_object_unref (self->adapter);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_safetensors_demux_class_init (GstSafetensorsDemuxClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);

  gobject_class->finalize = gst_safetensors_demux_finalize;
  element_class->change_state =
      GST_DEBUG_FUNCPTR (gst_safetensors_demux_change_state);

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class,
      "Safetensors latent demuxer", "Demuxer/Tensor",
      "Reads a safetensors file of latents ('latents' [T,C,h,w], optional "
      "'pts') and plays it as a latent stream",
      "gst-vae developers");

  GST_DEBUG_CATEGORY_INIT (gst_safetensors_demux_debug, "safetensorsdemux", 0,
      "safetensors latent demuxer");
}

static void
gst_safetensors_demux_init (GstSafetensorsDemux * self)
{
  self->sinkpad = gst_pad_new_from_static_template (&sink_template, "sink");
  gst_pad_set_chain_function (self->sinkpad,
      GST_DEBUG_FUNCPTR (gst_safetensors_demux_chain));
  gst_pad_set_event_function (self->sinkpad,
      GST_DEBUG_FUNCPTR (gst_safetensors_demux_sink_event));
  gst_element_add_pad (GST_ELEMENT (self), self->sinkpad);

  self->srcpad = gst_pad_new_from_static_template (&src_template, "src");
  gst_pad_set_event_function (self->srcpad,
      GST_DEBUG_FUNCPTR (gst_safetensors_demux_src_event));
  gst_pad_set_query_function (self->srcpad,
      GST_DEBUG_FUNCPTR (gst_safetensors_demux_src_query));
  gst_pad_use_fixed_caps (self->srcpad);
  gst_element_add_pad (GST_ELEMENT (self), self->srcpad);

  self->adapter = gst_adapter_new ();
}
