/* gst-vae: safetensorsmux
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
/**
 * SECTION:element-safetensorsmux
 * @title: safetensorsmux
 *
 * Collects a latent stream (the caps of `vaeencode`'s source pad, one buffer
 * per frame, planar [C,h,w]) and writes it as ONE safetensors file, pushed
 * downstream as a single buffer when the stream ends:
 *
 * - tensor `latents`: [T,C,h,w] in the stream's dtype (F32 or F16);
 * - tensor `pts`: I64 [T], the frames' presentation timestamps in
 *   nanoseconds (-1 for a frame without one);
 * - `__metadata__`: `model` (when the caps name one), `scaling_factor`,
 *   `shift_factor`, `framerate` ("N/D", 0/1 when unknown), `width` and
 *   `height` (the source frame size) and `spatial_factor`.
 *
 * Every frame is held in memory until EOS: this element is meant for clips,
 * not for endless live streams. A stream that ends without a single frame
 * is an element error (there is nothing to write), and so are caps that
 * change the latent layout (channels, latent size or dtype) mid-stream.
 * A flush drops the frames collected so far.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=in.png ! pngdec ! videoconvert ! \
 *     vaeencode model=/path/to/taef2 ! safetensorsmux ! filesink location=z.safetensors
 * ]|
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <math.h>
#include <string.h>

#include "gstsafetensorsmux.h"
#include "gstvaeelements.h"
#include "gstvaelatentcaps.h"
#include "latent-file.h"
#include "codec.h"
#include "vae-error.h"

GST_DEBUG_CATEGORY_STATIC (gst_safetensors_mux_debug);
#define GST_CAT_DEFAULT gst_safetensors_mux_debug

struct _GstSafetensorsMux
{
  GstElement parent;

  GstPad *sinkpad, *srcpad;

  /* streaming-thread state; the object lock is not needed as only the
   * streaming thread and state changes (with streaming stopped) touch it */
  gboolean have_info;
  GstVaeLatentInfo info;
  gsize frame_size;
  /* T * frame_size bytes.  Not a GByteArray: that grows with g_realloc,
   * which ends the process when a long clip no longer fits in memory. */
  guint8 *frames;
  gsize frames_len, frames_cap;
  GArray *pts;                /* gint64, one per frame */
  gboolean sent_segment;
};

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS (GST_VAE_LATENT_CAPS_TEMPLATE));

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS ("application/x-safetensors"));

#define gst_safetensors_mux_parent_class parent_class
G_DEFINE_TYPE (GstSafetensorsMux, gst_safetensors_mux, GST_TYPE_ELEMENT);
GST_ELEMENT_REGISTER_DEFINE (safetensorsmux, "safetensorsmux", GST_RANK_NONE,
    GST_TYPE_SAFETENSORS_MUX);

static void
gst_safetensors_mux_reset (GstSafetensorsMux * self)
{
  if (self->have_info) {
    gst_vae_latent_info_clear (&self->info);
    gst_vae_latent_info_init (&self->info);
  }
  self->have_info = FALSE;
  self->frame_size = 0;
  self->frames_len = 0;
  g_array_set_size (self->pts, 0);
  self->sent_segment = FALSE;
}

/* Serialises what was collected; NULL with ERROR set when nothing can be
 * written. */
static GBytes *
gst_safetensors_mux_build (GstSafetensorsMux * self, GError ** error)
{
  g_autoptr (VaeLatentWriter) w = vae_latent_writer_new ();
  const GstVaeLatentInfo *info = &self->info;
  gint64 n_frames = self->pts->len;
  gint64 shape[4] = { n_frames, info->channels, info->latent_height,
    info->latent_width
  };

  if (!vae_latent_writer_set_latents (w, info->dtype, 4, shape, self->frames,
          self->frames_len, error))
    return NULL;
  if (!vae_latent_writer_set_pts (w, n_frames, (const gint64 *) self->pts->data,
          error))
    return NULL;

  if (info->model && info->model[0])
    vae_latent_writer_set_string (w, VAE_LATENT_KEY_MODEL, info->model);
  if (isfinite (info->scaling_factor))
    vae_latent_writer_set_double (w, VAE_LATENT_KEY_SCALING_FACTOR,
        info->scaling_factor);
  if (isfinite (info->shift_factor))
    vae_latent_writer_set_double (w, VAE_LATENT_KEY_SHIFT_FACTOR,
        info->shift_factor);
  vae_latent_writer_set_fraction (w, VAE_LATENT_KEY_FRAMERATE, info->fps_n,
      info->fps_d > 0 ? info->fps_d : 1);
  if (info->width > 0 && info->height > 0) {
    vae_latent_writer_set_int (w, VAE_LATENT_KEY_WIDTH, info->width);
    vae_latent_writer_set_int (w, VAE_LATENT_KEY_HEIGHT, info->height);
  }
  if (info->spatial_factor > 0)
    vae_latent_writer_set_int (w, VAE_LATENT_KEY_SPATIAL_FACTOR,
        info->spatial_factor);
  if (info->latent_format >= 0)
    vae_latent_writer_set_string (w, VAE_LATENT_KEY_LATENT_FORMAT,
        vae_latent_format_name ((VaeLatentFormat) info->latent_format));
  if (info->normalization)
    vae_latent_writer_set_string (w, VAE_LATENT_KEY_NORMALIZATION,
        info->normalization);

  return vae_latent_writer_serialize (w, error);
}

static gboolean
gst_safetensors_mux_ensure_segment (GstSafetensorsMux * self)
{
  GstSegment segment;

  if (self->sent_segment)
    return TRUE;
  if (!gst_pad_has_current_caps (self->srcpad)) {
    GstCaps *caps = gst_static_pad_template_get_caps (&src_template);
    gboolean ok = gst_pad_push_event (self->srcpad, gst_event_new_caps (caps));
    gst_caps_unref (caps);
    if (!ok)
      GST_DEBUG_OBJECT (self, "downstream refused the caps");
  }
  gst_segment_init (&segment, GST_FORMAT_BYTES);
  self->sent_segment = TRUE;
  return gst_pad_push_event (self->srcpad, gst_event_new_segment (&segment));
}

/* Writes the file at EOS; FALSE after posting an element error. */
static gboolean
gst_safetensors_mux_finish (GstSafetensorsMux * self)
{
  g_autoptr (GError) error = NULL;
  GBytes *bytes;
  GstBuffer *buf;
  GstFlowReturn ret;
  gsize size;
  gconstpointer data;

  if (!self->have_info || self->pts->len == 0) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("no latent frames"),
        ("the stream ended before any latent frame arrived: there is "
            "nothing to write"));
    return FALSE;
  }

  bytes = gst_safetensors_mux_build (self, &error);
  if (!bytes) {
    if (g_error_matches (error, VAE_ERROR, VAE_ERROR_NO_MEMORY))
      GST_ELEMENT_ERROR (self, RESOURCE, NO_SPACE_LEFT,
          ("not enough memory to build the safetensors file"),
          ("%s", error->message));
    else
      GST_ELEMENT_ERROR (self, STREAM, FAILED,
          ("could not build the safetensors file"), ("%s", error->message));
    return FALSE;
  }
  GST_INFO_OBJECT (self, "writing %u frames, %" G_GSIZE_FORMAT " bytes",
      self->pts->len, g_bytes_get_size (bytes));

  /* the frames are in the file now: give their memory back */
  g_clear_pointer (&self->frames, g_free);
  self->frames_len = self->frames_cap = 0;
  g_array_set_size (self->pts, 0);

  gst_safetensors_mux_ensure_segment (self);

  data = g_bytes_get_data (bytes, &size);
  buf = gst_buffer_new_wrapped_full (GST_MEMORY_FLAG_READONLY,
      (gpointer) data, size, 0, size, bytes, (GDestroyNotify) g_bytes_unref);
  GST_BUFFER_OFFSET (buf) = 0;
  GST_BUFFER_OFFSET_END (buf) = size;
  ret = gst_pad_push (self->srcpad, buf);
  if (ret != GST_FLOW_OK && ret != GST_FLOW_FLUSHING) {
    GST_ELEMENT_FLOW_ERROR (self, ret);
    return FALSE;
  }
  return TRUE;
}

static gboolean
gst_safetensors_mux_set_caps (GstSafetensorsMux * self, GstCaps * caps)
{
  g_autoptr (GError) error = NULL;
  GstVaeLatentInfo info;

  gst_vae_latent_info_init (&info);
  if (!gst_vae_latent_info_from_caps (&info, caps, &error)) {
    GST_ELEMENT_ERROR (self, STREAM, FORMAT, ("bad latent caps"),
        ("%s", error ? error->message : "unparsable latent caps"));
    gst_vae_latent_info_clear (&info);
    return FALSE;
  }

  if (self->have_info) {
    const GstVaeLatentInfo *old = &self->info;
    if (old->dtype != info.dtype || old->channels != info.channels
        || old->latent_width != info.latent_width
        || old->latent_height != info.latent_height) {
      GST_ELEMENT_ERROR (self, STREAM, FORMAT,
          ("latent layout changed mid-stream"),
          ("the stream started as %s [%d,%d,%d] and now is %s [%d,%d,%d]; "
              "one file holds one layout",
              vae_dtype_name (old->dtype), old->channels, old->latent_height,
              old->latent_width, vae_dtype_name (info.dtype), info.channels,
              info.latent_height, info.latent_width));
      gst_vae_latent_info_clear (&info);
      return FALSE;
    }
    /* same layout: the latest description wins (a framerate may be refined) */
    gst_vae_latent_info_clear (&self->info);
  }

  self->info = info;
  self->have_info = TRUE;
  self->frame_size = gst_vae_latent_info_frame_size (&self->info);
  GST_DEBUG_OBJECT (self, "caps %" GST_PTR_FORMAT ", %" G_GSIZE_FORMAT
      " bytes a frame", caps, self->frame_size);
  return TRUE;
}

static GstFlowReturn
gst_safetensors_mux_chain (GstPad * pad, GstObject * parent, GstBuffer * buf)
{
  GstSafetensorsMux *self = GST_SAFETENSORS_MUX (parent);
  GstMapInfo map;
  gint64 pts;

  if (!self->have_info) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("no caps"),
        ("a latent buffer arrived before the stream's caps"));
    gst_buffer_unref (buf);
    return GST_FLOW_NOT_NEGOTIATED;
  }
  if (gst_buffer_get_size (buf) != self->frame_size) {
    GST_ELEMENT_ERROR (self, STREAM, FORMAT, ("bad latent buffer"),
        ("a latent buffer holds %" G_GSIZE_FORMAT " bytes where the caps "
            "say one frame is %" G_GSIZE_FORMAT, gst_buffer_get_size (buf),
            self->frame_size));
    gst_buffer_unref (buf);
    return GST_FLOW_ERROR;
  }
  if ((guint64) self->frames_len + self->frame_size > G_MAXUINT) {
    GST_ELEMENT_ERROR (self, RESOURCE, NO_SPACE_LEFT, ("too many frames"),
        ("%u frames of %" G_GSIZE_FORMAT " bytes fill the 4 GiB this "
            "element holds in memory; split the clip", self->pts->len,
            self->frame_size));
    gst_buffer_unref (buf);
    return GST_FLOW_ERROR;
  }
  if (!gst_buffer_map (buf, &map, GST_MAP_READ)) {
    GST_ELEMENT_ERROR (self, RESOURCE, READ, (NULL),
        ("could not map a latent buffer"));
    gst_buffer_unref (buf);
    return GST_FLOW_ERROR;
  }
  if (self->frames_len + map.size > self->frames_cap) {
    /* doubling (capped at the 4 GiB limit above), with a fallible realloc */
    gsize cap = MAX (self->frames_len + map.size, self->frames_cap * 2);
    guint8 *grown;
    cap = MIN (cap, (gsize) G_MAXUINT);
    grown = g_try_realloc (self->frames, cap);
    if (!grown) {
      g_autofree char *size = vae_format_bytes (cap);
      gst_buffer_unmap (buf, &map);
      GST_ELEMENT_ERROR (self, RESOURCE, NO_SPACE_LEFT,
          ("not enough memory to collect the clip"),
          ("could not allocate %s for %u frames of %" G_GSIZE_FORMAT
              " bytes; split the clip", size, self->pts->len + 1,
              self->frame_size));
      gst_buffer_unref (buf);
      return GST_FLOW_ERROR;
    }
    self->frames = grown;
    self->frames_cap = cap;
  }
  memcpy (self->frames + self->frames_len, map.data, map.size);
  self->frames_len += map.size;
  gst_buffer_unmap (buf, &map);

  pts = GST_BUFFER_PTS_IS_VALID (buf) ? (gint64) GST_BUFFER_PTS (buf) : -1;
  g_array_append_val (self->pts, pts);
  GST_LOG_OBJECT (self, "frame %u, pts %" GST_TIME_FORMAT, self->pts->len,
      GST_TIME_ARGS (GST_BUFFER_PTS (buf)));
  gst_buffer_unref (buf);
  return GST_FLOW_OK;
}

static gboolean
gst_safetensors_mux_sink_event (GstPad * pad, GstObject * parent,
    GstEvent * event)
{
  GstSafetensorsMux *self = GST_SAFETENSORS_MUX (parent);

  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_CAPS:{
      GstCaps *caps;
      gboolean ok;
      gst_event_parse_caps (event, &caps);
      ok = gst_safetensors_mux_set_caps (self, caps);
      gst_event_unref (event);
      if (ok && !gst_pad_has_current_caps (self->srcpad)) {
        GstCaps *out = gst_static_pad_template_get_caps (&src_template);
        gst_pad_push_event (self->srcpad, gst_event_new_caps (out));
        gst_caps_unref (out);
      }
      return ok;
    }
    case GST_EVENT_SEGMENT:
      /* the output is one file: a byte segment of our own */
      gst_event_unref (event);
      return gst_safetensors_mux_ensure_segment (self);
    case GST_EVENT_FLUSH_STOP:
      self->frames_len = 0;
      g_array_set_size (self->pts, 0);
      self->sent_segment = FALSE;
      return gst_pad_event_default (pad, parent, event);
    case GST_EVENT_EOS:{
      if (!gst_safetensors_mux_finish (self)) {
        gst_event_unref (event);
        return FALSE;
      }
      return gst_pad_push_event (self->srcpad, event);
    }
    default:
      return gst_pad_event_default (pad, parent, event);
  }
}

static gboolean
gst_safetensors_mux_sink_query (GstPad * pad, GstObject * parent,
    GstQuery * query)
{
  switch (GST_QUERY_TYPE (query)) {
    case GST_QUERY_ALLOCATION:
      /* nothing to propose: frames are copied into the file */
      return FALSE;
    default:
      return gst_pad_query_default (pad, parent, query);
  }
}

static gboolean
gst_safetensors_mux_src_event (GstPad * pad, GstObject * parent,
    GstEvent * event)
{
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_SEEK:
      /* the output is a single buffer; seeking makes no sense */
      gst_event_unref (event);
      return FALSE;
    default:
      return gst_pad_event_default (pad, parent, event);
  }
}

static GstStateChangeReturn
gst_safetensors_mux_change_state (GstElement * element,
    GstStateChange transition)
{
  GstSafetensorsMux *self = GST_SAFETENSORS_MUX (element);
  GstStateChangeReturn ret;

  ret = GST_ELEMENT_CLASS (parent_class)->change_state (element, transition);
  if (ret == GST_STATE_CHANGE_FAILURE)
    return ret;

  switch (transition) {
    case GST_STATE_CHANGE_PAUSED_TO_READY:
      gst_safetensors_mux_reset (self);
      break;
    default:
      break;
  }
  return ret;
}

static void
gst_safetensors_mux_finalize (GObject * object)
{
  GstSafetensorsMux *self = GST_SAFETENSORS_MUX (object);

  if (self->have_info)
    gst_vae_latent_info_clear (&self->info);
  g_free (self->frames);
  g_array_unref (self->pts);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_safetensors_mux_class_init (GstSafetensorsMuxClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);

  gobject_class->finalize = gst_safetensors_mux_finalize;
  element_class->change_state =
      GST_DEBUG_FUNCPTR (gst_safetensors_mux_change_state);

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class,
      "Safetensors latent muxer", "Muxer/Tensor",
      "Collects a latent stream and writes it as one safetensors file "
      "(tensors 'latents' [T,C,h,w] and 'pts') at EOS",
      "gst-vae developers");

  GST_DEBUG_CATEGORY_INIT (gst_safetensors_mux_debug, "safetensorsmux", 0,
      "safetensors latent muxer");
}

static void
gst_safetensors_mux_init (GstSafetensorsMux * self)
{
  self->sinkpad = gst_pad_new_from_static_template (&sink_template, "sink");
  gst_pad_set_chain_function (self->sinkpad,
      GST_DEBUG_FUNCPTR (gst_safetensors_mux_chain));
  gst_pad_set_event_function (self->sinkpad,
      GST_DEBUG_FUNCPTR (gst_safetensors_mux_sink_event));
  gst_pad_set_query_function (self->sinkpad,
      GST_DEBUG_FUNCPTR (gst_safetensors_mux_sink_query));
  gst_element_add_pad (GST_ELEMENT (self), self->sinkpad);

  self->srcpad = gst_pad_new_from_static_template (&src_template, "src");
  gst_pad_set_event_function (self->srcpad,
      GST_DEBUG_FUNCPTR (gst_safetensors_mux_src_event));
  gst_pad_use_fixed_caps (self->srcpad);
  gst_element_add_pad (GST_ELEMENT (self), self->srcpad);

  gst_vae_latent_info_init (&self->info);
  self->have_info = FALSE;
  self->pts = g_array_new (FALSE, FALSE, sizeof (gint64));
}
