/* gst-vae: the error domain shared by the core and the engines. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

#define VAE_ERROR (vae_error_quark ())
GQuark vae_error_quark (void);

typedef enum {
  VAE_ERROR_IO,            /* a file could not be opened, read or written */
  VAE_ERROR_FORMAT,        /* a file is corrupt or not what it claims to be */
  VAE_ERROR_MODEL,         /* a model is missing a tensor, or one is misshapen */
  VAE_ERROR_UNSUPPORTED,   /* valid input this build cannot handle */
  VAE_ERROR_ENGINE,        /* the engine failed while running */
  VAE_ERROR_ARGUMENT,      /* a caller passed a bad value */
} VaeErrorCode;

G_END_DECLS
