/* gst-vae: the entry point of an engine module (libvae-engine-NAME.so).
 * Built into each module with -DVAE_ENGINE_MODULE_VTABLE=<its vtable>; the
 * module's version script exports this one symbol (engine-module.map). */
#include <gmodule.h>
#include "engine.h"

#ifndef VAE_ENGINE_MODULE_VTABLE
#error "build with -DVAE_ENGINE_MODULE_VTABLE=<the engine's VaeEngineVTable>"
#endif

extern const VaeEngineVTable VAE_ENGINE_MODULE_VTABLE;

G_MODULE_EXPORT const VaeEngineVTable *vae_engine_module_get (guint abi_version);

const VaeEngineVTable *
vae_engine_module_get (guint abi_version)
{
  return abi_version == VAE_ENGINE_ABI_VERSION ? &VAE_ENGINE_MODULE_VTABLE : NULL;
}
