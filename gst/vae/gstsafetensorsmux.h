/* gst-vae: safetensorsmux, a latent stream in, one safetensors file out. */
#pragma once
#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_SAFETENSORS_MUX (gst_safetensors_mux_get_type ())
G_DECLARE_FINAL_TYPE (GstSafetensorsMux, gst_safetensors_mux, GST, SAFETENSORS_MUX, GstElement)

G_END_DECLS
