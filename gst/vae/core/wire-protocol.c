/* gst-vae: the Hybrid Inference VAE wire protocol (see wire-protocol.h for
 * why it is one module that the remote engine and vae-server share). */
#include "wire-protocol.h"

#include <errno.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#include "safetensors.h"   /* vae_f16_to_f32 and co. */

/* ---- dtypes ---- */

static const struct {
  const char *name;
  VaeWireDtype dt;
  gsize size;
} dtypes[] = {
  { "uint8", VAE_WIRE_U8, 1 },
  { "float16", VAE_WIRE_F16, 2 },
  { "bfloat16", VAE_WIRE_BF16, 2 },
  { "float32", VAE_WIRE_F32, 4 },
};

gboolean
vae_wire_dtype_parse (const char *name, VaeWireDtype *dt)
{
  if (!name)
    return FALSE;
  if (!g_ascii_strncasecmp (name, "torch.", 6))
    name += 6;
  for (guint i = 0; i < G_N_ELEMENTS (dtypes); i++)
    if (!g_ascii_strcasecmp (name, dtypes[i].name)) {
      *dt = dtypes[i].dt;
      return TRUE;
    }
  return FALSE;
}

const char *
vae_wire_dtype_name (VaeWireDtype dt)
{
  for (guint i = 0; i < G_N_ELEMENTS (dtypes); i++)
    if (dtypes[i].dt == dt)
      return dtypes[i].name;
  return "float32";
}

gsize
vae_wire_dtype_size (VaeWireDtype dt)
{
  return dt == VAE_WIRE_U8 ? 1 : dt == VAE_WIRE_F32 ? 4 : 2;
}

gboolean
vae_wire_dtype_is_float (VaeWireDtype dt)
{
  return dt != VAE_WIRE_U8;
}

float
vae_wire_load (const guint8 *p, VaeWireDtype dt, gsize i)
{
  switch (dt) {
  case VAE_WIRE_U8:
    return p[i];
  case VAE_WIRE_F16:
  case VAE_WIRE_BF16: {
    guint16 h;
    memcpy (&h, p + 2 * i, 2);
    h = GUINT16_FROM_LE (h);
    return dt == VAE_WIRE_F16 ? vae_f16_to_f32 (h) : vae_bf16_to_f32 (h);
  }
  case VAE_WIRE_F32:
  default: {
    guint32 u;
    float f;
    memcpy (&u, p + 4 * i, 4);
    u = GUINT32_FROM_LE (u);
    memcpy (&f, &u, 4);
    return f;
  }
  }
}

void
vae_wire_to_floats (const guint8 *src, VaeWireDtype dt, gsize n, float *dst)
{
  for (gsize i = 0; i < n; i++)
    dst[i] = vae_wire_load (src, dt, i);
}

void
vae_wire_from_floats (const float *src, gsize n, VaeWireDtype dt, guint8 *dst)
{
  for (gsize i = 0; i < n; i++) {
    switch (dt) {
    case VAE_WIRE_U8: {
      float x = src[i];
      dst[i] = !(x >= 0.0f) ? 0 : x >= 255.0f ? 255 : (guint8) lrintf (x);
      break;
    }
    case VAE_WIRE_F16:
    case VAE_WIRE_BF16: {
      guint16 h = GUINT16_TO_LE (dt == VAE_WIRE_F16 ? vae_f32_to_f16 (src[i])
                                                    : vae_f32_to_bf16 (src[i]));
      memcpy (dst + 2 * i, &h, 2);
      break;
    }
    case VAE_WIRE_F32:
    default: {
      guint32 u;
      memcpy (&u, &src[i], 4);
      u = GUINT32_TO_LE (u);
      memcpy (dst + 4 * i, &u, 4);
      break;
    }
    }
  }
}

/* ---- shapes ---- */

int
vae_wire_parse_dim (const char *text, gint64 *d)
{
  if (!text || !g_ascii_isdigit (text[0]))
    return VAE_WIRE_SHAPE_BAD;
  char *end;
  errno = 0;
  const guint64 v = g_ascii_strtoull (text, &end, 10);
  if (*end)
    return VAE_WIRE_SHAPE_BAD;
  if (errno == ERANGE || v > G_MAXINT32)
    return VAE_WIRE_SHAPE_TOO_LARGE;
  if (v < 1)
    return VAE_WIRE_SHAPE_BAD;
  *d = (gint64) v;
  return 0;
}

char *
vae_wire_shape_format (const gint64 *dims, int n)
{
  GString *t = g_string_new ("[");
  for (int i = 0; i < n; i++)
    g_string_append_printf (t, "%s%" G_GINT64_FORMAT, i ? "," : "", dims[i]);
  g_string_append_c (t, ']');
  return g_string_free (t, FALSE);
}

int
vae_wire_shape_parse (const char *text, gint64 *dims, int max)
{
  const char *p = text;
  int n = 0;
  if (!p)
    return VAE_WIRE_SHAPE_BAD;
  while (g_ascii_isspace (*p))
    p++;
  if (*p++ != '[')
    return VAE_WIRE_SHAPE_BAD;
  for (;;) {
    while (g_ascii_isspace (*p))
      p++;
    if (*p == ']' && n == 0)
      break;
    char *end = NULL;
    if (!g_ascii_isdigit (*p))
      return VAE_WIRE_SHAPE_BAD;
    errno = 0;
    guint64 v = g_ascii_strtoull (p, &end, 10);
    if (end == p || errno == ERANGE || v > G_MAXINT32 || n >= max)
      return VAE_WIRE_SHAPE_BAD;
    dims[n++] = (gint64) v;
    p = end;
    while (g_ascii_isspace (*p))
      p++;
    if (*p == ',') {
      p++;
      continue;
    }
    if (*p == ']')
      break;
    return VAE_WIRE_SHAPE_BAD;
  }
  p++;
  while (g_ascii_isspace (*p))
    p++;
  if (*p || n == 0)
    return VAE_WIRE_SHAPE_BAD;
  return n;
}

gboolean
vae_wire_shape_bytes (const gint64 *dims, int n, gsize unit, gsize *out)
{
  gsize p = unit;
  for (int i = 0; i < n; i++)
    if (dims[i] < 0 || !g_size_checked_mul (&p, p, (gsize) dims[i]))
      return FALSE;
  *out = p;
  return TRUE;
}

/* ---- the query string ---- */

struct _VaeWireQuery {
  GPtrArray *keys, *values;
};

static void
plus_to_space (char *s)
{
  for (; *s; s++)
    if (*s == '+')
      *s = ' ';
}

VaeWireQuery *
vae_wire_query_parse (const char *text)
{
  VaeWireQuery *q = g_new0 (VaeWireQuery, 1);
  q->keys = g_ptr_array_new_with_free_func (g_free);
  q->values = g_ptr_array_new_with_free_func (g_free);
  if (!text)
    return q;
  g_auto (GStrv) parts = g_strsplit (text, "&", -1);
  for (int i = 0; parts[i]; i++) {
    if (!*parts[i])
      continue;
    char *eq = strchr (parts[i], '=');
    if (eq)
      *eq = '\0';
    plus_to_space (parts[i]);
    if (eq)
      plus_to_space (eq + 1);
    char *k = g_uri_unescape_string (parts[i], NULL);
    char *v = g_uri_unescape_string (eq ? eq + 1 : "", NULL);
    if (!k || !v) {
      g_free (k);
      g_free (v);
      continue;
    }
    g_ptr_array_add (q->keys, k);
    g_ptr_array_add (q->values, v);
  }
  return q;
}

void
vae_wire_query_free (VaeWireQuery *q)
{
  if (!q)
    return;
  g_ptr_array_unref (q->keys);
  g_ptr_array_unref (q->values);
  g_free (q);
}

const char *
vae_wire_query_get (const VaeWireQuery *q, const char *key)
{
  const char *r = NULL;
  for (guint i = 0; i < q->keys->len; i++)
    if (!strcmp (q->keys->pdata[i], key))
      r = q->values->pdata[i];
  return r;
}

gboolean
vae_wire_query_bool (const VaeWireQuery *q, const char *key, gboolean def)
{
  const char *v = vae_wire_query_get (q, key);
  if (!v || !*v)
    return def;
  return !g_ascii_strcasecmp (v, "true") || !strcmp (v, "1")
         || !g_ascii_strcasecmp (v, "yes");
}

gboolean
vae_wire_query_double (const VaeWireQuery *q, const char *key, double *out, gboolean *ok)
{
  const char *v = vae_wire_query_get (q, key);
  if (!v)
    return FALSE;
  char *end;
  double d = g_ascii_strtod (v, &end);
  if (end == v || *end || !isfinite (d)) {
    *ok = FALSE;
    return FALSE;
  }
  *out = d;
  return TRUE;
}

int
vae_wire_query_shape (const VaeWireQuery *q, gint64 *dims, int max)
{
  int nd = 0;
  gboolean any = FALSE;
  for (guint i = 0; i < q->keys->len; i++) {
    if (strcmp (q->keys->pdata[i], VAE_WIRE_KEY_SHAPE))
      continue;
    any = TRUE;
    g_autofree char *v = g_strdup (q->values->pdata[i]);
    g_strdelimit (v, "[]()", ' ');
    g_auto (GStrv) items = g_strsplit (v, ",", -1);
    for (int j = 0; items[j]; j++) {
      g_strstrip (items[j]);
      if (!*items[j])
        continue;
      gint64 d;
      const int r = vae_wire_parse_dim (items[j], &d);
      if (r < 0)
        return r;
      if (nd >= max)
        return VAE_WIRE_SHAPE_BAD;
      dims[nd++] = d;
    }
  }
  if (any && nd == 0)
    return VAE_WIRE_SHAPE_BAD;
  return nd;
}

void
vae_wire_query_append (GString *q, const char *key, const char *value)
{
  if (q->len)
    g_string_append_c (q, '&');
  g_string_append_uri_escaped (q, key, NULL, FALSE);
  g_string_append_c (q, '=');
  g_string_append_uri_escaped (q, value, NULL, FALSE);
}

void
vae_wire_query_append_double (GString *q, const char *key, double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  g_ascii_formatd (buf, sizeof buf, "%.15g", v);
  if (g_ascii_strtod (buf, NULL) != v)
    g_ascii_formatd (buf, sizeof buf, "%.17g", v);
  vae_wire_query_append (q, key, buf);
}

void
vae_wire_query_append_bool (GString *q, const char *key, gboolean v)
{
  vae_wire_query_append (q, key, v ? "True" : "False");
}

void
vae_wire_query_append_tensor (GString *q, const gint64 *dims, int n, VaeWireDtype dt)
{
  for (int i = 0; i < n; i++) {
    char buf[24];
    g_snprintf (buf, sizeof buf, "%" G_GINT64_FORMAT, dims[i]);
    vae_wire_query_append (q, VAE_WIRE_KEY_SHAPE, buf);
  }
  vae_wire_query_append (q, VAE_WIRE_KEY_DTYPE, vae_wire_dtype_name (dt));
}

/* ---- error bodies ---- */

char *
vae_wire_error_json (const char *message, gsize *len)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "error");
  json_builder_add_string_value (b, message);
  json_builder_end_object (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, len);
}

char *
vae_wire_error_message (const guint8 *body, gsize len)
{
  if (!body || len == 0)
    return g_strdup ("empty body");
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (json_parser_load_from_data (parser, (const char *) body, (gssize) len, NULL)) {
    JsonNode *root = json_parser_get_root (parser);
    if (root && JSON_NODE_HOLDS_OBJECT (root)) {
      JsonObject *o = json_node_get_object (root);
      JsonNode *e = json_object_get_member (o, "error");
      if (e && JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_STRING)
        return g_strdup (json_node_get_string (e));
    }
  }
  GString *s = g_string_new (NULL);
  for (gsize i = 0; i < len && s->len < 200; i++) {
    char c = (char) body[i];
    g_string_append_c (s, g_ascii_isprint (c) ? c : ' ');
  }
  if (len > 200)
    g_string_append (s, "...");
  return g_string_free (s, FALSE);
}

/* ---- image bodies ---- */

VaeWireImage
vae_wire_sniff_image (const guint8 *data, gsize len)
{
  static const guint8 png_sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
  if (len >= 8 && !memcmp (data, png_sig, 8))
    return VAE_WIRE_IMAGE_PNG;
  if (len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
    return VAE_WIRE_IMAGE_JPEG;
  return VAE_WIRE_IMAGE_NONE;
}
