/* gst-vae: the steps around an engine run that every user of the core
 * shares (vae-tool, the elements, vae-server): 8-bit pixels to and from the
 * model's range with padding to the spatial factor, and encoder output to
 * diffusion-space latents and back.
 *
 * Padding: frames whose size is not a multiple of the spatial factor are
 * extended to the next multiple by repeating the last row and column (edge
 * replication, which keeps the border statistics of the image); decoding
 * crops the padded area away. */
#pragma once
#include <glib.h>
#include "model.h"

G_BEGIN_DECLS

typedef enum {
  VAE_LATENT_MODE,          /* the distribution's mode (mean) */
  VAE_LATENT_SAMPLE,        /* mean + exp(logvar/2) * N(0,1), seeded */
  VAE_LATENT_DISTRIBUTION,  /* mean and logvar, 2C channels */
} VaeLatentMode;

/* SIZE rounded up to a multiple of FACTOR. */
int vae_padded_size (int size, int factor);

/* Channels of encoder output the latent mode yields. */
int vae_latent_channels_for_mode (const VaeModel *model, VaeLatentMode mode);

/* Interleaved 8-bit RGB (BYTES_PER_PIXEL 3 or 4, R first) of WIDTH x HEIGHT
 * with row STRIDE, to planar float [3, PH, PW] in the model's range, padded
 * by edge replication (PH >= HEIGHT, PW >= WIDTH). */
void vae_pixels_from_rgb8 (const VaeModel *model, const guint8 *src, int width,
                           int height, int stride, int bytes_per_pixel,
                           float *dst, int ph, int pw);
/* Planar float [3, PH, PW] in the model's range to interleaved 8-bit RGB,
 * cropped to WIDTH x HEIGHT; rounds as diffusers does
 * (round(clamp(x01, 0, 1) * 255)).  A 4th byte, when present, is set to 255. */
void vae_pixels_to_rgb8 (const VaeModel *model, const float *src, int ph, int pw,
                         guint8 *dst, int width, int height, int stride,
                         int bytes_per_pixel);

/* One frame of encoder output [C_enc, H, W] to diffusion-space latents:
 * MODE writes C (mode, sample) or 2C (distribution: scaled mean, then raw
 * logvar clamped to [-30, 20]) channels to DST.  A model with per-channel
 * statistics (Wan) normalises by them, (mean - latents_mean[c]) /
 * latents_std[c], instead of SCALING and SHIFT.  RNG is used by SAMPLE.
 * SCALING / SHIFT: the factors to apply (usually the model's). */
void vae_latents_from_encoder (const VaeModel *model, const float *enc, int h, int w,
                               VaeLatentMode mode, GRand *rng, double scaling,
                               double shift, float *dst);
/* One frame of diffusion-space latents [C, H, W] to the decoder's input:
 * z * latents_std[c] + latents_mean[c] for a model with per-channel
 * statistics (Wan), else z / scaling + shift. */
void vae_latents_to_decoder_frame (const VaeModel *model, const float *z, int h, int w,
                                   double scaling, double shift, float *dst);
/* Diffusion-space latents [C, H, W] to the decoder's input: z / scaling + shift. */
void vae_latents_to_decoder (const float *z, gsize n_elements, double scaling,
                             double shift, float *dst);

G_END_DECLS
