/* gst-vae: TAEHV (taew2_1, taew2_2, taehv) as graphs.
 * Work in progress on branch i11: the builder lands with its golden tests. */
#include "model-private.h"

gboolean
vae_model_build_taehv (VaeModel *model, VaeSafetensors *st, GError **error)
{
  (void) st;
  g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
               "%s: TAEHV is not supported yet", model->path);
  return FALSE;
}
