/* gst-vae: safetensors files, read through mmap and written atomically.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON,
 * then the data area.  The JSON maps tensor names to
 *   {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}
 * (offsets relative to the data area) plus an optional "__metadata__" object
 * of strings.  Everything in the header is untrusted and checked here. */
#include "safetensors.h"
#include "vae-error.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#ifdef G_OS_UNIX
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

/* A valid header nests three levels deep (root, entry, shape); anything much
 * deeper is rejected before json-glib's recursive parser sees it. */
#define MAX_JSON_DEPTH 32

/* ---- dtypes ---- */

static const struct {
  const char *name;
  gsize size;
} dtype_info[] = {
  [VAE_DTYPE_F32] = { "F32", 4 },
  [VAE_DTYPE_F16] = { "F16", 2 },
  [VAE_DTYPE_BF16] = { "BF16", 2 },
  [VAE_DTYPE_F64] = { "F64", 8 },
  [VAE_DTYPE_I64] = { "I64", 8 },
  [VAE_DTYPE_I32] = { "I32", 4 },
  [VAE_DTYPE_I16] = { "I16", 2 },
  [VAE_DTYPE_I8] = { "I8", 1 },
  [VAE_DTYPE_U8] = { "U8", 1 },
  [VAE_DTYPE_BOOL] = { "BOOL", 1 },
};

static gboolean
dtype_valid (VaeDType dtype)
{
  return (guint) dtype < G_N_ELEMENTS (dtype_info);
}

const char *
vae_dtype_name (VaeDType dtype)
{
  return dtype_valid (dtype) ? dtype_info[dtype].name : NULL;
}

gboolean
vae_dtype_from_name (const char *name, VaeDType *dtype)
{
  if (name == NULL)
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (dtype_info); i++) {
    if (strcmp (name, dtype_info[i].name) == 0) {
      if (dtype)
        *dtype = (VaeDType) i;
      return TRUE;
    }
  }
  return FALSE;
}

gsize
vae_dtype_size (VaeDType dtype)
{
  return dtype_valid (dtype) ? dtype_info[dtype].size : 0;
}

/* ---- conversions ---- */

static inline guint32
f32_bits (float f)
{
  guint32 u;
  memcpy (&u, &f, sizeof u);
  return u;
}

static inline float
bits_f32 (guint32 u)
{
  float f;
  memcpy (&f, &u, sizeof f);
  return f;
}

float
vae_f16_to_f32 (guint16 h)
{
  guint32 sign = (guint32) (h & 0x8000u) << 16;
  guint32 exp = (h >> 10) & 0x1fu;
  guint32 mant = h & 0x3ffu;

  if (exp == 0) {
    /* zero or subnormal: mant * 2^-24, exact in f32 */
    float v = ldexpf ((float) mant, -24);
    return sign ? -v : v;
  }
  if (exp == 31)                /* inf, or nan with its payload kept */
    return bits_f32 (sign | 0x7f800000u | (mant << 13));
  return bits_f32 (sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

guint16
vae_f32_to_f16 (float f)
{
  guint32 u = f32_bits (f);
  guint16 sign = (guint16) ((u >> 16) & 0x8000u);
  guint32 a = u & 0x7fffffffu;

  if (a >= 0x7f800000u) {
    if (a == 0x7f800000u)
      return sign | 0x7c00u;
    /* nan: keep the top of the payload, force quiet so it stays a nan */
    return sign | 0x7e00u | (guint16) ((a >> 13) & 0x3ffu);
  }
  /* 65520 and above round to infinity (65504 is odd, ties go to even) */
  if (a >= 0x477ff000u)
    return sign | 0x7c00u;

  if (a < 0x38800000u) {
    /* below the smallest normal half (2^-14): result = round (|f| * 2^24) */
    guint32 exp = a >> 23;
    if (exp < 102)              /* |f| < 2^-25: rounds to zero */
      return sign;
    guint32 mant = (a & 0x7fffffu) | 0x800000u;
    guint32 shift = 126 - exp;  /* 14 .. 24 */
    guint32 r = mant >> shift;
    guint32 rem = mant & ((1u << shift) - 1u);
    guint32 half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u)))
      r++;
    return sign | (guint16) r;  /* r may reach 0x400: the smallest normal */
  }

  /* normal: rebias the exponent, round the 13 dropped bits to nearest even;
   * a carry out of the mantissa correctly bumps the exponent */
  guint32 h = (a - 0x38000000u) >> 13;
  guint32 rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
    h++;
  return sign | (guint16) h;
}

float
vae_bf16_to_f32 (guint16 b)
{
  return bits_f32 ((guint32) b << 16);
}

guint16
vae_f32_to_bf16 (float f)
{
  guint32 u = f32_bits (f);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return (guint16) ((u >> 16) | 0x0040u);     /* quiet nan */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (guint16) (u >> 16);
}

static float
f64_to_f32 (double d)
{
  /* Out-of-range finite doubles: round to nearest as IEEE would, without
   * relying on the (formally undefined) out-of-range conversion. */
  if (isfinite (d) && fabs (d) > (double) FLT_MAX) {
    /* halfway between FLT_MAX and 2^128 */
    const double limit = (double) FLT_MAX + ldexp (1.0, 103);
    float v = fabs (d) >= limit ? INFINITY : FLT_MAX;
    return d < 0 ? -v : v;
  }
  return (float) d;
}

/* ---- shape helpers ---- */

static void
append_shape (GString *s, int ndim, const gint64 *shape)
{
  g_string_append_c (s, '[');
  for (int i = 0; i < ndim; i++) {
    if (i > 0)
      g_string_append (s, ", ");
    g_string_append_printf (s, "%" G_GINT64_FORMAT, shape[i]);
  }
  g_string_append_c (s, ']');
}

char *
vae_shape_to_string (int ndim, const gint64 *shape)
{
  GString *s = g_string_new (NULL);
  append_shape (s, ndim, shape);
  return g_string_free (s, FALSE);
}

/* ---- the reader ---- */

typedef struct {
  VaeTensorView view;
  guint64 begin, end;
} TensorEntry;

struct _VaeSafetensors {
  char *label;
  GBytes *bytes;
  gsize data_size;
  guint n_tensors;
  TensorEntry *tensors;         /* sorted by begin offset */
  GHashTable *by_name;          /* name -> VaeTensorView*, names owned by names */
  GPtrArray *names;             /* owned tensor names */
  GHashTable *metadata;         /* key -> value, both owned */
  GPtrArray *metadata_keys;     /* keys in header order (borrowed from metadata) */
  gboolean file_mapping;        /* bytes: map_file's private read-only mapping */
};

void
vae_safetensors_free (VaeSafetensors *st)
{
  if (st == NULL)
    return;
  g_free (st->label);
  g_clear_pointer (&st->bytes, g_bytes_unref);
  g_free (st->tensors);
  g_clear_pointer (&st->by_name, g_hash_table_unref);
  g_clear_pointer (&st->names, g_ptr_array_unref);
  g_clear_pointer (&st->metadata_keys, g_ptr_array_unref);
  g_clear_pointer (&st->metadata, g_hash_table_unref);
  g_free (st);
}

G_GNUC_PRINTF (3, 4) static void
set_format_error (GError **error, const char *label, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "%s: %s", label, msg);
  g_free (msg);
}

/* A scan of the raw JSON before json-glib sees it: rejects nesting deeper
 * than MAX_JSON_DEPTH, so a hostile header cannot exhaust the stack of the
 * recursive parser, and "\u0000" escapes, which json-glib would silently
 * truncate strings at (so two different names could become one). */
static gboolean
prescan_json (const char *label, const char *s, gsize n, GError **error)
{
  int depth = 0;
  gboolean in_string = FALSE;
  for (gsize i = 0; i < n; i++) {
    char c = s[i];
    if (in_string) {
      if (c == '\\') {
        if (i + 5 < n && s[i + 1] == 'u' && strncmp (s + i + 2, "0000", 4) == 0) {
          set_format_error (error, label,
                            "header is not valid: a string holds a NUL character (\\u0000)");
          return FALSE;
        }
        i++;
      } else if (c == '"') {
        in_string = FALSE;
      }
    } else if (c == '"') {
      in_string = TRUE;
    } else if (c == '[' || c == '{') {
      if (++depth > MAX_JSON_DEPTH) {
        set_format_error (error, label,
                          "header is not valid JSON: nested deeper than %d levels",
                          MAX_JSON_DEPTH);
        return FALSE;
      }
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
  return TRUE;
}

/* A non-negative JSON integer. */
static gboolean
node_get_uint (JsonNode *node, guint64 *out, gint64 *raw)
{
  if (node == NULL || JSON_NODE_TYPE (node) != JSON_NODE_VALUE
      || json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  gint64 v = json_node_get_int (node);
  if (raw)
    *raw = v;
  if (v < 0)
    return FALSE;
  *out = (guint64) v;
  return TRUE;
}

static gboolean
parse_metadata (VaeSafetensors *st, JsonNode *node, GError **error)
{
  if (JSON_NODE_TYPE (node) != JSON_NODE_OBJECT) {
    set_format_error (error, st->label, "\"__metadata__\" is not a JSON object");
    return FALSE;
  }
  JsonObject *obj = json_node_get_object (node);
  GList *members = json_object_get_members (obj);
  gboolean ok = TRUE;
  for (GList *l = members; l != NULL; l = l->next) {
    const char *key = l->data;
    JsonNode *v = json_object_get_member (obj, key);
    if (JSON_NODE_TYPE (v) != JSON_NODE_VALUE
        || json_node_get_value_type (v) != G_TYPE_STRING) {
      g_autofree char *shown = g_utf8_make_valid (key, -1);
      set_format_error (error, st->label,
                        "\"__metadata__\" value for key '%s' is not a string", shown);
      ok = FALSE;
      break;
    }
    if (!g_utf8_validate (key, -1, NULL)
        || !g_utf8_validate (json_node_get_string (v), -1, NULL)) {
      g_autofree char *shown = g_utf8_make_valid (key, -1);
      set_format_error (error, st->label,
                        "\"__metadata__\" key '%s' or its value is not valid UTF-8", shown);
      ok = FALSE;
      break;
    }
    if (g_hash_table_contains (st->metadata, key))
      continue;
    char *k = g_strdup (key);
    g_hash_table_insert (st->metadata, k, g_strdup (json_node_get_string (v)));
    g_ptr_array_add (st->metadata_keys, k);
  }
  g_list_free (members);
  return ok;
}

static gboolean
parse_tensor (VaeSafetensors *st, const char *name, JsonNode *node, TensorEntry *e,
              GError **error)
{
  const char *label = st->label;

  if (JSON_NODE_TYPE (node) != JSON_NODE_OBJECT) {
    set_format_error (error, label, "tensor '%s': entry is not a JSON object", name);
    return FALSE;
  }
  JsonObject *obj = json_node_get_object (node);

  /* dtype */
  JsonNode *dn = json_object_get_member (obj, "dtype");
  if (dn == NULL) {
    set_format_error (error, label, "tensor '%s': no \"dtype\"", name);
    return FALSE;
  }
  if (JSON_NODE_TYPE (dn) != JSON_NODE_VALUE
      || json_node_get_value_type (dn) != G_TYPE_STRING) {
    set_format_error (error, label, "tensor '%s': \"dtype\" is not a string", name);
    return FALSE;
  }
  const char *dname = json_node_get_string (dn);
  if (!vae_dtype_from_name (dname, &e->view.dtype)) {
    set_format_error (error, label, "tensor '%s': unknown dtype '%s'", name, dname);
    return FALSE;
  }

  /* shape */
  JsonNode *sn = json_object_get_member (obj, "shape");
  if (sn == NULL) {
    set_format_error (error, label, "tensor '%s': no \"shape\"", name);
    return FALSE;
  }
  if (JSON_NODE_TYPE (sn) != JSON_NODE_ARRAY) {
    set_format_error (error, label, "tensor '%s': \"shape\" is not an array", name);
    return FALSE;
  }
  JsonArray *sa = json_node_get_array (sn);
  guint ndim = json_array_get_length (sa);
  if (ndim > VAE_SAFETENSORS_MAX_DIMS) {
    set_format_error (error, label,
                      "tensor '%s': shape has %u dimensions, more than %d", name, ndim,
                      VAE_SAFETENSORS_MAX_DIMS);
    return FALSE;
  }
  e->view.ndim = (int) ndim;
  guint64 n_elements = 1;
  gboolean overflow = FALSE;
  for (guint i = 0; i < ndim; i++) {
    guint64 d;
    gint64 raw = 0;
    JsonNode *dim = json_array_get_element (sa, i);
    if (!node_get_uint (dim, &d, &raw)) {
      if (dim != NULL && JSON_NODE_TYPE (dim) == JSON_NODE_VALUE
          && json_node_get_value_type (dim) == G_TYPE_INT64)
        set_format_error (error, label,
                          "tensor '%s': shape entry %u is negative or out of range (%"
                          G_GINT64_FORMAT ")",
                          name, i, raw);
      else
        set_format_error (error, label,
                          "tensor '%s': shape entry %u is not an integer", name, i);
      return FALSE;
    }
    e->view.shape[i] = (gint64) d;
    if (!overflow && !g_uint64_checked_mul (&n_elements, n_elements, d))
      overflow = TRUE;
  }
  /* A zero dimension makes the product 0 even if a partial product overflowed;
   * such a shape is still nonsense, so overflow anywhere is an error. */
  if (overflow) {
    char *s = vae_shape_to_string (e->view.ndim, e->view.shape);
    set_format_error (error, label,
                      "tensor '%s': element count of shape %s overflows 64 bits", name, s);
    g_free (s);
    return FALSE;
  }
  e->view.n_elements = n_elements;

  /* data_offsets */
  JsonNode *on = json_object_get_member (obj, "data_offsets");
  if (on == NULL) {
    set_format_error (error, label, "tensor '%s': no \"data_offsets\"", name);
    return FALSE;
  }
  JsonArray *oa = JSON_NODE_TYPE (on) == JSON_NODE_ARRAY ? json_node_get_array (on) : NULL;
  guint64 begin, end;
  if (oa == NULL || json_array_get_length (oa) != 2
      || !node_get_uint (json_array_get_element (oa, 0), &begin, NULL)
      || !node_get_uint (json_array_get_element (oa, 1), &end, NULL)) {
    set_format_error (error, label,
                      "tensor '%s': \"data_offsets\" is not an array of two non-negative integers",
                      name);
    return FALSE;
  }
  if (begin > end) {
    set_format_error (error, label,
                      "tensor '%s': data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                      "] are reversed", name, begin, end);
    return FALSE;
  }
  if (end > st->data_size) {
    set_format_error (error, label,
                      "tensor '%s': data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                      "] run past the end of the data (%" G_GSIZE_FORMAT " bytes); "
                      "the file may be truncated", name, begin, end, st->data_size);
    return FALSE;
  }
  guint64 need;
  gsize esize = vae_dtype_size (e->view.dtype);
  gboolean fits = g_uint64_checked_mul (&need, n_elements, esize);
  if (!fits || need != end - begin) {
    char *s = vae_shape_to_string (e->view.ndim, e->view.shape);
    char *needs = fits ? g_strdup_printf ("%" G_GUINT64_FORMAT " bytes", need)
        : g_strdup ("more than 2^64 bytes");
    set_format_error (error, label,
                      "tensor '%s': data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                      "] hold %" G_GUINT64_FORMAT " bytes but shape %s of %s needs %s",
                      name, begin, end, end - begin, s, vae_dtype_name (e->view.dtype),
                      needs);
    g_free (needs);
    g_free (s);
    return FALSE;
  }
  e->begin = begin;
  e->end = end;
  e->view.n_bytes = (gsize) need;
  return TRUE;
}

static int
compare_entries (const void *pa, const void *pb)
{
  const TensorEntry *a = pa, *b = pb;
  if (a->begin != b->begin)
    return a->begin < b->begin ? -1 : 1;
  if (a->end != b->end)
    return a->end < b->end ? -1 : 1;
  return strcmp (a->view.name, b->view.name);
}

static gboolean
parse_header (VaeSafetensors *st, const char *hdr, gsize hdr_len, GError **error)
{
  const char *label = st->label;

  if (memchr (hdr, '\0', hdr_len) != NULL) {
    set_format_error (error, label, "header is not valid JSON: it contains a NUL byte");
    return FALSE;
  }
  if (!g_utf8_validate (hdr, (gssize) hdr_len, NULL)) {
    set_format_error (error, label, "header is not valid UTF-8 text");
    return FALSE;
  }
  if (!prescan_json (label, hdr, hdr_len, error))
    return FALSE;

  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  g_autoptr (GError) jerr = NULL;
  if (!json_parser_load_from_data (parser, hdr, (gssize) hdr_len, &jerr)) {
    /* json-glib may quote invalid UTF-8 (from bad escapes) in its message */
    g_autofree char *msg = g_utf8_make_valid (jerr->message, -1);
    set_format_error (error, label, "header is not valid JSON: %s", msg);
    return FALSE;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL) {
    set_format_error (error, label, "header is not valid JSON: it holds no value");
    return FALSE;
  }
  if (JSON_NODE_TYPE (root) != JSON_NODE_OBJECT) {
    set_format_error (error, label, "header is not a JSON object");
    return FALSE;
  }
  JsonObject *obj = json_node_get_object (root);
  GList *members = json_object_get_members (obj);
  guint n_members = g_list_length (members);
  gboolean ok = TRUE;

  st->tensors = g_new0 (TensorEntry, MAX (n_members, 1));
  st->n_tensors = 0;
  for (GList *l = members; l != NULL; l = l->next) {
    const char *name = l->data;
    JsonNode *node = json_object_get_member (obj, name);
    if (strcmp (name, "__metadata__") == 0) {
      if (!(ok = parse_metadata (st, node, error)))
        break;
      continue;
    }
    if (!g_utf8_validate (name, -1, NULL)) {
      g_autofree char *shown = g_utf8_make_valid (name, -1);
      set_format_error (error, label, "tensor name '%s' is not valid UTF-8", shown);
      ok = FALSE;
      break;
    }
    TensorEntry *e = &st->tensors[st->n_tensors];
    if (!(ok = parse_tensor (st, name, node, e, error)))
      break;
    if (g_hash_table_contains (st->by_name, name)) {
      set_format_error (error, label, "tensor '%s' appears twice", name);
      ok = FALSE;
      break;
    }
    char *owned = g_strdup (name);
    g_ptr_array_add (st->names, owned);
    e->view.name = owned;
    g_hash_table_insert (st->by_name, owned, NULL);
    st->n_tensors++;
  }
  g_list_free (members);
  if (!ok)
    return FALSE;

  if (st->n_tensors > 1)
    qsort (st->tensors, st->n_tensors, sizeof (TensorEntry), compare_entries);

  /* Overlap check over tensors that hold bytes; an empty tensor can sit
   * anywhere.  Also point the views into the data and index them. */
  const guint8 *base = g_bytes_get_data (st->bytes, NULL);
  const guint8 *data = base ? base + 8 + hdr_len : NULL;
  const TensorEntry *last = NULL;
  for (guint i = 0; i < st->n_tensors; i++) {
    TensorEntry *e = &st->tensors[i];
    if (e->end > e->begin) {
      if (last != NULL && e->begin < last->end) {
        set_format_error (error, label,
                          "tensors '%s' and '%s' overlap: data_offsets [%" G_GUINT64_FORMAT
                          ", %" G_GUINT64_FORMAT "] and [%" G_GUINT64_FORMAT ", %"
                          G_GUINT64_FORMAT "]", last->view.name, e->view.name,
                          last->begin, last->end, e->begin, e->end);
        return FALSE;
      }
      if (last == NULL || e->end > last->end)
        last = e;
    }
    e->view.data = data ? data + e->begin : NULL;
    g_hash_table_insert (st->by_name, (gpointer) e->view.name, &e->view);
  }
  return TRUE;
}

static VaeSafetensors *
parse_bytes (GBytes *bytes, const char *label, GError **error)
{
  gsize size = 0;
  const guint8 *base = g_bytes_get_data (bytes, &size);

  if (size == 0) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT, "%s: file is empty", label);
    return NULL;
  }
  if (size < 8) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: file is too short (%" G_GSIZE_FORMAT
                 " bytes) to hold the 8-byte header length", label, size);
    return NULL;
  }
  guint64 hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = (hlen << 8) | base[i];
  if (hlen > VAE_SAFETENSORS_MAX_HEADER) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: header length %" G_GUINT64_FORMAT " exceeds the limit of %u bytes",
                 label, hlen, VAE_SAFETENSORS_MAX_HEADER);
    return NULL;
  }
  if (hlen > size - 8) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: header length %" G_GUINT64_FORMAT
                 " runs past the end of the file (%" G_GSIZE_FORMAT " bytes)",
                 label, hlen, size);
    return NULL;
  }

  VaeSafetensors *st = g_new0 (VaeSafetensors, 1);
  st->label = g_strdup (label);
  st->bytes = g_bytes_ref (bytes);
  st->data_size = size - 8 - (gsize) hlen;
  st->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  st->names = g_ptr_array_new_with_free_func (g_free);
  st->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  st->metadata_keys = g_ptr_array_new ();

  if (!parse_header (st, (const char *) base + 8, (gsize) hlen, error)) {
    vae_safetensors_free (st);
    return NULL;
  }
  return st;
}

VaeSafetensors *
vae_safetensors_new_from_bytes (GBytes *bytes, const char *label, GError **error)
{
  g_return_val_if_fail (bytes != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  return parse_bytes (bytes, label ? label : "(memory)", error);
}

#ifdef G_OS_UNIX
typedef struct {
  void *base;
  gsize size;
} FileMapping;

static void
file_mapping_free (gpointer data)
{
  FileMapping *m = data;
  munmap (m->base, m->size);
  g_free (m);
}

/* PATH mapped by this code, PROT_READ and MAP_PRIVATE, rather than through
 * GMappedFile (which does not promise a mapping on every platform): only
 * of such a mapping may pages be dropped and read again from the file
 * (vae_safetensors_mapping_release).  NULL when PATH is not a non-empty
 * regular file that could be mapped; the caller then goes through
 * GMappedFile, whose messages say what is wrong. */
static GBytes *
map_file (const char *path)
{
  int fd = g_open (path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0)
    return NULL;
  struct stat sb;
  void *base = MAP_FAILED;
  if (fstat (fd, &sb) == 0 && S_ISREG (sb.st_mode) && sb.st_size > 0
      && (guint64) sb.st_size <= G_MAXSIZE)
    base = mmap (NULL, (size_t) sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close (fd);
  if (base == MAP_FAILED)
    return NULL;
  FileMapping *m = g_new (FileMapping, 1);
  m->base = base;
  m->size = (gsize) sb.st_size;
  return g_bytes_new_with_free_func (base, m->size, file_mapping_free, m);
}
#endif

VaeSafetensors *
vae_safetensors_open (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  GBytes *bytes = NULL;
#ifdef G_OS_UNIX
  bytes = map_file (path);
#endif
  const gboolean file_mapping = bytes != NULL;
  if (!bytes) {
    g_autoptr (GError) ferr = NULL;
    GMappedFile *mf = g_mapped_file_new (path, FALSE, &ferr);
    if (mf == NULL) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_IO, "%s: cannot open: %s", path,
                   ferr->message);
      return NULL;
    }
    bytes = g_mapped_file_get_bytes (mf);
    g_mapped_file_unref (mf);
  }
  VaeSafetensors *st = parse_bytes (bytes, path, error);
  g_bytes_unref (bytes);
  if (st)
    st->file_mapping = file_mapping;
  return st;
}

GBytes *
vae_safetensors_ref_file_mapping (const VaeSafetensors *st)
{
  g_return_val_if_fail (st != NULL, NULL);
  return st->file_mapping ? g_bytes_ref (st->bytes) : NULL;
}

/* The kernel's fault-around (reading a page of a file mapping also maps
 * neighbours already in the page cache) stays inside one page table: 2 MiB
 * of 4 KiB pages. */
#define FAULT_AROUND_SPAN ((guintptr) 2 << 20)

gsize
vae_safetensors_mapping_release (GBytes *mapping, const void *data, gsize n_bytes)
{
  g_return_val_if_fail (mapping != NULL, 0);
#ifdef G_OS_UNIX
  gsize size;
  const guintptr b = (guintptr) g_bytes_get_data (mapping, &size), p = (guintptr) data;
  g_return_val_if_fail (p >= b && n_bytes <= size && p - b <= size - n_bytes, 0);
  static gsize page;
  if (g_once_init_enter (&page)) {
    long v = sysconf (_SC_PAGESIZE);
    g_once_init_leave (&page, v > 0 ? (gsize) v : 4096);
  }
  const guintptr inner_begin = (p + page - 1) & ~(guintptr) (page - 1);
  const guintptr inner_end = (p + n_bytes) & ~(guintptr) (page - 1);
  if (inner_end <= inner_begin)
    return 0;
  /* Not only DATA's own pages: reading DATA faulted in neighbours that
   * were given back before (fault-around), so the range reaches out to
   * the span fault-around stays in, within the mapping (mmap put its start
   * on a page; its end is rounded up to one by the kernel).  Dropping any
   * page of this mapping is right: it is private, read-only and never
   * written, so no page was ever copied on write, MADV_DONTNEED only
   * unmaps the file's pages, and a later read maps them again from the
   * page cache or the file.  A neighbour that is still to be read costs a
   * fault then, no more. */
  const guintptr begin = MAX (p & ~(FAULT_AROUND_SPAN - 1), b);
  const guintptr end = MIN ((p + n_bytes + FAULT_AROUND_SPAN - 1) & ~(FAULT_AROUND_SPAN - 1),
                            (b + size + page - 1) & ~(guintptr) (page - 1));
  if (madvise ((void *) begin, end - begin, MADV_DONTNEED) != 0)
    return 0;
  return inner_end - inner_begin;
#else
  (void) data;
  (void) n_bytes;
  return 0;
#endif
}

const char *
vae_safetensors_path (const VaeSafetensors *st)
{
  g_return_val_if_fail (st != NULL, NULL);
  return st->label;
}

guint
vae_safetensors_n_tensors (const VaeSafetensors *st)
{
  g_return_val_if_fail (st != NULL, 0);
  return st->n_tensors;
}

const VaeTensorView *
vae_safetensors_tensor_at (const VaeSafetensors *st, guint i)
{
  g_return_val_if_fail (st != NULL, NULL);
  g_return_val_if_fail (i < st->n_tensors, NULL);
  return &st->tensors[i].view;
}

const VaeTensorView *
vae_safetensors_lookup (const VaeSafetensors *st, const char *name)
{
  g_return_val_if_fail (st != NULL, NULL);
  if (name == NULL)
    return NULL;
  return g_hash_table_lookup (st->by_name, name);
}

const char *
vae_safetensors_metadata (const VaeSafetensors *st, const char *key)
{
  g_return_val_if_fail (st != NULL, NULL);
  if (key == NULL)
    return NULL;
  return g_hash_table_lookup (st->metadata, key);
}

const char **
vae_safetensors_metadata_keys (const VaeSafetensors *st)
{
  g_return_val_if_fail (st != NULL, NULL);
  guint n = st->metadata_keys->len;
  const char **keys = g_new (const char *, n + 1);
  for (guint i = 0; i < n; i++)
    keys[i] = g_ptr_array_index (st->metadata_keys, i);
  keys[n] = NULL;
  return keys;
}

/* ---- views ---- */

gboolean
vae_tensor_view_to_f32 (const VaeTensorView *t, float *dst, GError **error)
{
  g_return_val_if_fail (t != NULL, FALSE);
  g_return_val_if_fail (dst != NULL || t->n_elements == 0, FALSE);

  const guint8 *p = t->data;
  guint64 n = t->n_elements;
  gsize esize = vae_dtype_size (t->dtype);
  guint64 need;
  if (esize == 0 || !g_uint64_checked_mul (&need, n, esize) || need > t->n_bytes) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "tensor '%s': %" G_GSIZE_FORMAT " bytes cannot hold %" G_GUINT64_FORMAT
                 " elements of its dtype", t->name ? t->name : "?", t->n_bytes, n);
    return FALSE;
  }

  switch (t->dtype) {
  case VAE_DTYPE_F32:
#if G_BYTE_ORDER == G_LITTLE_ENDIAN
    if (n > 0)
      memcpy (dst, p, (gsize) n * 4);
    return TRUE;
#endif
    for (guint64 i = 0; i < n; i++, p += 4) {
      guint32 u = (guint32) p[0] | (guint32) p[1] << 8 | (guint32) p[2] << 16
          | (guint32) p[3] << 24;
      dst[i] = bits_f32 (u);
    }
    return TRUE;
  case VAE_DTYPE_F16:
    for (guint64 i = 0; i < n; i++, p += 2)
      dst[i] = vae_f16_to_f32 ((guint16) (p[0] | p[1] << 8));
    return TRUE;
  case VAE_DTYPE_BF16:
    for (guint64 i = 0; i < n; i++, p += 2)
      dst[i] = vae_bf16_to_f32 ((guint16) (p[0] | p[1] << 8));
    return TRUE;
  case VAE_DTYPE_F64:
    for (guint64 i = 0; i < n; i++, p += 8) {
      guint64 u;
      double d;
      memcpy (&u, p, 8);
      u = GUINT64_FROM_LE (u);
      memcpy (&d, &u, 8);
      dst[i] = f64_to_f32 (d);
    }
    return TRUE;
  default:
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "tensor '%s' has dtype %s, which cannot be converted to F32",
                 t->name ? t->name : "?", vae_dtype_name (t->dtype));
    return FALSE;
  }
}

gboolean
vae_tensor_view_check_shape (const VaeTensorView *t, const char *file_label, int ndim,
                             const gint64 *shape, GError **error)
{
  g_return_val_if_fail (t != NULL, FALSE);
  g_return_val_if_fail (ndim >= 0 && (ndim == 0 || shape != NULL), FALSE);

  gboolean same = t->ndim == ndim;
  for (int i = 0; same && i < ndim; i++)
    same = t->shape[i] == shape[i];
  if (same)
    return TRUE;

  GString *msg = g_string_new (NULL);
  if (file_label)
    g_string_append_printf (msg, "%s: ", file_label);
  g_string_append_printf (msg, "tensor '%s' has shape ", t->name ? t->name : "?");
  append_shape (msg, t->ndim, t->shape);
  g_string_append (msg, " where ");
  append_shape (msg, ndim, shape);
  g_string_append (msg, " was expected");
  g_set_error_literal (error, VAE_ERROR, VAE_ERROR_MODEL, msg->str);
  g_string_free (msg, TRUE);
  return FALSE;
}

/* ---- the writer ---- */

typedef struct {
  char *name;
  VaeDType dtype;
  int ndim;
  gint64 shape[VAE_SAFETENSORS_MAX_DIMS];
  GBytes *data;
} WriterTensor;

struct _VaeSafetensorsWriter {
  GPtrArray *tensors;           /* WriterTensor*, insertion order */
  GHashTable *names;            /* borrowed from tensors */
  GPtrArray *meta_keys;         /* owned keys, insertion order */
  GHashTable *meta;             /* key (borrowed from meta_keys) -> owned value */
};

static void
writer_tensor_free (gpointer p)
{
  WriterTensor *t = p;
  g_free (t->name);
  g_bytes_unref (t->data);
  g_free (t);
}

VaeSafetensorsWriter *
vae_safetensors_writer_new (void)
{
  VaeSafetensorsWriter *w = g_new0 (VaeSafetensorsWriter, 1);
  w->tensors = g_ptr_array_new_with_free_func (writer_tensor_free);
  w->names = g_hash_table_new (g_str_hash, g_str_equal);
  w->meta_keys = g_ptr_array_new_with_free_func (g_free);
  w->meta = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  return w;
}

void
vae_safetensors_writer_free (VaeSafetensorsWriter *w)
{
  if (w == NULL)
    return;
  g_hash_table_unref (w->names);
  g_ptr_array_unref (w->tensors);
  g_hash_table_unref (w->meta);
  g_ptr_array_unref (w->meta_keys);
  g_free (w);
}

gboolean
vae_safetensors_writer_add (VaeSafetensorsWriter *w, const char *name, VaeDType dtype,
                            int ndim, const gint64 *shape, const void *data, gsize n_bytes,
                            GError **error)
{
  g_return_val_if_fail (w != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (name == NULL || !g_utf8_validate (name, -1, NULL)
      || strcmp (name, "__metadata__") == 0) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "tensor name '%s' is not valid",
                 name && g_utf8_validate (name, -1, NULL) ? name : "?");
    return FALSE;
  }
  if (g_hash_table_contains (w->names, name)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT, "tensor '%s' was already added",
                 name);
    return FALSE;
  }
  if (!dtype_valid (dtype)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT, "tensor '%s': unknown dtype %d",
                 name, (int) dtype);
    return FALSE;
  }
  if (ndim < 0 || ndim > VAE_SAFETENSORS_MAX_DIMS || (ndim > 0 && shape == NULL)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "tensor '%s': %d dimensions is not between 0 and %d", name, ndim,
                 VAE_SAFETENSORS_MAX_DIMS);
    return FALSE;
  }
  guint64 n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0 || !g_uint64_checked_mul (&n, n, (guint64) shape[i])) {
      char *s = vae_shape_to_string (ndim, shape);
      g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                   "tensor '%s': shape %s is not valid", name, s);
      g_free (s);
      return FALSE;
    }
  }
  guint64 need;
  if (!g_uint64_checked_mul (&need, n, vae_dtype_size (dtype)) || need != n_bytes
      || (n_bytes > 0 && data == NULL)) {
    char *s = vae_shape_to_string (ndim, shape);
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "tensor '%s': %" G_GSIZE_FORMAT " bytes given for shape %s of %s",
                 name, n_bytes, s, vae_dtype_name (dtype));
    g_free (s);
    return FALSE;
  }

  /* The copy is as large as the tensor (a clip of latents): fallible. */
  guint8 *copy = NULL;
  if (n_bytes > 0) {
    g_autofree char *what = g_strdup_printf ("a copy of tensor '%s'", name);
    copy = vae_try_alloc (1, n_bytes, what, error);
    if (!copy)
      return FALSE;
    memcpy (copy, data, n_bytes);
  }
  WriterTensor *t = g_new0 (WriterTensor, 1);
  t->name = g_strdup (name);
  t->dtype = dtype;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++)
    t->shape[i] = shape[i];
  t->data = g_bytes_new_take (copy, n_bytes);
  g_ptr_array_add (w->tensors, t);
  g_hash_table_add (w->names, t->name);
  return TRUE;
}

void
vae_safetensors_writer_set_metadata (VaeSafetensorsWriter *w, const char *key,
                                     const char *value)
{
  g_return_if_fail (w != NULL);
  g_return_if_fail (key != NULL && g_utf8_validate (key, -1, NULL));
  g_return_if_fail (value != NULL && g_utf8_validate (value, -1, NULL));

  gpointer existing;
  if (g_hash_table_lookup_extended (w->meta, key, &existing, NULL)) {
    g_hash_table_insert (w->meta, existing, g_strdup (value));
    return;
  }
  char *k = g_strdup (key);
  g_ptr_array_add (w->meta_keys, k);
  g_hash_table_insert (w->meta, k, g_strdup (value));
}

static JsonArray *
int_array (int n, const gint64 *v)
{
  JsonArray *a = json_array_sized_new ((guint) n);
  for (int i = 0; i < n; i++)
    json_array_add_int_element (a, v[i]);
  return a;
}

GBytes *
vae_safetensors_writer_to_bytes (VaeSafetensorsWriter *w)
{
  return vae_safetensors_writer_serialize (w, NULL);
}

GBytes *
vae_safetensors_writer_serialize (VaeSafetensorsWriter *w, GError **error)
{
  g_return_val_if_fail (w != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  JsonObject *root = json_object_new ();
  if (w->meta_keys->len > 0) {
    JsonObject *meta = json_object_new ();
    for (guint i = 0; i < w->meta_keys->len; i++) {
      const char *k = g_ptr_array_index (w->meta_keys, i);
      json_object_set_string_member (meta, k, g_hash_table_lookup (w->meta, k));
    }
    json_object_set_object_member (root, "__metadata__", meta);
  }
  guint64 offset = 0;
  for (guint i = 0; i < w->tensors->len; i++) {
    WriterTensor *t = g_ptr_array_index (w->tensors, i);
    gsize n = g_bytes_get_size (t->data);
    gint64 offs[2] = { (gint64) offset, (gint64) (offset + n) };
    JsonObject *o = json_object_new ();
    json_object_set_string_member (o, "dtype", vae_dtype_name (t->dtype));
    json_object_set_array_member (o, "shape", int_array (t->ndim, t->shape));
    json_object_set_array_member (o, "data_offsets", int_array (2, offs));
    json_object_set_object_member (root, t->name, o);
    offset += n;
  }

  JsonNode *node = json_node_new (JSON_NODE_OBJECT);
  json_node_take_object (node, root);
  JsonGenerator *gen = json_generator_new ();
  json_generator_set_root (gen, node);
  gsize json_len = 0;
  char *json = json_generator_to_data (gen, &json_len);
  g_object_unref (gen);
  json_node_unref (node);

  gsize hlen = (json_len + 7u) & ~(gsize) 7u;
  gsize total = 8 + hlen + (gsize) offset;
  guint8 *buf = vae_try_alloc (1, total, "the safetensors file", error);
  if (!buf) {
    g_free (json);
    return NULL;
  }
  for (int i = 0; i < 8; i++)
    buf[i] = (guint8) ((guint64) hlen >> (8 * i));
  memcpy (buf + 8, json, json_len);
  memset (buf + 8 + json_len, ' ', hlen - json_len);
  g_free (json);

  guint8 *p = buf + 8 + hlen;
  for (guint i = 0; i < w->tensors->len; i++) {
    WriterTensor *t = g_ptr_array_index (w->tensors, i);
    gsize n;
    const void *d = g_bytes_get_data (t->data, &n);
    if (n > 0)
      memcpy (p, d, n);
    p += n;
  }
  return g_bytes_new_take (buf, total);
}

gboolean
vae_safetensors_writer_save (VaeSafetensorsWriter *w, const char *path, GError **error)
{
  g_return_val_if_fail (w != NULL, FALSE);
  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  g_autoptr (GBytes) bytes = vae_safetensors_writer_serialize (w, error);
  if (!bytes) {
    g_prefix_error (error, "%s: ", path);
    return FALSE;
  }
  g_autofree char *tmp = g_strconcat (path, ".tmp", NULL);
  g_autoptr (GError) ferr = NULL;
  gsize size;
  const char *data = g_bytes_get_data (bytes, &size);

  if (!g_file_set_contents_full (tmp, data, (gssize) size, G_FILE_SET_CONTENTS_DURABLE,
                                 0666, &ferr)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_IO, "%s: cannot write: %s", path,
                 ferr->message);
    g_unlink (tmp);
    return FALSE;
  }
  if (g_rename (tmp, path) != 0) {
    int saved = errno;
    g_set_error (error, VAE_ERROR, VAE_ERROR_IO, "%s: cannot rename %s into place: %s",
                 path, tmp, g_strerror (saved));
    g_unlink (tmp);
    return FALSE;
  }
  return TRUE;
}
