#include "vae-error.h"

G_DEFINE_QUARK (vae-error-quark, vae_error)
