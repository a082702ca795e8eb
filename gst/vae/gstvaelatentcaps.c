/* gst-vae: latent stream caps <-> GstVaeLatentInfo (see gstvaelatentcaps.h). */
#include "gstvaelatentcaps.h"
#include "vae-error.h"
#include "codec.h"
#include <math.h>
#include <string.h>

void
gst_vae_latent_info_init (GstVaeLatentInfo *info)
{
  memset (info, 0, sizeof *info);
  info->dtype = VAE_DTYPE_F32;
  info->scaling_factor = NAN;
  info->shift_factor = NAN;
  info->fps_n = 0;
  info->fps_d = 1;
  info->latent_format = -1;
}

void
gst_vae_latent_info_clear (GstVaeLatentInfo *info)
{
  g_clear_pointer (&info->model, g_free);
  gst_vae_latent_info_init (info);
}

void
gst_vae_latent_info_copy (GstVaeLatentInfo *dst, const GstVaeLatentInfo *src)
{
  if (dst == src)
    return;
  g_free (dst->model);
  *dst = *src;
  dst->model = g_strdup (src->model);
}

GstCaps *
gst_vae_latent_info_to_caps (const GstVaeLatentInfo *info)
{
  char dims[64];
  g_snprintf (dims, sizeof dims, "%d:%d:%d:1", info->latent_width, info->latent_height,
              info->channels);
  GstCaps *caps = gst_caps_new_simple ("other/tensors",
      "format", G_TYPE_STRING, "static",
      "num_tensors", G_TYPE_INT, 1,
      "types", G_TYPE_STRING, info->dtype == VAE_DTYPE_F16 ? "float16" : "float32",
      "dimensions", G_TYPE_STRING, dims,
      "framerate", GST_TYPE_FRACTION, info->fps_n, info->fps_d > 0 ? info->fps_d : 1,
      NULL);
  GstStructure *s = gst_caps_get_structure (caps, 0);
  if (info->model)
    gst_structure_set (s, "model", G_TYPE_STRING, info->model, NULL);
  if (!isnan (info->scaling_factor))
    gst_structure_set (s, "scaling-factor", G_TYPE_DOUBLE, info->scaling_factor, NULL);
  if (!isnan (info->shift_factor))
    gst_structure_set (s, "shift-factor", G_TYPE_DOUBLE, info->shift_factor, NULL);
  if (info->spatial_factor > 0)
    gst_structure_set (s, "spatial-factor", G_TYPE_INT, info->spatial_factor, NULL);
  if (info->width > 0 && info->height > 0)
    gst_structure_set (s, "width", G_TYPE_INT, info->width, "height", G_TYPE_INT,
                       info->height, NULL);
  if (info->latent_format >= 0)
    gst_structure_set (s, "latent-format", G_TYPE_STRING,
                       vae_latent_format_name ((VaeLatentFormat) info->latent_format), NULL);
  if (info->normalization)
    gst_structure_set (s, "normalization", G_TYPE_STRING, info->normalization, NULL);
  return caps;
}

static gboolean
parse_dims (const char *str, int out[4])
{
  g_auto (GStrv) parts = g_strsplit (str, ":", -1);
  guint n = g_strv_length (parts);
  if (n < 3 || n > 4)
    return FALSE;
  for (guint i = 0; i < 4; i++) {
    gint64 v = 1;
    if (i < n) {
      char *end = NULL;
      v = g_ascii_strtoll (g_strstrip (parts[i]), &end, 10);
      if (!end || *end || end == parts[i] || v <= 0 || v > G_MAXINT / 8)
        return FALSE;
    }
    out[i] = (int) v;
  }
  return out[3] == 1;
}

/* A double field, also accepted as an int (as "scaling-factor=1" parses). */
static gboolean
get_number (const GstStructure *s, const char *field, double *out)
{
  int i;
  if (gst_structure_get_double (s, field, out))
    return TRUE;
  if (gst_structure_get_int (s, field, &i)) {
    *out = i;
    return TRUE;
  }
  return FALSE;
}

gboolean
gst_vae_latent_info_from_caps (GstVaeLatentInfo *info, const GstCaps *caps,
                               GError **error)
{
  gst_vae_latent_info_clear (info);
  if (!caps || gst_caps_get_size (caps) != 1 || !gst_caps_is_fixed (caps)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT, "latent caps are not fixed");
    return FALSE;
  }
  const GstStructure *s = gst_caps_get_structure (caps, 0);
  if (!gst_structure_has_name (s, "other/tensors")) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "latent caps are '%s', not other/tensors", gst_structure_get_name (s));
    return FALSE;
  }
  int num = 1;
  if (gst_structure_has_field (s, "num_tensors")
      && (!gst_structure_get_int (s, "num_tensors", &num) || num != 1)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "latent caps: num_tensors must be 1");
    return FALSE;
  }
  const char *types = gst_structure_get_string (s, "types");
  if (!types) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT, "latent caps: no 'types' field");
    return FALSE;
  }
  if (g_str_equal (types, "float32"))
    info->dtype = VAE_DTYPE_F32;
  else if (g_str_equal (types, "float16"))
    info->dtype = VAE_DTYPE_F16;
  else {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "latent caps: types '%s' is neither float32 nor float16", types);
    return FALSE;
  }
  const char *dims = gst_structure_get_string (s, "dimensions");
  int d[4];
  if (!dims) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "latent caps: no 'dimensions' field");
    return FALSE;
  }
  if (!parse_dims (dims, d)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "latent caps: dimensions '%s' is not W:H:C:1 with positive sizes", dims);
    return FALSE;
  }
  info->latent_width = d[0];
  info->latent_height = d[1];
  info->channels = d[2];

  if (gst_structure_has_field (s, "spatial-factor")
      && (!gst_structure_get_int (s, "spatial-factor", &info->spatial_factor)
          || info->spatial_factor <= 0
          || info->spatial_factor > GST_VAE_MAX_SPATIAL_FACTOR)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "latent caps: bad 'spatial-factor'");
    return FALSE;
  }
  if (gst_structure_has_field (s, "width") || gst_structure_has_field (s, "height")) {
    if (!gst_structure_get_int (s, "width", &info->width)
        || !gst_structure_get_int (s, "height", &info->height)
        || info->width <= 0 || info->height <= 0) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                   "latent caps: 'width' and 'height' must both be positive integers");
      return FALSE;
    }
    if (info->spatial_factor > 0
        && (info->width > info->latent_width * info->spatial_factor
            || info->height > info->latent_height * info->spatial_factor)) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                   "latent caps: source size %dx%d is larger than %dx%d latents "
                   "times spatial factor %d", info->width, info->height,
                   info->latent_width, info->latent_height, info->spatial_factor);
      return FALSE;
    }
  }
  if (gst_structure_has_field (s, "scaling-factor")
      && !get_number (s, "scaling-factor", &info->scaling_factor)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "latent caps: 'scaling-factor' is not a number");
    return FALSE;
  }
  if (gst_structure_has_field (s, "shift-factor")
      && !get_number (s, "shift-factor", &info->shift_factor)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "latent caps: 'shift-factor' is not a number");
    return FALSE;
  }
  const char *model = gst_structure_get_string (s, "model");
  info->model = g_strdup (model);
  if (gst_structure_has_field (s, "latent-format")) {
    VaeLatentFormat format;
    if (!vae_latent_format_from_name (gst_structure_get_string (s, "latent-format"),
                                      &format)) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                   "latent caps: 'latent-format' must be \"normalized\" or \"raw\"");
      g_clear_pointer (&info->model, g_free);
      return FALSE;
    }
    info->latent_format = format;
  }
  if (!gst_structure_get_fraction (s, "framerate", &info->fps_n, &info->fps_d)
      || info->fps_d <= 0) {
    info->fps_n = 0;
    info->fps_d = 1;
  }
  return TRUE;
}

gsize
gst_vae_latent_info_frame_size (const GstVaeLatentInfo *info)
{
  return (gsize) info->channels * info->latent_width * info->latent_height
         * vae_dtype_size (info->dtype);
}
