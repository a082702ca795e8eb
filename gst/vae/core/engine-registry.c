/* The engines this build has, chosen by meson features. */
#include "engine.h"

#ifdef VAE_HAVE_ONEDNN
extern const VaeEngineVTable vae_engine_onednn;
#endif
#ifdef VAE_HAVE_CUDA
extern const VaeEngineVTable vae_engine_cuda;
extern gboolean vae_engine_cuda_usable (void);
#endif
#ifdef VAE_HAVE_REMOTE
extern const VaeEngineVTable vae_engine_remote;
#endif

const VaeEngineVTable *const vae_engine_registry[] = {
#ifdef VAE_HAVE_ONEDNN
  &vae_engine_onednn,
#endif
#ifdef VAE_HAVE_CUDA
  &vae_engine_cuda,
#endif
#ifdef VAE_HAVE_REMOTE
  &vae_engine_remote,
#endif
  NULL,
};

gboolean
vae_engine_registry_usable (const VaeEngineVTable *vt)
{
#ifdef VAE_HAVE_CUDA
  if (vt == &vae_engine_cuda)
    return vae_engine_cuda_usable ();
#endif
  return vt != NULL;
}
