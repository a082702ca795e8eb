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
 * - tensor `pts` (I64 [T], nanoseconds, -1 = none): the frames' timestamps,
 *   which must increase from frame to frame (a duplicated, decreasing or
 *   other negative value is a STREAM DEMUX error naming the frame); without
 *   it frames are stamped from the framerate (none when unknown);
 * - `__metadata__` `framerate` ("N/D"; 0/1 when absent), `width` and
 *   `height` (the source frame size), `spatial_factor`, `model`,
 *   `scaling_factor` and `shift_factor`.
 *
 * What the file does not say is left out of the caps, so that `vaedecode`
 * takes its model's: the scaling and shift factors, and the spatial factor
 * unless the file's `width` and `height` give it (the one factor f for which
 * the latents are the source size padded up to a multiple of f on both
 * axes: ceil(width/f) = w and ceil(height/f) = h). Without `width` and
 * `height` the source size is left out too (`vaedecode` then decodes the
 * full h*f x w*f).
 *
 * Frames are pushed from a streaming thread of the element's own, started
 * once the file is parsed. The element answers DURATION queries (TIME: the
 * end of the last frame; DEFAULT: the number of frames) and SEEKING queries
 * (TIME, seekable when the frames have timestamps), and handles seeks in
 * TIME at rate 1.0, flushing or not: playback starts at the first frame at
 * or after the start position (with `GST_SEEK_FLAG_KEY_UNIT` the segment
 * starts on that frame) and ends before the first frame at or after the
 * stop position; a segment seek ends with SEGMENT_DONE instead of EOS.
 * Other rates and formats, and seeks before the file is parsed or in a file
 * without timestamps, are refused.
 *
 * The sink pad accepts buffers without caps, so `filesrc` links directly.
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
#include "gstvaeelements.h"
#include "gstvaelatentcaps.h"
#include "gstvaealloc.h"
#include "latent-file.h"
#include "codec.h"
#include "vae-error.h"

GST_DEBUG_CATEGORY_STATIC (gst_safetensors_demux_debug);
#define GST_CAT_DEFAULT gst_safetensors_demux_debug

/* A parsed file: what the streaming thread plays from. */
typedef struct
{
  VaeLatentFile *lf;
  const VaeTensorView *lat;     /* inside lf */
  gboolean widen;               /* BF16 / F64 to F32 */
  gint64 n_frames;
  gsize frame_elems, frame_bytes, src_frame_bytes;
  GstClockTime *ts;             /* [n_frames], NONE where unknown */
  GstClockTime frame_duration;  /* from the framerate, or NONE */
  GstClockTime duration;        /* end of the last timestamped frame, or NONE */
  gboolean seekable;            /* some frame has a timestamp */
  GstCaps *caps;
} DemuxFile;

struct _GstSafetensorsDemux
{
  GstElement parent;

  GstPad *sinkpad, *srcpad;
  GstAdapter *adapter;          /* the file, until EOS (sink stream lock) */

  /* Whether the source pad is active, so that its task may run.  Only
   * what starts or stops the task takes it: a task started after the pad
   * was deactivated would run on in READY. */
  GMutex task_lock;
  gboolean src_active;

  /* Playback state, under lock.  file is set before the task starts and
   * freed only with the task paused and the source pad's stream lock held,
   * so the task reads it without the lock. */
  GMutex lock;
  DemuxFile *file;
  GstSegment segment;
  gboolean need_segment;        /* push segment (and DISCONT) next */
  gboolean headers_sent;        /* stream-start and caps */
  guint32 seqnum;               /* of the seek (or stream) being played */
  gint64 next;                  /* the next frame to push */
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

static void gst_safetensors_demux_loop (gpointer user_data);

static void
demux_file_free (DemuxFile * f)
{
  if (!f)
    return;
  g_clear_pointer (&f->lf, vae_latent_file_free);
  g_free (f->ts);
  gst_clear_caps (&f->caps);
  g_free (f);
}

/* A positive integer from the metadata; FALSE when absent or malformed. */
static gboolean
meta_int (GstSafetensorsDemux * self, const VaeLatentFile * lf,
    const char *key, int *out)
{
  g_autoptr (GError) error = NULL;
  gint64 v;

  if (!vae_latent_file_get_int (lf, key, 1, G_MAXINT, &v, &error)) {
    if (error)
      GST_WARNING_OBJECT (self, "ignoring %s", error->message);
    return FALSE;
  }
  *out = (int) v;
  return TRUE;
}

/* A finite double from the metadata, NaN when absent or malformed. */
static double
meta_double (GstSafetensorsDemux * self, const VaeLatentFile * lf,
    const char *key)
{
  g_autoptr (GError) error = NULL;
  double v;

  if (!vae_latent_file_get_double (lf, key, &v, &error)) {
    if (error)
      GST_WARNING_OBJECT (self, "ignoring %s", error->message);
    return NAN;
  }
  return v;
}

/* The framerate from the metadata, 0/1 when absent or malformed. */
static void
meta_framerate (GstSafetensorsDemux * self, const VaeLatentFile * lf,
    int *fps_n, int *fps_d)
{
  g_autoptr (GError) error = NULL;

  if (!vae_latent_file_get_fraction (lf, VAE_LATENT_KEY_FRAMERATE, fps_n, fps_d,
          &error)) {
    if (error)
      GST_WARNING_OBJECT (self, "ignoring %s", error->message);
    *fps_n = 0;
    *fps_d = 1;
  }
}

/* The spatial factor f that makes the latents the source frame padded up
 * to a multiple of f (the encoder pads, so h = ceil(height / f) and
 * w = ceil(width / f)); 0 when no factor, or more than one, fits both axes:
 * the file does not say, and the model's is better than a guess. */
static int
derive_spatial_factor (gint64 width, gint64 height, gint64 w, gint64 h)
{
  int found = 0;

  for (int f = 1; f <= GST_VAE_MAX_SPATIAL_FACTOR; f++) {
    if ((width + f - 1) / f != w || (height + f - 1) / f != h)
      continue;
    if (found)
      return 0;
    found = f;
  }
  return found;
}

/* Fills INFO's spatial factor and source size from the metadata.  Caps
 * need width and height together, and vaedecode takes its model's factor
 * when there is none, so nothing is made up. */
static void
meta_geometry (GstSafetensorsDemux * self, const VaeLatentFile * lf,
    GstVaeLatentInfo * info)
{
  int f = 0, width = 0, height = 0;
  gboolean have_w = meta_int (self, lf, VAE_LATENT_KEY_WIDTH, &width);
  gboolean have_h = meta_int (self, lf, VAE_LATENT_KEY_HEIGHT, &height);

  if (meta_int (self, lf, VAE_LATENT_KEY_SPATIAL_FACTOR, &f)
      && f > GST_VAE_MAX_SPATIAL_FACTOR) {
    GST_WARNING_OBJECT (self, "ignoring metadata spatial_factor=%d: larger "
        "than %d", f, GST_VAE_MAX_SPATIAL_FACTOR);
    f = 0;
  }
  if (f > 0) {
    /* a missing side is the padded one */
    if (!have_w)
      width = (int) MIN ((gint64) info->latent_width * f, G_MAXINT);
    if (!have_h)
      height = (int) MIN ((gint64) info->latent_height * f, G_MAXINT);
  } else if (have_w && have_h) {
    f = derive_spatial_factor (width, height, info->latent_width,
        info->latent_height);
    if (f > 0)
      GST_DEBUG_OBJECT (self, "spatial factor %d from %dx%d on %dx%d latents",
          f, width, height, info->latent_width, info->latent_height);
    else
      GST_INFO_OBJECT (self, "%dx%d on %dx%d latents gives no single spatial "
          "factor: leaving it to the decoder's model", width, height,
          info->latent_width, info->latent_height);
  } else if (have_w || have_h) {
    GST_WARNING_OBJECT (self, "ignoring metadata %s without %s or "
        "spatial_factor", have_w ? "width" : "height",
        have_w ? "height" : "width");
    width = height = 0;
  }
  info->spatial_factor = f;
  info->width = width;
  info->height = height;
}

#define DECODE_ERROR(self, ...) \
  GST_ELEMENT_ERROR (self, STREAM, DECODE, \
      ("not a usable safetensors latent file"), (__VA_ARGS__))

/* The frames' timestamps into F->ts, from tensor PTS_T (may be NULL) or the
 * framerate; FALSE after an element error for timestamps that do not
 * increase (seeking and segment clipping rely on their order). */
static gboolean
demux_file_timestamps (GstSafetensorsDemux * self, DemuxFile * f,
    const VaeTensorView * pts_t, const GstVaeLatentInfo * info)
{
  gint64 last = -1, before_last = -1;

  f->ts = g_try_new (GstClockTime, f->n_frames);
  if (!f->ts) {
    GST_ELEMENT_ERROR (self, RESOURCE, NO_SPACE_LEFT, ("Out of memory."),
        ("could not allocate the timestamps of %" G_GINT64_FORMAT " frames",
            f->n_frames));
    return FALSE;
  }
  f->frame_duration = info->fps_n > 0
      ? gst_util_uint64_scale_int (GST_SECOND, info->fps_d, info->fps_n)
      : GST_CLOCK_TIME_NONE;

  for (gint64 i = 0; i < f->n_frames; i++) {
    gint64 p;

    if (!pts_t) {
      f->ts[i] = info->fps_n > 0
          ? gst_util_uint64_scale ((guint64) i * GST_SECOND, info->fps_d,
          info->fps_n) : GST_CLOCK_TIME_NONE;
      if (info->fps_n > 0) {
        before_last = last;
        last = i;
      }
      continue;
    }
    memcpy (&p, pts_t->data + (gsize) i * sizeof (gint64), sizeof p);
    if (p == -1) {
      f->ts[i] = GST_CLOCK_TIME_NONE;
      continue;
    }
    if (p < 0) {
      GST_ELEMENT_ERROR (self, STREAM, DEMUX,
          ("The file has a negative frame timestamp."),
          ("tensor 'pts': frame %" G_GINT64_FORMAT " has pts %" G_GINT64_FORMAT
              " (only -1, for none, may be negative)", i, p));
      return FALSE;
    }
    if (last >= 0 && (GstClockTime) p <= f->ts[last]) {
      GST_ELEMENT_ERROR (self, STREAM, DEMUX,
          ("The file's frame timestamps do not increase."),
          ("tensor 'pts': frame %" G_GINT64_FORMAT " has pts %" G_GINT64_FORMAT
              ", %s frame %" G_GINT64_FORMAT "'s %" G_GUINT64_FORMAT, i, p,
              (GstClockTime) p == f->ts[last] ? "the same as" : "before",
              last, (guint64) f->ts[last]));
      return FALSE;
    }
    f->ts[i] = (GstClockTime) p;
    before_last = last;
    last = i;
  }

  f->seekable = last >= 0;
  f->duration = GST_CLOCK_TIME_NONE;
  if (last >= 0 && GST_CLOCK_TIME_IS_VALID (f->frame_duration))
    f->duration = f->ts[last] + f->frame_duration;
  else if (before_last >= 0)
    /* no frame rate: the last frame lasts as long as the one before */
    f->duration = f->ts[last] + (f->ts[last] - f->ts[before_last]);
  return TRUE;
}

/* Parses the collected file; NULL after posting an element error. */
static DemuxFile *
gst_safetensors_demux_parse (GstSafetensorsDemux * self)
{
  g_autoptr (GError) error = NULL;
  GBytes *bytes;
  gsize avail = gst_adapter_available (self->adapter);
  const VaeTensorView *lat, *pts_t;
  GstVaeLatentInfo info;
  gint64 n_frames, c, h, w;
  DemuxFile *f;

  if (avail == 0) {
    DECODE_ERROR (self, "the input ended before any byte arrived");
    return NULL;
  }
  f = g_new0 (DemuxFile, 1);
  /* gst_adapter_take would g_malloc the whole file, which aborts when it
   * does not fit: copy it into a fallible allocation instead. */
  {
    guint8 *data = vae_try_alloc (1, avail, "the latent file", &error);
    if (!data) {
      GST_ELEMENT_ERROR (self, RESOURCE, NO_SPACE_LEFT, (NULL), ("%s",
              error->message));
      goto fail;
    }
    gst_adapter_copy (self->adapter, data, 0, avail);
    gst_adapter_flush (self->adapter, avail);
    bytes = g_bytes_new_take (data, avail);
  }
  f->lf = vae_latent_file_new_from_bytes (bytes, "safetensorsdemux input",
      &error);
  g_bytes_unref (bytes);
  if (!f->lf) {
    DECODE_ERROR (self, "%s", error->message);
    goto fail;
  }

  lat = vae_latent_file_latents (f->lf);
  if (lat->ndim == 4) {
    c = lat->shape[1];
    h = lat->shape[2];
    w = lat->shape[3];
  } else if (lat->ndim == 3) {
    c = lat->shape[0];
    h = lat->shape[1];
    w = lat->shape[2];
  } else {
    DECODE_ERROR (self, "tensor 'latents' has %d dimensions where "
        "[T,C,h,w] or [C,h,w] was expected", lat->ndim);
    goto fail;
  }
  n_frames = vae_latent_file_n_frames (f->lf);
  if (c > G_MAXINT || h > G_MAXINT || w > G_MAXINT) {
    DECODE_ERROR (self, "tensor 'latents' has an oversized frame "
        "shape [%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT
        "]", c, h, w);
    goto fail;
  }
  /* the file holds F32, F16, BF16 or F64 */
  f->widen = lat->dtype == VAE_DTYPE_BF16 || lat->dtype == VAE_DTYPE_F64;
  pts_t = vae_latent_file_pts (f->lf);

  gst_vae_latent_info_init (&info);
  info.dtype = f->widen ? VAE_DTYPE_F32 : lat->dtype;
  info.channels = (int) c;
  info.latent_height = (int) h;
  info.latent_width = (int) w;
  meta_geometry (self, f->lf, &info);
  info.scaling_factor = meta_double (self, f->lf,
      VAE_LATENT_KEY_SCALING_FACTOR);
  info.shift_factor = meta_double (self, f->lf, VAE_LATENT_KEY_SHIFT_FACTOR);
  {
    const char *model = vae_latent_file_get_string (f->lf, VAE_LATENT_KEY_MODEL);
    info.model = model && model[0] ? g_strdup (model) : NULL;
  }
  {
    /* Which latents (vaedecode goes by it): normalized or raw. */
    static const char *const normalizations[] = { "raw", "scale-shift", "per-channel",
                                                  "patch2x2-batch-norm" };
    VaeLatentFormat format;
    const char *lf_format = vae_latent_file_get_string (f->lf, VAE_LATENT_KEY_LATENT_FORMAT);
    const char *norm = vae_latent_file_get_string (f->lf, VAE_LATENT_KEY_NORMALIZATION);
    if (lf_format && vae_latent_format_from_name (lf_format, &format))
      info.latent_format = format;
    else if (lf_format)
      GST_WARNING_OBJECT (self, "ignoring metadata latent_format=%s", lf_format);
    for (guint i = 0; norm && i < G_N_ELEMENTS (normalizations); i++)
      if (g_str_equal (norm, normalizations[i]))
        info.normalization = normalizations[i];
  }
  meta_framerate (self, f->lf, &info.fps_n, &info.fps_d);

  f->lat = lat;
  f->n_frames = n_frames;
  f->frame_elems = (gsize) (c * h * w);
  f->frame_bytes = gst_vae_latent_info_frame_size (&info);
  f->src_frame_bytes = f->frame_elems * vae_dtype_size (lat->dtype);
  f->caps = gst_vae_latent_info_to_caps (&info);
  if (!demux_file_timestamps (self, f, pts_t, &info)) {
    gst_vae_latent_info_clear (&info);
    goto fail;
  }
  gst_vae_latent_info_clear (&info);

  GST_INFO_OBJECT (self, "%" G_GINT64_FORMAT " frames of %s [%"
      G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT "]%s, "
      "duration %" GST_TIME_FORMAT ", caps %" GST_PTR_FORMAT,
      n_frames, vae_dtype_name (lat->dtype), c, h, w,
      f->widen ? " (widened to F32)" : "", GST_TIME_ARGS (f->duration),
      f->caps);
  return f;

fail:
  demux_file_free (f);
  return NULL;
}

/* Starts the streaming thread, unless the source pad is inactive (the
 * element is going down). */
static void
gst_safetensors_demux_start_task (GstSafetensorsDemux * self)
{
  g_mutex_lock (&self->task_lock);
  if (self->src_active)
    gst_pad_start_task (self->srcpad, gst_safetensors_demux_loop, self, NULL);
  else
    GST_DEBUG_OBJECT (self, "source pad inactive: not starting");
  g_mutex_unlock (&self->task_lock);
}

/* Drops the parsed file, with the streaming thread paused. */
static void
gst_safetensors_demux_drop_file (GstSafetensorsDemux * self)
{
  DemuxFile *f;

  gst_pad_pause_task (self->srcpad);
  GST_PAD_STREAM_LOCK (self->srcpad);
  g_mutex_lock (&self->lock);
  f = self->file;
  self->file = NULL;
  g_mutex_unlock (&self->lock);
  GST_PAD_STREAM_UNLOCK (self->srcpad);
  demux_file_free (f);
}

/* The first frame at or after START.  Every frame is at or after 0, the
 * frames without a timestamp included, so playback from 0 plays them all. */
static gint64
first_frame_at (const DemuxFile * f, GstClockTime start)
{
  if (start == 0 || !GST_CLOCK_TIME_IS_VALID (start))
    return 0;
  for (gint64 i = 0; i < f->n_frames; i++)
    if (GST_CLOCK_TIME_IS_VALID (f->ts[i]) && f->ts[i] >= start)
      return i;
  return f->n_frames;
}

static GstBuffer *
make_frame (GstSafetensorsDemux * self, const DemuxFile * f, gint64 i)
{
  g_autoptr (GError) error = NULL;
  GstBuffer *buf = gst_vae_buffer_try_new (f->frame_bytes, "a latent frame",
      &error);
  const guint8 *src = f->lat->data + (gsize) i * f->src_frame_bytes;
  GstMapInfo map;

  if (!buf || !gst_buffer_map (buf, &map, GST_MAP_WRITE)) {
    if (buf)
      gst_buffer_unref (buf);
    GST_ELEMENT_ERROR (self, RESOURCE, NO_SPACE_LEFT, ("Out of memory."),
        ("could not allocate a %" G_GSIZE_FORMAT "-byte frame: %s",
            f->frame_bytes, error ? error->message : "map failed"));
    return NULL;
  }
  if (f->widen) {
    VaeTensorView frame = *f->lat;
    g_autoptr (GError) werr = NULL;
    frame.ndim = 1;
    frame.shape[0] = (gint64) f->frame_elems;
    frame.n_elements = f->frame_elems;
    frame.n_bytes = f->src_frame_bytes;
    frame.data = src;
    if (!vae_tensor_view_to_f32 (&frame, (float *) map.data, &werr)) {
      gst_buffer_unmap (buf, &map);
      gst_buffer_unref (buf);
      DECODE_ERROR (self, "%s", werr->message);
      return NULL;
    }
  } else {
    memcpy (map.data, src, f->frame_bytes);
  }
  gst_buffer_unmap (buf, &map);

  GST_BUFFER_PTS (buf) = f->ts[i];
  GST_BUFFER_DURATION (buf) = f->frame_duration;
  GST_BUFFER_OFFSET (buf) = (guint64) i;
  GST_BUFFER_OFFSET_END (buf) = (guint64) i + 1;
  return buf;
}

static void
push_headers (GstSafetensorsDemux * self, const DemuxFile * f)
{
  gchar *stream_id;
  GstEvent *ev;

  stream_id = gst_pad_create_stream_id (self->srcpad, GST_ELEMENT (self),
      "latents");
  ev = gst_event_new_stream_start (stream_id);
  gst_event_set_group_id (ev, gst_util_group_id_next ());
  g_free (stream_id);
  gst_pad_push_event (self->srcpad, ev);
  /* A refused sticky caps event still reports TRUE here; the refusal
   * comes back as NOT_NEGOTIATED from the first push. */
  gst_pad_push_event (self->srcpad, gst_event_new_caps (f->caps));
}

/* The end of the segment: EOS, or SEGMENT_DONE after a segment seek
 * unless FORCE_EOS (after an error, nothing follows). */
static void
push_end (GstSafetensorsDemux * self, const DemuxFile * f, gboolean force_eos)
{
  GstSegmentFlags flags;
  GstClockTime pos;
  guint32 seqnum;
  GstEvent *ev;

  g_mutex_lock (&self->lock);
  flags = self->segment.flags;
  pos = GST_CLOCK_TIME_IS_VALID (self->segment.stop) ? self->segment.stop
      : f->duration;
  seqnum = self->seqnum;
  g_mutex_unlock (&self->lock);

  if ((flags & GST_SEGMENT_FLAG_SEGMENT) && !force_eos) {
    GstMessage *msg = gst_message_new_segment_done (GST_OBJECT (self),
        GST_FORMAT_TIME, (gint64) pos);
    gst_message_set_seqnum (msg, seqnum);
    gst_element_post_message (GST_ELEMENT (self), msg);
    ev = gst_event_new_segment_done (GST_FORMAT_TIME, (gint64) pos);
  } else {
    ev = gst_event_new_eos ();
  }
  gst_event_set_seqnum (ev, seqnum);
  gst_pad_push_event (self->srcpad, ev);
}

/* One iteration of the streaming thread: pending events, then one frame. */
static void
gst_safetensors_demux_loop (gpointer user_data)
{
  GstSafetensorsDemux *self = GST_SAFETENSORS_DEMUX (user_data);
  const DemuxFile *f;
  GstEvent *segment_ev = NULL;
  gboolean headers_sent, discont = FALSE;
  GstClockTime stop;
  GstFlowReturn ret;
  GstBuffer *buf;
  gint64 i;

  g_mutex_lock (&self->lock);
  f = self->file;
  if (!f) {
    g_mutex_unlock (&self->lock);
    GST_DEBUG_OBJECT (self, "no file to play");
    gst_pad_pause_task (self->srcpad);
    return;
  }
  headers_sent = self->headers_sent;
  self->headers_sent = TRUE;
  if (self->need_segment) {
    self->next = first_frame_at (f, self->segment.start);
    segment_ev = gst_event_new_segment (&self->segment);
    gst_event_set_seqnum (segment_ev, self->seqnum);
    self->need_segment = FALSE;
    discont = TRUE;
  }
  i = self->next;
  stop = self->segment.stop;
  g_mutex_unlock (&self->lock);

  if (!headers_sent)
    push_headers (self, f);
  if (segment_ev) {
    GST_DEBUG_OBJECT (self, "playing from frame %" G_GINT64_FORMAT ": %"
        GST_PTR_FORMAT, i, segment_ev);
    gst_pad_push_event (self->srcpad, segment_ev);
  }

  if (i >= f->n_frames || (GST_CLOCK_TIME_IS_VALID (stop)
          && GST_CLOCK_TIME_IS_VALID (f->ts[i]) && f->ts[i] >= stop)) {
    GST_DEBUG_OBJECT (self, "end of segment at frame %" G_GINT64_FORMAT, i);
    gst_pad_pause_task (self->srcpad);
    push_end (self, f, FALSE);
    return;
  }

  buf = make_frame (self, f, i);
  if (!buf) {
    /* the error is posted; end the stream so that downstream drains */
    gst_pad_pause_task (self->srcpad);
    push_end (self, f, TRUE);
    return;
  }
  if (discont)
    GST_BUFFER_FLAG_SET (buf, GST_BUFFER_FLAG_DISCONT);
  ret = gst_pad_push (self->srcpad, buf);

  g_mutex_lock (&self->lock);
  self->next = i + 1;
  if (GST_CLOCK_TIME_IS_VALID (f->ts[i]))
    self->segment.position = f->ts[i];
  g_mutex_unlock (&self->lock);

  if (ret == GST_FLOW_OK)
    return;

  GST_DEBUG_OBJECT (self, "pausing after frame %" G_GINT64_FORMAT ": %s", i,
      gst_flow_get_name (ret));
  gst_pad_pause_task (self->srcpad);
  if (ret == GST_FLOW_EOS) {
    /* downstream wants no more: end the segment as if it were over */
    push_end (self, f, FALSE);
  } else if (ret == GST_FLOW_NOT_LINKED || ret < GST_FLOW_EOS) {
    /* As demuxers do: the error, then EOS so that downstream elements and
     * the application are not left waiting for data that will not come. */
    GST_ELEMENT_FLOW_ERROR (self, ret);
    push_end (self, f, TRUE);
  }
  /* FLUSHING: a seek or a state change, which restarts or stops the task */
}

static GstFlowReturn
gst_safetensors_demux_chain (GstPad * pad, GstObject * parent, GstBuffer * buf)
{
  GstSafetensorsDemux *self = GST_SAFETENSORS_DEMUX (parent);

  gst_adapter_push (self->adapter, buf);
  return GST_FLOW_OK;
}

/* The whole file is in: parse it and start playing it. */
static gboolean
gst_safetensors_demux_sink_eos (GstSafetensorsDemux * self)
{
  DemuxFile *f;
  gboolean have;

  g_mutex_lock (&self->lock);
  have = self->file != NULL;
  g_mutex_unlock (&self->lock);
  if (have) {
    GST_WARNING_OBJECT (self, "ignoring %" G_GSIZE_FORMAT " bytes after the "
        "file", gst_adapter_available (self->adapter));
    gst_adapter_clear (self->adapter);
    return TRUE;
  }

  f = gst_safetensors_demux_parse (self);
  if (!f)
    return FALSE;
  g_mutex_lock (&self->lock);
  self->file = f;
  gst_segment_init (&self->segment, GST_FORMAT_TIME);
  self->segment.duration = f->duration;
  self->need_segment = TRUE;
  self->headers_sent = FALSE;
  self->seqnum = gst_util_seqnum_next ();
  self->next = 0;
  g_mutex_unlock (&self->lock);
  gst_safetensors_demux_start_task (self);
  return TRUE;
}

static gboolean
gst_safetensors_demux_sink_event (GstPad * pad, GstObject * parent,
    GstEvent * event)
{
  GstSafetensorsDemux *self = GST_SAFETENSORS_DEMUX (parent);
  gboolean res;

  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_STREAM_START:
    case GST_EVENT_CAPS:
    case GST_EVENT_SEGMENT:
      /* the output stream's own are pushed once the file is parsed */
      gst_event_unref (event);
      return TRUE;
    case GST_EVENT_FLUSH_STOP:
      /* upstream starts over (flush-start has stopped our pushes): so
       * does the file */
      gst_safetensors_demux_drop_file (self);
      gst_adapter_clear (self->adapter);
      return gst_pad_event_default (pad, parent, event);
    case GST_EVENT_EOS:
      /* our EOS comes from the streaming thread, after the last frame */
      res = gst_safetensors_demux_sink_eos (self);
      gst_event_unref (event);
      return res;
    default:
      return gst_pad_event_default (pad, parent, event);
  }
}

static gboolean
gst_safetensors_demux_seek (GstSafetensorsDemux * self, GstEvent * event)
{
  GstFormat format;
  GstSeekFlags flags;
  GstSeekType start_type, stop_type;
  gint64 start, stop;
  gdouble rate;
  gboolean flush, ok;
  guint32 seqnum = gst_event_get_seqnum (event);
  GstSegment seg;

  gst_event_parse_seek (event, &rate, &format, &flags, &start_type, &start,
      &stop_type, &stop);
  if (format != GST_FORMAT_TIME) {
    GST_DEBUG_OBJECT (self, "refusing a seek in %s: only TIME",
        gst_format_get_name (format));
    return FALSE;
  }
  if (rate != 1.0) {
    GST_DEBUG_OBJECT (self, "refusing a seek at rate %g: only 1.0", rate);
    return FALSE;
  }

  /* Check the seek on a copy first, so that a refused one flushes
   * nothing. */
  g_mutex_lock (&self->lock);
  ok = self->file && self->file->seekable;
  if (ok) {
    seg = self->segment;
    ok = gst_segment_do_seek (&seg, rate, format, flags, start_type, start,
        stop_type, stop, NULL);
  }
  g_mutex_unlock (&self->lock);
  if (!ok) {
    GST_DEBUG_OBJECT (self, "refusing %" GST_PTR_FORMAT ": no file with "
        "timestamps, or an invalid position", event);
    return FALSE;
  }

  flush = (flags & GST_SEEK_FLAG_FLUSH) != 0;
  if (flush) {
    GstEvent *ev = gst_event_new_flush_start ();
    gst_event_set_seqnum (ev, seqnum);
    gst_pad_push_event (self->srcpad, ev);
  }
  /* Without a flush this waits for the frame being pushed. */
  gst_pad_pause_task (self->srcpad);
  GST_PAD_STREAM_LOCK (self->srcpad);
  if (flush) {
    GstEvent *ev = gst_event_new_flush_stop (TRUE);
    gst_event_set_seqnum (ev, seqnum);
    gst_pad_push_event (self->srcpad, ev);
  }

  g_mutex_lock (&self->lock);
  ok = self->file != NULL;      /* upstream may have flushed it away */
  if (ok) {
    /* again, on the position the task has reached */
    ok = gst_segment_do_seek (&self->segment, rate, format, flags, start_type,
        start, stop_type, stop, NULL);
  }
  if (ok && (flags & GST_SEEK_FLAG_KEY_UNIT)) {
    /* every frame is a key unit: start the segment on the one played
     * first, unless that is past the stop */
    gint64 i = first_frame_at (self->file, self->segment.start);
    if (i < self->file->n_frames
        && GST_CLOCK_TIME_IS_VALID (self->file->ts[i])
        && (!GST_CLOCK_TIME_IS_VALID (self->segment.stop)
            || self->file->ts[i] < self->segment.stop))
      self->segment.start = self->segment.time = self->segment.position =
          self->file->ts[i];
  }
  if (ok) {
    self->need_segment = TRUE;
    self->seqnum = seqnum;
    GST_DEBUG_OBJECT (self, "seek to %" GST_SEGMENT_FORMAT, &self->segment);
  }
  g_mutex_unlock (&self->lock);
  /* a refused seek resumes where it was */
  gst_safetensors_demux_start_task (self);
  GST_PAD_STREAM_UNLOCK (self->srcpad);
  return ok;
}

static gboolean
gst_safetensors_demux_src_event (GstPad * pad, GstObject * parent,
    GstEvent * event)
{
  GstSafetensorsDemux *self = GST_SAFETENSORS_DEMUX (parent);
  gboolean res;

  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_SEEK:
      /* the file is in memory: seeks are ours, never upstream's */
      res = gst_safetensors_demux_seek (self, event);
      gst_event_unref (event);
      return res;
    default:
      return gst_pad_event_default (pad, parent, event);
  }
}

static gboolean
gst_safetensors_demux_src_query (GstPad * pad, GstObject * parent,
    GstQuery * query)
{
  GstSafetensorsDemux *self = GST_SAFETENSORS_DEMUX (parent);

  switch (GST_QUERY_TYPE (query)) {
    case GST_QUERY_DURATION:{
      GstFormat fmt;
      gint64 dur = -1;
      gst_query_parse_duration (query, &fmt, NULL);
      if (fmt != GST_FORMAT_TIME && fmt != GST_FORMAT_DEFAULT)
        return gst_pad_query_default (pad, parent, query);   /* BYTES: the file's */
      g_mutex_lock (&self->lock);
      if (self->file && fmt == GST_FORMAT_TIME
          && GST_CLOCK_TIME_IS_VALID (self->file->duration))
        dur = (gint64) self->file->duration;
      else if (self->file && fmt == GST_FORMAT_DEFAULT)
        dur = self->file->n_frames;
      g_mutex_unlock (&self->lock);
      if (dur < 0)
        return FALSE;
      gst_query_set_duration (query, fmt, dur);
      return TRUE;
    }
    case GST_QUERY_SEEKING:{
      GstFormat fmt;
      gboolean seekable = FALSE;
      gint64 end = -1;
      gst_query_parse_seeking (query, &fmt, NULL, NULL, NULL);
      g_mutex_lock (&self->lock);
      if (fmt == GST_FORMAT_TIME && self->file && self->file->seekable) {
        seekable = TRUE;
        if (GST_CLOCK_TIME_IS_VALID (self->file->duration))
          end = (gint64) self->file->duration;
      }
      g_mutex_unlock (&self->lock);
      gst_query_set_seeking (query, fmt, seekable, seekable ? 0 : -1, end);
      return TRUE;
    }
    default:
      return gst_pad_query_default (pad, parent, query);
  }
}

static gboolean
gst_safetensors_demux_src_activate_mode (GstPad * pad, GstObject * parent,
    GstPadMode mode, gboolean active)
{
  GstSafetensorsDemux *self = GST_SAFETENSORS_DEMUX (parent);

  if (mode != GST_PAD_MODE_PUSH)
    return FALSE;
  g_mutex_lock (&self->task_lock);
  self->src_active = active;
  g_mutex_unlock (&self->task_lock);
  /* the pad is flushing by now, so a push in progress returns */
  return active ? TRUE : gst_pad_stop_task (pad);
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
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY) {
    /* the pads are inactive and the task stopped */
    gst_safetensors_demux_drop_file (self);
    gst_adapter_clear (self->adapter);
  }
  return ret;
}

static void
gst_safetensors_demux_finalize (GObject * object)
{
  GstSafetensorsDemux *self = GST_SAFETENSORS_DEMUX (object);

  demux_file_free (self->file);
  g_object_unref (self->adapter);
  g_mutex_clear (&self->lock);
  g_mutex_clear (&self->task_lock);
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
  gst_pad_set_activatemode_function (self->srcpad,
      GST_DEBUG_FUNCPTR (gst_safetensors_demux_src_activate_mode));
  gst_pad_set_event_function (self->srcpad,
      GST_DEBUG_FUNCPTR (gst_safetensors_demux_src_event));
  gst_pad_set_query_function (self->srcpad,
      GST_DEBUG_FUNCPTR (gst_safetensors_demux_src_query));
  gst_pad_use_fixed_caps (self->srcpad);
  gst_element_add_pad (GST_ELEMENT (self), self->srcpad);

  self->adapter = gst_adapter_new ();
  g_mutex_init (&self->lock);
  g_mutex_init (&self->task_lock);
  gst_segment_init (&self->segment, GST_FORMAT_TIME);
}
