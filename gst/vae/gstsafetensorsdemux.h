/* gst-vae: safetensorsdemux, one safetensors file in, a latent stream out. */
#pragma once
#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_SAFETENSORS_DEMUX (gst_safetensors_demux_get_type ())
G_DECLARE_FINAL_TYPE (GstSafetensorsDemux, gst_safetensors_demux, GST, SAFETENSORS_DEMUX, GstElement)

G_END_DECLS
