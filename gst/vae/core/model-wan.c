/* gst-vae: AutoencoderKLWan (Wan 2.1, Wan 2.2, Qwen-Image) as graphs.
 * Work in progress on branch i11: the builder lands with its golden tests. */
#include "model-private.h"

gboolean
vae_model_build_wan (VaeModel *model, VaeSafetensors *st, gboolean original,
                     JsonObject *config, const char *config_path, GError **error)
{
  (void) st; (void) original; (void) config; (void) config_path;
  g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
               "%s: AutoencoderKLWan is not supported yet", model->path);
  return FALSE;
}
