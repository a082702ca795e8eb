/* gst-vae: what an AutoencoderKL or an AutoencoderTiny is.
 *
 * The only place that knows config keys, tensor names and layer sequences.
 * Loading produces two graphs (encoder, decoder) over float32 weights; the
 * rest of the project sees only VaeModel and VaeGraph. */
#pragma once
#include <glib.h>
#include "graph.h"

G_BEGIN_DECLS

typedef enum {
  VAE_FAMILY_KL,     /* AutoencoderKL: SD1/SD2/SDXL/SD3/FLUX.1 */
  VAE_FAMILY_TINY,   /* AutoencoderTiny: TAESD family, TAEF2 */
  VAE_FAMILY_WAN,    /* AutoencoderKLWan: Wan 2.1 (and Qwen-Image's), Wan 2.2 */
  VAE_FAMILY_TAEHV,  /* TAEHV: taew2_1, taew2_2, taehv */
} VaeFamily;

typedef enum {
  VAE_LAYOUT_DIFFUSERS,    /* folder with config.json */
  VAE_LAYOUT_LDM,          /* single CompVis/ComfyUI/BFL file */
  VAE_LAYOUT_TAESD,        /* TAESD nn.Sequential files (_encoder, _decoder) */
  VAE_LAYOUT_WAN,          /* original Wan single file (Wan2.1_VAE.pth keys; ComfyUI) */
  VAE_LAYOUT_TAEHV,        /* taehv.py state dict (one file, both halves) */
} VaeLayout;

#define VAE_MAX_LEVELS 8

typedef struct {
  VaeFamily family;
  VaeLayout layout;
  char *path;                  /* as given */
  char *name;                  /* short name: folder or file stem */

  int image_channels;          /* 3 */
  int latent_channels;
  int levels;                  /* len(block_out_channels) */
  int block_out_channels[VAE_MAX_LEVELS];
  /* KL: the decoder's widths, up_blocks order reversed like
   * block_out_channels (level i of the encoder <-> level i here).  Equal to
   * block_out_channels except for FLUX.2's decoder_block_out_channels. */
  int decoder_block_out_channels[VAE_MAX_LEVELS];
  int layers_per_block;        /* KL */
  int norm_groups;             /* KL */
  gboolean quant_conv, post_quant_conv;   /* KL */
  gboolean has_pool;           /* TAEF2's .pool. mid-block steps */
  int spatial_factor;          /* 2^(levels-1) for KL; 8 for TAESD */

  double scaling_factor;       /* diffusion = (mean - shift) * scaling */
  double shift_factor;

  /* Range of graph input (encoder) and output (decoder) pixels:
   * [image_min, 1]: -1 for KL, 0 for the raw TAESD layers. */
  float image_min;

  /* Encoder output has 2*latent channels (mean, logvar) for KL. */
  gboolean encoder_outputs_moments;

  /* Video models (causal 3D VAEs); image models have temporal_factor 1
   * and leave the rest 0 / NULL.  Each direction has a steady-state graph
   * (encoder, decoder) and may have a first-chunk graph over the same
   * weights and state slots, for what a stream does differently at its
   * start (Wan: the time convs of the resamplers are skipped). */
  int temporal_factor;         /* input frames per latent frame: 4 */
  VaeGraph *encoder_first;     /* NULL: the first chunk runs encoder */
  VaeGraph *decoder_first;     /* NULL: the first chunk runs decoder */
  int encode_first_frames;     /* frames in the first encoder chunk: Wan 1, TAEHV 4 */
  int encode_chunk_frames;     /* in each later chunk: 4 */
  int decode_drop_frames;      /* decoded frames a stream drops at its start: TAEHV 3 */
  int patch_size;              /* space-to-channel patches around the network: 1 or 2 */
  const char *variant;         /* "wan2.1", "wan2.2", "taew2_1", ... (static) */
  /* Latent normalisation (codec.h), one mechanism for every model: the
   * network's latents [latent_channels, h, w] are first cut into
   * latent_patch x latent_patch patches (channel c*p*p + dy*p + dx, the
   * pixel_unshuffle order; FLUX.2: 2, every other model 1 or 0 = none),
   * then each of the latent_channels * p * p channels is normalised,
   * diffusion = (x - latents_mean[c]) / latents_std[c] (Wan: the config's
   * statistics; FLUX.2: bn.running_mean and sqrt(bn.running_var +
   * batch_norm_eps)).  NULL: the scalar pair, (x - shift_factor) *
   * scaling_factor, the case of one mean and one std for all channels. */
  int latent_patch;
  float *latents_mean, *latents_std;
  double batch_norm_eps;       /* FLUX.2 (informational; folded into latents_std) */

  /* The store every graph of the model points into (NULL for presets):
   * graphs share weights through it. */
  VaeWeightStore *weights;
  VaeGraph *encoder;           /* NULL when the files hold no encoder */
  VaeGraph *decoder;           /* NULL when the files hold no decoder */
  guint64 n_params;

  /* A preset (sd, sdxl, sd3, flux, flux2): channels and factors only, no
   * graphs; both halves exist on the server's side, so only an engine that
   * does not run graphs (remote) can use it. */
  gboolean config_only;
} VaeModel;

typedef struct {
  double scaling_factor;       /* NaN or negative: from the model */
  double shift_factor;         /* NaN: from the model */
  /* GroupNorm groups of an AutoencoderKL (0: the config's, or 32 for single
   * files, whose tensors cannot tell it). */
  int norm_groups;
} VaeModelOptions;

#define VAE_MODEL_OPTIONS_INIT { NAN, NAN, 0 }

/* PATH: a diffusers folder, a single LDM safetensors file (optionally with
 * the first_stage_model. prefix), a TAESD *_encoder or *_decoder file, or a
 * folder holding both; or, when no such file or folder exists, a preset
 * name (see vae_model_preset_names) giving a config_only model.  OPTIONS
 * may be NULL. */
VaeModel *vae_model_load (const char *path, const VaeModelOptions *options,
                          GError **error);
void vae_model_free (VaeModel *model);
/* "sd, sdxl, sd3, flux, flux2", for messages. */
const char *vae_model_preset_names (void);
/* Whether MODEL has an encoder (DIRECTION encode) or a decoder: its graph,
 * or the server's for a config_only model. */
gboolean vae_model_has_half (const VaeModel *model, gboolean encoder);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VaeModel, vae_model_free)

const char *vae_family_name (VaeFamily family);
const char *vae_layout_name (VaeLayout layout);

G_END_DECLS
