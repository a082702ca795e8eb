/* gst-vae: safetensors files, read through mmap and written atomically.
 *
 * The header of a file is untrusted input: its length is bounded
 * (VAE_SAFETENSORS_MAX_HEADER), and every dtype, shape and offset is checked
 * against the file before a tensor is handed out.  Every failure is a GError
 * in VAE_ERROR that names the file and the problem. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

#define VAE_SAFETENSORS_MAX_HEADER (100u * 1024u * 1024u)
#define VAE_SAFETENSORS_MAX_DIMS 8

typedef enum {
  VAE_DTYPE_F32,
  VAE_DTYPE_F16,
  VAE_DTYPE_BF16,
  VAE_DTYPE_F64,
  VAE_DTYPE_I64,
  VAE_DTYPE_I32,
  VAE_DTYPE_I16,
  VAE_DTYPE_I8,
  VAE_DTYPE_U8,
  VAE_DTYPE_BOOL,
} VaeDType;

/* "F32", "BF16", ... as the format spells them; NULL for an unknown value. */
const char *vae_dtype_name (VaeDType dtype);
gboolean vae_dtype_from_name (const char *name, VaeDType *dtype);
gsize vae_dtype_size (VaeDType dtype);

typedef struct {
  const char *name;            /* owned by the file object */
  VaeDType dtype;
  int ndim;
  gint64 shape[VAE_SAFETENSORS_MAX_DIMS];
  guint64 n_elements;          /* product of shape, checked for overflow */
  gsize n_bytes;               /* n_elements * dtype size == end - begin */
  const guint8 *data;          /* inside the mapping; no alignment promised */
} VaeTensorView;

typedef struct _VaeSafetensors VaeSafetensors;

/* Maps PATH read-only and validates its header.  A regular file is mapped
 * privately (mmap PROT_READ, MAP_PRIVATE): see
 * vae_safetensors_ref_file_mapping. */
VaeSafetensors *vae_safetensors_open (const char *path, GError **error);
/* Validates an in-memory file (used by tests and the fuzzer); BYTES is
 * referenced, LABEL names it in error messages. */
VaeSafetensors *vae_safetensors_new_from_bytes (GBytes *bytes, const char *label,
                                                GError **error);
void vae_safetensors_free (VaeSafetensors *st);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VaeSafetensors, vae_safetensors_free)

const char *vae_safetensors_path (const VaeSafetensors *st);
guint vae_safetensors_n_tensors (const VaeSafetensors *st);
/* Tensors in file order (sorted by data offset). */
const VaeTensorView *vae_safetensors_tensor_at (const VaeSafetensors *st, guint i);
/* NULL when absent. */
const VaeTensorView *vae_safetensors_lookup (const VaeSafetensors *st, const char *name);
/* A string from "__metadata__", or NULL. */
const char *vae_safetensors_metadata (const VaeSafetensors *st, const char *key);
/* All metadata keys, NULL-terminated; free the array with g_free only. */
const char **vae_safetensors_metadata_keys (const VaeSafetensors *st);

/* The bytes of ST's file when they are the private read-only mapping
 * vae_safetensors_open made (a reference, g_bytes_unref it), else NULL
 * (files from memory, files it could not map so).  The tensors' data stay
 * valid as long as the reference, beyond vae_safetensors_free, and are
 * read from the file: a file rewritten in place while mapped (rather than
 * replaced by a rename, as vae_safetensors_writer_save and downloaders do)
 * changes them, a truncated one makes reading them fatal (SIGBUS). */
GBytes *vae_safetensors_ref_file_mapping (const VaeSafetensors *st);
/* Gives the pages of DATA .. DATA + N_BYTES, inside MAPPING (from
 * vae_safetensors_ref_file_mapping, never other bytes), back to the kernel
 * (madvise MADV_DONTNEED), and those around them up to 2 MiB boundaries
 * (what the kernel's fault-around may have mapped while DATA was read):
 * they stop counting in the process's resident memory, and a later read of
 * them faults them in again from the page cache or the file, unchanged.
 * Returns the bytes of the pages wholly inside DATA (0 where there is no
 * mapping to release, e.g. not on Unix). */
gsize vae_safetensors_mapping_release (GBytes *mapping, const void *data, gsize n_bytes);

/* Widens a F32/F16/BF16/F64 tensor into DST (n_elements floats).
 * Other dtypes are a VAE_ERROR_FORMAT naming the tensor. */
gboolean vae_tensor_view_to_f32 (const VaeTensorView *t, float *dst, GError **error);
/* Shape check with an error naming the tensor, its shape and the expected
 * shape: "model.safetensors: tensor 'x' has shape [3,4] where [4,4] was expected". */
gboolean vae_tensor_view_check_shape (const VaeTensorView *t, const char *file_label,
                                      int ndim, const gint64 *shape, GError **error);

/* "[2, 3, 4]" (g_free). */
char *vae_shape_to_string (int ndim, const gint64 *shape);

/* Conversions used by loaders and writers. */
float vae_f16_to_f32 (guint16 h);
guint16 vae_f32_to_f16 (float f);   /* round to nearest even */
float vae_bf16_to_f32 (guint16 b);
guint16 vae_f32_to_bf16 (float f);  /* round to nearest even */

/* ---- writing ---- */
typedef struct _VaeSafetensorsWriter VaeSafetensorsWriter;

VaeSafetensorsWriter *vae_safetensors_writer_new (void);
/* DATA is copied; n_bytes must equal product(shape) * dtype size. */
gboolean vae_safetensors_writer_add (VaeSafetensorsWriter *w, const char *name,
                                     VaeDType dtype, int ndim, const gint64 *shape,
                                     const void *data, gsize n_bytes, GError **error);
void vae_safetensors_writer_set_metadata (VaeSafetensorsWriter *w, const char *key,
                                          const char *value);
/* Serialises to memory (header padded to 8 bytes, tensors in insertion
 * order); NULL with ERROR (VAE_ERROR_NO_MEMORY) when the file does not fit
 * in memory. */
GBytes *vae_safetensors_writer_serialize (VaeSafetensorsWriter *w, GError **error);
/* The same without an error: NULL when memory runs out. */
GBytes *vae_safetensors_writer_to_bytes (VaeSafetensorsWriter *w);
/* Writes to PATH.tmp then renames, so readers never see half a file. */
gboolean vae_safetensors_writer_save (VaeSafetensorsWriter *w, const char *path,
                                      GError **error);
void vae_safetensors_writer_free (VaeSafetensorsWriter *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VaeSafetensorsWriter, vae_safetensors_writer_free)

G_END_DECLS
