/* gst-vae: the elements plugin.c registers. */
#pragma once
#include <gst/gst.h>

G_BEGIN_DECLS

GST_ELEMENT_REGISTER_DECLARE (vaeencode);
GST_ELEMENT_REGISTER_DECLARE (vaedecode);
GST_ELEMENT_REGISTER_DECLARE (safetensorsmux);
GST_ELEMENT_REGISTER_DECLARE (safetensorsdemux);

G_END_DECLS
