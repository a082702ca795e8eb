/* gst-vae: vaeencode.
 *
 * SECTION:element-vaeencode
 * @title: vaeencode
 * @see_also: vaedecode, safetensorsmux
 *
 * Encodes video frames into diffusion-model latents with a VAE (an
 * AutoencoderKL such as SD's or FLUX.1's, or a tiny autoencoder such as
 * TAESD or TAEF2).  Input is raw video in RGB, RGBA, BGRx, BGRA, I420 or
 * NV12 of any size and framerate; the element converts it to the model's
 * input range itself (no videoconvert needed) and pads frames whose size is
 * not a multiple of the model's spatial factor by repeating the last row and
 * column.  Every input frame gives one buffer of latents with the same
 * timestamps, whatever the batch size.
 *
 * With `tile-size` set, frames larger than that many pixels on either side
 * are encoded in overlapping tiles (at least `tile-overlap` pixels, default
 * 64) whose encoder outputs (mean and logvar) are blended linearly before
 * the latent mode is applied; memory then follows the tile, not the frame.
 * Models with GroupNorm (AutoencoderKL, TAEF2) normalise each tile on its
 * own, so tiled latents are close to, not equal to, untiled ones.
 *
 * The output follows NNStreamer's tensor caps
 * (`other/tensors,format=static,num_tensors=1,types=float32,dimensions=W:H:C:1`)
 * plus `model`, `scaling-factor`, `shift-factor`, `spatial-factor` and the
 * source `width`/`height`, `latent-format` and `normalization`.  Latents
 * are diffusion-space by default (`latent-format=normalized`): `(mean -
 * shift) * scaling`, or per channel by the model's statistics (Wan); for
 * FLUX.2 (AutoencoderKLFlux2) the FLUX.2 pipelines' latents: the mode in
 * 2x2 patches (channel c*4 + dy*2 + dx), `(x - bn.running_mean) /
 * sqrt(bn.running_var + batch_norm_eps)`, 128 channels at spatial factor 16
 * (frames are padded to 16).  `latent-format=raw` gives the network's own
 * latents (FLUX.2: 32 channels at 8x) with no scaling or normalisation.
 *
 * With `backend=remote` the frames go to a Hugging Face Hybrid Inference
 * server (such as this project's vae-server) at `endpoint` (several URLs,
 * comma-separated, share the load), `batch-size` frames a request and up to
 * `max-inflight` requests at once.  `remote-input` says what is sent:
 * `uint8` (default, a raw [B,3,H,W] tensor of the 8-bit pixels), `float16`
 * (a raw [B,3,H,W] tensor in [-1,1]) or `png` (one PNG per frame, one
 * request each, sent concurrently).  The server returns the distribution's
 * mode (remote encode never samples).  `model` may then also be a preset,
 * `sd`, `sdxl`, `sd3` or `flux`: the public model's channels and factors,
 * no weights.  `token` (write-only; default: the `HF_TOKEN` environment
 * variable) goes out as `Authorization: Bearer`, and is never printed;
 * `timeout` (seconds per request, default 60) and `retries` (default 3,
 * with exponential backoff, for connection errors, timeouts, 429, 502, 503
 * and 504) bound each request; left unset they come from
 * `VAE_REMOTE_TIMEOUT_MS` and `VAE_REMOTE_RETRIES` when those are set.
 * These properties map onto the remote engine's settings;
 * `engine-options="key=value,..."` gives any engine's settings directly and
 * wins over them (docs/engine-settings.md lists them).
 *
 * The latency reported is the batching (the time to fill a batch at the
 * stream's framerate, or `batch-timeout`) plus the measured processing time
 * (95th percentile of the last 32 batches, with headroom); a LATENCY message
 * is posted when processing gets slower than that.  Output buffers are pushed
 * from the element's own thread (the src pad's task).
 *
 * Only `batch-timeout` and `max-inflight` may change while the element runs;
 * in PAUSED or PLAYING a change of any other property is refused with a
 * WARNING message, and the property keeps the value in use.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 videotestsrc num-buffers=30 ! vaeencode model=/path/to/taef2 ! fakesink
 * ]|
 * Encodes 30 frames with TAEF2 on the best available engine.
 * |[
 * gst-launch-1.0 filesrc location=in.png ! pngdec ! vaeencode model=/path/to/taef2 ! safetensorsmux ! filesink location=z.safetensors
 * ]|
 * Writes the latents of a picture to a safetensors file.
 * |[
 * gst-launch-1.0 videotestsrc num-buffers=32 ! video/x-raw,width=256,height=256 ! vaeencode model=sd backend=remote endpoint=http://127.0.0.1:8000/encode batch-size=8 max-inflight=4 ! fakesink
 * ]|
 * Encodes on a vae-server (`vae-server --model /path/to/sd-vae --port 8000`)
 * with the SD preset: 8 frames a request, 4 requests in flight.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "gstvaeencode.h"
#include "gstvaealloc.h"
#include "gstvaeelements.h"
#include "gstvaelatentcaps.h"
#include "codec.h"
#include "safetensors.h"
#include "vae-error.h"
#include <gst/video/video.h>
#include <math.h>
#include <string.h>

GST_DEBUG_CATEGORY_STATIC (gst_vae_encode_debug);
#define GST_CAT_DEFAULT gst_vae_encode_debug

#define DEFAULT_LATENT_MODE GST_VAE_LATENT_MODE_MODE
#define DEFAULT_SEED 0
#define DEFAULT_LATENT_DTYPE GST_VAE_LATENT_DTYPE_FLOAT32
#define DEFAULT_LATENT_FORMAT GST_VAE_LATENT_FORMAT_NORMALIZED
#define DEFAULT_REMOTE_INPUT GST_VAE_REMOTE_INPUT_UINT8

enum {
  PROP_0,
  PROP_LATENT_MODE,
  PROP_SEED,
  PROP_LATENT_DTYPE,
  PROP_REMOTE_INPUT,
  PROP_LATENT_FORMAT,
};

struct _GstVaeEncode {
  GstVaeBase parent;

  /* Properties, under the object lock. */
  GstVaeLatentMode latent_mode;
  guint64 seed;
  GstVaeLatentDType latent_dtype;
  GstVaeRemoteInput remote_input;
  GstVaeLatentFormat latent_format;

  /* Stream state (stream lock). */
  GstVaeLatentMode mode;       /* as configured at caps time */
  VaeLatentFormat format;
  int olh, olw;                /* latent size in FORMAT (lh, lw: the network's) */
  GstVaeLatentDType dtype;
  GstVideoInfo vinfo;
  GstVaeRgbConversion rgb;     /* input -> RGB */
  int ph, pw, lh, lw;
  int enc_c, out_c;
  double scaling, shift;
  GRand *rng;
  float *scratch;              /* out_c * lh * lw floats */
};

G_DEFINE_TYPE (GstVaeEncode, gst_vae_encode, GST_TYPE_VAE_BASE)
GST_ELEMENT_REGISTER_DEFINE (vaeencode, "vaeencode", GST_RANK_NONE, GST_TYPE_VAE_ENCODE)

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE ("{ RGB, RGBA, BGRx, BGRA, I420, NV12 }")));

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_VAE_LATENT_CAPS_TEMPLATE));

static void
free_stream (GstVaeEncode *self)
{
  gst_vae_rgb_conversion_clear (&self->rgb);
  g_clear_pointer (&self->scratch, g_free);
}

static gboolean
gst_vae_encode_set_caps (GstVaeBase *base, GstCaps *caps, GstVaeFrameGeometry *geom)
{
  GstVaeEncode *self = GST_VAE_ENCODE (base);
  const VaeModel *model = gst_vae_base_get_model (base);
  GstVaeLatentInfo li;
  GstVideoInfo vinfo;
  GError *err = NULL;
  double prop;

  if (!gst_video_info_from_caps (&vinfo, caps)) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("Invalid video caps."),
                       ("could not parse %" GST_PTR_FORMAT, caps));
    return FALSE;
  }
  if (!vae_model_has_half (model, TRUE)) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("Model '%s' has no encoder.", model->name),
        ("%s holds only a decoder; give vaeencode a model with an encoder", model->path));
    return FALSE;
  }
  free_stream (self);
  self->vinfo = vinfo;

  GST_OBJECT_LOCK (self);
  self->mode = self->latent_mode;
  self->dtype = self->latent_dtype;
  self->format = (VaeLatentFormat) self->latent_format;
  GST_OBJECT_UNLOCK (self);
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

  /* Frames are padded to the format's factor (FLUX.2 normalised: 16), the
   * network runs at its own (8), and the codec patchifies. */
  const int f = vae_latent_format_factor (model, self->format);
  const int w = GST_VIDEO_INFO_WIDTH (&vinfo), h = GST_VIDEO_INFO_HEIGHT (&vinfo);
  self->ph = vae_padded_size (h, f);
  self->pw = vae_padded_size (w, f);
  self->lh = self->ph / model->spatial_factor;
  self->lw = self->pw / model->spatial_factor;
  self->olh = self->ph / f;
  self->olw = self->pw / f;
  self->enc_c = vae_engine_output_channels (model, VAE_DIRECTION_ENCODE);
  self->out_c = vae_latent_format_channels_for_mode (model, self->format,
                                                     (VaeLatentMode) self->mode);
  if (self->enc_c < model->latent_channels) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("Model '%s' is inconsistent.", model->name),
        ("its encoder gives %d channels, fewer than its %d latent channels",
         self->enc_c, model->latent_channels));
    return FALSE;
  }

  prop = gst_vae_base_get_scaling_property (base);
  self->scaling = isnan (prop) ? model->scaling_factor : prop;
  prop = gst_vae_base_get_shift_property (base);
  self->shift = isnan (prop) ? model->shift_factor : prop;

  if (!gst_vae_base_setup_rgb_conversion (base, &self->rgb, &vinfo, TRUE, caps))
    return FALSE;
  self->scratch = vae_try_alloc ((gsize) self->out_c * self->olh * self->olw, sizeof (float),
                                 "the latent scratch frame", &err);
  if (err) {
    gst_vae_post_no_memory (GST_ELEMENT (self), w, h, 1, err->message);
    g_clear_error (&err);
    return FALSE;
  }

  gst_vae_latent_info_init (&li);
  li.dtype = self->dtype == GST_VAE_LATENT_DTYPE_FLOAT16 ? VAE_DTYPE_F16 : VAE_DTYPE_F32;
  li.channels = self->out_c;
  li.latent_width = self->olw;
  li.latent_height = self->olh;
  li.latent_format = self->format;
  li.normalization = vae_latent_normalization_name (model, self->format);
  li.width = w;
  li.height = h;
  li.spatial_factor = f;
  li.scaling_factor = self->scaling;
  li.shift_factor = self->shift;
  li.model = g_strdup (model->name);
  li.fps_n = GST_VIDEO_INFO_FPS_N (&vinfo);
  li.fps_d = GST_VIDEO_INFO_FPS_D (&vinfo);
  GstCaps *out = gst_vae_latent_info_to_caps (&li);
  gst_vae_latent_info_clear (&li);
  GST_DEBUG_OBJECT (self, "src caps %" GST_PTR_FORMAT, out);
  gboolean ok = gst_pad_set_caps (gst_vae_base_get_srcpad (base), out);
  gst_caps_unref (out);
  if (!ok) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("Downstream refused the latent caps."),
                       ("%dx%dx%d latents of model %s", self->olw, self->olh, self->out_c,
                        model->name));
    return FALSE;
  }

  geom->direction = VAE_DIRECTION_ENCODE;
  geom->h = self->ph;
  geom->w = self->pw;
  geom->in_floats = (gsize) model->image_channels * self->ph * self->pw;
  geom->out_floats = (gsize) self->enc_c * self->lh * self->lw;
  geom->fps_n = GST_VIDEO_INFO_FPS_N (&vinfo);
  geom->fps_d = GST_VIDEO_INFO_FPS_D (&vinfo);
  return TRUE;
}

static GstFlowReturn
gst_vae_encode_fill_slot (GstVaeBase *base, GstBuffer *inbuf, float *slot)
{
  GstVaeEncode *self = GST_VAE_ENCODE (base);
  const VaeModel *model = gst_vae_base_get_model (base);
  GstVideoFrame frame;
  const int w = GST_VIDEO_INFO_WIDTH (&self->vinfo), h = GST_VIDEO_INFO_HEIGHT (&self->vinfo);

  if (!gst_video_frame_map (&frame, &self->vinfo, inbuf, GST_MAP_READ)) {
    GST_ELEMENT_ERROR (self, STREAM, FORMAT, ("Could not map an input frame."),
        ("buffer of %" G_GSIZE_FORMAT " bytes for %dx%d %s", gst_buffer_get_size (inbuf),
         w, h, gst_video_format_to_string (GST_VIDEO_INFO_FORMAT (&self->vinfo))));
    return GST_FLOW_ERROR;
  }
  if (!self->rgb.convert) {
    int bpp = GST_VIDEO_INFO_FORMAT (&self->vinfo) == GST_VIDEO_FORMAT_RGBA ? 4 : 3;
    vae_pixels_from_rgb8 (model, GST_VIDEO_FRAME_PLANE_DATA (&frame, 0), w, h,
                          GST_VIDEO_FRAME_PLANE_STRIDE (&frame, 0), bpp, slot,
                          self->ph, self->pw);
  } else {
    GstVideoFrame rgb;
    if (!gst_video_frame_map (&rgb, &self->rgb.rgb_info, self->rgb.rgb, GST_MAP_READWRITE)) {
      gst_video_frame_unmap (&frame);
      GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Could not map the RGB scratch frame."),
                         (NULL));
      return GST_FLOW_ERROR;
    }
    gst_video_converter_frame (self->rgb.convert, &frame, &rgb);
    vae_pixels_from_rgb8 (model, GST_VIDEO_FRAME_PLANE_DATA (&rgb, 0), w, h,
                          GST_VIDEO_FRAME_PLANE_STRIDE (&rgb, 0), 3, slot, self->ph, self->pw);
    gst_video_frame_unmap (&rgb);
  }
  gst_video_frame_unmap (&frame);
  return GST_FLOW_OK;
}

static GstFlowReturn
gst_vae_encode_make_output (GstVaeBase *base, const float *slot, GstBuffer **outbuf)
{
  GstVaeEncode *self = GST_VAE_ENCODE (base);
  const VaeModel *model = gst_vae_base_get_model (base);
  const gsize n = (gsize) self->out_c * self->olh * self->olw;
  const gboolean f16 = self->dtype == GST_VAE_LATENT_DTYPE_FLOAT16;
  GError *err = NULL;
  GstBuffer *buf = gst_vae_buffer_try_new (n * (f16 ? 2 : 4), "a latent frame", &err);
  GstMapInfo map;

  if (!buf) {
    gst_vae_post_no_memory (GST_ELEMENT (self), GST_VIDEO_INFO_WIDTH (&self->vinfo),
                            GST_VIDEO_INFO_HEIGHT (&self->vinfo), 1, err->message);
    g_clear_error (&err);
    return GST_FLOW_ERROR;
  }
  if (!gst_buffer_map (buf, &map, GST_MAP_WRITE)) {
    gst_buffer_unref (buf);
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Could not map a latent buffer."), (NULL));
    return GST_FLOW_ERROR;
  }
  vae_latents_from_encoder_format (model, self->format, slot, self->lh, self->lw,
                                   (VaeLatentMode) self->mode, self->rng, self->scaling,
                                   self->shift, self->scratch);
  if (f16) {
    guint16 *dst = (guint16 *) map.data;
    for (gsize i = 0; i < n; i++)
      dst[i] = vae_f32_to_f16 (self->scratch[i]);
  } else {
    memcpy (map.data, self->scratch, n * sizeof (float));
  }
  gst_buffer_unmap (buf, &map);
  *outbuf = buf;
  return GST_FLOW_OK;
}

static void
gst_vae_encode_reset (GstVaeBase *base)
{
  GstVaeEncode *self = GST_VAE_ENCODE (base);
  guint64 seed;
  guint32 words[2];

  GST_OBJECT_LOCK (self);
  seed = self->seed;
  GST_OBJECT_UNLOCK (self);
  words[0] = (guint32) seed;
  words[1] = (guint32) (seed >> 32);
  g_clear_pointer (&self->rng, g_rand_free);
  self->rng = g_rand_new_with_seed_array (words, 2);
}

static void
gst_vae_encode_engine_settings (GstVaeBase *base, const char *backend, GPtrArray *settings)
{
  GstVaeEncode *self = GST_VAE_ENCODE (base);
  GstVaeRemoteInput input;

  if (strcmp (backend, "remote") != 0)
    return;
  GST_OBJECT_LOCK (self);
  input = self->remote_input;
  GST_OBJECT_UNLOCK (self);
  gst_vae_base_add_engine_setting (settings, "input",
                                   input == GST_VAE_REMOTE_INPUT_FLOAT16 ? "float16"
                                   : input == GST_VAE_REMOTE_INPUT_PNG ? "png" : "uint8");
}

static void
gst_vae_encode_stop (GstVaeBase *base)
{
  GstVaeEncode *self = GST_VAE_ENCODE (base);
  free_stream (self);
  g_clear_pointer (&self->rng, g_rand_free);
}

static void
gst_vae_encode_set_property (GObject *object, guint prop_id, const GValue *value,
                             GParamSpec *pspec)
{
  GstVaeEncode *self = GST_VAE_ENCODE (object);

  GST_OBJECT_LOCK (self);
  if (gst_vae_base_change_refused (GST_VAE_BASE (self), pspec)) {
    GST_OBJECT_UNLOCK (self);
    gst_vae_base_warn_refused_change (GST_VAE_BASE (self), pspec);
    return;
  }
  switch (prop_id) {
    case PROP_LATENT_MODE: self->latent_mode = g_value_get_enum (value); break;
    case PROP_SEED: self->seed = g_value_get_uint64 (value); break;
    case PROP_LATENT_DTYPE: self->latent_dtype = g_value_get_enum (value); break;
    case PROP_REMOTE_INPUT: self->remote_input = g_value_get_enum (value); break;
    case PROP_LATENT_FORMAT: self->latent_format = g_value_get_enum (value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec); break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_vae_encode_get_property (GObject *object, guint prop_id, GValue *value,
                             GParamSpec *pspec)
{
  GstVaeEncode *self = GST_VAE_ENCODE (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_LATENT_MODE: g_value_set_enum (value, self->latent_mode); break;
    case PROP_SEED: g_value_set_uint64 (value, self->seed); break;
    case PROP_LATENT_DTYPE: g_value_set_enum (value, self->latent_dtype); break;
    case PROP_REMOTE_INPUT: g_value_set_enum (value, self->remote_input); break;
    case PROP_LATENT_FORMAT: g_value_set_enum (value, self->latent_format); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec); break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_vae_encode_finalize (GObject *object)
{
  GstVaeEncode *self = GST_VAE_ENCODE (object);
  free_stream (self);
  g_clear_pointer (&self->rng, g_rand_free);
  G_OBJECT_CLASS (gst_vae_encode_parent_class)->finalize (object);
}

static void
gst_vae_encode_init (GstVaeEncode *self)
{
  self->latent_mode = DEFAULT_LATENT_MODE;
  self->seed = DEFAULT_SEED;
  self->latent_dtype = DEFAULT_LATENT_DTYPE;
  self->remote_input = DEFAULT_REMOTE_INPUT;
  self->latent_format = DEFAULT_LATENT_FORMAT;
}

static void
gst_vae_encode_class_init (GstVaeEncodeClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstVaeBaseClass *base_class = GST_VAE_BASE_CLASS (klass);
  const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY;

  GST_DEBUG_CATEGORY_INIT (gst_vae_encode_debug, "vaeencode", 0, "VAE encoder element");

  gobject_class->set_property = gst_vae_encode_set_property;
  gobject_class->get_property = gst_vae_encode_get_property;
  gobject_class->finalize = gst_vae_encode_finalize;

  g_object_class_install_property (gobject_class, PROP_LATENT_MODE,
      g_param_spec_enum ("latent-mode", "Latent mode",
          "What to emit: the distribution's mode, a seeded sample, or the "
          "distribution (scaled mean then logvar, 2C channels; KL models)",
          GST_TYPE_VAE_LATENT_MODE, DEFAULT_LATENT_MODE, rw));
  g_object_class_install_property (gobject_class, PROP_SEED,
      g_param_spec_uint64 ("seed", "Seed",
          "Random seed of latent-mode=sample (reseeded at each stream start and flush: "
          "same seed, same output)", 0, G_MAXUINT64, DEFAULT_SEED, rw));
  g_object_class_install_property (gobject_class, PROP_LATENT_DTYPE,
      g_param_spec_enum ("latent-dtype", "Latent dtype", "Element type of the latents",
          GST_TYPE_VAE_LATENT_DTYPE, DEFAULT_LATENT_DTYPE, rw));
  g_object_class_install_property (gobject_class, PROP_REMOTE_INPUT,
      g_param_spec_enum ("remote-input", "Remote input",
          "What backend=remote sends: a raw uint8 tensor per batch, a raw float16 "
          "tensor in [-1,1] per batch, or one PNG per frame (one request each)",
          GST_TYPE_VAE_REMOTE_INPUT, DEFAULT_REMOTE_INPUT, rw));

  g_object_class_install_property (gobject_class, PROP_LATENT_FORMAT,
      g_param_spec_enum ("latent-format", "Latent format",
          "Which latents: the model's pipeline's (normalized; FLUX.2: 2x2-patchified "
          "128 channels at 16x, normalised by the BatchNorm statistics) or the "
          "network's own (raw; FLUX.2: 32 channels at 8x, no scaling)",
          GST_TYPE_VAE_LATENT_FORMAT, DEFAULT_LATENT_FORMAT, rw));
  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class, "VAE encoder",
      "Filter/Converter/Video/Tensor",
      "Encodes video frames into diffusion-model latents with a VAE "
      "(AutoencoderKL or tiny autoencoder), batching frames on CPU, CUDA or a remote server",
      "gst-vae developers");

  base_class->set_caps = gst_vae_encode_set_caps;
  base_class->fill_slot = gst_vae_encode_fill_slot;
  base_class->make_output = gst_vae_encode_make_output;
  base_class->reset = gst_vae_encode_reset;
  base_class->stop = gst_vae_encode_stop;
  base_class->engine_settings = gst_vae_encode_engine_settings;

  gst_type_mark_as_plugin_api (GST_TYPE_VAE_LATENT_MODE, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_VAE_LATENT_FORMAT, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_VAE_LATENT_DTYPE, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_VAE_REMOTE_INPUT, 0);
}
