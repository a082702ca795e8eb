/* gst-vae: enum GTypes of the elements' properties. */
#pragma once
#include <glib-object.h>

G_BEGIN_DECLS

typedef enum {
  GST_VAE_BACKEND_AUTO,
  GST_VAE_BACKEND_CPU,
  GST_VAE_BACKEND_CUDA,
  GST_VAE_BACKEND_REMOTE,
} GstVaeBackend;

/* Mirrors VaeLatentMode (codec.h). */
typedef enum {
  GST_VAE_LATENT_MODE_MODE,
  GST_VAE_LATENT_MODE_SAMPLE,
  GST_VAE_LATENT_MODE_DISTRIBUTION,
} GstVaeLatentMode;

typedef enum {
  GST_VAE_LATENT_DTYPE_FLOAT32,
  GST_VAE_LATENT_DTYPE_FLOAT16,
} GstVaeLatentDType;

#define GST_TYPE_VAE_BACKEND (gst_vae_backend_get_type ())
GType gst_vae_backend_get_type (void);
/* "auto", "cpu", ... as vae_engine_new takes them. */
const char *gst_vae_backend_nick (GstVaeBackend backend);

#define GST_TYPE_VAE_LATENT_MODE (gst_vae_latent_mode_get_type ())
GType gst_vae_latent_mode_get_type (void);

#define GST_TYPE_VAE_LATENT_DTYPE (gst_vae_latent_dtype_get_type ())
GType gst_vae_latent_dtype_get_type (void);

G_END_DECLS
