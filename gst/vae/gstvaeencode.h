/* gst-vae: vaeencode, video frames to diffusion-space latents. */
#pragma once
#include "gstvaebase.h"

G_BEGIN_DECLS

#define GST_TYPE_VAE_ENCODE (gst_vae_encode_get_type ())
G_DECLARE_FINAL_TYPE (GstVaeEncode, gst_vae_encode, GST, VAE_ENCODE, GstVaeBase)

G_END_DECLS
