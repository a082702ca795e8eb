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

/* Which latents: what the model's diffusion pipelines feed their
 * transformer / UNet (NORMALIZED, the default: scaled and shifted, or
 * per-channel normalised, and for FLUX.2 patchified 2x2 first), or the
 * network's own latents untouched (RAW: no patches, no scaling, no
 * normalisation; latent_channels at spatial_factor). */
typedef enum {
  VAE_LATENT_FORMAT_NORMALIZED,
  VAE_LATENT_FORMAT_RAW,
} VaeLatentFormat;

/* "normalized" / "raw" (the name of caps, properties and file metadata), and back. */
const char *vae_latent_format_name (VaeLatentFormat format);
gboolean vae_latent_format_from_name (const char *name, VaeLatentFormat *format);

/* The patch size FORMAT cuts the network's latents into (1: none). */
int vae_latent_format_patch (const VaeModel *model, VaeLatentFormat format);
/* Channels of one latent (the mode) in FORMAT: latent_channels * patch^2. */
int vae_latent_format_channels (const VaeModel *model, VaeLatentFormat format);
/* Pixels per latent in FORMAT: spatial_factor * patch. */
int vae_latent_format_factor (const VaeModel *model, VaeLatentFormat format);
/* Channels MODE yields in FORMAT (distribution: twice the mode's). */
int vae_latent_format_channels_for_mode (const VaeModel *model, VaeLatentFormat format,
                                         VaeLatentMode mode);
/* The FORMAT (and whether a distribution) whose latents have CHANNELS;
 * FALSE when neither has.  Models whose formats have the same channel
 * count (every model without patches) answer NORMALIZED. */
gboolean vae_latent_format_for_channels (const VaeModel *model, int channels,
                                         VaeLatentFormat *format, gboolean *distribution);
/* What FORMAT does to the network's latents, for caps and metadata:
 * "raw", "scale-shift" (the scalar pair), "per-channel" ((x - mean[c]) /
 * std[c]: Wan) or "patch2x2-batch-norm" (FLUX.2). */
const char *vae_latent_normalization_name (const VaeModel *model, VaeLatentFormat format);

/* SIZE rounded up to a multiple of FACTOR. */
int vae_padded_size (int size, int factor);

/* Channels the latent mode yields in the default (NORMALIZED) format. */
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

/* One frame of encoder output [C_enc, H, W] (H, W: the network's latent
 * size, multiples of the format's patch) to latents in FORMAT, [C', H/p,
 * W/p]: the mode (or a sample) patchified, then normalised per channel
 * ((x - latents_mean[c]) / latents_std[c]) or by the scalar pair ((x -
 * SHIFT) * SCALING); RAW: neither.  DISTRIBUTION appends the clamped
 * logvar, patchified like the mean but not normalised. */
void vae_latents_from_encoder_format (const VaeModel *model, VaeLatentFormat format,
                                      const float *enc, int h, int w, VaeLatentMode mode,
                                      GRand *rng, double scaling, double shift, float *dst);
/* Latents in FORMAT [C', H/p, W/p] (the mode; a distribution's mean half)
 * to the decoder's input [C, H, W] (H, W: the network's latent size): the
 * exact inverse of the above. */
void vae_latents_to_decoder_format (const VaeModel *model, VaeLatentFormat format,
                                    const float *z, int h, int w, double scaling,
                                    double shift, float *dst);

/* The network's latents [C, H, W] (H, W multiples of P) to P x P patches
 * [C*P*P, H/P, W/P] (channel c*P*P + dy*P + dx, pixel_unshuffle order), and
 * back: only the layout, no normalisation (the remote engine, whose server
 * normalises FLUX.2 latents itself). */
void vae_latents_patchify (const float *src, int c, int h, int w, int p, float *dst);
void vae_latents_unpatchify (const float *src, int c, int h, int w, int p, float *dst);

/* The NORMALIZED format of a model without patches (every model but FLUX.2):
 * one frame of encoder output [C_enc, H, W] to diffusion-space latents:
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
