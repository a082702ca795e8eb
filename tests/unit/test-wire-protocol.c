/* gst-vae: tests for the wire protocol module (wire-protocol.h), which the
 * remote engine and vae-server share: round trips of everything one side
 * writes and the other reads, and errors for malformed input. */
#include "wire-protocol.h"

#include <math.h>
#include <string.h>

static void
test_dtype_names (void)
{
  const VaeWireDtype all[] = { VAE_WIRE_U8, VAE_WIRE_F16, VAE_WIRE_BF16, VAE_WIRE_F32 };
  const gsize sizes[] = { 1, 2, 2, 4 };
  for (guint i = 0; i < G_N_ELEMENTS (all); i++) {
    VaeWireDtype dt = (VaeWireDtype) -1;
    const char *name = vae_wire_dtype_name (all[i]);
    g_assert_true (vae_wire_dtype_parse (name, &dt));
    g_assert_cmpint (dt, ==, all[i]);
    g_assert_cmpuint (vae_wire_dtype_size (all[i]), ==, sizes[i]);
    g_autofree char *torch = g_strconcat ("torch.", name, NULL);
    g_autofree char *upper = g_ascii_strup (torch, -1);
    dt = (VaeWireDtype) -1;
    g_assert_true (vae_wire_dtype_parse (upper, &dt));
    g_assert_cmpint (dt, ==, all[i]);
  }
  g_assert_cmpstr (vae_wire_dtype_name (VAE_WIRE_F16), ==, "float16");
  g_assert_cmpstr (vae_wire_dtype_name (VAE_WIRE_BF16), ==, "bfloat16");
  g_assert_false (vae_wire_dtype_is_float (VAE_WIRE_U8));
  g_assert_true (vae_wire_dtype_is_float (VAE_WIRE_BF16));

  const char *bad[] = { "", "float64", "int8", "torch.", "float16 ", "f16", "torch.torch.uint8" };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    VaeWireDtype dt = VAE_WIRE_F32;
    g_assert_false (vae_wire_dtype_parse (bad[i], &dt));
    g_assert_cmpint (dt, ==, VAE_WIRE_F32);   /* untouched */
  }
  VaeWireDtype dt;
  g_assert_false (vae_wire_dtype_parse (NULL, &dt));
}

/* Values each dtype holds exactly come back bit for bit; others round to
 * nearest even. */
static void
test_tensor_round_trip (void)
{
  const float exact[] = { 0.0f, -0.0f, 1.0f, -2.0f, 0.5f, 0.25f, 65504.0f, -1.5f, 3.0f };
  const gsize n = G_N_ELEMENTS (exact);
  const VaeWireDtype floats[] = { VAE_WIRE_F16, VAE_WIRE_BF16, VAE_WIRE_F32 };
  for (guint k = 0; k < G_N_ELEMENTS (floats); k++) {
    guint8 bytes[4 * G_N_ELEMENTS (exact)];
    float back[G_N_ELEMENTS (exact)];
    vae_wire_from_floats (exact, n, floats[k], bytes);
    vae_wire_to_floats (bytes, floats[k], n, back);
    for (gsize i = 0; i < n; i++) {
      if (floats[k] == VAE_WIRE_BF16 && exact[i] == 65504.0f)
        continue;   /* not a bf16 value */
      g_assert_cmpmem (&back[i], 4, &exact[i], 4);
    }
  }
  /* Little-endian on the wire: 1.0 in float16 is 0x3c00. */
  guint8 b[4];
  const float one = 1.0f;
  vae_wire_from_floats (&one, 1, VAE_WIRE_F16, b);
  g_assert_cmpint (b[0], ==, 0x00);
  g_assert_cmpint (b[1], ==, 0x3c);
  vae_wire_from_floats (&one, 1, VAE_WIRE_BF16, b);
  g_assert_cmpint (b[0], ==, 0x80);
  g_assert_cmpint (b[1], ==, 0x3f);
  vae_wire_from_floats (&one, 1, VAE_WIRE_F32, b);
  g_assert_cmpint (b[3], ==, 0x3f);
  g_assert_cmpint (b[2], ==, 0x80);

  /* float16: subnormals, infinities and NaN survive; rounding to even. */
  const float special[] = { 5.9604645e-8f, -6.1035156e-5f, INFINITY, -INFINITY, NAN };
  guint8 hb[2 * G_N_ELEMENTS (special)];
  float hback[G_N_ELEMENTS (special)];
  vae_wire_from_floats (special, G_N_ELEMENTS (special), VAE_WIRE_F16, hb);
  vae_wire_to_floats (hb, VAE_WIRE_F16, G_N_ELEMENTS (special), hback);
  g_assert_cmpfloat (hback[0], ==, special[0]);
  g_assert_cmpfloat (hback[1], ==, special[1]);
  g_assert_true (isinf (hback[2]) && hback[2] > 0);
  g_assert_true (isinf (hback[3]) && hback[3] < 0);
  g_assert_true (isnan (hback[4]));
  const float tie = 1.0f + 1.0f / 2048.0f;   /* halfway between two halves */
  float r;
  vae_wire_from_floats (&tie, 1, VAE_WIRE_F16, hb);
  vae_wire_to_floats (hb, VAE_WIRE_F16, 1, &r);
  g_assert_cmpfloat (r, ==, 1.0f);

  /* uint8: rounds and clamps, NaN is 0. */
  const float px[] = { 0.0f, 254.6f, 255.0f, 300.0f, -3.0f, NAN, 127.5f };
  guint8 u8[G_N_ELEMENTS (px)];
  vae_wire_from_floats (px, G_N_ELEMENTS (px), VAE_WIRE_U8, u8);
  const guint8 want[] = { 0, 255, 255, 255, 0, 0, 128 };
  g_assert_cmpmem (u8, sizeof u8, want, sizeof want);
  g_assert_cmpfloat (vae_wire_load (u8, VAE_WIRE_U8, 6), ==, 128.0f);
}

static void
test_shape_header (void)
{
  const gint64 dims[] = { 8, 512, 512, 3 };
  g_autofree char *text = vae_wire_shape_format (dims, 4);
  g_assert_cmpstr (text, ==, "[8,512,512,3]");
  gint64 back[VAE_WIRE_MAX_DIMS];
  g_assert_cmpint (vae_wire_shape_parse (text, back, VAE_WIRE_MAX_DIMS), ==, 4);
  g_assert_cmpmem (back, sizeof dims, dims, sizeof dims);
  /* Spaces (Python's json.dumps writes them) and a zero dimension. */
  g_assert_cmpint (vae_wire_shape_parse (" [1, 4 ,0,64] ", back, VAE_WIRE_MAX_DIMS), ==, 4);
  g_assert_cmpint (back[2], ==, 0);

  const char *bad[] = { NULL, "", "[]", "1,4", "[1,4", "[1,,4]", "[1,-4]", "[1.5]",
                        "[1,4]x", "[a]", "[99999999999]", "[1,2,3,4,5,6,7,8,9]", "[+1]" };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    g_assert_cmpint (vae_wire_shape_parse (bad[i], back, VAE_WIRE_MAX_DIMS), ==,
                     VAE_WIRE_SHAPE_BAD);
  g_assert_cmpint (vae_wire_shape_parse ("[1,2,3]", back, 2), ==, VAE_WIRE_SHAPE_BAD);

  gsize bytes = 0;
  g_assert_true (vae_wire_shape_bytes (dims, 4, 2, &bytes));
  g_assert_cmpuint (bytes, ==, (gsize) 8 * 512 * 512 * 3 * 2);
  const gint64 huge[] = { G_MAXINT32, G_MAXINT32, G_MAXINT32 };
  g_assert_false (vae_wire_shape_bytes (huge, 3, 4, &bytes));
  const gint64 neg[] = { 2, -1 };
  g_assert_false (vae_wire_shape_bytes (neg, 2, 1, &bytes));
}

static void
test_dims (void)
{
  gint64 d = 0;
  g_assert_cmpint (vae_wire_parse_dim ("64", &d), ==, 0);
  g_assert_cmpint (d, ==, 64);
  g_assert_cmpint (vae_wire_parse_dim ("2147483647", &d), ==, 0);
  g_assert_cmpint (vae_wire_parse_dim ("2147483648", &d), ==, VAE_WIRE_SHAPE_TOO_LARGE);
  g_assert_cmpint (vae_wire_parse_dim ("99999999999999999999999", &d), ==,
                   VAE_WIRE_SHAPE_TOO_LARGE);
  const char *bad[] = { NULL, "", "0", "-1", " 1", "1 ", "1x", "+1", "0x10" };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    g_assert_cmpint (vae_wire_parse_dim (bad[i], &d), ==, VAE_WIRE_SHAPE_BAD);
}

/* What the client builds, the server reads back. */
static void
test_query_round_trip (void)
{
  const double factors[] = { 0.18215, 0.3611, -0.1159, 1.0, 0.0, 1e-30, 1.0 / 3.0,
                             12345678.9 };
  for (guint i = 0; i < G_N_ELEMENTS (factors); i++) {
    g_autoptr (GString) q = g_string_new (NULL);
    vae_wire_query_append (q, VAE_WIRE_KEY_OUTPUT_TYPE, "pt");
    vae_wire_query_append_bool (q, VAE_WIRE_KEY_PARTIAL, TRUE);
    vae_wire_query_append_double (q, VAE_WIRE_KEY_SCALING, factors[i]);
    const gint64 dims[] = { 8, 4, 64, 64 };
    vae_wire_query_append_tensor (q, dims, 4, VAE_WIRE_F16);
    g_autoptr (VaeWireQuery) p = vae_wire_query_parse (q->str);
    g_assert_cmpstr (vae_wire_query_get (p, VAE_WIRE_KEY_OUTPUT_TYPE), ==, "pt");
    g_assert_true (vae_wire_query_bool (p, VAE_WIRE_KEY_PARTIAL, FALSE));
    double v = -99;
    gboolean ok = TRUE;
    g_assert_true (vae_wire_query_double (p, VAE_WIRE_KEY_SCALING, &v, &ok));
    g_assert_true (ok);
    g_assert_cmpfloat (v, ==, factors[i]);
    gint64 back[VAE_WIRE_MAX_DIMS];
    g_assert_cmpint (vae_wire_query_shape (p, back, VAE_WIRE_MAX_DIMS), ==, 4);
    g_assert_cmpmem (back, sizeof dims, dims, sizeof dims);
    VaeWireDtype dt;
    g_assert_true (vae_wire_dtype_parse (vae_wire_query_get (p, VAE_WIRE_KEY_DTYPE), &dt));
    g_assert_cmpint (dt, ==, VAE_WIRE_F16);
  }
  /* The exact text diffusers' client sends. */
  g_autoptr (GString) q = g_string_new ("output_type=pt");
  vae_wire_query_append_bool (q, VAE_WIRE_KEY_PARTIAL, FALSE);
  vae_wire_query_append_double (q, VAE_WIRE_KEY_SCALING, 0.18215);
  const gint64 dims[] = { 1, 4, 64, 64 };
  vae_wire_query_append_tensor (q, dims, 4, VAE_WIRE_F32);
  g_assert_cmpstr (q->str, ==, "output_type=pt&partial_postprocess=False&scaling_factor=0.18215"
                   "&shape=1&shape=4&shape=64&shape=64&dtype=float32");
}

static void
test_query_parse (void)
{
  g_autoptr (VaeWireQuery) q = vae_wire_query_parse (
      "a=1&a=2&&b&c=x+y%20z&d=%ZZ&do_scaling=TRUE&f=False&n=abc&inf=inf&shape=[1,4]&shape=5");
  g_assert_cmpstr (vae_wire_query_get (q, "a"), ==, "2");   /* the last one */
  g_assert_cmpstr (vae_wire_query_get (q, "b"), ==, "");
  g_assert_cmpstr (vae_wire_query_get (q, "c"), ==, "x y z");
  g_assert_null (vae_wire_query_get (q, "d"));               /* bad escape: dropped */
  g_assert_null (vae_wire_query_get (q, "missing"));
  g_assert_true (vae_wire_query_bool (q, "do_scaling", FALSE));
  g_assert_false (vae_wire_query_bool (q, "f", TRUE));
  g_assert_true (vae_wire_query_bool (q, "b", TRUE));        /* empty: the default */
  g_assert_true (vae_wire_query_bool (q, "missing", TRUE));
  double v = 7;
  gboolean ok = TRUE;
  g_assert_false (vae_wire_query_double (q, "missing", &v, &ok));
  g_assert_true (ok);
  g_assert_false (vae_wire_query_double (q, "n", &v, &ok));
  g_assert_false (ok);
  ok = TRUE;
  g_assert_false (vae_wire_query_double (q, "inf", &v, &ok));
  g_assert_false (ok);
  g_assert_cmpfloat (v, ==, 7);
  gint64 dims[VAE_WIRE_MAX_DIMS];
  g_assert_cmpint (vae_wire_query_shape (q, dims, VAE_WIRE_MAX_DIMS), ==, 3);
  g_assert_cmpint (dims[2], ==, 5);
  g_assert_cmpint (vae_wire_query_shape (q, dims, 2), ==, VAE_WIRE_SHAPE_BAD);

  g_autoptr (VaeWireQuery) none = vae_wire_query_parse (NULL);
  g_assert_cmpint (vae_wire_query_shape (none, dims, VAE_WIRE_MAX_DIMS), ==, 0);
  const char *bad[] = { "shape=", "shape=[]", "shape=0", "shape=1&shape=x", "shape=-3",
                        "shape=1.5" };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (VaeWireQuery) b = vae_wire_query_parse (bad[i]);
    g_assert_cmpint (vae_wire_query_shape (b, dims, VAE_WIRE_MAX_DIMS), ==,
                     VAE_WIRE_SHAPE_BAD);
  }
  g_autoptr (VaeWireQuery) big = vae_wire_query_parse ("shape=1,4,4294967296,2");
  g_assert_cmpint (vae_wire_query_shape (big, dims, VAE_WIRE_MAX_DIMS), ==,
                   VAE_WIRE_SHAPE_TOO_LARGE);
}

static void
test_error_body (void)
{
  const char *msgs[] = { "Expected `dtype` in query params.", "quote \" and \\ and\nnewline",
                         "", "ünïcode" };
  for (guint i = 0; i < G_N_ELEMENTS (msgs); i++) {
    gsize len = 0;
    g_autofree char *json = vae_wire_error_json (msgs[i], &len);
    g_assert_cmpuint (len, ==, strlen (json));
    g_autofree char *back = vae_wire_error_message ((const guint8 *) json, len);
    g_assert_cmpstr (back, ==, msgs[i]);
  }
  /* Not our JSON: the body's start, printable. */
  g_autofree char *empty = vae_wire_error_message (NULL, 0);
  g_assert_cmpstr (empty, ==, "empty body");
  const char *html = "<html>\n503 Service\tUnavailable</html>";
  g_autofree char *h = vae_wire_error_message ((const guint8 *) html, strlen (html));
  g_assert_cmpstr (h, ==, "<html> 503 Service Unavailable</html>");
  const char *other = "{\"error\": 5}";
  g_autofree char *o = vae_wire_error_message ((const guint8 *) other, strlen (other));
  g_assert_cmpstr (o, ==, other);
  g_autofree char *lng = g_strnfill (500, 'x');
  g_autofree char *l = vae_wire_error_message ((const guint8 *) lng, 500);
  g_assert_cmpuint (strlen (l), ==, 203);
  g_assert_true (g_str_has_suffix (l, "..."));
}

static void
test_sniff (void)
{
  const guint8 png[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0 };
  const guint8 jpeg[] = { 0xff, 0xd8, 0xff, 0xe0 };
  g_assert_cmpint (vae_wire_sniff_image (png, sizeof png), ==, VAE_WIRE_IMAGE_PNG);
  g_assert_cmpint (vae_wire_sniff_image (png, 7), ==, VAE_WIRE_IMAGE_NONE);
  g_assert_cmpint (vae_wire_sniff_image (jpeg, sizeof jpeg), ==, VAE_WIRE_IMAGE_JPEG);
  g_assert_cmpint (vae_wire_sniff_image (jpeg, 2), ==, VAE_WIRE_IMAGE_NONE);
  g_assert_cmpint (vae_wire_sniff_image ((const guint8 *) "tensor", 6), ==,
                   VAE_WIRE_IMAGE_NONE);
  g_assert_cmpint (vae_wire_sniff_image (NULL, 0), ==, VAE_WIRE_IMAGE_NONE);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/wire/dtype-names", test_dtype_names);
  g_test_add_func ("/wire/tensor-round-trip", test_tensor_round_trip);
  g_test_add_func ("/wire/shape-header", test_shape_header);
  g_test_add_func ("/wire/dims", test_dims);
  g_test_add_func ("/wire/query-round-trip", test_query_round_trip);
  g_test_add_func ("/wire/query-parse", test_query_parse);
  g_test_add_func ("/wire/error-body", test_error_body);
  g_test_add_func ("/wire/sniff", test_sniff);
  return g_test_run ();
}
