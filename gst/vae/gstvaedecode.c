/* gst-vae: vaedecode.
 *
 * SECTION:element-vaedecode
 * @title: vaedecode
 * @see_also: vaeencode, safetensorsdemux
 *
 * Decodes diffusion-model latents (the caps vaeencode and safetensorsdemux
 * produce: `other/tensors,format=static,num_tensors=1,types={float32,float16},
 * dimensions=W:H:C:1` plus `model`, `scaling-factor`, `shift-factor`,
 * `spatial-factor`, `width`, `height`) back into video frames with a VAE.
 * The latents' channel count must match the model's in their format: the
 * caps' `latent-format` (`normalized`, `raw`) or, without it, whichever
 * format has that many channels (FLUX.2: 128 normalised, 2x2-patchified at
 * 16x, or 32 raw at 8x); decoding inverts the normalisation exactly (up to
 * float rounding).  Frames come out at the
 * source size the caps carry (the encoder's padding is cropped away) in RGB,
 * RGBA, BGRx, I420 or NV12, as downstream prefers (RGB when it does not
 * care).  Scaling and shift factors come from the element's properties when
 * set, else from the caps, else from the model.  Every latent buffer gives one
 * frame with the same timestamps, whatever the batch size.
 *
 * With `backend=remote` the latents go to a Hybrid Inference server at
 * `endpoint` as diffusion-space float32 latents with the model's
 * `scaling_factor`/`shift_factor`, `output_type=pt` and
 * `partial_postprocess=True`: the server unscales them, decodes and answers
 * 8-bit frames, which come out unchanged.  `model` may be a preset (`sd`,
 * `sdxl`, `sd3`, `flux`); `token`, `timeout` and `retries` work as on
 * vaeencode.
 *
 * As on vaeencode, only `batch-timeout` and `max-inflight` may change while
 * the element runs; other changes in PAUSED or PLAYING are refused with a
 * WARNING message.  Latency (batching plus measured processing, with a
 * LATENCY message when processing gets slower) and output (pushed from the
 * element's own thread) work as on vaeencode too.
 *
 * With `tile-size` set, frames larger than that many pixels on either side
 * are decoded in overlapping tiles (at least `tile-overlap` pixels, default
 * 64) whose pixels are blended linearly, so that memory follows the tile,
 * not the frame.  Models with GroupNorm (AutoencoderKL, TAEF2) normalise
 * each tile on its own, so tiled frames are close to, not equal to, untiled
 * ones; choose tiles as large as memory allows.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 videotestsrc num-buffers=30 ! vaeencode model=/path/to/taef2 ! vaedecode model=/path/to/taef2 ! videoconvert ! autovideosink
 * ]|
 * A round trip through the latent space of TAEF2.
 * |[
 * gst-launch-1.0 filesrc location=z.safetensors ! safetensorsdemux ! vaedecode model=/path/to/taef2 ! videoconvert ! pngenc ! filesink location=out.png
 * ]|
 * Decodes stored latents to a picture.
 * |[
 * gst-launch-1.0 filesrc location=z.safetensors ! safetensorsdemux ! vaedecode model=sd backend=remote endpoint=http://127.0.0.1:8000/decode ! videoconvert ! pngenc ! filesink location=out.png
 * ]|
 * The same on a vae-server, with the SD preset.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "gstvaedecode.h"
#include "gstvaealloc.h"
#include "gstvaeelements.h"
#include "gstvaelatentcaps.h"
#include "codec.h"
#include "safetensors.h"
#include "vae-error.h"
#include <gst/video/video.h>
#include <math.h>
#include <string.h>

GST_DEBUG_CATEGORY_STATIC (gst_vae_decode_debug);
#define GST_CAT_DEFAULT gst_vae_decode_debug

#define OUTPUT_FORMATS "{ RGB, RGBA, BGRx, I420, NV12 }"

struct _GstVaeDecode {
  GstVaeBase parent;

  /* Stream state (stream lock). */
  GstVaeLatentInfo linfo;
  GstVideoInfo out_info;
  GstVaeRgbConversion rgb;     /* RGB -> output */
  float *latents;              /* one frame of latents as float32 */
  gsize n_latents;
  int ph, pw;
  int nh, nw;                  /* the network's latent size */
  VaeLatentFormat format;
  double scaling, shift;
};

G_DEFINE_TYPE (GstVaeDecode, gst_vae_decode, GST_TYPE_VAE_BASE)
GST_ELEMENT_REGISTER_DEFINE (vaedecode, "vaedecode", GST_RANK_NONE, GST_TYPE_VAE_DECODE)

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_VAE_LATENT_CAPS_TEMPLATE));

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (OUTPUT_FORMATS)));

static void
free_stream (GstVaeDecode *self)
{
  gst_vae_rgb_conversion_clear (&self->rgb);
  g_clear_pointer (&self->latents, g_free);
  gst_vae_latent_info_clear (&self->linfo);
}

static gboolean
gst_vae_decode_set_caps (GstVaeBase *base, GstCaps *caps, GstVaeFrameGeometry *geom)
{
  GstVaeDecode *self = GST_VAE_DECODE (base);
  const VaeModel *model = gst_vae_base_get_model (base);
  GstPad *srcpad = gst_vae_base_get_srcpad (base);
  GError *err = NULL;
  double prop;

  free_stream (self);
  if (!gst_vae_latent_info_from_caps (&self->linfo, caps, &err)) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("Invalid latent caps."),
                       ("%s: %" GST_PTR_FORMAT, err->message, caps));
    g_clear_error (&err);
    return FALSE;
  }
  if (!vae_model_has_half (model, FALSE)) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("Model '%s' has no decoder.", model->name),
        ("%s holds only an encoder; give vaedecode a model with a decoder", model->path));
    return FALSE;
  }
  /* The latent format: as the caps say, else by the channel count (FLUX.2:
   * 128 normalised, 32 raw). */
  gboolean known = self->linfo.latent_format >= 0;
  if (known)
    self->format = (VaeLatentFormat) self->linfo.latent_format;
  else if (!vae_latent_format_for_channels (model, self->linfo.channels, &self->format, NULL))
    self->format = VAE_LATENT_FORMAT_NORMALIZED;
  /* A preset with patches (flux2) has no BatchNorm statistics: its server
   * normalises, so its raw latents are out of reach (model-preset.c). */
  if (model->config_only && model->latent_patch > 1 && self->format == VAE_LATENT_FORMAT_RAW) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("Preset '%s' takes normalized latents only.", model->name),
        ("the server normalises FLUX.2 latents with the model's BatchNorm statistics, "
         "which a preset does not have; for latent-format=raw give a local FLUX.2 model "
         "(with backend=remote too)"));
    return FALSE;
  }
  const int want_c = vae_latent_format_channels (model, self->format);
  if (self->linfo.channels != want_c) {
    int raw_c = vae_latent_format_channels (model, VAE_LATENT_FORMAT_RAW);
    g_autofree char *also = raw_c != want_c && !known
        ? g_strdup_printf (" (or %d raw)", raw_c) : g_strdup ("");
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("The latents have %d channels but model '%s' takes %d%s.", self->linfo.channels,
         model->name, want_c, also),
        ("caps: %d latent channels (model '%s', latent-format %s), model %s: %d latent "
         "channels in that format", self->linfo.channels,
         self->linfo.model ? self->linfo.model : "unknown",
         vae_latent_format_name (self->format), model->path, want_c));
    return FALSE;
  }
  const int f = vae_latent_format_factor (model, self->format);
  if (self->linfo.spatial_factor > 0 && self->linfo.spatial_factor != f) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("The latents have spatial factor %d but model '%s' has %d.",
         self->linfo.spatial_factor, model->name, f), ("%" GST_PTR_FORMAT, caps));
    return FALSE;
  }
  self->ph = self->linfo.latent_height * f;
  self->pw = self->linfo.latent_width * f;
  self->nh = self->ph / model->spatial_factor;
  self->nw = self->pw / model->spatial_factor;
  if (self->linfo.width <= 0 || self->linfo.height <= 0) {
    self->linfo.width = self->pw;
    self->linfo.height = self->ph;
  }
  if (self->linfo.width > self->pw || self->linfo.height > self->ph) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("Invalid latent caps."),
        ("source size %dx%d is larger than the decoded %dx%d", self->linfo.width,
         self->linfo.height, self->pw, self->ph));
    return FALSE;
  }

  prop = gst_vae_base_get_scaling_property (base);
  self->scaling = !isnan (prop) ? prop
      : (!isnan (self->linfo.scaling_factor) && self->linfo.scaling_factor > 0)
          ? self->linfo.scaling_factor : model->scaling_factor;
  prop = gst_vae_base_get_shift_property (base);
  self->shift = !isnan (prop) ? prop
      : !isnan (self->linfo.shift_factor) ? self->linfo.shift_factor : model->shift_factor;
  if (self->scaling == 0) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("Scaling factor is 0."), (NULL));
    return FALSE;
  }

  /* Output caps: our formats in our order of preference, as downstream allows. */
  const int w = self->linfo.width, h = self->linfo.height;
  GstCaps *ours = gst_caps_from_string ("video/x-raw, format=(string)" OUTPUT_FORMATS);
  gst_caps_set_simple (ours, "width", G_TYPE_INT, w, "height", G_TYPE_INT, h,
      "framerate", GST_TYPE_FRACTION, self->linfo.fps_n, self->linfo.fps_d,
      "pixel-aspect-ratio", GST_TYPE_FRACTION, 1, 1, NULL);
  GstCaps *peer = gst_pad_peer_query_caps (srcpad, NULL);
  GstCaps *out = gst_caps_intersect_full (ours, peer, GST_CAPS_INTERSECT_FIRST);
  gst_caps_unref (peer);
  if (gst_caps_is_empty (out)) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("Downstream accepts none of the output formats."),
        ("offered %" GST_PTR_FORMAT, ours));
    gst_caps_unref (ours);
    gst_caps_unref (out);
    return FALSE;
  }
  gst_caps_unref (ours);
  out = gst_caps_fixate (out);
  if (!gst_video_info_from_caps (&self->out_info, out)) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("Invalid output caps."),
                       ("%" GST_PTR_FORMAT, out));
    gst_caps_unref (out);
    return FALSE;
  }
  GST_DEBUG_OBJECT (self, "src caps %" GST_PTR_FORMAT, out);
  gboolean ok = gst_pad_set_caps (srcpad, out);
  gst_caps_unref (out);
  if (!ok) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("Downstream refused the video caps."),
                       (NULL));
    return FALSE;
  }

  if (!gst_vae_base_setup_rgb_conversion (base, &self->rgb, &self->out_info, FALSE, NULL))
    return FALSE;
  self->n_latents = (gsize) self->linfo.channels * self->linfo.latent_width
                    * self->linfo.latent_height;
  self->latents = vae_try_alloc (self->n_latents, sizeof (float), "the latent frame", &err);
  if (!self->latents) {
    gst_vae_post_no_memory (GST_ELEMENT (self), w, h, 1, err->message);
    g_clear_error (&err);
    return FALSE;
  }

  geom->direction = VAE_DIRECTION_DECODE;
  geom->h = self->nh;
  geom->w = self->nw;
  geom->in_floats = self->n_latents;
  geom->out_floats = (gsize) vae_engine_output_channels (model, VAE_DIRECTION_DECODE)
                     * self->ph * self->pw;
  geom->fps_n = self->linfo.fps_n;
  geom->fps_d = self->linfo.fps_d;
  return TRUE;
}

static GstFlowReturn
gst_vae_decode_fill_slot (GstVaeBase *base, GstBuffer *inbuf, float *slot)
{
  GstVaeDecode *self = GST_VAE_DECODE (base);
  const VaeModel *model = gst_vae_base_get_model (base);
  const gsize need = gst_vae_latent_info_frame_size (&self->linfo);
  GstMapInfo map;

  if (!gst_buffer_map (inbuf, &map, GST_MAP_READ)) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Could not map a latent buffer."), (NULL));
    return GST_FLOW_ERROR;
  }
  if (map.size < need) {
    GST_ELEMENT_ERROR (self, STREAM, FORMAT, ("Latent buffer too small."),
        ("%" G_GSIZE_FORMAT " bytes where %dx%dx%d %s latents need %" G_GSIZE_FORMAT,
         map.size, self->linfo.channels, self->linfo.latent_height,
         self->linfo.latent_width, vae_dtype_name (self->linfo.dtype), need));
    gst_buffer_unmap (inbuf, &map);
    return GST_FLOW_ERROR;
  }
  if (self->linfo.dtype == VAE_DTYPE_F16) {
    for (gsize i = 0; i < self->n_latents; i++) {
      guint16 hv;
      memcpy (&hv, map.data + 2 * i, 2);
      self->latents[i] = vae_f16_to_f32 (hv);
    }
  } else {
    memcpy (self->latents, map.data, self->n_latents * sizeof (float));
  }
  gst_buffer_unmap (inbuf, &map);
  vae_latents_to_decoder_format (model, self->format, self->latents, self->nh, self->nw,
                                 self->scaling, self->shift, slot);
  return GST_FLOW_OK;
}

static GstFlowReturn
gst_vae_decode_make_output (GstVaeBase *base, const float *slot, GstBuffer **outbuf)
{
  GstVaeDecode *self = GST_VAE_DECODE (base);
  const VaeModel *model = gst_vae_base_get_model (base);
  const int w = self->linfo.width, h = self->linfo.height;
  GError *err = NULL;
  GstBuffer *buf = gst_vae_buffer_try_new (GST_VIDEO_INFO_SIZE (&self->out_info),
                                           "an output frame", &err);
  GstVideoFrame frame, rgb;

  if (!buf) {
    gst_vae_post_no_memory (GST_ELEMENT (self), w, h, 1, err->message);
    g_clear_error (&err);
    return GST_FLOW_ERROR;
  }
  if (!gst_video_frame_map (&frame, &self->out_info, buf, GST_MAP_WRITE)) {
    gst_buffer_unref (buf);
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Could not map an output frame."), (NULL));
    return GST_FLOW_ERROR;
  }
  if (!self->rgb.convert) {
    int bpp = GST_VIDEO_INFO_FORMAT (&self->out_info) == GST_VIDEO_FORMAT_RGBA ? 4 : 3;
    vae_pixels_to_rgb8 (model, slot, self->ph, self->pw, GST_VIDEO_FRAME_PLANE_DATA (&frame, 0),
                        w, h, GST_VIDEO_FRAME_PLANE_STRIDE (&frame, 0), bpp);
  } else {
    if (!gst_video_frame_map (&rgb, &self->rgb.rgb_info, self->rgb.rgb, GST_MAP_READWRITE)) {
      gst_video_frame_unmap (&frame);
      gst_buffer_unref (buf);
      GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Could not map the RGB scratch frame."),
                         (NULL));
      return GST_FLOW_ERROR;
    }
    vae_pixels_to_rgb8 (model, slot, self->ph, self->pw, GST_VIDEO_FRAME_PLANE_DATA (&rgb, 0),
                        w, h, GST_VIDEO_FRAME_PLANE_STRIDE (&rgb, 0), 3);
    gst_video_converter_frame (self->rgb.convert, &rgb, &frame);
    gst_video_frame_unmap (&rgb);
  }
  gst_video_frame_unmap (&frame);
  *outbuf = buf;
  return GST_FLOW_OK;
}

static void
gst_vae_decode_stop (GstVaeBase *base)
{
  free_stream (GST_VAE_DECODE (base));
}

static void
gst_vae_decode_finalize (GObject *object)
{
  free_stream (GST_VAE_DECODE (object));
  G_OBJECT_CLASS (gst_vae_decode_parent_class)->finalize (object);
}

static void
gst_vae_decode_init (GstVaeDecode *self)
{
  gst_vae_latent_info_init (&self->linfo);
}

static void
gst_vae_decode_class_init (GstVaeDecodeClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstVaeBaseClass *base_class = GST_VAE_BASE_CLASS (klass);

  GST_DEBUG_CATEGORY_INIT (gst_vae_decode_debug, "vaedecode", 0, "VAE decoder element");

  gobject_class->finalize = gst_vae_decode_finalize;

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class, "VAE decoder",
      "Filter/Converter/Video/Tensor",
      "Decodes diffusion-model latents back into video frames with a VAE "
      "(AutoencoderKL or tiny autoencoder), batching frames on CPU, CUDA or a remote server",
      "gst-vae developers");

  base_class->set_caps = gst_vae_decode_set_caps;
  base_class->fill_slot = gst_vae_decode_fill_slot;
  base_class->make_output = gst_vae_decode_make_output;
  base_class->stop = gst_vae_decode_stop;
}
