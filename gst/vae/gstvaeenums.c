/* gst-vae: enum GTypes of the elements' properties. */
#include "gstvaeenums.h"

GType
gst_vae_backend_get_type (void)
{
  static gsize type = 0;
  static const GEnumValue values[] = {
    { GST_VAE_BACKEND_AUTO, "Automatic: CUDA when usable, else CPU", "auto" },
    { GST_VAE_BACKEND_CPU, "CPU (oneDNN)", "cpu" },
    { GST_VAE_BACKEND_CUDA, "CUDA (NVIDIA GPU)", "cuda" },
    { GST_VAE_BACKEND_REMOTE, "Remote server over HTTP (see endpoint)", "remote" },
    { 0, NULL, NULL },
  };
  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstVaeBackend", values);
    g_once_init_leave (&type, t);
  }
  return (GType) type;
}

const char *
gst_vae_backend_nick (GstVaeBackend backend)
{
  switch (backend) {
    case GST_VAE_BACKEND_CPU: return "cpu";
    case GST_VAE_BACKEND_CUDA: return "cuda";
    case GST_VAE_BACKEND_REMOTE: return "remote";
    case GST_VAE_BACKEND_AUTO:
    default: return "auto";
  }
}

GType
gst_vae_latent_mode_get_type (void)
{
  static gsize type = 0;
  static const GEnumValue values[] = {
    { GST_VAE_LATENT_MODE_MODE, "The distribution's mode (mean)", "mode" },
    { GST_VAE_LATENT_MODE_SAMPLE, "A seeded sample: mean + std * N(0,1)", "sample" },
    { GST_VAE_LATENT_MODE_DISTRIBUTION,
      "Scaled mean then logvar, 2C channels (C for models without logvar)",
      "distribution" },
    { 0, NULL, NULL },
  };
  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstVaeLatentMode", values);
    g_once_init_leave (&type, t);
  }
  return (GType) type;
}

GType
gst_vae_latent_format_get_type (void)
{
  static gsize type = 0;
  static const GEnumValue values[] = {
    { GST_VAE_LATENT_FORMAT_NORMALIZED,
      "What the model's diffusion pipelines use: scaled/shifted or normalised per "
      "channel (FLUX.2: 2x2 patches, 128 channels at 16x, BatchNorm statistics)",
      "normalized" },
    { GST_VAE_LATENT_FORMAT_RAW,
      "The network's own latents: no patches, no scaling, no normalisation", "raw" },
    { 0, NULL, NULL },
  };
  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstVaeLatentFormat", values);
    g_once_init_leave (&type, t);
  }
  return (GType) type;
}

GType
gst_vae_latent_dtype_get_type (void)
{
  static gsize type = 0;
  static const GEnumValue values[] = {
    { GST_VAE_LATENT_DTYPE_FLOAT32, "32-bit float", "float32" },
    { GST_VAE_LATENT_DTYPE_FLOAT16, "16-bit float (IEEE half)", "float16" },
    { 0, NULL, NULL },
  };
  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstVaeLatentDType", values);
    g_once_init_leave (&type, t);
  }
  return (GType) type;
}

GType
gst_vae_precision_get_type (void)
{
  static gsize type = 0;
  static const GEnumValue values[] = {
    { GST_VAE_PRECISION_AUTO, "The engine's default (float32 on cpu, float16 on cuda)",
      "auto" },
    { GST_VAE_PRECISION_F32, "float32", "f32" },
    { GST_VAE_PRECISION_BF16, "bfloat16 (float32 accumulation)", "bf16" },
    { GST_VAE_PRECISION_F16, "float16 (float32 accumulation)", "f16" },
    { 0, NULL, NULL },
  };
  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstVaePrecision", values);
    g_once_init_leave (&type, t);
  }
  return (GType) type;
}

GType
gst_vae_remote_input_get_type (void)
{
  static gsize type = 0;
  static const GEnumValue values[] = {
    { GST_VAE_REMOTE_INPUT_UINT8, "A raw uint8 [B,3,H,W] tensor per batch (exact pixels)",
      "uint8" },
    { GST_VAE_REMOTE_INPUT_FLOAT16, "A raw float16 [B,3,H,W] tensor in [-1,1] per batch",
      "float16" },
    { GST_VAE_REMOTE_INPUT_PNG,
      "One PNG per frame, one request each, sent concurrently (servers that take only images)",
      "png" },
    { 0, NULL, NULL },
  };
  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstVaeRemoteInput", values);
    g_once_init_leave (&type, t);
  }
  return (GType) type;
}
