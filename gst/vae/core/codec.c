#include "codec.h"
#include <math.h>

int
vae_padded_size (int size, int factor)
{
  return (size + factor - 1) / factor * factor;
}

int
vae_latent_channels_for_mode (const VaeModel *model, VaeLatentMode mode)
{
  if (mode == VAE_LATENT_DISTRIBUTION && model->encoder_outputs_moments)
    return 2 * model->latent_channels;
  return model->latent_channels;
}

void
vae_pixels_from_rgb8 (const VaeModel *model, const guint8 *src, int width,
                      int height, int stride, int bytes_per_pixel,
                      float *dst, int ph, int pw)
{
  /* [0,255] -> [image_min, 1]: KL models take u8/255*2-1, raw TAESD u8/255;
   * the division comes first so the result is bit-exact with the reference. */
  const float span = 1.0f - model->image_min;
  const gsize plane = (gsize) ph * pw;
  for (int y = 0; y < ph; y++) {
    const guint8 *row = src + (gsize) MIN (y, height - 1) * stride;
    for (int x = 0; x < pw; x++) {
      const guint8 *p = row + (gsize) MIN (x, width - 1) * bytes_per_pixel;
      for (int c = 0; c < 3; c++)
        dst[c * plane + (gsize) y * pw + x] = p[c] / 255.0f * span + model->image_min;
    }
  }
}

static inline guint8
to_u8 (float v, float image_min)
{
  /* diffusers: (x / 2 + 0.5).clamp(0, 1) * 255, then round. */
  float x01 = image_min < 0 ? v / 2.0f + 0.5f : v;
  x01 = x01 < 0.0f ? 0.0f : (x01 > 1.0f ? 1.0f : x01);
  return (guint8) lrintf (x01 * 255.0f);
}

void
vae_pixels_to_rgb8 (const VaeModel *model, const float *src, int ph, int pw,
                    guint8 *dst, int width, int height, int stride,
                    int bytes_per_pixel)
{
  const gsize plane = (gsize) ph * pw;
  for (int y = 0; y < height; y++) {
    guint8 *row = dst + (gsize) y * stride;
    for (int x = 0; x < width; x++) {
      guint8 *p = row + (gsize) x * bytes_per_pixel;
      for (int c = 0; c < 3; c++)
        p[c] = to_u8 (src[c * plane + (gsize) y * pw + x], model->image_min);
      if (bytes_per_pixel == 4)
        p[3] = 255;
    }
  }
}

/* Standard normal draws by Box-Muller over GRand, so a seed gives the same
 * latents on every machine. */
static double
gaussian (GRand *rng)
{
  double u1 = g_rand_double (rng), u2 = g_rand_double (rng);
  if (u1 < 1e-300)
    u1 = 1e-300;
  return sqrt (-2.0 * log (u1)) * cos (2.0 * G_PI * u2);
}

void
vae_latents_from_encoder (const VaeModel *model, const float *enc, int h, int w,
                          VaeLatentMode mode, GRand *rng, double scaling,
                          double shift, float *dst)
{
  const gsize n = (gsize) model->latent_channels * h * w;
  const float *mean = enc;
  const float *logvar = model->encoder_outputs_moments ? enc + n : NULL;

  const gsize plane = (gsize) h * w;
  for (gsize i = 0; i < n; i++) {
    double m = mean[i];
    if (mode == VAE_LATENT_SAMPLE && logvar) {
      double lv = CLAMP (logvar[i], -30.0f, 20.0f);
      m += exp (0.5 * lv) * gaussian (rng);
    }
    if (model->latents_mean) {
      /* Per-channel statistics (Wan) replace the scalar pair. */
      gsize c = i / plane;
      dst[i] = (float) ((m - model->latents_mean[c]) / model->latents_std[c]);
    } else {
      dst[i] = (float) ((m - shift) * scaling);
    }
  }
  if (mode == VAE_LATENT_DISTRIBUTION && logvar)
    for (gsize i = 0; i < n; i++)
      dst[n + i] = CLAMP (logvar[i], -30.0f, 20.0f);
}

void
vae_latents_to_decoder (const float *z, gsize n_elements, double scaling,
                        double shift, float *dst)
{
  for (gsize i = 0; i < n_elements; i++)
    dst[i] = (float) (z[i] / scaling + shift);
}

void
vae_latents_to_decoder_frame (const VaeModel *model, const float *z, int h, int w,
                              double scaling, double shift, float *dst)
{
  const gsize plane = (gsize) h * w;
  if (!model->latents_mean) {
    vae_latents_to_decoder (z, plane * model->latent_channels, scaling, shift, dst);
    return;
  }
  for (int c = 0; c < model->latent_channels; c++)
    for (gsize p = 0; p < plane; p++)
      dst[c * plane + p] = (float) (z[c * plane + p] * (double) model->latents_std[c]
                                    + model->latents_mean[c]);
}
