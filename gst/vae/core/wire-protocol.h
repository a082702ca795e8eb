/* gst-vae: the Hybrid Inference VAE wire protocol, both sides' half of it.
 *
 * Why a module of its own: the remote engine (ext/curl/engine-remote.c, the
 * client) and vae-server (tools/vae-server/, the server) must agree on
 * every byte of it, so the names, sizes and conversions are written once
 * here and both use them (../shared/docs/hybrid-inference-protocol.md
 * describes the protocol).  GLib and json-glib only: no HTTP library, no
 * GStreamer, no engine; what travels over which transport is the caller's.
 *
 * What is here:
 * - dtypes: names ("float16", also "torch.float16", any case), element
 *   sizes, and little-endian tensor bytes to and from host floats (the
 *   core's f16/bf16 conversions, round to nearest even);
 * - header, query key and content type names;
 * - shapes: the response header's compact JSON list ("[1,4,64,64]") and the
 *   query's repeated keys (shape=1&shape=4 or shape=[1,4] or shape=1,4);
 * - the query string: parsing (repeated keys, '+' for space, %-escapes,
 *   "True"/"False" in any case) and formatting (plain decimal floats that
 *   read back as the same double);
 * - error bodies: {"error": "<message>"} written and read back;
 * - sniffing of PNG/JPEG bodies (encode requests without shape/dtype). */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

/* ---- names ---- */

#define VAE_WIRE_HEADER_SHAPE "shape"            /* response headers */
#define VAE_WIRE_HEADER_DTYPE "dtype"
#define VAE_WIRE_HEADER_RETRY_AFTER "Retry-After"
#define VAE_WIRE_CONTENT_TYPE_TENSOR "tensor/binary"
#define VAE_WIRE_CONTENT_TYPE_JSON "application/json"
#define VAE_WIRE_CONTENT_TYPE_PNG "image/png"
#define VAE_WIRE_CONTENT_TYPE_JPEG "image/jpeg"

#define VAE_WIRE_KEY_SHAPE "shape"                /* query keys */
#define VAE_WIRE_KEY_DTYPE "dtype"
#define VAE_WIRE_KEY_SCALING "scaling_factor"
#define VAE_WIRE_KEY_SHIFT "shift_factor"
#define VAE_WIRE_KEY_DO_SCALING "do_scaling"
#define VAE_WIRE_KEY_OUTPUT_TYPE "output_type"    /* pt | pil | mp4 */
#define VAE_WIRE_KEY_PARTIAL "partial_postprocess"
#define VAE_WIRE_KEY_IMAGE_FORMAT "image_format"  /* png | jpg */
#define VAE_WIRE_KEY_HEIGHT "height"              /* packed Flux latents */
#define VAE_WIRE_KEY_WIDTH "width"
/* normalized (default) | raw: codec.h's VaeLatentFormat (gst-vae's own key;
 * it matters for models with latent patches, FLUX.2: 128 channels at 16x
 * normalised, 32 at 8x raw) */
#define VAE_WIRE_KEY_LATENT_FORMAT "latent_format"

/* Most dimensions a shape may have on either side. */
#define VAE_WIRE_MAX_DIMS 8

/* ---- dtypes ---- */

typedef enum {
  VAE_WIRE_U8,
  VAE_WIRE_F16,
  VAE_WIRE_BF16,
  VAE_WIRE_F32,
} VaeWireDtype;

/* NAME ("uint8", "float16", "bfloat16", "float32", each also with a
 * "torch." prefix, any case) to *DT; FALSE for NULL or anything else. */
gboolean vae_wire_dtype_parse (const char *name, VaeWireDtype *dt);
/* The protocol's name ("float16"). */
const char *vae_wire_dtype_name (VaeWireDtype dt);
/* Bytes per element: 1, 2 or 4. */
gsize vae_wire_dtype_size (VaeWireDtype dt);
gboolean vae_wire_dtype_is_float (VaeWireDtype dt);

/* Element I of little-endian tensor bytes P of DT, as a float (uint8 gives
 * 0..255). */
float vae_wire_load (const guint8 *p, VaeWireDtype dt, gsize i);
/* N elements of SRC (little-endian DT) to host floats. */
void vae_wire_to_floats (const guint8 *src, VaeWireDtype dt, gsize n, float *dst);
/* N host floats to little-endian DT bytes at DST (vae_wire_dtype_size (DT)
 * * N of them); uint8 rounds and clamps to 0..255 (NaN: 0). */
void vae_wire_from_floats (const float *src, gsize n, VaeWireDtype dt, guint8 *dst);

/* ---- shapes ---- */

/* Shape parse results below zero. */
#define VAE_WIRE_SHAPE_BAD (-1)        /* not a list of positive integers */
#define VAE_WIRE_SHAPE_TOO_LARGE (-2)  /* a dimension past G_MAXINT32 */

/* One dimension (or a height or width): a positive decimal integer.
 * Returns 0 with *D set, VAE_WIRE_SHAPE_BAD or VAE_WIRE_SHAPE_TOO_LARGE
 * (no frame comes near G_MAXINT32, and a product of two such values cannot
 * overflow; longer products are the caller's to check). */
int vae_wire_parse_dim (const char *text, gint64 *d);
/* "[1,4,64,64]" (what the response's shape header holds). */
char *vae_wire_shape_format (const gint64 *dims, int n);
/* A shape header ("[1,4,64,64]", spaces allowed, 1..MAX dimensions, each
 * >= 0): the number of dimensions, or VAE_WIRE_SHAPE_BAD. */
int vae_wire_shape_parse (const char *text, gint64 *dims, int max);
/* The product of N dimensions times UNIT; FALSE when it overflows a gsize
 * or a dimension is negative. */
gboolean vae_wire_shape_bytes (const gint64 *dims, int n, gsize unit, gsize *out);

/* ---- the query string ---- */

typedef struct _VaeWireQuery VaeWireQuery;

/* TEXT (the part after '?', NULL for none): key=value pairs between '&',
 * '+' for a space, %-escapes undone; pairs that do not unescape are
 * dropped.  Keys may repeat. */
VaeWireQuery *vae_wire_query_parse (const char *text);
void vae_wire_query_free (VaeWireQuery *q);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VaeWireQuery, vae_wire_query_free)
/* The last value of KEY, NULL when absent. */
const char *vae_wire_query_get (const VaeWireQuery *q, const char *key);
/* "True"/"true"/"1"/"yes" (any case) is TRUE, any other non-empty value
 * FALSE; DEF when absent or empty. */
gboolean vae_wire_query_bool (const VaeWireQuery *q, const char *key, gboolean def);
/* FALSE when KEY is absent; FALSE with *OK set to FALSE when present but
 * not a finite number; else TRUE with *OUT set. */
gboolean vae_wire_query_double (const VaeWireQuery *q, const char *key, double *out,
                                gboolean *ok);
/* Every value of KEY (shape=1&shape=4, shape=[1,4], shape=1,4 or mixes):
 * the number of dimensions, 0 when KEY is absent, VAE_WIRE_SHAPE_BAD
 * (also for more than MAX) or VAE_WIRE_SHAPE_TOO_LARGE. */
int vae_wire_query_shape (const VaeWireQuery *q, gint64 *dims, int max);

/* Appending to a query being built: "&" first unless Q is empty. */
void vae_wire_query_append (GString *q, const char *key, const char *value);
/* The shortest plain decimal text that reads back as V. */
void vae_wire_query_append_double (GString *q, const char *key, double v);
/* "True" / "False", as diffusers sends them. */
void vae_wire_query_append_bool (GString *q, const char *key, gboolean v);
/* shape=D0&shape=D1...&dtype=NAME. */
void vae_wire_query_append_tensor (GString *q, const gint64 *dims, int n, VaeWireDtype dt);

/* ---- error bodies ---- */

/* {"error": "<MESSAGE>"}, the protocol's error body; *LEN its length. */
char *vae_wire_error_json (const char *message, gsize *len);
/* What an error reply says: its JSON "error" member when it has one, else
 * the first 200 bytes of BODY with anything unprintable as a space
 * ("empty body" for none). */
char *vae_wire_error_message (const guint8 *body, gsize len);

/* ---- image bodies ---- */

typedef enum {
  VAE_WIRE_IMAGE_NONE,
  VAE_WIRE_IMAGE_PNG,
  VAE_WIRE_IMAGE_JPEG,
} VaeWireImage;

/* PNG or JPEG by the body's magic bytes. */
VaeWireImage vae_wire_sniff_image (const guint8 *data, gsize len);

G_END_DECLS
