/* gst-vae: what model.c shares with the family builders (model-kl.c,
 * model-tiny.c).  Not installed, not used outside the model module. */
#pragma once
#include <glib.h>
#include <json-glib/json-glib.h>
#include "model.h"
#include "safetensors.h"
#include "vae-error.h"

G_BEGIN_DECLS

/* ---- weights ----
 * A builder reads its tensors through a VaeWeights with a sticky error: the
 * first failure is kept and every later call does nothing and returns
 * NULL / -1, so a builder can be written as straight-line code and check
 * w->error once at the end (the graph helpers below never touch the graph
 * once an error is set). */
typedef struct {
  VaeSafetensors *st;          /* borrowed */
  const char *label;           /* the file, for messages */
  GError *error;               /* first failure, owned */
  VaeWeightStore *store;       /* borrowed: the model's, for vae_weights_load_filter */
} VaeWeights;

void vae_weights_fail (VaeWeights *w, VaeErrorCode code, const char *format, ...)
    G_GNUC_PRINTF (3, 4);
/* The tensor called NAME in the file, or NULL (no error). */
const VaeTensorView *vae_weights_find (VaeWeights *w, const char *name);
/* T (found under NAME; NULL = missing, which is an error naming the file and
 * NAME) checked against SHAPE and widened to a g_malloc'd float array. */
float *vae_weights_load (VaeWeights *w, const char *name, const VaeTensorView *t,
                         int ndim, const gint64 *shape);

/* A convolution filter, which engines prepare their own copy of and then
 * no longer read (graph.h, VaeWeightStore): as vae_weights_load, but a
 * float32 tensor of a mapped file is served from the mapping rather than
 * copied, so that it stops costing memory once prepared.  Either way the
 * array belongs to W->store from the start: the caller never frees it
 * (graph builders take it as one of the store's). */
float *vae_weights_load_filter (VaeWeights *w, const char *name, const VaeTensorView *t,
                                int ndim, const gint64 *shape);

/* Graph builders that do nothing once W has an error (they return -1). */
int vae_weights_conv (VaeWeights *w, VaeGraph *g, const char *op_name, int in,
                      int out_channels, int kernel, int stride, int pad_top,
                      int pad_left, int pad_bottom, int pad_right, float *weight,
                      float *bias, int residual, VaeActivation act);
int vae_weights_group_norm (VaeWeights *w, VaeGraph *g, const char *op_name, int in,
                            int groups, float eps, float *gamma, float *beta,
                            VaeActivation act);

/* ---- config.json ----
 * Each reader takes the value of KEY from OBJ (absent or null: DEF) and
 * checks its type and range; failures name FILE and KEY. */
gboolean vae_config_int (JsonObject *obj, const char *file, const char *key, int def,
                         int min, int max, int *out, GError **error);
gboolean vae_config_double (JsonObject *obj, const char *file, const char *key,
                            double def, double min, double max, double *out,
                            GError **error);
gboolean vae_config_bool (JsonObject *obj, const char *file, const char *key,
                          gboolean def, gboolean *out, GError **error);
/* An array of N_MIN..N_MAX integers in MIN..MAX; absent: *N = 0 (callers
 * that need it say so with N_MIN > 0 only when the key is present). */
gboolean vae_config_int_array (JsonObject *obj, const char *file, const char *key,
                               int n_min, int n_max, int min, int max, int *out,
                               int *n, GError **error);
/* When KEY is present it must be the string EXPECTED (else UNSUPPORTED). */
gboolean vae_config_string_is (JsonObject *obj, const char *file, const char *key,
                               const char *expected, GError **error);

/* ---- families ----
 * Both fill MODEL's family fields and graphs (model.c has set path, name and
 * layout, and applies the option overrides afterwards).  CONFIG is the
 * parsed config.json (NULL: everything is inferred from the tensors). */

/* AutoencoderKLWan (Wan 2.1, Wan 2.2, Qwen-Image) from ST: diffusers key
 * names, or the original Wan names when ORIGINAL (Wan2.1_VAE.pth /
 * Wan2.2_VAE.pth stored as safetensors, ComfyUI's files).  CONFIG may be
 * NULL (single files): the configuration then comes from the tensor
 * shapes and the real Wan 2.1 / 2.2 normalisation is built in.  Fills the
 * video fields of MODEL (both graphs per direction, state slots). */
gboolean vae_model_build_wan (VaeModel *model, VaeSafetensors *st, gboolean original,
                              JsonObject *config, const char *config_path, GError **error);

/* TAEHV (taehv.py's state dict: encoder.N / decoder.N) from ST, the
 * configuration read from the tensor shapes (never the file name). */
gboolean vae_model_build_taehv (VaeModel *model, VaeSafetensors *st, GError **error);

/* AutoencoderKL from ST: diffusers names, or LDM names when LDM (keys start
 * with PREFIX, e.g. "first_stage_model.").  FLUX2: AutoencoderKLFlux2 (the
 * bn.* statistics, patch_size, decoder_block_out_channels; in LDM files the
 * quant convs sit inside encoder. and decoder., BFL's ae.safetensors).
 * MODEL->norm_groups, when set on entry, overrides the group count. */
gboolean vae_model_build_kl (VaeModel *model, VaeSafetensors *st, gboolean ldm,
                             gboolean flux2, const char *prefix, JsonObject *config,
                             const char *config_path, GError **error);

/* One half of a tiny autoencoder: the nn.Sequential tensors of ST whose
 * names start with PREFIX ("" for TAESD files, "encoder.layers." /
 * "decoder.layers." for diffusers).  CLAMP_INDEX: the decoder's Sequential
 * holds the parameterless Clamp at index 0 (TAESD files, not diffusers). */
typedef struct {
  VaeSafetensors *st;          /* NULL: this half is absent */
  const char *prefix;
  gboolean clamp_index;
} VaeTinySource;

/* The preset called NAME (model-preset.c), or NULL when there is none. */
VaeModel *vae_model_preset_new (const char *name);

gboolean vae_model_build_tiny (VaeModel *model, const VaeTinySource *encoder,
                               const VaeTinySource *decoder, JsonObject *config,
                               const char *config_path, GError **error);

G_END_DECLS
