/* gst-vae: the "vae" plugin: vaeencode, vaedecode, safetensorsmux,
 * safetensorsdemux. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include <gst/gst.h>
#include "gstvaeelements.h"

/* The safetensors mux/demux live in their own files, written separately.
 * Their registration functions are weak references, so the plugin links and
 * loads whether or not those files define them yet; once they do
 * (GST_ELEMENT_REGISTER_DEFINE), they are registered like the others.
 * (ELF toolchains: GCC and Clang on Linux, which is what this project
 * builds with.) */
#pragma weak gst_element_register_safetensorsmux
#pragma weak gst_element_register_safetensorsdemux

static gboolean
plugin_init (GstPlugin *plugin)
{
  gboolean ret = FALSE;

  ret |= GST_ELEMENT_REGISTER (vaeencode, plugin);
  ret |= GST_ELEMENT_REGISTER (vaedecode, plugin);
  if (gst_element_register_safetensorsmux != NULL)
    ret |= GST_ELEMENT_REGISTER (safetensorsmux, plugin);
  if (gst_element_register_safetensorsdemux != NULL)
    ret |= GST_ELEMENT_REGISTER (safetensorsdemux, plugin);
  return ret;
}

GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, vae,
                   "Video frames to diffusion-model latents and back (VAE encode/decode)",
                   plugin_init, VERSION, "LGPL", GST_PACKAGE_NAME, GST_PACKAGE_ORIGIN)
