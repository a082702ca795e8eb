/* gst-vae: tests for latent files (latent-file.h): written and read back,
 * metadata exactly as written, and bad files refused with a clear GError. */
#include "latent-file.h"
#include "vae-error.h"

#include <float.h>
#include <locale.h>
#include <math.h>
#include <string.h>

#include <glib/gstdio.h>

#define C 4
#define H 3
#define W 5

/* A latent file of N frames of [C,H,W] F32 (value i at element i), with
 * timestamps and the usual metadata, as bytes. */
static GBytes *
make_file (int n)
{
  g_autoptr (VaeLatentWriter) w = vae_latent_writer_new ();
  g_autoptr (GError) error = NULL;
  const gsize count = (gsize) n * C * H * W;
  g_autofree float *z = g_new (float, count);
  g_autofree gint64 *pts = g_new (gint64, n);
  const gint64 shape[4] = { n, C, H, W };

  for (gsize i = 0; i < count; i++)
    z[i] = (float) i * 0.25f - 3.0f;
  for (int i = 0; i < n; i++)
    pts[i] = i == 1 ? -1 : (gint64) i * 40000000;
  g_assert_true (vae_latent_writer_set_latents (w, VAE_DTYPE_F32, 4, shape, z,
                                                count * sizeof (float), &error));
  g_assert_no_error (error);
  g_assert_true (vae_latent_writer_set_pts (w, n, pts, &error));
  g_assert_no_error (error);
  vae_latent_writer_set_string (w, VAE_LATENT_KEY_MODEL, "taef2 ✓");
  vae_latent_writer_set_double (w, VAE_LATENT_KEY_SCALING_FACTOR, 0.3611);
  vae_latent_writer_set_double (w, VAE_LATENT_KEY_SHIFT_FACTOR, 0.1159);
  vae_latent_writer_set_fraction (w, VAE_LATENT_KEY_FRAMERATE, 30000, 1001);
  vae_latent_writer_set_int (w, VAE_LATENT_KEY_WIDTH, 37);
  vae_latent_writer_set_int (w, VAE_LATENT_KEY_HEIGHT, 21);
  vae_latent_writer_set_int (w, VAE_LATENT_KEY_SPATIAL_FACTOR, 8);
  vae_latent_writer_set_string (w, "note", "any string \"quoted\"\n");
  GBytes *bytes = vae_latent_writer_serialize (w, &error);
  g_assert_no_error (error);
  g_assert_nonnull (bytes);
  return bytes;
}

/* The number formatting: g_ascii_dtostr, 17 digits, exact round trip, and
 * the spelling the files have always had ("%.17g"). */
static void
test_numbers (void)
{
  const double values[] = { 0.18215, 0.3611, 0.1159, 1.0 / 3.0, -0.0, 0.0, 1e-300,
                            DBL_MAX, DBL_MIN, 5e-324, 1.5, 123456789.125 };
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  for (guint i = 0; i < G_N_ELEMENTS (values); i++) {
    const char *s = vae_latent_format_double (buf, values[i]);
    char *end = NULL;
    double back = g_ascii_strtod (s, &end);
    g_assert_cmpint (*end, ==, '\0');
    g_assert_true (memcmp (&back, &values[i], sizeof back) == 0);
    char printf_buf[64];
    g_ascii_formatd (printf_buf, sizeof printf_buf, "%.17g", values[i]);
    g_assert_cmpstr (s, ==, printf_buf);
  }
  g_assert_cmpstr (vae_latent_format_double (buf, 0.18215), ==, "0.18215000000000001");
}

static void
test_round_trip (void)
{
  g_autoptr (GBytes) bytes = make_file (3);
  g_autoptr (GError) error = NULL;
  g_autoptr (VaeLatentFile) lf = vae_latent_file_new_from_bytes (bytes, "rt", &error);
  g_assert_no_error (error);
  g_assert_nonnull (lf);

  const VaeTensorView *t = vae_latent_file_latents (lf);
  g_assert_cmpint (t->dtype, ==, VAE_DTYPE_F32);
  g_assert_cmpint (t->ndim, ==, 4);
  g_assert_cmpint (t->shape[0], ==, 3);
  g_assert_cmpint (t->shape[1], ==, C);
  g_assert_cmpint (t->shape[2], ==, H);
  g_assert_cmpint (t->shape[3], ==, W);
  g_assert_cmpint (vae_latent_file_n_frames (lf), ==, 3);
  g_autofree float *z = g_new (float, t->n_elements);
  g_assert_true (vae_tensor_view_to_f32 (t, z, &error));
  for (guint64 i = 0; i < t->n_elements; i++)
    g_assert_cmpfloat (z[i], ==, (float) i * 0.25f - 3.0f);

  const VaeTensorView *p = vae_latent_file_pts (lf);
  g_assert_nonnull (p);
  gint64 pts[3];
  memcpy (pts, p->data, sizeof pts);
  g_assert_cmpint (pts[0], ==, 0);
  g_assert_cmpint (pts[1], ==, -1);
  g_assert_cmpint (pts[2], ==, 80000000);

  /* metadata: exactly what was written */
  double d = 0;
  gint64 v = 0;
  int num = 0, den = 0;
  g_assert_cmpstr (vae_latent_file_get_string (lf, VAE_LATENT_KEY_MODEL), ==, "taef2 ✓");
  g_assert_cmpstr (vae_latent_file_get_string (lf, "note"), ==, "any string \"quoted\"\n");
  g_assert_true (vae_latent_file_get_double (lf, VAE_LATENT_KEY_SCALING_FACTOR, &d, &error));
  g_assert_true (d == 0.3611);
  g_assert_true (vae_latent_file_get_double (lf, VAE_LATENT_KEY_SHIFT_FACTOR, &d, &error));
  g_assert_true (d == 0.1159);
  g_assert_cmpstr (vae_latent_file_get_string (lf, VAE_LATENT_KEY_SCALING_FACTOR), ==,
                   "0.36109999999999998");
  g_assert_true (vae_latent_file_get_fraction (lf, VAE_LATENT_KEY_FRAMERATE, &num, &den,
                                               &error));
  g_assert_cmpint (num, ==, 30000);
  g_assert_cmpint (den, ==, 1001);
  g_assert_true (vae_latent_file_get_int (lf, VAE_LATENT_KEY_WIDTH, 1, G_MAXINT, &v, &error));
  g_assert_cmpint (v, ==, 37);
  g_assert_true (vae_latent_file_get_int (lf, VAE_LATENT_KEY_HEIGHT, 1, G_MAXINT, &v, &error));
  g_assert_cmpint (v, ==, 21);
  g_assert_true (vae_latent_file_get_int (lf, VAE_LATENT_KEY_SPATIAL_FACTOR, 1, 64, &v,
                                          &error));
  g_assert_cmpint (v, ==, 8);
  g_assert_no_error (error);

  /* the keys in the order they were set */
  const char **keys = vae_safetensors_metadata_keys (vae_latent_file_safetensors (lf));
  const char *expect[] = { "model", "scaling_factor", "shift_factor", "framerate", "width",
                           "height", "spatial_factor", "note", NULL };
  for (int i = 0; expect[i]; i++)
    g_assert_cmpstr (keys[i], ==, expect[i]);
  g_assert_null (keys[G_N_ELEMENTS (expect) - 1]);
  g_free (keys);

  /* absent: FALSE without an error */
  g_assert_false (vae_latent_file_get_int (lf, VAE_LATENT_KEY_FRAMES, 1, G_MAXINT, &v, &error));
  g_assert_no_error (error);
  g_assert_false (vae_latent_file_get_double (lf, "nothing", &d, &error));
  g_assert_no_error (error);
  g_assert_null (vae_latent_file_get_string (lf, VAE_LATENT_KEY_TEMPORAL_FACTOR));
}

/* Whatever the locale, numbers are written and read with '.'. */
static void
test_locale (void)
{
  const char *old = setlocale (LC_NUMERIC, NULL);
  g_autofree char *saved = g_strdup (old);
  if (!setlocale (LC_NUMERIC, "de_DE.UTF-8") && !setlocale (LC_NUMERIC, "fr_FR.UTF-8")) {
    g_test_skip ("no locale with a decimal comma");
    return;
  }
  g_autoptr (GBytes) bytes = make_file (1);
  g_autoptr (GError) error = NULL;
  g_autoptr (VaeLatentFile) lf = vae_latent_file_new_from_bytes (bytes, "locale", &error);
  g_assert_no_error (error);
  double d = 0;
  g_assert_cmpstr (vae_latent_file_get_string (lf, VAE_LATENT_KEY_SHIFT_FACTOR), ==,
                   "0.1159");
  g_assert_true (vae_latent_file_get_double (lf, VAE_LATENT_KEY_SHIFT_FACTOR, &d, &error));
  g_assert_true (d == 0.1159);
  setlocale (LC_NUMERIC, saved);
}

/* Saved and opened from disk; a file cut short is a VAE_ERROR_FORMAT that
 * names the file. */
static void
test_save_open_truncated (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("test-latent-file-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *path = g_build_filename (dir, "z.safetensors", NULL);
  g_autofree char *cut = g_build_filename (dir, "cut.safetensors", NULL);

  {
    g_autoptr (VaeLatentWriter) w = vae_latent_writer_new ();
    const gint64 shape[3] = { C, H, W };
    float z[C * H * W] = { 0 };
    g_assert_true (vae_latent_writer_set_latents (w, VAE_DTYPE_F32, 3, shape, z, sizeof z,
                                                  &error));
    vae_latent_writer_set_double (w, VAE_LATENT_KEY_SCALING_FACTOR, 0.18215);
    g_assert_true (vae_latent_writer_save (w, path, &error));
    g_assert_no_error (error);
  }
  {
    g_autoptr (VaeLatentFile) lf = vae_latent_file_open (path, &error);
    g_assert_no_error (error);
    g_assert_cmpint (vae_latent_file_n_frames (lf), ==, 1);
    g_assert_null (vae_latent_file_pts (lf));
    g_assert_cmpstr (vae_latent_file_label (lf), ==, path);
    double d = 0;
    g_assert_true (vae_latent_file_get_double (lf, VAE_LATENT_KEY_SCALING_FACTOR, &d, NULL));
    g_assert_true (d == 0.18215);
  }

  g_autofree char *data = NULL;
  gsize len = 0;
  g_assert_true (g_file_get_contents (path, &data, &len, NULL));
  const gsize cuts[] = { 0, 4, 8, 20, len / 2, len - 1 };
  for (guint i = 0; i < G_N_ELEMENTS (cuts); i++) {
    g_assert_true (g_file_set_contents (cut, data, (gssize) cuts[i], NULL));
    g_autoptr (VaeLatentFile) lf = vae_latent_file_open (cut, &error);
    g_assert_null (lf);
    g_assert_error (error, VAE_ERROR, VAE_ERROR_FORMAT);
    g_assert_nonnull (strstr (error->message, cut));
    g_clear_error (&error);
  }
  /* garbage after a plausible length */
  memset (data + 8, 'x', 16);
  g_assert_true (g_file_set_contents (cut, data, (gssize) len, NULL));
  g_assert_null (vae_latent_file_open (cut, &error));
  g_assert_error (error, VAE_ERROR, VAE_ERROR_FORMAT);
  g_clear_error (&error);

  g_unlink (path);
  g_unlink (cut);
  g_rmdir (dir);
}

/* Safetensors files that are not latent files: each is a VAE_ERROR_FORMAT
 * that names the file ("bad") and says what is wrong. */
static void
test_not_latent (void)
{
  static const float z[8] = { 0 };
  static const gint64 pts[2] = { 0, 1 };
  static const struct {
    const char *name;           /* of the first tensor */
    VaeDType dtype;
    int ndim;
    gint64 shape[4];
    gboolean with_pts;          /* pts for 2 frames */
    const char *message;
  } cases[] = {
    { "other", VAE_DTYPE_F32, 3, { 2, 2, 2 }, FALSE, "bad: no tensor 'latents'" },
    { "latents", VAE_DTYPE_F32, 2, { 4, 2 }, FALSE, "2 dimensions" },
    { "latents", VAE_DTYPE_I32, 3, { 2, 2, 2 }, FALSE, "I32" },
    { "latents", VAE_DTYPE_F32, 4, { 0, 2, 2, 2 }, FALSE, "no frame" },
    { "latents", VAE_DTYPE_F32, 4, { 1, 2, 2, 2 }, TRUE, "'pts'" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (VaeSafetensorsWriter) w = vae_safetensors_writer_new ();
    g_autoptr (GError) error = NULL;
    const gint64 ps[1] = { 2 };
    guint64 n = 1;
    for (int d = 0; d < cases[i].ndim; d++)
      n *= (guint64) cases[i].shape[d];
    g_assert_true (vae_safetensors_writer_add (w, cases[i].name, cases[i].dtype,
                                               cases[i].ndim, cases[i].shape, n ? z : NULL,
                                               n * vae_dtype_size (cases[i].dtype), NULL));
    if (cases[i].with_pts)
      vae_safetensors_writer_add (w, "pts", VAE_DTYPE_I64, 1, ps, pts, sizeof pts, NULL);
    g_autoptr (GBytes) bytes = vae_safetensors_writer_serialize (w, NULL);
    g_assert_null (vae_latent_file_new_from_bytes (bytes, "bad", &error));
    g_assert_error (error, VAE_ERROR, VAE_ERROR_FORMAT);
    g_assert_nonnull (strstr (error->message, cases[i].message));
  }
}

/* Malformed metadata: the file reads, the getters say what is wrong. */
static void
test_bad_metadata (void)
{
  g_autoptr (VaeSafetensorsWriter) w = vae_safetensors_writer_new ();
  g_autoptr (GError) error = NULL;
  const gint64 s[3] = { 2, 2, 2 };
  const guint16 z[8] = { 0 };
  static const char *const meta[][2] = {
    { "width", "12px" }, { "height", "-3" }, { "spatial_factor", " 8" },
    { "scaling_factor", "nan" }, { "shift_factor", "0,5" }, { "framerate", "25/0" },
  };

  vae_safetensors_writer_add (w, "latents", VAE_DTYPE_F16, 3, s, z, sizeof z, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (meta); i++)
    vae_safetensors_writer_set_metadata (w, meta[i][0], meta[i][1]);
  g_autoptr (GBytes) bytes = vae_safetensors_writer_serialize (w, NULL);
  g_autoptr (VaeLatentFile) lf = vae_latent_file_new_from_bytes (bytes, "bad", &error);
  g_assert_no_error (error);

  for (guint i = 0; i < G_N_ELEMENTS (meta); i++) {
    const char *key = meta[i][0];
    gint64 v;
    double d;
    int n, dd;
    gboolean ok;
    if (i < 3)
      ok = vae_latent_file_get_int (lf, key, 1, G_MAXINT, &v, &error);
    else if (i < 5)
      ok = vae_latent_file_get_double (lf, key, &d, &error);
    else
      ok = vae_latent_file_get_fraction (lf, key, &n, &dd, &error);
    g_assert_false (ok);
    g_assert_error (error, VAE_ERROR, VAE_ERROR_FORMAT);
    g_autofree char *said = g_strdup_printf ("bad: metadata %s='%s'", key, meta[i][1]);
    g_assert_nonnull (strstr (error->message, said));
    g_clear_error (&error);
  }
}

/* Video latents: [1,C,T,h,w] with the video keys. */
static void
test_video_5d (void)
{
  g_autoptr (VaeLatentWriter) w = vae_latent_writer_new ();
  g_autoptr (GError) error = NULL;
  const gint64 shape[5] = { 1, 16, 3, 4, 6 };
  g_autofree float *z = g_new0 (float, 16 * 3 * 4 * 6);
  const gint64 pts[3] = { 0, 1, 2 };

  g_assert_true (vae_latent_writer_set_latents (w, VAE_DTYPE_F32, 5, shape, z,
                                                16 * 3 * 4 * 6 * sizeof (float), &error));
  g_assert_true (vae_latent_writer_set_pts (w, 3, pts, &error));
  vae_latent_writer_set_int (w, VAE_LATENT_KEY_FRAMES, 9);
  vae_latent_writer_set_int (w, VAE_LATENT_KEY_TEMPORAL_FACTOR, 4);
  vae_latent_writer_set_int (w, VAE_LATENT_KEY_SPATIAL_FACTOR, 8);
  vae_latent_writer_set_string (w, VAE_LATENT_KEY_MODEL, "video-vae");
  vae_latent_writer_set_int (w, VAE_LATENT_KEY_WIDTH, 48);
  vae_latent_writer_set_int (w, VAE_LATENT_KEY_HEIGHT, 32);
  g_autoptr (GBytes) bytes = vae_latent_writer_serialize (w, &error);
  g_assert_no_error (error);

  g_autoptr (VaeLatentFile) lf = vae_latent_file_new_from_bytes (bytes, NULL, &error);
  g_assert_no_error (error);
  const VaeTensorView *t = vae_latent_file_latents (lf);
  g_assert_cmpint (t->ndim, ==, 5);
  g_assert_cmpint (t->shape[2], ==, 3);
  g_assert_cmpint (vae_latent_file_n_frames (lf), ==, 3);
  gint64 v = 0;
  g_assert_true (vae_latent_file_get_int (lf, VAE_LATENT_KEY_FRAMES, 1, G_MAXINT, &v, &error));
  g_assert_cmpint (v, ==, 9);
  g_assert_true (vae_latent_file_get_int (lf, VAE_LATENT_KEY_TEMPORAL_FACTOR, 1, 64, &v,
                                          &error));
  g_assert_cmpint (v, ==, 4);
}

/* The writer refuses what no reader would take. */
static void
test_writer_refuses (void)
{
  g_autoptr (VaeLatentWriter) w = vae_latent_writer_new ();
  g_autoptr (GError) error = NULL;
  const gint64 s2[2] = { 2, 2 }, s6[6] = { 1, 1, 1, 1, 1, 1 };
  const float z[4] = { 0 };

  g_assert_false (vae_latent_writer_set_latents (w, VAE_DTYPE_F32, 2, s2, z, sizeof z, &error));
  g_assert_error (error, VAE_ERROR, VAE_ERROR_FORMAT);
  g_clear_error (&error);
  g_assert_false (vae_latent_writer_set_latents (w, VAE_DTYPE_F32, 6, s6, z, 4, &error));
  g_assert_error (error, VAE_ERROR, VAE_ERROR_FORMAT);
  g_clear_error (&error);
  g_assert_null (vae_latent_writer_serialize (w, &error));
  g_assert_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/latent-file/numbers", test_numbers);
  g_test_add_func ("/latent-file/round-trip", test_round_trip);
  g_test_add_func ("/latent-file/locale", test_locale);
  g_test_add_func ("/latent-file/save-open-truncated", test_save_open_truncated);
  g_test_add_func ("/latent-file/not-latent", test_not_latent);
  g_test_add_func ("/latent-file/bad-metadata", test_bad_metadata);
  g_test_add_func ("/latent-file/video-5d", test_video_5d);
  g_test_add_func ("/latent-file/writer-refuses", test_writer_refuses);
  return g_test_run ();
}
