/* gst-vae: latent files, the one place that knows their layout.
 *
 * A latent file is a safetensors file (safetensors.h) holding
 *
 * - tensor `latents`: F32, F16, BF16 or F64, [C,h,w] (one frame), [N,C,h,w]
 *   (N frames) or [N,C,T,h,w] (video latents: N clips of T latent frames);
 * - tensor `pts` (optional): I64 [frames], presentation timestamps in
 *   nanoseconds, -1 for a frame without one;
 * - `__metadata__`: strings.  The known keys are the VAE_LATENT_KEY_*
 *   below; any other UTF-8 key and value is kept as it is.  Numbers are
 *   written in one way: integers in decimal, doubles with g_ascii_dtostr
 *   (17 significant digits, '.' whatever the locale), which reads back as
 *   the same double; fractions as "N/D".
 *
 * vae-tool, safetensorsmux and safetensorsdemux write and read them here.
 * Reading validates what every reader needs (the `latents` tensor's dtype
 * and shape, `pts` against the frame count); what a reader takes on top
 * (3-D and 4-D only, a model's channel count) it checks itself.  Every
 * failure is a GError in VAE_ERROR that names the file. */
#pragma once
#include <glib.h>
#include "safetensors.h"

G_BEGIN_DECLS

/* Tensor names. */
#define VAE_LATENT_TENSOR_LATENTS "latents"
#define VAE_LATENT_TENSOR_PTS "pts"

/* Metadata keys. */
#define VAE_LATENT_KEY_MODEL "model"                   /* string: the model's name */
#define VAE_LATENT_KEY_SCALING_FACTOR "scaling_factor" /* double */
#define VAE_LATENT_KEY_SHIFT_FACTOR "shift_factor"     /* double */
#define VAE_LATENT_KEY_WIDTH "width"                   /* int: source frame width */
#define VAE_LATENT_KEY_HEIGHT "height"                 /* int: source frame height */
#define VAE_LATENT_KEY_SPATIAL_FACTOR "spatial_factor" /* int */
#define VAE_LATENT_KEY_FRAMERATE "framerate"           /* fraction "N/D", 0/1 unknown */
#define VAE_LATENT_KEY_FRAMES "frames"                 /* int: source frames (video) */
#define VAE_LATENT_KEY_TEMPORAL_FACTOR "temporal_factor" /* int (video) */
#define VAE_LATENT_KEY_LATENT_FORMAT "latent_format"   /* "normalized" / "raw" (codec.h) */
#define VAE_LATENT_KEY_NORMALIZATION "normalization"   /* what was applied, informational */

/* Dimensions a `latents` tensor may have: 3 to 5. */
#define VAE_LATENT_MIN_DIMS 3
#define VAE_LATENT_MAX_DIMS 5

/* The one spelling of a double in metadata: g_ascii_dtostr, which reads back
 * (g_ascii_strtod) as V exactly.  BUF holds G_ASCII_DTOSTR_BUF_SIZE bytes. */
const char *vae_latent_format_double (char *buf, double v);

/* ---- writing ---- */

typedef struct _VaeLatentWriter VaeLatentWriter;

VaeLatentWriter *vae_latent_writer_new (void);
void vae_latent_writer_free (VaeLatentWriter *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VaeLatentWriter, vae_latent_writer_free)

/* The `latents` tensor, first in the file: a float DTYPE, NDIM between
 * VAE_LATENT_MIN_DIMS and VAE_LATENT_MAX_DIMS, every side > 0; DATA
 * (N_BYTES) is copied.  Once per writer. */
gboolean vae_latent_writer_set_latents (VaeLatentWriter *w, VaeDType dtype, int ndim,
                                        const gint64 *shape, const void *data,
                                        gsize n_bytes, GError **error);
/* The `pts` tensor, I64 [N_FRAMES], after the latents (copied). */
gboolean vae_latent_writer_set_pts (VaeLatentWriter *w, gint64 n_frames, const gint64 *pts,
                                    GError **error);

/* Metadata, in the order first set (a key set again keeps its place). KEY
 * and VALUE are UTF-8. */
void vae_latent_writer_set_string (VaeLatentWriter *w, const char *key, const char *value);
void vae_latent_writer_set_int (VaeLatentWriter *w, const char *key, gint64 value);
/* V must be finite. */
void vae_latent_writer_set_double (VaeLatentWriter *w, const char *key, double v);
void vae_latent_writer_set_fraction (VaeLatentWriter *w, const char *key, int num, int den);

/* The file's bytes; NULL with ERROR when there are no latents yet or the
 * file does not fit in memory (VAE_ERROR_NO_MEMORY). */
GBytes *vae_latent_writer_serialize (VaeLatentWriter *w, GError **error);
/* Writes PATH atomically (PATH.tmp, then renamed). */
gboolean vae_latent_writer_save (VaeLatentWriter *w, const char *path, GError **error);

/* ---- reading ---- */

typedef struct _VaeLatentFile VaeLatentFile;

/* Maps PATH and validates it as a latent file. */
VaeLatentFile *vae_latent_file_open (const char *path, GError **error);
/* The same for an in-memory file; BYTES is referenced, LABEL names it in
 * error messages. */
VaeLatentFile *vae_latent_file_new_from_bytes (GBytes *bytes, const char *label,
                                               GError **error);
void vae_latent_file_free (VaeLatentFile *lf);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VaeLatentFile, vae_latent_file_free)

/* The file's name, or the label it was read under. */
const char *vae_latent_file_label (const VaeLatentFile *lf);
/* The underlying safetensors file (other tensors, all metadata keys). */
const VaeSafetensors *vae_latent_file_safetensors (const VaeLatentFile *lf);
/* The `latents` tensor (always there in a valid file). */
const VaeTensorView *vae_latent_file_latents (const VaeLatentFile *lf);
/* The `pts` tensor, I64 [frames], or NULL. */
const VaeTensorView *vae_latent_file_pts (const VaeLatentFile *lf);
/* Frames the latents hold: 1 for [C,h,w], N for [N,C,h,w], N*T for
 * [N,C,T,h,w]. */
gint64 vae_latent_file_n_frames (const VaeLatentFile *lf);

/* Metadata.  The typed getters return TRUE with *OUT set when KEY is there
 * and valid; FALSE without an error when it is absent; FALSE with ERROR
 * (VAE_ERROR_FORMAT, naming the key and value) when it is malformed. */
const char *vae_latent_file_get_string (const VaeLatentFile *lf, const char *key);
/* A decimal integer in [MIN, MAX] (no spaces, no other characters). */
gboolean vae_latent_file_get_int (const VaeLatentFile *lf, const char *key, gint64 min,
                                  gint64 max, gint64 *out, GError **error);
/* A finite double (g_ascii_strtod, the whole value). */
gboolean vae_latent_file_get_double (const VaeLatentFile *lf, const char *key, double *out,
                                     GError **error);
/* "N/D" or "N", N in [0, G_MAXINT], D in [1, G_MAXINT]; N = 0 gives 0/1. */
gboolean vae_latent_file_get_fraction (const VaeLatentFile *lf, const char *key, int *num,
                                       int *den, GError **error);

G_END_DECLS
