/* An engine module for tests/modules/test-engine-modules.sh.  It needs
 * libvae-test-absent.so.0 (absent.c), which the test leaves out, so that
 * opening it fails the way the cuda module fails without the CUDA runtime.
 * Where the test does put that library beside it, it opens and answers no
 * engine interface version (as a module of another gst-vae would). */
#include <gmodule.h>
#include "engine.h"

int vae_test_absent (void);

G_MODULE_EXPORT const VaeEngineVTable *vae_engine_module_get (guint abi_version);

const VaeEngineVTable *
vae_engine_module_get (guint abi_version)
{
  (void) vae_test_absent ();
  return NULL;
}
