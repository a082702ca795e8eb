/* gst-vae: GstVaeBase, the abstract base of vaeencode and vaedecode.
 *
 * One sink and one src pad.  The base holds what both elements share: the
 * properties (backend, model, batching, engine options, factors, tiles), the model
 * (loaded on READY->PAUSED) and the engine (opened when caps are first
 * known), and the streaming: frames are converted into their slot of the
 * pending batch, the batch runs through the engine when full (or on EOS,
 * drain, or batch-timeout), and one output buffer per input frame is pushed
 * (by the src pad's task), in order, carrying the input's PTS, DTS,
 * duration, offsets and flags.  The LATENCY query adds the batching and the
 * measured processing time.
 *
 * Subclasses only convert: caps -> frame geometry, one frame in -> its slot,
 * one slot out -> a buffer. */
#pragma once
#include <gst/gst.h>
#include <gst/video/video.h>
#include "gstvaeenums.h"
#include "engine.h"

G_BEGIN_DECLS

#define GST_TYPE_VAE_BASE (gst_vae_base_get_type ())
G_DECLARE_DERIVABLE_TYPE (GstVaeBase, gst_vae_base, GST, VAE_BASE, GstElement)

typedef struct _GstVaeBatchSlot GstVaeBatchSlot;

/* Geometry of one frame as the engine sees it; set by set_caps. */
typedef struct {
  VaeDirection direction;
  int h, w;                  /* spatial size of the engine input */
  gsize in_floats;           /* floats per frame of engine input */
  gsize out_floats;          /* floats per frame of engine output */
  int fps_n, fps_d;          /* input framerate, 0/1 when unknown */
} GstVaeFrameGeometry;

struct _GstVaeBaseClass {
  GstElementClass parent_class;

  /* Called with the stream lock held and the previous batch drained.  Sets
   * GEOMETRY and the src caps (gst_pad_set_caps); may use
   * gst_vae_base_get_model.  Posts its own element error on failure. */
  gboolean (*set_caps) (GstVaeBase *base, GstCaps *caps, GstVaeFrameGeometry *geometry);
  /* Converts one input frame into SLOT (geometry.in_floats floats). */
  GstFlowReturn (*fill_slot) (GstVaeBase *base, GstBuffer *inbuf, float *slot);
  /* Makes one output buffer from SLOT (geometry.out_floats floats); the base
   * copies timestamps and flags onto it. */
  GstFlowReturn (*make_output) (GstVaeBase *base, const float *slot, GstBuffer **outbuf);
  /* Stream start and FLUSH_STOP (e.g. reseed). Optional. */
  void (*reset) (GstVaeBase *base);
  /* PAUSED->READY: free per-stream state. Optional. */
  void (*stop) (GstVaeBase *base);
  /* Adds the subclass's engine settings (e.g. vaeencode's remote-input,
   * "input=..." for backend "remote") to SETTINGS ("key=value" strings,
   * gst_vae_base_add_engine_setting) before the engine BACKEND opens;
   * the engine-options property comes after them.  Optional. */
  void (*engine_settings) (GstVaeBase *base, const char *backend, GPtrArray *settings);
};

/* Appends "KEY=VALUE" to SETTINGS (for engine_settings). */
void gst_vae_base_add_engine_setting (GPtrArray *settings, const char *key,
                                      const char *value);

/* The loaded model (valid from READY->PAUSED to PAUSED->READY). */
const VaeModel *gst_vae_base_get_model (GstVaeBase *base);
/* scaling-factor / shift-factor properties; NaN when unset
 * (scaling: negative or NaN, shift: NaN). */
double gst_vae_base_get_scaling_property (GstVaeBase *base);
double gst_vae_base_get_shift_property (GstVaeBase *base);
/* The src pad (borrowed). */
GstPad *gst_vae_base_get_srcpad (GstVaeBase *base);
/* Opens the engine if it is not open yet; FALSE with an element error posted. */
gboolean gst_vae_base_ensure_engine (GstVaeBase *base);
/* For set_property, with the object lock held: TRUE when PSPEC may not
 * change now, because the element runs (from READY->PAUSED until it is
 * back in READY) and PSPEC is not GST_PARAM_MUTABLE_PLAYING.  The caller
 * then keeps the value in use and, once unlocked, calls
 * gst_vae_base_warn_refused_change. */
gboolean gst_vae_base_change_refused (GstVaeBase *base, GParamSpec *pspec);
/* Posts the WARNING that says PSPEC kept its value (object lock not held). */
void gst_vae_base_warn_refused_change (GstVaeBase *base, GParamSpec *pspec);

/* The conversion between the stream's video frames and the packed 8-bit RGB
 * the pixel conversion (codec.h) reads and writes.  RGB and RGBA frames are
 * read and written directly: no converter, no scratch frame. */
typedef struct {
  GstVideoInfo rgb_info;       /* packed RGB at the frame's size */
  GstVideoConverter *convert;  /* NULL for RGB and RGBA frames */
  GstBuffer *rgb;              /* the RGB scratch frame, with convert */
} GstVaeRgbConversion;

/* Sets up CONV (cleared first) for frames of VIDEO: VIDEO -> RGB when
 * TO_RGB (vaeencode's input), RGB -> VIDEO otherwise (vaedecode's output).
 * The RGB side has VIDEO's framerate, pixel aspect ratio and interlace
 * mode; towards RGB also its colorimetry (full range, no matrix for YUV).
 * No dithering, one thread.  FALSE after posting an element error (CAPS,
 * when given, goes to its debug text). */
gboolean gst_vae_base_setup_rgb_conversion (GstVaeBase *base, GstVaeRgbConversion *conv,
                                            const GstVideoInfo *video, gboolean to_rgb,
                                            GstCaps *caps);
void gst_vae_rgb_conversion_clear (GstVaeRgbConversion *conv);

G_END_DECLS
