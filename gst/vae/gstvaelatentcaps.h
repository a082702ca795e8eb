/* gst-vae: latent stream caps, shared by vaeencode, vaedecode and the
 * safetensors mux/demux.
 *
 * NNStreamer's tensor convention, so other tensor elements can consume
 * them, plus our own fields:
 *   other/tensors, format=static, num_tensors=1,
 *     types=(string){float32|float16}, dimensions=(string)"W:H:C:1",
 *     framerate=(fraction)F,
 *     model=(string)NAME, scaling-factor=(double), shift-factor=(double),
 *     spatial-factor=(int), width=(int)SRC_W, height=(int)SRC_H,
 *     latent-format=(string){normalized|raw},
 *     normalization=(string){scale-shift|per-channel|patch2x2-batch-norm|raw}
 * dimensions are innermost first: one buffer is one frame of latents,
 * planar [C][H][W] (H x W = the padded frame size / spatial factor);
 * width/height are the source frame size before padding.  The factors,
 * model and source size are optional: a consumer takes what is missing from
 * its model (vaedecode: its model's spatial factor, and the padded size).
 * latent-format says whether the latents are what the model's diffusion
 * pipelines use (normalized; FLUX.2: 2x2-patchified, 128 channels at 16x)
 * or the network's own (raw); normalization names what was applied, for
 * people and other elements (vaedecode goes by latent-format, else by the
 * channel count). */
#pragma once
#include <gst/gst.h>
#include "safetensors.h"

G_BEGIN_DECLS

/* The largest spatial-factor the caps accept. */
#define GST_VAE_MAX_SPATIAL_FACTOR 64

#define GST_VAE_LATENT_CAPS_TEMPLATE \
  "other/tensors, format=(string)static, num_tensors=(int)1, " \
  "types=(string){ float32, float16 }"

typedef struct {
  VaeDType dtype;            /* VAE_DTYPE_F32 or VAE_DTYPE_F16 */
  int channels;              /* C */
  int latent_width;          /* W of dimensions */
  int latent_height;         /* H of dimensions */
  int width, height;         /* source frame size */
  int spatial_factor;
  double scaling_factor, shift_factor;
  char *model;               /* owned; may be NULL */
  int fps_n, fps_d;          /* 0/1 when unknown */
  int latent_format;         /* VaeLatentFormat, -1 when the caps do not say */
  const char *normalization; /* static (vae_latent_normalization_name); NULL: none */
} GstVaeLatentInfo;

void gst_vae_latent_info_init (GstVaeLatentInfo *info);
void gst_vae_latent_info_clear (GstVaeLatentInfo *info);
void gst_vae_latent_info_copy (GstVaeLatentInfo *dst, const GstVaeLatentInfo *src);
/* Fixed caps for INFO. */
GstCaps *gst_vae_latent_info_to_caps (const GstVaeLatentInfo *info);
/* Parses fixed caps; FALSE with ERROR naming the missing or bad field. */
gboolean gst_vae_latent_info_from_caps (GstVaeLatentInfo *info, const GstCaps *caps,
                                        GError **error);
/* Bytes of one frame of latents. */
gsize gst_vae_latent_info_frame_size (const GstVaeLatentInfo *info);

G_END_DECLS
