/* gst-vae: vaedecode, diffusion-space latents to video frames. */
#pragma once
#include "gstvaebase.h"

G_BEGIN_DECLS

#define GST_TYPE_VAE_DECODE (gst_vae_decode_get_type ())
G_DECLARE_FINAL_TYPE (GstVaeDecode, gst_vae_decode, GST, VAE_DECODE, GstVaeBase)

G_END_DECLS
