/* gst-vae: latent files (see latent-file.h). */
#include "latent-file.h"

#include <math.h>
#include <string.h>

#include "vae-error.h"

const char *
vae_latent_format_double (char *buf, double v)
{
  return g_ascii_dtostr (buf, G_ASCII_DTOSTR_BUF_SIZE, v);
}

static gboolean
latent_dtype_ok (VaeDType dtype)
{
  return dtype == VAE_DTYPE_F32 || dtype == VAE_DTYPE_F16 || dtype == VAE_DTYPE_BF16
         || dtype == VAE_DTYPE_F64;
}

/* Frames of latents of NDIM (3 to 5) sides SHAPE. */
static gint64
frames_of (int ndim, const gint64 *shape)
{
  switch (ndim) {
  case 3:
    return 1;
  case 4:
    return shape[0];
  default:
    return shape[0] * shape[2];
  }
}

/* The checks shared by the writer and the reader; LABEL starts the message. */
static gboolean
check_latents (const char *label, VaeDType dtype, int ndim, const gint64 *shape,
               GError **error)
{
  if (!latent_dtype_ok (dtype)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: tensor '" VAE_LATENT_TENSOR_LATENTS "' is %s where F32, F16, BF16 "
                 "or F64 was expected", label, vae_dtype_name (dtype) ? vae_dtype_name (dtype)
                 : "of an unknown dtype");
    return FALSE;
  }
  if (ndim < VAE_LATENT_MIN_DIMS || ndim > VAE_LATENT_MAX_DIMS) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: tensor '" VAE_LATENT_TENSOR_LATENTS "' has %d dimensions where "
                 "[C,h,w], [N,C,h,w] or [N,C,T,h,w] was expected", label, ndim);
    return FALSE;
  }
  for (int i = 0; i < ndim; i++) {
    if (shape[i] <= 0) {
      g_autofree char *s = vae_shape_to_string (ndim, shape);
      g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                   "%s: tensor '" VAE_LATENT_TENSOR_LATENTS "' has shape %s: it holds "
                   "no frame", label, s);
      return FALSE;
    }
  }
  return TRUE;
}

/* ---- writing ---- */

struct _VaeLatentWriter {
  VaeSafetensorsWriter *st;
  gboolean have_latents, have_pts;
};

VaeLatentWriter *
vae_latent_writer_new (void)
{
  VaeLatentWriter *w = g_new0 (VaeLatentWriter, 1);
  w->st = vae_safetensors_writer_new ();
  return w;
}

void
vae_latent_writer_free (VaeLatentWriter *w)
{
  if (!w)
    return;
  vae_safetensors_writer_free (w->st);
  g_free (w);
}

gboolean
vae_latent_writer_set_latents (VaeLatentWriter *w, VaeDType dtype, int ndim,
                               const gint64 *shape, const void *data, gsize n_bytes,
                               GError **error)
{
  g_return_val_if_fail (w != NULL, FALSE);
  g_return_val_if_fail (!w->have_latents, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_latents ("latent file", dtype, ndim, shape, error))
    return FALSE;
  if (!vae_safetensors_writer_add (w->st, VAE_LATENT_TENSOR_LATENTS, dtype, ndim, shape,
                                   data, n_bytes, error))
    return FALSE;
  w->have_latents = TRUE;
  return TRUE;
}

gboolean
vae_latent_writer_set_pts (VaeLatentWriter *w, gint64 n_frames, const gint64 *pts,
                           GError **error)
{
  g_return_val_if_fail (w != NULL, FALSE);
  g_return_val_if_fail (w->have_latents && !w->have_pts, FALSE);
  g_return_val_if_fail (n_frames >= 0, FALSE);

  const gint64 shape[1] = { n_frames };
  if (!vae_safetensors_writer_add (w->st, VAE_LATENT_TENSOR_PTS, VAE_DTYPE_I64, 1, shape,
                                   pts, (gsize) n_frames * sizeof (gint64), error))
    return FALSE;
  w->have_pts = TRUE;
  return TRUE;
}

void
vae_latent_writer_set_string (VaeLatentWriter *w, const char *key, const char *value)
{
  g_return_if_fail (w != NULL);
  vae_safetensors_writer_set_metadata (w->st, key, value);
}

void
vae_latent_writer_set_int (VaeLatentWriter *w, const char *key, gint64 value)
{
  char buf[32];
  g_snprintf (buf, sizeof buf, "%" G_GINT64_FORMAT, value);
  vae_latent_writer_set_string (w, key, buf);
}

void
vae_latent_writer_set_double (VaeLatentWriter *w, const char *key, double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  g_return_if_fail (isfinite (v));
  vae_latent_writer_set_string (w, key, vae_latent_format_double (buf, v));
}

void
vae_latent_writer_set_fraction (VaeLatentWriter *w, const char *key, int num, int den)
{
  char buf[32];
  g_snprintf (buf, sizeof buf, "%d/%d", num, den);
  vae_latent_writer_set_string (w, key, buf);
}

GBytes *
vae_latent_writer_serialize (VaeLatentWriter *w, GError **error)
{
  g_return_val_if_fail (w != NULL, NULL);
  if (!w->have_latents) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "latent file: no tensor '" VAE_LATENT_TENSOR_LATENTS "' to write");
    return NULL;
  }
  return vae_safetensors_writer_serialize (w->st, error);
}

gboolean
vae_latent_writer_save (VaeLatentWriter *w, const char *path, GError **error)
{
  g_return_val_if_fail (w != NULL, FALSE);
  if (!w->have_latents) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "%s: no tensor '" VAE_LATENT_TENSOR_LATENTS "' to write", path);
    return FALSE;
  }
  return vae_safetensors_writer_save (w->st, path, error);
}

/* ---- reading ---- */

struct _VaeLatentFile {
  VaeSafetensors *st;           /* its path is the file's label */
  const VaeTensorView *latents, *pts;
  gint64 n_frames;
};

void
vae_latent_file_free (VaeLatentFile *lf)
{
  if (lf)
    vae_safetensors_free (lf->st);
  g_free (lf);
}

/* Takes ST; NULL with ERROR when it is not a latent file. */
static VaeLatentFile *
latent_file_new (VaeSafetensors *st, GError **error)
{
  const char *label = vae_safetensors_path (st);
  g_autoptr (VaeLatentFile) lf = g_new0 (VaeLatentFile, 1);
  lf->st = st;

  lf->latents = vae_safetensors_lookup (st, VAE_LATENT_TENSOR_LATENTS);
  if (!lf->latents) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: no tensor '" VAE_LATENT_TENSOR_LATENTS "' (%u tensors)", label,
                 vae_safetensors_n_tensors (st));
    return NULL;
  }
  const VaeTensorView *t = lf->latents;
  if (!check_latents (label, t->dtype, t->ndim, t->shape, error))
    return NULL;
  lf->n_frames = frames_of (t->ndim, t->shape);

  lf->pts = vae_safetensors_lookup (st, VAE_LATENT_TENSOR_PTS);
  if (lf->pts && (lf->pts->dtype != VAE_DTYPE_I64 || lf->pts->ndim != 1
                  || lf->pts->shape[0] != lf->n_frames)) {
    g_autofree char *s = vae_shape_to_string (lf->pts->ndim, lf->pts->shape);
    const char *dt = vae_dtype_name (lf->pts->dtype);
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: tensor '" VAE_LATENT_TENSOR_PTS "' must be I64 [%" G_GINT64_FORMAT
                 "] (one per frame), it is %s %s", label, lf->n_frames, dt ? dt : "?", s);
    return NULL;
  }
  return g_steal_pointer (&lf);
}

VaeLatentFile *
vae_latent_file_open (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  VaeSafetensors *st = vae_safetensors_open (path, error);
  return st ? latent_file_new (st, error) : NULL;
}

VaeLatentFile *
vae_latent_file_new_from_bytes (GBytes *bytes, const char *label, GError **error)
{
  g_return_val_if_fail (bytes != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!label)
    label = "latent file";
  VaeSafetensors *st = vae_safetensors_new_from_bytes (bytes, label, error);
  return st ? latent_file_new (st, error) : NULL;
}

const char *
vae_latent_file_label (const VaeLatentFile *lf)
{
  return vae_safetensors_path (lf->st);
}

const VaeSafetensors *
vae_latent_file_safetensors (const VaeLatentFile *lf)
{
  return lf->st;
}

const VaeTensorView *
vae_latent_file_latents (const VaeLatentFile *lf)
{
  return lf->latents;
}

const VaeTensorView *
vae_latent_file_pts (const VaeLatentFile *lf)
{
  return lf->pts;
}

gint64
vae_latent_file_n_frames (const VaeLatentFile *lf)
{
  return lf->n_frames;
}

const char *
vae_latent_file_get_string (const VaeLatentFile *lf, const char *key)
{
  g_return_val_if_fail (lf != NULL && key != NULL, NULL);
  return vae_safetensors_metadata (lf->st, key);
}

gboolean
vae_latent_file_get_int (const VaeLatentFile *lf, const char *key, gint64 min, gint64 max,
                         gint64 *out, GError **error)
{
  const char *s = vae_latent_file_get_string (lf, key);
  gint64 v;

  if (!s)
    return FALSE;
  if (!g_ascii_string_to_signed (s, 10, min, max, &v, NULL)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: metadata %s='%s' is not an integer between %" G_GINT64_FORMAT
                 " and %" G_GINT64_FORMAT, vae_latent_file_label (lf), key, s, min, max);
    return FALSE;
  }
  *out = v;
  return TRUE;
}

gboolean
vae_latent_file_get_double (const VaeLatentFile *lf, const char *key, double *out,
                            GError **error)
{
  const char *s = vae_latent_file_get_string (lf, key);
  char *end = NULL;

  if (!s)
    return FALSE;
  double v = g_ascii_strtod (s, &end);
  if (end == s || *end != '\0' || !isfinite (v)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: metadata %s='%s' is not a number", vae_latent_file_label (lf), key, s);
    return FALSE;
  }
  *out = v;
  return TRUE;
}

gboolean
vae_latent_file_get_fraction (const VaeLatentFile *lf, const char *key, int *num, int *den,
                              GError **error)
{
  const char *s = vae_latent_file_get_string (lf, key);
  gint64 n, d = 1;

  if (!s)
    return FALSE;
  const char *slash = strchr (s, '/');
  g_autofree char *ns = slash ? g_strndup (s, slash - s) : g_strdup (s);
  if (!g_ascii_string_to_signed (ns, 10, 0, G_MAXINT, &n, NULL)
      || (slash && !g_ascii_string_to_signed (slash + 1, 10, 1, G_MAXINT, &d, NULL))) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: metadata %s='%s' is not a fraction N/D", vae_latent_file_label (lf), key, s);
    return FALSE;
  }
  *num = (int) n;
  *den = n == 0 ? 1 : (int) d;
  return TRUE;
}
