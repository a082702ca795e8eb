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

/* Mirrors VaeLatentFormat (codec.h). */
typedef enum {
  GST_VAE_LATENT_FORMAT_NORMALIZED,
  GST_VAE_LATENT_FORMAT_RAW,
} GstVaeLatentFormat;

typedef enum {
  GST_VAE_LATENT_DTYPE_FLOAT32,
  GST_VAE_LATENT_DTYPE_FLOAT16,
} GstVaeLatentDType;

/* The engine's activation precision (VaePrecision, engine.h). */
typedef enum {
  GST_VAE_PRECISION_AUTO,
  GST_VAE_PRECISION_F32,
  GST_VAE_PRECISION_BF16,
  GST_VAE_PRECISION_F16,
} GstVaePrecision;

/* What backend=remote sends for encode (VaeRemoteInput, engine.h). */
typedef enum {
  GST_VAE_REMOTE_INPUT_UINT8,
  GST_VAE_REMOTE_INPUT_FLOAT16,
  GST_VAE_REMOTE_INPUT_PNG,
} GstVaeRemoteInput;

#define GST_TYPE_VAE_BACKEND (gst_vae_backend_get_type ())
GType gst_vae_backend_get_type (void);
/* "auto", "cpu", ... as vae_engine_new takes them. */
const char *gst_vae_backend_nick (GstVaeBackend backend);

#define GST_TYPE_VAE_LATENT_MODE (gst_vae_latent_mode_get_type ())
GType gst_vae_latent_mode_get_type (void);

#define GST_TYPE_VAE_LATENT_FORMAT (gst_vae_latent_format_get_type ())
GType gst_vae_latent_format_get_type (void);
#define GST_TYPE_VAE_LATENT_DTYPE (gst_vae_latent_dtype_get_type ())
GType gst_vae_latent_dtype_get_type (void);

#define GST_TYPE_VAE_PRECISION (gst_vae_precision_get_type ())
GType gst_vae_precision_get_type (void);

#define GST_TYPE_VAE_REMOTE_INPUT (gst_vae_remote_input_get_type ())
GType gst_vae_remote_input_get_type (void);

G_END_DECLS
