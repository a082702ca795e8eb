/* placeholder while the CUDA engine is written: never usable. */
#include "engine.h"
#include "vae-error.h"

static gboolean
cuda_open (VaeEngine *engine, GError **error)
{
  g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED, "the cuda backend is not finished");
  return FALSE;
}

gboolean
vae_engine_cuda_usable (void)
{
  return FALSE;
}

const VaeEngineVTable vae_engine_cuda = {
  .name = "cuda",
  .instance_size = sizeof (VaeEngine),
  .open = cuda_open,
};
