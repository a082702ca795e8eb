/* gst-vae: tests for the safetensors reader and writer. */
#include "safetensors.h"
#include "vae-error.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include <fcntl.h>
#include <glib/gstdio.h>
#include <unistd.h>

/* ---- helpers ---- */

/* A file made of an 8-byte header length, HEADER and DATA_LEN bytes of data
 * (0, 1, 2, ...). */
static GBytes *
make_file (const char *header, gsize data_len)
{
  gsize hlen = strlen (header);
  gsize total = 8 + hlen + data_len;
  guint8 *buf = g_malloc (total);
  for (int i = 0; i < 8; i++)
    buf[i] = (guint8) ((guint64) hlen >> (8 * i));
  memcpy (buf + 8, header, hlen);
  for (gsize i = 0; i < data_len; i++)
    buf[8 + hlen + i] = (guint8) i;
  return g_bytes_new_take (buf, total);
}

/* A file with a raw 8-byte length field and whatever follows. */
static GBytes *
make_raw (guint64 hlen, const char *rest)
{
  gsize n = strlen (rest);
  guint8 *buf = g_malloc (8 + n);
  for (int i = 0; i < 8; i++)
    buf[i] = (guint8) (hlen >> (8 * i));
  memcpy (buf + 8, rest, n);
  return g_bytes_new_take (buf, 8 + n);
}

static void
assert_error (GError *error, int code, const char *label, const char *needle,
              const char *needle2)
{
  g_assert_nonnull (error);
  g_test_message ("error: %s", error->message);
  g_assert_error (error, VAE_ERROR, code);
  if (label) {
    g_autofree char *prefix = g_strconcat (label, ": ", NULL);
    g_assert_true (g_str_has_prefix (error->message, prefix));
  }
  if (needle && strstr (error->message, needle) == NULL)
    g_error ("'%s' does not mention '%s'", error->message, needle);
  if (needle2 && strstr (error->message, needle2) == NULL)
    g_error ("'%s' does not mention '%s'", error->message, needle2);
}

static void
expect_corrupt (GBytes *bytes, const char *needle, const char *needle2)
{
  g_autoptr (GError) error = NULL;
  VaeSafetensors *st = vae_safetensors_new_from_bytes (bytes, "bad.safetensors", &error);
  g_assert_null (st);
  assert_error (error, VAE_ERROR_FORMAT, "bad.safetensors", needle, needle2);
  g_bytes_unref (bytes);
}

static VaeSafetensors *
expect_valid (GBytes *bytes)
{
  g_autoptr (GError) error = NULL;
  VaeSafetensors *st = vae_safetensors_new_from_bytes (bytes, "good.safetensors", &error);
  g_assert_no_error (error);
  g_assert_nonnull (st);
  g_bytes_unref (bytes);
  return st;
}

static guint32
f32_bits (float f)
{
  guint32 u;
  memcpy (&u, &f, 4);
  return u;
}

static float
bits_f32 (guint32 u)
{
  float f;
  memcpy (&f, &u, 4);
  return f;
}

/* ---- dtypes ---- */

static void
test_dtypes (void)
{
  static const struct { const char *name; gsize size; } want[] = {
    { "F32", 4 }, { "F16", 2 }, { "BF16", 2 }, { "F64", 8 }, { "I64", 8 },
    { "I32", 4 }, { "I16", 2 }, { "I8", 1 }, { "U8", 1 }, { "BOOL", 1 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (want); i++) {
    VaeDType d;
    g_assert_true (vae_dtype_from_name (want[i].name, &d));
    g_assert_cmpstr (vae_dtype_name (d), ==, want[i].name);
    g_assert_cmpuint (vae_dtype_size (d), ==, want[i].size);
  }
  VaeDType d;
  g_assert_false (vae_dtype_from_name ("F8", &d));
  g_assert_false (vae_dtype_from_name ("f32", &d));
  g_assert_false (vae_dtype_from_name ("", &d));
  g_assert_null (vae_dtype_name ((VaeDType) 99));
  g_assert_cmpuint (vae_dtype_size ((VaeDType) 99), ==, 0);
}

/* ---- round trip ---- */

static VaeSafetensorsWriter *
make_writer (void)
{
  g_autoptr (GError) error = NULL;
  VaeSafetensorsWriter *w = vae_safetensors_writer_new ();

  const float f32[6] = { 0.0f, 1.0f, -2.5f, 3.25f, 1e-3f, 65504.0f };
  const gint64 s23[2] = { 2, 3 };
  g_assert_true (vae_safetensors_writer_add (w, "weight", VAE_DTYPE_F32, 2, s23, f32,
                                             sizeof f32, &error));
  guint16 f16[4];
  const float f16v[4] = { 1.0f, -0.5f, 0.099975586f, 65504.0f };
  for (int i = 0; i < 4; i++)
    f16[i] = GUINT16_TO_LE (vae_f32_to_f16 (f16v[i]));
  const gint64 s4[1] = { 4 };
  g_assert_true (vae_safetensors_writer_add (w, "half", VAE_DTYPE_F16, 1, s4, f16,
                                             sizeof f16, &error));
  guint16 bf16[4];
  const float bf16v[4] = { 1.0f, -3.0f, 0.15625f, 1e30f };
  for (int i = 0; i < 4; i++)
    bf16[i] = GUINT16_TO_LE (vae_f32_to_bf16 (bf16v[i]));
  const gint64 s22[2] = { 2, 2 };
  g_assert_true (vae_safetensors_writer_add (w, "brain", VAE_DTYPE_BF16, 2, s22, bf16,
                                             sizeof bf16, &error));
  const guint8 u8[5] = { 0, 1, 127, 128, 255 };
  const gint64 s5[1] = { 5 };
  g_assert_true (vae_safetensors_writer_add (w, "bytes", VAE_DTYPE_U8, 1, s5, u8,
                                             sizeof u8, &error));
  gint64 i64[3] = { GINT64_TO_LE (-1), GINT64_TO_LE (G_MAXINT64), GINT64_TO_LE (42) };
  const gint64 s3[1] = { 3 };
  g_assert_true (vae_safetensors_writer_add (w, "step", VAE_DTYPE_I64, 1, s3, i64,
                                             sizeof i64, &error));
  const double f64[2] = { 0.125, -1e300 };
  const gint64 s2[1] = { 2 };
  g_assert_true (vae_safetensors_writer_add (w, "double", VAE_DTYPE_F64, 1, s2, f64,
                                             sizeof f64, &error));
  /* a scalar and an empty tensor */
  const float scalar = 7.0f;
  g_assert_true (vae_safetensors_writer_add (w, "scalar", VAE_DTYPE_F32, 0, NULL, &scalar,
                                             sizeof scalar, &error));
  const gint64 s03[2] = { 0, 3 };
  g_assert_true (vae_safetensors_writer_add (w, "empty", VAE_DTYPE_F32, 2, s03, NULL, 0,
                                             &error));
  g_assert_no_error (error);

  vae_safetensors_writer_set_metadata (w, "format", "pt");
  vae_safetensors_writer_set_metadata (w, "note", "first");
  vae_safetensors_writer_set_metadata (w, "quote \"and\" \\ escapes\n", "ünïcode ✓");
  vae_safetensors_writer_set_metadata (w, "note", "replaced");
  return w;
}

static void
check_contents (VaeSafetensors *st)
{
  static const char *order[] = { "weight", "half", "brain", "bytes", "step", "double",
                                 "scalar", "empty" };
  g_assert_cmpuint (vae_safetensors_n_tensors (st), ==, G_N_ELEMENTS (order));
  /* tensor_at follows data order, which for the writer is insertion order
   * (the empty tensor sits at the very end) */
  for (guint i = 0; i < G_N_ELEMENTS (order); i++) {
    const VaeTensorView *t = vae_safetensors_tensor_at (st, i);
    g_assert_cmpstr (t->name, ==, order[i]);
    g_assert_true (vae_safetensors_lookup (st, order[i]) == t);
  }
  g_assert_null (vae_safetensors_lookup (st, "missing"));
  g_assert_null (vae_safetensors_lookup (st, "__metadata__"));

  g_autoptr (GError) error = NULL;
  float out[8];

  const VaeTensorView *t = vae_safetensors_lookup (st, "weight");
  g_assert_cmpint (t->dtype, ==, VAE_DTYPE_F32);
  g_assert_cmpint (t->ndim, ==, 2);
  g_assert_cmpint (t->shape[0], ==, 2);
  g_assert_cmpint (t->shape[1], ==, 3);
  g_assert_cmpuint (t->n_elements, ==, 6);
  g_assert_cmpuint (t->n_bytes, ==, 24);
  g_assert_true (vae_tensor_view_to_f32 (t, out, &error));
  g_assert_no_error (error);
  const float f32[6] = { 0.0f, 1.0f, -2.5f, 3.25f, 1e-3f, 65504.0f };
  g_assert_cmpmem (out, 6 * sizeof (float), f32, sizeof f32);
  g_assert_cmpmem (t->data, t->n_bytes, f32, sizeof f32);

  t = vae_safetensors_lookup (st, "half");
  g_assert_cmpint (t->dtype, ==, VAE_DTYPE_F16);
  g_assert_cmpuint (t->n_bytes, ==, 8);
  g_assert_true (vae_tensor_view_to_f32 (t, out, &error));
  g_assert_cmpfloat (out[0], ==, 1.0f);
  g_assert_cmpfloat (out[1], ==, -0.5f);
  g_assert_cmpfloat (out[2], ==, 0.099975586f);
  g_assert_cmpfloat (out[3], ==, 65504.0f);

  t = vae_safetensors_lookup (st, "brain");
  g_assert_cmpint (t->dtype, ==, VAE_DTYPE_BF16);
  g_assert_true (vae_tensor_view_to_f32 (t, out, &error));
  g_assert_cmpfloat (out[0], ==, 1.0f);
  g_assert_cmpfloat (out[1], ==, -3.0f);
  g_assert_cmpfloat (out[2], ==, 0.15625f);
  g_assert_cmpfloat (fabsf (out[3] - 1e30f) / 1e30f, <, 1.0f / 128);

  t = vae_safetensors_lookup (st, "bytes");
  g_assert_cmpint (t->dtype, ==, VAE_DTYPE_U8);
  const guint8 u8[5] = { 0, 1, 127, 128, 255 };
  g_assert_cmpmem (t->data, t->n_bytes, u8, sizeof u8);
  /* integer tensors are not widened */
  g_assert_false (vae_tensor_view_to_f32 (t, out, &error));
  assert_error (error, VAE_ERROR_FORMAT, NULL, "'bytes'", "U8");
  g_clear_error (&error);

  t = vae_safetensors_lookup (st, "step");
  g_assert_cmpint (t->dtype, ==, VAE_DTYPE_I64);
  g_assert_cmpuint (t->n_bytes, ==, 24);
  gint64 i64[3];
  memcpy (i64, t->data, sizeof i64);
  g_assert_cmpint (GINT64_FROM_LE (i64[0]), ==, -1);
  g_assert_cmpint (GINT64_FROM_LE (i64[1]), ==, G_MAXINT64);
  g_assert_cmpint (GINT64_FROM_LE (i64[2]), ==, 42);
  g_assert_false (vae_tensor_view_to_f32 (t, out, &error));
  assert_error (error, VAE_ERROR_FORMAT, NULL, "'step'", "I64");
  g_clear_error (&error);

  t = vae_safetensors_lookup (st, "double");
  g_assert_true (vae_tensor_view_to_f32 (t, out, &error));
  g_assert_cmpfloat (out[0], ==, 0.125f);
  g_assert_true (isinf (out[1]) && out[1] < 0);

  t = vae_safetensors_lookup (st, "scalar");
  g_assert_cmpint (t->ndim, ==, 0);
  g_assert_cmpuint (t->n_elements, ==, 1);
  g_assert_cmpuint (t->n_bytes, ==, 4);
  g_assert_true (vae_tensor_view_to_f32 (t, out, &error));
  g_assert_cmpfloat (out[0], ==, 7.0f);

  t = vae_safetensors_lookup (st, "empty");
  g_assert_cmpint (t->ndim, ==, 2);
  g_assert_cmpuint (t->n_elements, ==, 0);
  g_assert_cmpuint (t->n_bytes, ==, 0);
  g_assert_true (vae_tensor_view_to_f32 (t, out, &error));
  g_assert_no_error (error);

  /* metadata, in the order first set, values replaced in place */
  g_assert_cmpstr (vae_safetensors_metadata (st, "format"), ==, "pt");
  g_assert_cmpstr (vae_safetensors_metadata (st, "note"), ==, "replaced");
  g_assert_cmpstr (vae_safetensors_metadata (st, "quote \"and\" \\ escapes\n"), ==,
                   "ünïcode ✓");
  g_assert_null (vae_safetensors_metadata (st, "missing"));
  const char **keys = vae_safetensors_metadata_keys (st);
  g_assert_cmpuint (g_strv_length ((char **) keys), ==, 3);
  g_assert_cmpstr (keys[0], ==, "format");
  g_assert_cmpstr (keys[1], ==, "note");
  g_assert_cmpstr (keys[2], ==, "quote \"and\" \\ escapes\n");
  g_free (keys);
}

static void
test_round_trip (void)
{
  g_autoptr (VaeSafetensorsWriter) w = make_writer ();
  g_autoptr (GBytes) bytes = vae_safetensors_writer_to_bytes (w);

  /* layout: the header length is a multiple of 8, padded with spaces */
  gsize size;
  const guint8 *p = g_bytes_get_data (bytes, &size);
  guint64 hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = (hlen << 8) | p[i];
  g_assert_cmpuint (hlen % 8, ==, 0);
  g_assert_cmpuint (8 + hlen, <=, size);
  g_assert_cmpint (p[8], ==, '{');
  gsize last = 8 + hlen - 1;
  while (p[last] == ' ')
    last--;
  g_assert_cmpint (p[last], ==, '}');
  g_assert_cmpuint (size - 8 - hlen, ==, 24 + 8 + 8 + 5 + 24 + 16 + 4 + 0);
  /* "__metadata__" comes first, tensors in insertion order */
  g_autofree char *json = g_strndup ((const char *) p + 8, hlen);
  const char *m = strstr (json, "\"__metadata__\"");
  const char *a = strstr (json, "\"weight\"");
  const char *b = strstr (json, "\"half\"");
  const char *c = strstr (json, "\"empty\"");
  g_assert_true (m && a && b && c && m < a && a < b && b < c);
  g_assert_nonnull (strstr (json, "\"data_offsets\":[0,24]"));
  g_assert_nonnull (strstr (json, "\"data_offsets\":[24,32]"));

  g_autoptr (VaeSafetensors) st = expect_valid (g_bytes_ref (bytes));
  g_assert_cmpstr (vae_safetensors_path (st), ==, "good.safetensors");
  check_contents (st);
}

static void
test_save_open (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("vae-st-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *path = g_build_filename (dir, "model.safetensors", NULL);
  g_autofree char *tmp = g_strconcat (path, ".tmp", NULL);

  g_autoptr (VaeSafetensorsWriter) w = make_writer ();
  g_assert_true (vae_safetensors_writer_save (w, path, &error));
  g_assert_no_error (error);
  g_assert_false (g_file_test (tmp, G_FILE_TEST_EXISTS));

  /* the same bytes as to_bytes */
  g_autofree char *contents = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (path, &contents, &len, NULL));
  g_autoptr (GBytes) mem = vae_safetensors_writer_to_bytes (w);
  g_assert_cmpmem (contents, len, g_bytes_get_data (mem, NULL), g_bytes_get_size (mem));

  VaeSafetensors *st = vae_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (vae_safetensors_path (st), ==, path);
  check_contents (st);
  vae_safetensors_free (st);

  /* saving over an existing file replaces it */
  g_autoptr (VaeSafetensorsWriter) w2 = vae_safetensors_writer_new ();
  g_assert_true (vae_safetensors_writer_save (w2, path, &error));
  st = vae_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (vae_safetensors_n_tensors (st), ==, 0);
  const char **keys = vae_safetensors_metadata_keys (st);
  g_assert_null (keys[0]);
  g_free (keys);
  vae_safetensors_free (st);

  /* saving into a missing folder is an I/O error */
  g_autofree char *nowhere = g_build_filename (dir, "no", "such", "x.safetensors", NULL);
  g_assert_false (vae_safetensors_writer_save (w2, nowhere, &error));
  assert_error (error, VAE_ERROR_IO, nowhere, NULL, NULL);
  g_clear_error (&error);

  g_unlink (path);
  g_rmdir (dir);
}

static void
test_writer_errors (void)
{
  g_autoptr (VaeSafetensorsWriter) w = vae_safetensors_writer_new ();
  g_autoptr (GError) error = NULL;
  const float data[4] = { 0 };
  const gint64 s4[1] = { 4 }, neg[1] = { -4 };
  const gint64 big[3] = { G_MAXINT64, G_MAXINT64, 2 };

  g_assert_false (vae_safetensors_writer_add (w, "x", VAE_DTYPE_F32, 1, s4, data, 12,
                                              &error));
  assert_error (error, VAE_ERROR_ARGUMENT, NULL, "'x'", "[4]");
  g_clear_error (&error);
  g_assert_false (vae_safetensors_writer_add (w, "x", VAE_DTYPE_F32, 1, neg, data, 16,
                                              &error));
  assert_error (error, VAE_ERROR_ARGUMENT, NULL, "'x'", "[-4]");
  g_clear_error (&error);
  g_assert_false (vae_safetensors_writer_add (w, "x", VAE_DTYPE_F32, 3, big, data, 16,
                                              &error));
  assert_error (error, VAE_ERROR_ARGUMENT, NULL, "'x'", NULL);
  g_clear_error (&error);
  g_assert_false (vae_safetensors_writer_add (w, "x", VAE_DTYPE_F32, 9, big, data, 16,
                                              &error));
  assert_error (error, VAE_ERROR_ARGUMENT, NULL, "'x'", NULL);
  g_clear_error (&error);
  g_assert_false (vae_safetensors_writer_add (w, "__metadata__", VAE_DTYPE_F32, 1, s4,
                                              data, 16, &error));
  assert_error (error, VAE_ERROR_ARGUMENT, NULL, "__metadata__", NULL);
  g_clear_error (&error);
  g_assert_true (vae_safetensors_writer_add (w, "x", VAE_DTYPE_F32, 1, s4, data, 16,
                                             &error));
  g_assert_no_error (error);
  g_assert_false (vae_safetensors_writer_add (w, "x", VAE_DTYPE_F32, 1, s4, data, 16,
                                              &error));
  assert_error (error, VAE_ERROR_ARGUMENT, NULL, "'x'", "already");
  g_clear_error (&error);
}

/* An empty header object and padding are fine; offsets need not start at 0
 * and entries may come in any order. */
static void
test_valid_variants (void)
{
  VaeSafetensors *st = expect_valid (make_file ("{}", 0));
  g_assert_cmpuint (vae_safetensors_n_tensors (st), ==, 0);
  vae_safetensors_free (st);

  st = expect_valid (make_file ("{}      ", 3));
  g_assert_cmpuint (vae_safetensors_n_tensors (st), ==, 0);
  vae_safetensors_free (st);

  st = expect_valid (make_file (
      "{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]},"
      " \"a\":{\"dtype\":\"F16\",\"shape\":[1,1],\"data_offsets\":[2,4]},"
      " \"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[5,5]},"
      " \"__metadata__\":{}}", 9));
  g_assert_cmpuint (vae_safetensors_n_tensors (st), ==, 3);
  g_assert_cmpstr (vae_safetensors_tensor_at (st, 0)->name, ==, "a");
  g_assert_cmpstr (vae_safetensors_tensor_at (st, 1)->name, ==, "z");
  g_assert_cmpstr (vae_safetensors_tensor_at (st, 2)->name, ==, "b");
  const VaeTensorView *t = vae_safetensors_lookup (st, "b");
  g_assert_cmpint (t->data[0], ==, 6);
  g_assert_cmpint (t->data[1], ==, 7);
  /* F16 at an odd address within the data is read byte-wise: bytes 2,3 */
  float f;
  g_assert_true (vae_tensor_view_to_f32 (vae_safetensors_lookup (st, "a"), &f, NULL));
  g_assert_cmpfloat (f, ==, vae_f16_to_f32 (0x0302));
  vae_safetensors_free (st);

  /* escapes, including a surrogate pair, decode to UTF-8 */
  st = expect_valid (make_file (
      "{\"\\ud83d\\ude00 \\\"q\\\" \\u00e9\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]},"
      " \"__metadata__\":{\"k\\n\":\"\\ud83d\\ude00\"}}", 1));
  g_assert_nonnull (vae_safetensors_lookup (st, "\xf0\x9f\x98\x80 \"q\" \xc3\xa9"));
  g_assert_cmpstr (vae_safetensors_metadata (st, "k\n"), ==, "\xf0\x9f\x98\x80");
  vae_safetensors_free (st);
}

/* Unaligned F32 data: the data area starts at an odd offset. */
static void
test_unaligned (void)
{
  const char *hdr = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]}}";
  gsize hlen = strlen (hdr);
  guint8 *buf = g_malloc0 (8 + hlen + 9);
  buf[0] = (guint8) hlen;
  memcpy (buf + 8, hdr, hlen);
  guint32 a = GUINT32_TO_LE (f32_bits (1.5f)), b = GUINT32_TO_LE (f32_bits (-8.0f));
  memcpy (buf + 8 + hlen + 1, &a, 4);
  memcpy (buf + 8 + hlen + 5, &b, 4);
  VaeSafetensors *st = expect_valid (g_bytes_new_take (buf, 8 + hlen + 9));
  float out[2];
  g_assert_true (vae_tensor_view_to_f32 (vae_safetensors_lookup (st, "x"), out, NULL));
  g_assert_cmpfloat (out[0], ==, 1.5f);
  g_assert_cmpfloat (out[1], ==, -8.0f);
  vae_safetensors_free (st);
}

/* ---- conversions ---- */

static void
test_f16 (void)
{
  /* exact values */
  g_assert_cmpfloat (vae_f16_to_f32 (0x0000), ==, 0.0f);
  g_assert_true (signbit (vae_f16_to_f32 (0x8000)));
  g_assert_cmpfloat (vae_f16_to_f32 (0x3c00), ==, 1.0f);
  g_assert_cmpfloat (vae_f16_to_f32 (0xc000), ==, -2.0f);
  g_assert_cmpfloat (vae_f16_to_f32 (0x3555), ==, 0.333251953125f);
  g_assert_cmpfloat (vae_f16_to_f32 (0x7bff), ==, 65504.0f);
  g_assert_cmpfloat (vae_f16_to_f32 (0x0400), ==, ldexpf (1.0f, -14));
  /* subnormals */
  g_assert_cmpfloat (vae_f16_to_f32 (0x0001), ==, ldexpf (1.0f, -24));
  g_assert_cmpfloat (vae_f16_to_f32 (0x03ff), ==, ldexpf (1023.0f, -24));
  g_assert_cmpfloat (vae_f16_to_f32 (0x8200), ==, -ldexpf (1.0f, -15));
  /* inf, nan */
  g_assert_true (isinf (vae_f16_to_f32 (0x7c00)) && vae_f16_to_f32 (0x7c00) > 0);
  g_assert_true (isinf (vae_f16_to_f32 (0xfc00)) && vae_f16_to_f32 (0xfc00) < 0);
  g_assert_true (isnan (vae_f16_to_f32 (0x7e00)));
  g_assert_true (isnan (vae_f16_to_f32 (0x7c01)));
  g_assert_true (isnan (vae_f16_to_f32 (0xfe00)));

  g_assert_cmphex (vae_f32_to_f16 (0.0f), ==, 0x0000);
  g_assert_cmphex (vae_f32_to_f16 (-0.0f), ==, 0x8000);
  g_assert_cmphex (vae_f32_to_f16 (1.0f), ==, 0x3c00);
  g_assert_cmphex (vae_f32_to_f16 (-2.0f), ==, 0xc000);
  g_assert_cmphex (vae_f32_to_f16 (65504.0f), ==, 0x7bff);
  g_assert_cmphex (vae_f32_to_f16 (INFINITY), ==, 0x7c00);
  g_assert_cmphex (vae_f32_to_f16 (-INFINITY), ==, 0xfc00);
  g_assert_cmphex (vae_f32_to_f16 (FLT_MAX), ==, 0x7c00);
  g_assert_cmphex (vae_f32_to_f16 (1e10f), ==, 0x7c00);
  guint16 n = vae_f32_to_f16 (NAN);
  g_assert_cmphex (n & 0x7c00, ==, 0x7c00);
  g_assert_cmphex (n & 0x03ff, !=, 0);
  /* a nan whose payload sits only in the low bits must stay a nan */
  n = vae_f32_to_f16 (bits_f32 (0x7f800001));
  g_assert_true (isnan (vae_f16_to_f32 (n)));

  /* rounding to nearest, ties to even */
  g_assert_cmphex (vae_f32_to_f16 (1.0f + ldexpf (1, -11)), ==, 0x3c00);   /* tie, even down */
  g_assert_cmphex (vae_f32_to_f16 (1.0f + ldexpf (3, -11)), ==, 0x3c02);   /* tie, even up */
  g_assert_cmphex (vae_f32_to_f16 (1.0f + ldexpf (1, -11) + ldexpf (1, -20)), ==, 0x3c01);
  g_assert_cmphex (vae_f32_to_f16 (1.0f + ldexpf (1, -11) - ldexpf (1, -20)), ==, 0x3c00);
  g_assert_cmphex (vae_f32_to_f16 (65519.0f), ==, 0x7bff);
  g_assert_cmphex (vae_f32_to_f16 (65520.0f), ==, 0x7c00);                 /* tie to inf */
  g_assert_cmphex (vae_f32_to_f16 (2047.0f + 0.5f), ==, 0x6800);           /* 2048 */
  /* subnormal results */
  g_assert_cmphex (vae_f32_to_f16 (ldexpf (1, -24)), ==, 0x0001);
  g_assert_cmphex (vae_f32_to_f16 (ldexpf (1, -25)), ==, 0x0000);          /* tie, even */
  g_assert_cmphex (vae_f32_to_f16 (ldexpf (1, -25) * 1.0001f), ==, 0x0001);
  g_assert_cmphex (vae_f32_to_f16 (ldexpf (3, -25)), ==, 0x0002);          /* 1.5 -> 2 */
  g_assert_cmphex (vae_f32_to_f16 (ldexpf (5, -25)), ==, 0x0002);          /* 2.5 -> 2 */
  g_assert_cmphex (vae_f32_to_f16 (-ldexpf (1023, -24)), ==, 0x83ff);
  g_assert_cmphex (vae_f32_to_f16 (ldexpf (2047, -25)), ==, 0x0400);       /* up into normal */
  g_assert_cmphex (vae_f32_to_f16 (ldexpf (1, -14)), ==, 0x0400);
  g_assert_cmphex (vae_f32_to_f16 (1e-10f), ==, 0x0000);
  g_assert_cmphex (vae_f32_to_f16 (FLT_TRUE_MIN), ==, 0x0000);
  g_assert_cmphex (vae_f32_to_f16 (-FLT_TRUE_MIN), ==, 0x8000);

  /* every half survives the round trip */
  for (guint32 h = 0; h <= 0xffff; h++) {
    float f = vae_f16_to_f32 ((guint16) h);
    if (isnan (f))
      g_assert_true (isnan (vae_f16_to_f32 (vae_f32_to_f16 (f))));
    else if (vae_f32_to_f16 (f) != h)
      g_error ("f16 0x%04x -> %g -> 0x%04x", h, f, vae_f32_to_f16 (f));
  }

#ifdef __FLT16_MAX__
  /* compare with the compiler's conversion on a spread of floats */
  for (guint64 u = 0; u <= 0xffffffffu; u += 251) {
    float f = bits_f32 ((guint32) u);
    if (isnan (f))
      continue;
    _Float16 ref = (_Float16) f;
    guint16 rb;
    memcpy (&rb, &ref, 2);
    if (vae_f32_to_f16 (f) != rb)
      g_error ("f32 %08x (%g) -> 0x%04x, expected 0x%04x", (guint32) u, f,
               vae_f32_to_f16 (f), rb);
  }
#endif
}

static void
test_bf16 (void)
{
  g_assert_cmpfloat (vae_bf16_to_f32 (0x3f80), ==, 1.0f);
  g_assert_cmpfloat (vae_bf16_to_f32 (0xc040), ==, -3.0f);
  g_assert_cmpfloat (vae_bf16_to_f32 (0x0001), ==, bits_f32 (0x00010000));  /* subnormal */
  g_assert_true (isinf (vae_bf16_to_f32 (0x7f80)));
  g_assert_true (isinf (vae_bf16_to_f32 (0xff80)) && vae_bf16_to_f32 (0xff80) < 0);
  g_assert_true (isnan (vae_bf16_to_f32 (0x7fc0)));
  g_assert_true (isnan (vae_bf16_to_f32 (0x7f81)));

  g_assert_cmphex (vae_f32_to_bf16 (1.0f), ==, 0x3f80);
  g_assert_cmphex (vae_f32_to_bf16 (-0.0f), ==, 0x8000);
  g_assert_cmphex (vae_f32_to_bf16 (INFINITY), ==, 0x7f80);
  g_assert_cmphex (vae_f32_to_bf16 (-INFINITY), ==, 0xff80);
  g_assert_cmphex (vae_f32_to_bf16 (FLT_MAX), ==, 0x7f80);      /* rounds up to inf */
  g_assert_true (isnan (vae_bf16_to_f32 (vae_f32_to_bf16 (NAN))));
  g_assert_true (isnan (vae_bf16_to_f32 (vae_f32_to_bf16 (bits_f32 (0x7f800001)))));
  g_assert_true (isnan (vae_bf16_to_f32 (vae_f32_to_bf16 (bits_f32 (0xffffffff)))));
  /* ties to even */
  g_assert_cmphex (vae_f32_to_bf16 (bits_f32 (0x3f808000)), ==, 0x3f80);
  g_assert_cmphex (vae_f32_to_bf16 (bits_f32 (0x3f818000)), ==, 0x3f82);
  g_assert_cmphex (vae_f32_to_bf16 (bits_f32 (0x3f808001)), ==, 0x3f81);
  g_assert_cmphex (vae_f32_to_bf16 (bits_f32 (0x3f807fff)), ==, 0x3f80);
  /* subnormals round too */
  g_assert_cmphex (vae_f32_to_bf16 (bits_f32 (0x00018000)), ==, 0x0002);
  g_assert_cmphex (vae_f32_to_bf16 (bits_f32 (0x00008000)), ==, 0x0000);

  for (guint32 b = 0; b <= 0xffff; b++) {
    float f = vae_bf16_to_f32 ((guint16) b);
    if (isnan (f))
      g_assert_true (isnan (vae_bf16_to_f32 (vae_f32_to_bf16 (f))));
    else
      g_assert_cmphex (vae_f32_to_bf16 (f), ==, b);
  }
}

/* ---- corrupt files ---- */

static void
test_corrupt_sizes (void)
{
  expect_corrupt (g_bytes_new (NULL, 0), "empty", NULL);
  expect_corrupt (g_bytes_new ("\x10\0\0\0\0", 5), "too short", "5 bytes");
  expect_corrupt (g_bytes_new ("\0\0\0\0\0\0\0", 7), "too short", NULL);
  /* header length past the end of the file */
  expect_corrupt (make_raw (100, "{}"), "header length 100", "past the end of the file");
  expect_corrupt (make_raw (3, "{}"), "header length 3", "past the end of the file");
  /* over the 100 MB bound, even before looking at the file size */
  expect_corrupt (make_raw (VAE_SAFETENSORS_MAX_HEADER + 1ull, "{}"), "header length",
                  "limit");
  expect_corrupt (make_raw (G_MAXUINT64, "{}"), "18446744073709551615", "limit");
}

static void
test_corrupt_truncated (void)
{
  g_autoptr (VaeSafetensorsWriter) w = make_writer ();
  g_autoptr (GBytes) full = vae_safetensors_writer_to_bytes (w);
  gsize size = g_bytes_get_size (full);
  /* cutting the data: the last tensor holding bytes runs past the end */
  for (gsize cut = 1; cut <= 8; cut++)
    expect_corrupt (g_bytes_new_from_bytes (full, 0, size - cut), "past the end", "truncated");
  /* cutting into the header */
  expect_corrupt (g_bytes_new_from_bytes (full, 0, 40), "past the end of the file", NULL);
}

typedef struct {
  const char *path;
  const char *header;
  gsize data_len;
  const char *needle, *needle2;
} CorruptCase;

static const CorruptCase corrupt_cases[] = {
  { "not-json", "{\"x\": {", 0, "not valid JSON", NULL },
  { "not-json-2", "hello", 0, "not valid JSON", NULL },
  { "empty-header", "", 0, "not valid JSON", NULL },
  { "not-utf8", "{\"\xff\xfe\":1}", 0, "UTF-8", NULL },
  { "nul-byte", "{}\0{}", 0, "JSON", NULL },
  { "not-object-array", "[1, 2]", 0, "header is not a JSON object", NULL },
  { "not-object-string", "\"x\"", 0, "header is not a JSON object", NULL },
  { "not-object-null", "null", 0, "header is not a JSON object", NULL },
  { "entry-not-object", "{\"x\": 5}", 0, "tensor 'x'", "not a JSON object" },
  { "entry-array", "{\"x\": [1]}", 0, "tensor 'x'", "not a JSON object" },
  { "no-dtype", "{\"x\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "tensor 'x'", "dtype" },
  { "dtype-number", "{\"x\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
    "tensor 'x'", "dtype" },
  { "unknown-dtype", "{\"x\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
    "tensor 'x'", "unknown dtype 'F8'" },
  { "no-shape", "{\"x\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, "tensor 'x'", "shape" },
  { "shape-not-array", "{\"x\":{\"dtype\":\"U8\",\"shape\":3,\"data_offsets\":[0,3]}}", 3,
    "tensor 'x'", "shape" },
  { "shape-negative", "{\"x\":{\"dtype\":\"U8\",\"shape\":[2,-3],\"data_offsets\":[0,6]}}", 6,
    "tensor 'x'", "negative" },
  { "shape-float", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1,
    "tensor 'x'", "not an integer" },
  { "shape-string", "{\"x\":{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}}", 1,
    "tensor 'x'", "not an integer" },
  { "shape-9-dims",
    "{\"x\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
    "tensor 'x'", "9 dimensions" },
  { "shape-overflow",
    "{\"x\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,2],\"data_offsets\":[0,0]}}", 0,
    "tensor 'x'", "overflows" },
  { "shape-overflow-zero",
    "{\"x\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}}", 0,
    "tensor 'x'", "overflows" },
  { "bytes-overflow",
    "{\"x\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0,
    "tensor 'x'", "more than 2^64 bytes" },
  { "no-offsets", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, "tensor 'x'", "data_offsets" },
  { "offsets-short", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1,
    "tensor 'x'", "data_offsets" },
  { "offsets-negative", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 1,
    "tensor 'x'", "data_offsets" },
  { "offsets-past-end", "{\"x\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]}}", 8,
    "tensor 'x'", "past the end" },
  { "offsets-huge",
    "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9223372036854775806,"
    "9223372036854775807]}}", 8, "tensor 'x'", "past the end" },
  { "offsets-reversed", "{\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,4]}}", 8,
    "tensor 'x': data_offsets [8, 4] are reversed", NULL },
  { "size-mismatch", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8,
    "tensor 'x'", "needs 8 bytes" },
  { "size-mismatch-scalar", "{\"x\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,4]}}", 8,
    "tensor 'x'", "needs 2 bytes" },
  { "overlap",
    "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
    "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4,12]}}", 12, "'a' and 'b'",
    "overlap" },
  { "overlap-inside",
    "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
    "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
    "\"c\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[5,7]}}", 12, "overlap", NULL },
  { "metadata-not-object", "{\"__metadata__\": [\"a\"]}", 0, "__metadata__", "not a JSON object" },
  { "metadata-number", "{\"__metadata__\": {\"a\": \"ok\", \"b\": 1}}", 0, "__metadata__",
    "'b' is not a string" },
  { "metadata-null", "{\"__metadata__\": {\"b\": null}}", 0, "'b'", "not a string" },
  { "metadata-object", "{\"__metadata__\": {\"b\": {}}}", 0, "'b'", "not a string" },
  { "metadata-surrogate", "{\"__metadata__\": {\"b\": \"\\udc00x\"}}", 0, "'b'", "UTF-8" },
  { "name-surrogate", "{\"\\udc00x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
    1, "tensor name", "UTF-8" },
  { "name-high-surrogate",
    "{\"\\ud800\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, NULL, NULL },
  { "name-nul", "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
    "NUL", NULL },
};

static void
test_corrupt_case (gconstpointer p)
{
  const CorruptCase *c = p;
  /* the nul-byte case carries its length in the literal */
  gsize hlen = strcmp (c->path, "nul-byte") == 0 ? 5 : strlen (c->header);
  guint8 *buf = g_malloc0 (8 + hlen + c->data_len);
  for (int i = 0; i < 8; i++)
    buf[i] = (guint8) ((guint64) hlen >> (8 * i));
  memcpy (buf + 8, c->header, hlen);
  g_autoptr (GError) error = NULL;
  GBytes *bytes = g_bytes_new_take (buf, 8 + hlen + c->data_len);
  VaeSafetensors *st = vae_safetensors_new_from_bytes (bytes, "bad.safetensors", &error);
  g_bytes_unref (bytes);
  g_assert_null (st);
  assert_error (error, VAE_ERROR_FORMAT, "bad.safetensors", c->needle, c->needle2);
  /* the message is always printable */
  g_assert_true (g_utf8_validate (error->message, -1, NULL));
}

static void
test_corrupt_deep (void)
{
  /* deep nesting must be an error, not a stack overflow */
  GString *s = g_string_new ("{\"x\":");
  for (int i = 0; i < 100000; i++)
    g_string_append_c (s, '[');
  for (int i = 0; i < 100000; i++)
    g_string_append_c (s, ']');
  g_string_append_c (s, '}');
  expect_corrupt (make_file (s->str, 0), "not valid JSON", "nested");
  g_string_free (s, TRUE);
}

static void
test_reversed_message (void)
{
  g_autoptr (GError) error = NULL;
  GBytes *b = make_file ("{\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,4]}}", 8);
  VaeSafetensors *st = vae_safetensors_new_from_bytes (b, "model.safetensors", &error);
  g_bytes_unref (b);
  g_assert_null (st);
  g_assert_error (error, VAE_ERROR, VAE_ERROR_FORMAT);
  g_assert_cmpstr (error->message, ==,
                   "model.safetensors: tensor 'x': data_offsets [8, 4] are reversed");
}

/* ---- real files ---- */

static char *
write_temp (const void *data, gsize len)
{
  g_autoptr (GError) error = NULL;
  char *path = NULL;
  int fd = g_file_open_tmp ("vae-st-XXXXXX.safetensors", &path, &error);
  g_assert_no_error (error);
  close (fd);
  g_assert_true (g_file_set_contents (path, data, (gssize) len, &error));
  g_assert_no_error (error);
  return path;
}

static void
test_open_files (void)
{
  g_autoptr (GError) error = NULL;

  /* a missing file is an I/O error naming it */
  VaeSafetensors *st = vae_safetensors_open ("/nonexistent/dir/x.safetensors", &error);
  g_assert_null (st);
  assert_error (error, VAE_ERROR_IO, "/nonexistent/dir/x.safetensors", NULL, NULL);
  g_clear_error (&error);

  /* an empty file */
  char *path = write_temp ("", 0);
  st = vae_safetensors_open (path, &error);
  g_assert_null (st);
  assert_error (error, VAE_ERROR_FORMAT, path, "empty", NULL);
  g_clear_error (&error);
  g_unlink (path);
  g_free (path);

  /* a corrupt file: the message starts with its path */
  GBytes *b = make_file ("{\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,4]}}", 8);
  path = write_temp (g_bytes_get_data (b, NULL), g_bytes_get_size (b));
  g_bytes_unref (b);
  st = vae_safetensors_open (path, &error);
  g_assert_null (st);
  assert_error (error, VAE_ERROR_FORMAT, path, "tensor 'x': data_offsets [8, 4] are reversed",
                NULL);
  g_clear_error (&error);
  g_unlink (path);
  g_free (path);

  /* a short file */
  path = write_temp ("\x02\0\0", 3);
  st = vae_safetensors_open (path, &error);
  g_assert_null (st);
  assert_error (error, VAE_ERROR_FORMAT, path, "too short", NULL);
  g_clear_error (&error);
  g_unlink (path);
  g_free (path);

  /* a folder is not a file */
  g_autofree char *dir = g_dir_make_tmp ("vae-st-XXXXXX", NULL);
  st = vae_safetensors_open (dir, &error);
  g_assert_null (st);
  assert_error (error, VAE_ERROR_IO, dir, NULL, NULL);
  g_clear_error (&error);
  g_rmdir (dir);
}

/* ---- file mappings ---- */

/* Pages wholly inside P .. P + N mapped into this process (bit 63 of
 * /proc/self/pagemap), of *INNER; -1 when pagemap cannot be read. */
static gint64
resident_pages (const void *p, gsize n, guint64 *inner)
{
  int fd = g_open ("/proc/self/pagemap", O_RDONLY, 0);
  if (fd < 0)
    return -1;
  const guintptr page = (guintptr) sysconf (_SC_PAGESIZE);
  gint64 present = 0;
  *inner = 0;
  for (guintptr v = ((guintptr) p + page - 1) / page; v < ((guintptr) p + n) / page; v++) {
    guint64 entry;
    if (pread (fd, &entry, sizeof entry, (off_t) (v * sizeof entry)) != sizeof entry) {
      present = -1;
      break;
    }
    present += (entry >> 63) & 1;
    (*inner)++;
  }
  close (fd);
  return present;
}

/* A file's tensors lie in a private mapping whose pages can be given back
 * and read again, unchanged; files from memory have no such mapping. */
static void
test_file_mapping (void)
{
  g_autoptr (GError) error = NULL;
  const gsize page = (gsize) sysconf (_SC_PAGESIZE);
  const gsize n = (5 * page + 100) / 4;
  g_autofree float *values = g_new (float, n);
  for (gsize i = 0; i < n; i++)
    values[i] = (float) i * 0.25f - 7.0f;
  const guint8 pad[3] = { 1, 2, 3 };
  const gint64 pad_shape[1] = { 3 }, x_shape[1] = { (gint64) n };
  g_autoptr (VaeSafetensorsWriter) w = vae_safetensors_writer_new ();
  g_assert_true (vae_safetensors_writer_add (w, "pad", VAE_DTYPE_U8, 1, pad_shape, pad, 3,
                                             &error));
  g_assert_true (vae_safetensors_writer_add (w, "x", VAE_DTYPE_F32, 1, x_shape, values,
                                             n * 4, &error));
  g_autoptr (GBytes) mem = vae_safetensors_writer_serialize (w, &error);
  g_assert_no_error (error);
  g_autofree char *path = write_temp (g_bytes_get_data (mem, NULL), g_bytes_get_size (mem));

  VaeSafetensors *from_mem = vae_safetensors_new_from_bytes (mem, "mem", &error);
  g_assert_no_error (error);
  g_assert_null (vae_safetensors_ref_file_mapping (from_mem));
  vae_safetensors_free (from_mem);

  VaeSafetensors *st = vae_safetensors_open (path, &error);
  g_assert_no_error (error);
  GBytes *mapping = vae_safetensors_ref_file_mapping (st);
  g_assert_nonnull (mapping);
  const VaeTensorView *x = vae_safetensors_lookup (st, "x");
  /* "pad" puts x 3 bytes off float alignment: bytes, never float loads */
  const guint8 *data = x->data;
  vae_safetensors_free (st);   /* the reference keeps the data */
  g_assert_cmpmem (data, n * 4, values, n * 4);   /* read: resident */

  guint64 inner = 0;
  gint64 before = resident_pages (data, n * 4, &inner);
  gsize released = vae_safetensors_mapping_release (mapping, data, n * 4);
  g_assert_cmpuint (released, ==, inner * page);
  g_assert_cmpuint (inner, >=, 4);
  gint64 after = resident_pages (data, n * 4, &inner);
  if (before >= 0) {
    g_assert_cmpint (before, ==, (gint64) inner);
    g_assert_cmpint (after, ==, 0);
  }
  /* Read again: from the file, the same values. */
  g_assert_cmpmem (data, n * 4, values, n * 4);
  g_assert_cmpint (resident_pages (data, n * 4, &inner), !=, 0);
  /* Too little for a whole page: nothing given back, nothing wrong. */
  g_assert_cmpuint (vae_safetensors_mapping_release (mapping, data + 4, 16), ==, 0);
  float second;
  memcpy (&second, data + 4, sizeof second);
  g_assert_cmpfloat (second, ==, values[1]);
  g_bytes_unref (mapping);
  g_unlink (path);
}

/* ---- lookups and shape checks ---- */

static void
test_check_shape (void)
{
  VaeSafetensors *st = expect_valid (make_file (
      "{\"x\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]}}", 48));
  g_assert_null (vae_safetensors_lookup (st, "y"));
  g_assert_null (vae_safetensors_lookup (st, ""));
  const VaeTensorView *t = vae_safetensors_lookup (st, "x");
  g_assert_nonnull (t);

  g_autoptr (GError) error = NULL;
  const gint64 good[2] = { 3, 4 }, bad[2] = { 4, 4 }, bad3[3] = { 3, 4, 1 };
  g_assert_true (vae_tensor_view_check_shape (t, "model.safetensors", 2, good, &error));
  g_assert_no_error (error);

  g_assert_false (vae_tensor_view_check_shape (t, "model.safetensors", 2, bad, &error));
  g_assert_error (error, VAE_ERROR, VAE_ERROR_MODEL);
  g_assert_cmpstr (error->message, ==,
                   "model.safetensors: tensor 'x' has shape [3, 4] where [4, 4] was expected");
  g_clear_error (&error);

  g_assert_false (vae_tensor_view_check_shape (t, "model.safetensors", 3, bad3, &error));
  assert_error (error, VAE_ERROR_MODEL, "model.safetensors", "[3, 4]", "[3, 4, 1]");
  g_clear_error (&error);

  g_assert_false (vae_tensor_view_check_shape (t, "model.safetensors", 0, NULL, &error));
  assert_error (error, VAE_ERROR_MODEL, "model.safetensors", "[3, 4]", "[] was expected");
  g_clear_error (&error);
  vae_safetensors_free (st);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/safetensors/dtypes", test_dtypes);
  g_test_add_func ("/safetensors/f16", test_f16);
  g_test_add_func ("/safetensors/bf16", test_bf16);
  g_test_add_func ("/safetensors/round-trip", test_round_trip);
  g_test_add_func ("/safetensors/save-open", test_save_open);
  g_test_add_func ("/safetensors/writer-errors", test_writer_errors);
  g_test_add_func ("/safetensors/valid-variants", test_valid_variants);
  g_test_add_func ("/safetensors/unaligned", test_unaligned);
  g_test_add_func ("/safetensors/check-shape", test_check_shape);
  g_test_add_func ("/safetensors/open-files", test_open_files);
  g_test_add_func ("/safetensors/file-mapping", test_file_mapping);
  g_test_add_func ("/safetensors/corrupt/sizes", test_corrupt_sizes);
  g_test_add_func ("/safetensors/corrupt/truncated", test_corrupt_truncated);
  g_test_add_func ("/safetensors/corrupt/deep", test_corrupt_deep);
  g_test_add_func ("/safetensors/corrupt/reversed-message", test_reversed_message);
  for (guint i = 0; i < G_N_ELEMENTS (corrupt_cases); i++) {
    g_autofree char *name = g_strdup_printf ("/safetensors/corrupt/%s", corrupt_cases[i].path);
    g_test_add_data_func (name, &corrupt_cases[i], test_corrupt_case);
  }
  return g_test_run ();
}
