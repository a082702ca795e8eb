#include "codec.h"
#include <math.h>
#include <string.h>

const char *
vae_latent_format_name (VaeLatentFormat format)
{
  return format == VAE_LATENT_FORMAT_RAW ? "raw" : "normalized";
}

gboolean
vae_latent_format_from_name (const char *name, VaeLatentFormat *format)
{
  if (name && strcmp (name, "normalized") == 0)
    *format = VAE_LATENT_FORMAT_NORMALIZED;
  else if (name && strcmp (name, "raw") == 0)
    *format = VAE_LATENT_FORMAT_RAW;
  else
    return FALSE;
  return TRUE;
}

int
vae_latent_format_patch (const VaeModel *model, VaeLatentFormat format)
{
  return format == VAE_LATENT_FORMAT_NORMALIZED && model->latent_patch > 1
      ? model->latent_patch : 1;
}

int
vae_latent_format_channels (const VaeModel *model, VaeLatentFormat format)
{
  int p = vae_latent_format_patch (model, format);
  return model->latent_channels * p * p;
}

int
vae_latent_format_factor (const VaeModel *model, VaeLatentFormat format)
{
  return model->spatial_factor * vae_latent_format_patch (model, format);
}

int
vae_latent_format_channels_for_mode (const VaeModel *model, VaeLatentFormat format,
                                     VaeLatentMode mode)
{
  int c = vae_latent_format_channels (model, format);
  return mode == VAE_LATENT_DISTRIBUTION && model->encoder_outputs_moments ? 2 * c : c;
}

gboolean
vae_latent_format_for_channels (const VaeModel *model, int channels,
                                VaeLatentFormat *format, gboolean *distribution)
{
  static const VaeLatentFormat order[] = { VAE_LATENT_FORMAT_NORMALIZED,
                                           VAE_LATENT_FORMAT_RAW };
  for (guint i = 0; i < G_N_ELEMENTS (order); i++) {
    int c = vae_latent_format_channels (model, order[i]);
    if (channels == c || (model->encoder_outputs_moments && channels == 2 * c)) {
      *format = order[i];
      if (distribution)
        *distribution = channels != c;
      return TRUE;
    }
  }
  return FALSE;
}

const char *
vae_latent_normalization_name (const VaeModel *model, VaeLatentFormat format)
{
  if (format == VAE_LATENT_FORMAT_RAW)
    return "raw";
  if (!model->latents_mean)
    return "scale-shift";
  return vae_latent_format_patch (model, format) > 1 ? "patch2x2-batch-norm" : "per-channel";
}

int
vae_padded_size (int size, int factor)
{
  return (size + factor - 1) / factor * factor;
}

int
vae_latent_channels_for_mode (const VaeModel *model, VaeLatentMode mode)
{
  return vae_latent_format_channels_for_mode (model, VAE_LATENT_FORMAT_NORMALIZED, mode);
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

/* Index in the network's latents [C, H, W] of element I of the patchified
 * tensor [C*p*p, H/p, W/p] (channel c*p*p + dy*p + dx). */
static inline gsize
unpatch_index (gsize i, int p, int h, int w)
{
  if (p == 1)
    return i;
  const int hp = h / p, wp = w / p;
  const gsize plane = (gsize) hp * wp;
  gsize oc = i / plane, r = i % plane;
  int y = (int) (r / wp), x = (int) (r % wp);
  int c = (int) (oc / (p * p)), dy = (int) (oc / p % p), dx = (int) (oc % p);
  return ((gsize) c * h + (gsize) y * p + dy) * w + (gsize) x * p + dx;
}

void
vae_latents_patchify (const float *src, int c, int h, int w, int p, float *dst)
{
  const gsize n = (gsize) c * h * w;
  for (gsize i = 0; i < n; i++)
    dst[i] = src[unpatch_index (i, p, h, w)];
}

void
vae_latents_unpatchify (const float *src, int c, int h, int w, int p, float *dst)
{
  const gsize n = (gsize) c * h * w;
  for (gsize i = 0; i < n; i++)
    dst[unpatch_index (i, p, h, w)] = src[i];
}

void
vae_latents_from_encoder_format (const VaeModel *model, VaeLatentFormat format,
                                 const float *enc, int h, int w, VaeLatentMode mode,
                                 GRand *rng, double scaling, double shift, float *dst)
{
  const gsize n = (gsize) model->latent_channels * h * w;
  const float *mean = enc;
  const float *logvar = model->encoder_outputs_moments ? enc + n : NULL;
  const int p = vae_latent_format_patch (model, format);
  const gboolean raw = format == VAE_LATENT_FORMAT_RAW;
  const gsize plane = (gsize) (h / p) * (w / p);

  /* The sample's noise is drawn in the network's order, so a seed gives
   * the same latents in both formats. */
  g_autofree float *sampled = NULL;
  if (mode == VAE_LATENT_SAMPLE && logvar) {
    sampled = g_new (float, n);
    for (gsize i = 0; i < n; i++) {
      double lv = CLAMP (logvar[i], -30.0f, 20.0f);
      sampled[i] = (float) (mean[i] + exp (0.5 * lv) * gaussian (rng));
    }
    mean = sampled;
  }
  for (gsize i = 0; i < n; i++) {
    double m = mean[unpatch_index (i, p, h, w)];
    if (raw) {
      dst[i] = (float) m;
    } else if (model->latents_mean) {
      gsize c = i / plane;
      dst[i] = (float) ((m - model->latents_mean[c]) / model->latents_std[c]);
    } else {
      dst[i] = (float) ((m - shift) * scaling);
    }
  }
  if (mode == VAE_LATENT_DISTRIBUTION && logvar)
    for (gsize i = 0; i < n; i++)
      dst[n + i] = CLAMP (logvar[unpatch_index (i, p, h, w)], -30.0f, 20.0f);
}

void
vae_latents_to_decoder_format (const VaeModel *model, VaeLatentFormat format,
                               const float *z, int h, int w, double scaling,
                               double shift, float *dst)
{
  const gsize n = (gsize) model->latent_channels * h * w;
  const int p = vae_latent_format_patch (model, format);
  const gboolean raw = format == VAE_LATENT_FORMAT_RAW;
  const gsize plane = (gsize) (h / p) * (w / p);
  for (gsize i = 0; i < n; i++) {
    double v;
    if (raw)
      v = z[i];
    else if (model->latents_mean)
      v = z[i] * (double) model->latents_std[i / plane] + model->latents_mean[i / plane];
    else
      v = z[i] / scaling + shift;
    dst[unpatch_index (i, p, h, w)] = (float) v;
  }
}

void
vae_latents_from_encoder (const VaeModel *model, const float *enc, int h, int w,
                          VaeLatentMode mode, GRand *rng, double scaling,
                          double shift, float *dst)
{
  vae_latents_from_encoder_format (model, VAE_LATENT_FORMAT_NORMALIZED, enc, h, w, mode,
                                   rng, scaling, shift, dst);
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
  vae_latents_to_decoder_format (model, VAE_LATENT_FORMAT_NORMALIZED, z, h, w, scaling,
                                 shift, dst);
}
