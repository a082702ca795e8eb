/* gst-vae: model presets for the remote engine.
 *
 * `sd`, `sdxl`, `sd3` and `flux` name the public AutoencoderKLs that
 * Hugging Face's Hybrid Inference endpoints serve.  A preset is a VaeModel
 * with their latent channels, spatial factor and latent factors but no
 * graphs (config_only): enough for the remote engine, which sends frames to
 * a server and never runs the model, and for the elements' caps.  The
 * values are those of the models' diffusers config.json files.
 *
 * `flux2` is FLUX.2's AutoencoderKLFlux2 (black-forest-labs/FLUX.2-dev,
 * FLUX.2-klein): 32 latent channels, 2x2 patches, so 128 normalised
 * channels at spatial factor 16.  Its normalisation is the model's
 * BatchNorm running statistics, weights a preset does not have: the server
 * normalises (vae-server answers latent_format=normalized), so the preset's
 * per-channel statistics are the identity (mean 0, std 1) and the remote
 * engine moves its normalised latents in and out of the patches unchanged;
 * its raw latents are not available through a preset (a local FLUX.2
 * model with backend=remote gives both). */
#include <string.h>
#include "model-private.h"

typedef struct {
  const char *name;
  int latent_channels;
  double scaling_factor, shift_factor;
  gboolean quant_conv;         /* SD/SDXL/FLUX.2 have quant convs, SD3/FLUX not */
  int latent_patch;            /* FLUX.2: 2x2 patches; others none (0) */
} VaePreset;

static const VaePreset presets[] = {
  { "sd", 4, 0.18215, 0.0, TRUE, 0 },       /* stabilityai/sd-vae-ft-mse */
  { "sdxl", 4, 0.13025, 0.0, TRUE, 0 },     /* madebyollin/sdxl-vae-fp16-fix */
  { "sd3", 16, 1.5305, 0.0609, FALSE, 0 },  /* stabilityai/stable-diffusion-3-medium */
  { "flux", 16, 0.3611, 0.1159, FALSE, 0 }, /* black-forest-labs/FLUX.1-schnell */
  { "flux2", 32, 1.0, 0.0, TRUE, 2 },       /* black-forest-labs/FLUX.2-dev */
};

const char *
vae_model_preset_names (void)
{
  return "sd, sdxl, sd3, flux, flux2";
}

VaeModel *
vae_model_preset_new (const char *name)
{
  for (guint i = 0; i < G_N_ELEMENTS (presets); i++) {
    const VaePreset *p = &presets[i];
    if (strcmp (name, p->name) != 0)
      continue;
    VaeModel *m = g_new0 (VaeModel, 1);
    m->family = VAE_FAMILY_KL;
    m->layout = VAE_LAYOUT_DIFFUSERS;
    m->path = g_strdup (name);
    m->name = g_strdup (name);
    m->image_channels = 3;
    m->latent_channels = p->latent_channels;
    /* All: block_out_channels (128, 256, 512, 512), 2 resnets a level,
     * 32 groups, so a spatial factor of 2^(4-1) = 8. */
    m->levels = 4;
    const int blocks[4] = { 128, 256, 512, 512 };
    memcpy (m->block_out_channels, blocks, sizeof blocks);
    memcpy (m->decoder_block_out_channels, blocks, sizeof blocks);
    m->layers_per_block = 2;
    m->norm_groups = 32;
    m->quant_conv = m->post_quant_conv = p->quant_conv;
    m->spatial_factor = 8;
    m->scaling_factor = p->scaling_factor;
    m->shift_factor = p->shift_factor;
    m->image_min = -1.0f;                 /* KL: pixels in [-1, 1] */
    m->encoder_outputs_moments = TRUE;    /* KL: mean and logvar */
    m->config_only = TRUE;
    if (p->latent_patch > 1) {
      /* Identity statistics over the patchified channels: the server
       * normalises (see above). */
      const int c = p->latent_channels * p->latent_patch * p->latent_patch;
      m->latent_patch = p->latent_patch;
      m->latents_mean = g_new0 (float, c);
      m->latents_std = g_new (float, c);
      for (int i = 0; i < c; i++)
        m->latents_std[i] = 1.0f;
      m->batch_norm_eps = 1e-4;
    }
    return m;
  }
  return NULL;
}
