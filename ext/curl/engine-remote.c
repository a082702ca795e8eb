/* gst-vae: the remote engine (backend "remote").
 *
 * Speaks the Hugging Face Hybrid Inference VAE wire protocol
 * (../shared/docs/hybrid-inference-protocol.md) over libcurl's multi
 * interface: one CURLM for the engine (so keep-alive connections are reused),
 * a pool of reused easy handles, up to max-inflight requests at once.
 *
 * Units.  The engine interface works in the model's internal units; the wire
 * does not:
 * - encode: the model-range input [image_min, 1] goes out as options say
 *   (remote_input): a raw uint8 [B,3,H,W] tensor
 *   (round(255 * (x - image_min) / (1 - image_min)), the element's 8-bit
 *   pixels exactly), a raw float16 [B,3,H,W] tensor in [-1,1], or one PNG of
 *   the 8-bit pixels per frame, one request each, sent concurrently (for
 *   servers that take only images).  The query has
 *   scaling_factor=1&shift_factor=0, so the server returns the unscaled mode
 *   (the distribution's mean) [B,C,h,w] in any float dtype.  For models
 *   whose encoder outputs moments (KL) the mean half is filled and the
 *   logvar half set to 0: remote encode gives the mode only, never a sample.
 * - decode: the unscaled latents x are scaled back with the model's factors,
 *   z = (x - shift) * scaling, and sent as float32 with those factors and
 *   output_type=pt&partial_postprocess=True: the server sees what diffusers'
 *   remote_decode sends, unscales as the element does (z / scaling + shift)
 *   and answers uint8 frames [B,H,W,3] (NHWC), which are mapped to the model
 *   range exactly as the element maps 8-bit pixels, so that the element's
 *   conversion back to 8 bits gives the server's bytes.
 *
 * FLUX.2 (models with latent patches) asks the server for a latent format
 * (latent_format): a local model has its BatchNorm statistics and
 * normalises itself, so the server's raw latents [B,32,h,w] go both ways;
 * the flux2 preset has none (identity statistics, model-preset.c), so the
 * server's normalised latents [B,128,h/2,w/2] do, unpatchified into the
 * engine's [B,32,h,w] (mean half) on encode and patchified on decode,
 * values untouched.
 *
 * Settings (VaeEngineOptions.settings, remote_settings below; the elements'
 * endpoint, token, timeout, retries and remote-input properties map onto
 * them); where one is not given, from the environment:
 *   endpoint      the server URLs, comma-separated (required)
 *   token         HF_TOKEN; sent as "Authorization: Bearer ..."; never
 *                 printed, logged or put in an error message
 *   max-requests  VAE_REMOTE_MAX_INFLIGHT: requests in flight at once
 *                 (default 4; at least the caller's max_inflight option)
 *   timeout-ms    VAE_REMOTE_TIMEOUT_MS: per-request timeout (default 60000)
 *   retries       VAE_REMOTE_RETRIES: retries after the first attempt
 *                 (default 3)
 *   backoff-ms    VAE_REMOTE_BACKOFF_MS: first backoff delay (default 250,
 *                 doubled each retry, plus up to 50% jitter, at least the
 *                 server's Retry-After)
 *   batch         VAE_REMOTE_BATCH: preferred frames per batch (default 8)
 *   input         encode's wire format: uint8 (default), float16 or png
 * A bad setting is an error at open; a bad environment value a warning
 * (and the default).
 */
#include <curl/curl.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#include "codec.h"
#include "engine.h"
#include "png-memory.h"
#include "safetensors.h"
#include "vae-error.h"
#include "wire-protocol.h"

/* The wire is little-endian; the engine writes and reads host floats. */
#if G_BYTE_ORDER != G_LITTLE_ENDIAN
#error "the remote engine assumes a little-endian host"
#endif

typedef struct _RemoteEngine RemoteEngine;

/* What encode puts on the wire (the protocol takes a raw image tensor or
 * one image file per request); the order of input_names. */
typedef enum {
  REMOTE_INPUT_UINT8,     /* raw uint8 [B,3,H,W] in 0..255 */
  REMOTE_INPUT_FLOAT16,   /* raw float16 [B,3,H,W] in [-1,1] */
  REMOTE_INPUT_PNG,       /* one PNG per frame, one request each */
} RemoteInput;

static const char *const input_names[] = { "uint8", "float16", "png", NULL };

typedef struct {
  char *url;         /* as given (used for requests) */
  char *display;     /* without any user:password@ part (used in messages) */
  int busy;          /* requests in flight to it */
} Endpoint;

typedef struct {
  RemoteEngine *self;
  VaeBatch *batch;
  int first;                   /* the batch's frames first .. first+frames-1 */
  int frames;                  /* (a PNG request carries one frame) */
  /* What is sent. */
  char *query;                 /* "shape=...&dtype=..." etc. */
  guint8 *body;                /* owned */
  gsize body_size;
  /* What is expected back. */
  gint64 exp_dims[4];
  gsize exp_elems;
  /* State. */
  int attempt;                 /* attempts made so far */
  gint64 not_before;           /* monotonic us: backoff until */
  int endpoint;                /* -1 when not in flight */
  CURL *easy;                  /* while in flight */
  struct curl_slist *headers;
  /* The reply body.  Not a GByteArray: that grows with g_realloc, which
   * ends the process when a large reply does not fit in memory. */
  guint8 *reply;
  gsize reply_len, reply_cap;
  gsize reply_limit;
  gboolean reply_too_large;
  gboolean reply_no_memory;    /* growing the body failed */
  char *h_shape, *h_dtype, *h_retry_after;
  char errbuf[CURL_ERROR_SIZE];
  gboolean done;
} Request;

struct _RemoteEngine {
  VaeEngine parent;
  CURLM *multi;
  Endpoint *endpoints;
  int n_endpoints;
  guint rr;                    /* round-robin start among equally busy */
  GQueue queue;                /* Request*, submission order */
  GPtrArray *idle_easy;        /* CURL* ready for reuse */
  int inflight;
  int max_inflight;
  long timeout_ms;
  int retries;
  long backoff_ms;
  int batch;
  RemoteInput input;           /* encode's wire format */
  char *auth_header;           /* "Authorization: Bearer ..." or NULL */
  gboolean token_from_env;     /* for the 401 message */
};

/* ---- small helpers ---- */

static int
env_int (const char *name, int def, int lo, int hi)
{
  const char *s = g_getenv (name);
  if (!s || !*s)
    return def;
  char *end = NULL;
  gint64 v = g_ascii_strtoll (s, &end, 10);
  if (!end || *end || v < lo || v > hi) {
    g_warning ("remote engine: ignoring %s='%s' (want %d..%d)", name, s, lo, hi);
    return def;
  }
  return (int) v;
}

/* The URL without its user:password@ part, for messages. */
static char *
redact_url (const char *url)
{
  const char *scheme = strstr (url, "://");
  if (!scheme)
    return g_strdup (url);
  const char *host = scheme + 3;
  const char *end = host + strcspn (host, "/?#");
  const char *at = NULL;
  for (const char *p = host; p < end; p++)
    if (*p == '@')
      at = p;
  if (!at)
    return g_strdup (url);
  return g_strdup_printf ("%.*s%s", (int) (host - url), url, at + 1);
}

/* ---- requests ---- */

static void
request_reset_reply (Request *r)
{
  g_clear_pointer (&r->h_shape, g_free);
  g_clear_pointer (&r->h_dtype, g_free);
  g_clear_pointer (&r->h_retry_after, g_free);
  r->reply_len = 0;   /* the allocation is kept for the next attempt */
  r->reply_too_large = FALSE;
  r->reply_no_memory = FALSE;
  r->errbuf[0] = '\0';
}

static void
request_free (Request *r)
{
  request_reset_reply (r);
  g_free (r->reply);
  g_free (r->body);
  g_free (r->query);
  curl_slist_free_all (r->headers);
  g_free (r);
}

static size_t
on_write (char *data, size_t size, size_t nmemb, void *user)
{
  Request *r = user;
  gsize n = size * nmemb;
  if (n == 0)
    return 0;
  if (r->reply_len + n > r->reply_limit) {
    r->reply_too_large = TRUE;
    return 0;   /* aborts the transfer with CURLE_WRITE_ERROR */
  }
  if (r->reply_len + n > r->reply_cap) {
    /* Doubling, capped at the largest body the request can produce. */
    gsize cap = MIN (MAX (r->reply_len + n, MAX (r->reply_cap * 2, (gsize) 65536)),
                     r->reply_limit);
    guint8 *grown = g_try_realloc (r->reply, cap);
    if (!grown) {
      r->reply_no_memory = TRUE;
      return 0;
    }
    r->reply = grown;
    r->reply_cap = cap;
  }
  memcpy (r->reply + r->reply_len, data, n);
  r->reply_len += n;
  return n;
}

/* Whether the header name NAME (LEN bytes) is WANT, in any case. */
static gboolean
header_is (const char *name, gsize len, const char *want)
{
  return len == strlen (want) && g_ascii_strncasecmp (name, want, len) == 0;
}

static size_t
on_header (char *data, size_t size, size_t nmemb, void *user)
{
  Request *r = user;
  gsize n = size * nmemb;
  if (n >= 5 && g_ascii_strncasecmp (data, "HTTP/", 5) == 0) {
    /* A new response (after a 1xx): forget what came before. */
    g_clear_pointer (&r->h_shape, g_free);
    g_clear_pointer (&r->h_dtype, g_free);
    g_clear_pointer (&r->h_retry_after, g_free);
    return n;
  }
  const char *colon = memchr (data, ':', n);
  if (!colon)
    return n;
  gsize name_len = (gsize) (colon - data);
  g_autofree char *value = g_strndup (colon + 1, n - name_len - 1);
  g_strstrip (value);
  char **slot = NULL;
  if (header_is (data, name_len, VAE_WIRE_HEADER_SHAPE))
    slot = &r->h_shape;
  else if (header_is (data, name_len, VAE_WIRE_HEADER_DTYPE))
    slot = &r->h_dtype;
  else if (header_is (data, name_len, VAE_WIRE_HEADER_RETRY_AFTER))
    slot = &r->h_retry_after;
  if (slot) {
    g_free (*slot);
    *slot = g_steal_pointer (&value);
  }
  return n;
}

static int
pick_endpoint (RemoteEngine *self)
{
  int best = -1;
  for (int k = 0; k < self->n_endpoints; k++) {
    int i = (int) ((self->rr + (guint) k) % (guint) self->n_endpoints);
    if (best < 0 || self->endpoints[i].busy < self->endpoints[best].busy)
      best = i;
  }
  self->rr++;
  return best;
}

static gboolean
request_start (RemoteEngine *self, Request *r)
{
  CURL *easy = self->idle_easy->len
      ? g_ptr_array_steal_index_fast (self->idle_easy, self->idle_easy->len - 1)
      : curl_easy_init ();
  if (!easy)
    return FALSE;
  curl_easy_reset (easy);   /* keeps the connection cache of the multi */

  int ep = pick_endpoint (self);
  const char *base = self->endpoints[ep].url;
  const char *sep = strchr (base, '?') ? "&" : "?";
  g_autofree char *url = g_strconcat (base, sep, r->query, NULL);

  request_reset_reply (r);

  curl_easy_setopt (easy, CURLOPT_URL, url);
  curl_easy_setopt (easy, CURLOPT_POST, 1L);
  curl_easy_setopt (easy, CURLOPT_POSTFIELDS, (const char *) r->body);
  curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) r->body_size);
  curl_easy_setopt (easy, CURLOPT_HTTPHEADER, r->headers);
  curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt (easy, CURLOPT_WRITEDATA, r);
  curl_easy_setopt (easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt (easy, CURLOPT_HEADERDATA, r);
  curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt (easy, CURLOPT_PRIVATE, r);
  curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, self->timeout_ms);
  curl_easy_setopt (easy, CURLOPT_CONNECTTIMEOUT_MS, MIN (self->timeout_ms, 30000L));
  curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (easy, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt (easy, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt (easy, CURLOPT_FOLLOWLOCATION, 0L);

  if (curl_multi_add_handle (self->multi, easy) != CURLM_OK) {
    g_ptr_array_add (self->idle_easy, easy);
    return FALSE;
  }
  r->easy = easy;
  r->endpoint = ep;
  r->attempt++;
  self->endpoints[ep].busy++;
  self->inflight++;
  return TRUE;
}

static void
request_fail_code (Request *r, VaeErrorCode code, const char *endpoint, const char *fmt,
                   ...) G_GNUC_PRINTF (4, 5);

static void
request_fail_code (Request *r, VaeErrorCode code, const char *endpoint, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *cause = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  r->done = TRUE;
  /* A batch sent as several requests (PNG) reports its first failure. */
  if (r->batch->error)
    return;
  g_set_error (&r->batch->error, VAE_ERROR, code,
               "remote %s to %s failed: %s",
               r->batch->direction == VAE_DIRECTION_ENCODE ? "encode" : "decode",
               endpoint, cause);
}

#define request_fail(r, endpoint, ...) \
  request_fail_code ((r), VAE_ERROR_ENGINE, (endpoint), __VA_ARGS__)

/* The dtype a reply must have: encode any float type, decode uint8 (the
 * frames partial_postprocess=True asks for).  FALSE when it has another. */
static gboolean
reply_dtype (const Request *r, VaeWireDtype *dt)
{
  if (!vae_wire_dtype_parse (r->h_dtype, dt))
    return FALSE;
  return r->batch->direction == VAE_DIRECTION_DECODE ? *dt == VAE_WIRE_U8
                                                     : vae_wire_dtype_is_float (*dt);
}

/* A 200 reply: check it against the request and convert it into the
 * batch's output.  FALSE (with the batch's error set) when it does not fit. */
/* The patch of the latents on the wire: the model's for a preset with
 * patches (flux2: the server normalises and patchifies), else 1. */
static int
wire_patch (const VaeModel *m)
{
  return m->config_only && m->latent_patch > 1 ? m->latent_patch : 1;
}

static gboolean
request_finish_ok (RemoteEngine *self, Request *r, const char *endpoint)
{
  const VaeModel *m = self->parent.model;
  VaeBatch *b = r->batch;
  const gboolean encode = b->direction == VAE_DIRECTION_ENCODE;
  gint64 dims[VAE_WIRE_MAX_DIMS];
  int n_dims = r->h_shape ? vae_wire_shape_parse (r->h_shape, dims, VAE_WIRE_MAX_DIMS)
                          : VAE_WIRE_SHAPE_BAD;
  g_autofree char *want = vae_wire_shape_format (r->exp_dims, 4);

  if (n_dims < 0) {
    request_fail (r, endpoint, "reply has %s 'shape' header (expected %s)",
                  r->h_shape ? "a malformed" : "no", want);
    return FALSE;
  }
  if (n_dims != 4 || memcmp (dims, r->exp_dims, sizeof r->exp_dims) != 0) {
    request_fail (r, endpoint, "reply 'shape' header %s does not match the request "
                  "(expected %s)", r->h_shape, want);
    return FALSE;
  }
  VaeWireDtype dt;
  if (!reply_dtype (r, &dt)) {
    request_fail (r, endpoint, "reply 'dtype' header %s%s%s is not %s",
                  r->h_dtype ? "'" : "", r->h_dtype ? r->h_dtype : "missing",
                  r->h_dtype ? "'" : "", encode ? "a float type" : "uint8");
    return FALSE;
  }
  const gsize esize = vae_wire_dtype_size (dt);
  if (r->reply_len != r->exp_elems * esize) {
    request_fail (r, endpoint, "reply body is %" G_GSIZE_FORMAT " bytes, expected %"
                  G_GSIZE_FORMAT " for shape %s dtype %s", r->reply_len,
                  r->exp_elems * esize, r->h_shape, r->h_dtype);
    return FALSE;
  }
  const guint8 *src = r->reply;

  if (encode) {
    int C = (int) r->exp_dims[1];
    const int p = wire_patch (m);
    gsize plane = (gsize) r->exp_dims[2] * (gsize) r->exp_dims[3];
    /* The engine's output is in the network's units: C / p^2 channels of
     * planes p^2 as large (p = 1: the reply's). */
    const int net_c = C / (p * p);
    const gsize net_plane = plane * (gsize) (p * p);
    int out_c = vae_engine_output_channels (m, VAE_DIRECTION_ENCODE);
    for (int n = 0; n < r->frames; n++) {
      float *dst = b->output + (gsize) (r->first + n) * (gsize) out_c * net_plane;
      gsize base = (gsize) n * (gsize) C * plane;
      if (p > 1) {
        /* Patchified [C, h/p, w/p] to [C/p^2, h, w] by way of the logvar
         * half (a preset is KL: moments, the half as large; zeroed below). */
        float *tmp = dst + (gsize) net_c * net_plane;
        vae_wire_to_floats (src + base * esize, dt, (gsize) C * plane, tmp);
        vae_latents_unpatchify (tmp, net_c, (int) r->exp_dims[2] * p,
                                (int) r->exp_dims[3] * p, p, dst);
      } else {
        vae_wire_to_floats (src + base * esize, dt, (gsize) C * plane, dst);
      }
      /* logvar (moments models): 0, i.e. the mode only. */
      if (out_c > net_c)
        memset (dst + (gsize) net_c * net_plane, 0,
                (gsize) (out_c - net_c) * net_plane * sizeof (float));
    }
  } else {
    /* NHWC 8-bit frames to the model's planar range, as the elements
     * convert 8-bit pixels (codec.c), so that converting back is exact. */
    int H = (int) r->exp_dims[1], W = (int) r->exp_dims[2];
    gsize frame = (gsize) H * (gsize) W * 3;
    for (int n = 0; n < r->frames; n++)
      vae_pixels_from_rgb8 (m, src + (gsize) n * frame, W, H, W * 3, 3,
                            b->output + (gsize) (r->first + n) * frame, H, W);
  }
  r->done = TRUE;
  return TRUE;
}

static gboolean
retryable_curl (CURLcode rc)
{
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
      return TRUE;
    default:
      return FALSE;
  }
}

/* Schedules another attempt, or fails the request after the last one. */
static void
request_retry_or_fail (RemoteEngine *self, Request *r, const char *endpoint,
                       const char *cause)
{
  if (r->attempt > self->retries) {
    request_fail (r, endpoint, "%s (after %d attempt%s)", cause, r->attempt,
                  r->attempt == 1 ? "" : "s");
    return;
  }
  double delay = (double) self->backoff_ms * (double) (1u << MIN (r->attempt - 1, 16));
  delay += g_random_double_range (0.0, 0.5) * delay;
  if (r->h_retry_after) {
    char *end = NULL;
    double ra = g_ascii_strtod (r->h_retry_after, &end);
    if (end && end != r->h_retry_after && ra >= 0)
      delay = MAX (delay, MIN (ra, 300.0) * 1000.0);
    /* An HTTP date is not parsed: the exponential delay applies. */
  }
  g_debug ("remote engine: %s: %s, retrying in %.0f ms", endpoint, cause, delay);
  r->not_before = g_get_monotonic_time () + (gint64) (delay * 1000.0);
}

static void
request_completed (RemoteEngine *self, Request *r, CURLcode rc)
{
  Endpoint *ep = &self->endpoints[r->endpoint];
  const char *endpoint = ep->display;
  long status = 0;
  curl_easy_getinfo (r->easy, CURLINFO_RESPONSE_CODE, &status);

  curl_multi_remove_handle (self->multi, r->easy);
  g_ptr_array_add (self->idle_easy, r->easy);
  r->easy = NULL;
  r->endpoint = -1;
  ep->busy--;
  self->inflight--;

  if (rc != CURLE_OK) {
    if (r->reply_no_memory) {
      g_autofree char *size = vae_format_bytes (r->reply_len);
      request_fail_code (r, VAE_ERROR_NO_MEMORY, endpoint,
                         "out of memory for the reply body (%s received, HTTP %ld)",
                         size, status);
      return;
    }
    if (r->reply_too_large) {
      request_fail (r, endpoint, "reply body larger than the %" G_GSIZE_FORMAT
                    " bytes the request can produce (HTTP %ld)", r->reply_limit, status);
      return;
    }
    g_autofree char *cause = g_strdup_printf ("%s%s%s%s",
        curl_easy_strerror (rc), r->errbuf[0] ? " (" : "", r->errbuf,
        r->errbuf[0] ? ")" : "");
    if (retryable_curl (rc))
      request_retry_or_fail (self, r, endpoint, cause);
    else
      request_fail (r, endpoint, "%s", cause);
    return;
  }
  if (status == 200) {
    request_finish_ok (self, r, endpoint);
    return;
  }
  g_autofree char *msg = vae_wire_error_message (r->reply, r->reply_len);
  g_autofree char *cause = g_strdup_printf ("HTTP %ld: %s", status, msg);
  if (status == 429 || status == 502 || status == 503 || status == 504)
    request_retry_or_fail (self, r, endpoint, cause);
  else if (status == 401 || status == 403)
    request_fail (r, endpoint, "%s (%s)", cause, !self->auth_header
                  ? "no token: set the token property or HF_TOKEN"
                  : self->token_from_env ? "the HF_TOKEN was refused"
                                         : "the token was refused");
  else
    request_fail (r, endpoint, "%s", cause);
}

/* Starts what may start, drives the transfers, handles what finished. */
static void
pump (RemoteEngine *self)
{
  gint64 now = g_get_monotonic_time ();
  for (GList *l = self->queue.head; l && self->inflight < self->max_inflight; l = l->next) {
    Request *r = l->data;
    if (r->done || r->easy || r->not_before > now)
      continue;
    if (!request_start (self, r))
      request_fail (r, self->endpoints[0].display, "could not create a transfer");
  }
  int running = 0;
  curl_multi_perform (self->multi, &running);
  CURLMsg *msg;
  int left = 0;
  while ((msg = curl_multi_info_read (self->multi, &left))) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    Request *r = NULL;
    curl_easy_getinfo (msg->easy_handle, CURLINFO_PRIVATE, (char **) &r);
    if (r)
      request_completed (self, r, msg->data.result);
  }
}

/* ---- the vtable ---- */

static void
free_endpoints (RemoteEngine *self)
{
  for (int i = 0; i < self->n_endpoints; i++) {
    g_free (self->endpoints[i].url);
    g_free (self->endpoints[i].display);
  }
  g_clear_pointer (&self->endpoints, g_free);
  self->n_endpoints = 0;
}

/* An integer setting KEY, else the environment's NAME, else DEF. */
static gboolean
int_setting (RemoteEngine *self, const char *key, const char *env, int def, int lo, int hi,
             int *out, GError **error)
{
  *out = env_int (env, def, lo, hi);
  return vae_engine_setting_int (&self->parent, key, lo, hi, out, error);
}

/* Everything but the endpoints, from the settings and the environment. */
static gboolean
read_settings (RemoteEngine *self, GError **error)
{
  VaeEngine *engine = &self->parent;
  int max_requests, timeout_ms, backoff_ms, input = REMOTE_INPUT_UINT8;
  if (!int_setting (self, "max-requests", "VAE_REMOTE_MAX_INFLIGHT", 4, 1, 256,
                    &max_requests, error)
      || !int_setting (self, "timeout-ms", "VAE_REMOTE_TIMEOUT_MS", 60000, 1, 3600000,
                       &timeout_ms, error)
      || !int_setting (self, "retries", "VAE_REMOTE_RETRIES", 3, 0, 100, &self->retries,
                       error)
      || !int_setting (self, "backoff-ms", "VAE_REMOTE_BACKOFF_MS", 250, 0, 600000,
                       &backoff_ms, error)
      || !int_setting (self, "batch", "VAE_REMOTE_BATCH", 8, 1, 4096, &self->batch, error)
      || !vae_engine_setting_choice (engine, "input", input_names, &input, error))
    return FALSE;
  /* At least as many requests as the caller keeps batches in flight (the
   * elements' max-inflight), so that those batches really overlap. */
  self->max_inflight = MAX (max_requests, CLAMP (engine->options.max_inflight, 0, 256));
  self->timeout_ms = timeout_ms;
  self->backoff_ms = backoff_ms;
  self->input = (RemoteInput) input;
  const char *token = vae_engine_setting (engine, "token");
  if (!token || !*token) {
    token = g_getenv ("HF_TOKEN");
    self->token_from_env = TRUE;
  }
  if (token && *token)
    self->auth_header = g_strconcat ("Authorization: Bearer ", token, NULL);
  return TRUE;
}

static gboolean
remote_open (VaeEngine *engine, GError **error)
{
  RemoteEngine *self = (RemoteEngine *) engine;
  static gsize curl_init = 0;
  if (g_once_init_enter (&curl_init)) {
    curl_global_init (CURL_GLOBAL_DEFAULT);
    g_once_init_leave (&curl_init, 1);
  }

  const char *endpoint = vae_engine_setting (engine, "endpoint");
  g_auto (GStrv) parts = g_strsplit (endpoint ? endpoint : "", ",", -1);
  GArray *eps = g_array_new (FALSE, TRUE, sizeof (Endpoint));
  for (int i = 0; parts[i]; i++) {
    char *u = g_strstrip (parts[i]);
    if (!*u)
      continue;
    if (!g_str_has_prefix (u, "http://") && !g_str_has_prefix (u, "https://")) {
      g_autofree char *shown = redact_url (u);
      g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                   "remote engine: endpoint '%s' is not an http:// or https:// URL", shown);
      for (guint k = 0; k < eps->len; k++) {
        g_free (g_array_index (eps, Endpoint, k).url);
        g_free (g_array_index (eps, Endpoint, k).display);
      }
      g_array_free (eps, TRUE);
      return FALSE;
    }
    Endpoint e = { g_strdup (u), redact_url (u), 0 };
    g_array_append_val (eps, e);
  }
  if (eps->len == 0) {
    g_array_free (eps, TRUE);
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "remote engine: no endpoint given (a comma-separated list of URLs)");
    return FALSE;
  }
  self->n_endpoints = (int) eps->len;
  self->endpoints = (Endpoint *) g_array_free (eps, FALSE);
  if (!read_settings (self, error)) {
    free_endpoints (self);
    return FALSE;
  }

  self->multi = curl_multi_init ();
  if (!self->multi) {
    free_endpoints (self);
    vae_clear_secret (&self->auth_header);
    g_set_error (error, VAE_ERROR, VAE_ERROR_ENGINE, "remote engine: curl_multi_init failed");
    return FALSE;
  }
  curl_multi_setopt (self->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) self->max_inflight);
  g_queue_init (&self->queue);
  self->idle_easy = g_ptr_array_new ();
  return TRUE;
}

/* A request for frames FIRST .. FIRST+FRAMES-1 of BATCH; takes BODY and
 * QUERY.  EXP: the reply's shape. */
static Request *
request_new (RemoteEngine *self, VaeBatch *batch, int first, int frames, guint8 *body,
             gsize body_size, GString *query, const char *content_type, const gint64 exp[4])
{
  Request *r = g_new0 (Request, 1);
  r->self = self;
  r->batch = batch;
  r->first = first;
  r->frames = frames;
  r->endpoint = -1;
  r->body = body;
  r->body_size = body_size;
  r->query = g_string_free (query, FALSE);
  memcpy (r->exp_dims, exp, sizeof r->exp_dims);
  vae_wire_shape_bytes (exp, 4, 1, &r->exp_elems);
  /* Largest body the request can produce (float32) plus room for an
   * error body. */
  r->reply_limit = r->exp_elems * 4 + (1 << 20);
  g_autofree char *ct = g_strconcat ("Content-Type: ", content_type, NULL);
  r->headers = curl_slist_append (r->headers, ct);
  r->headers = curl_slist_append (r->headers, "Accept: " VAE_WIRE_CONTENT_TYPE_TENSOR);
  /* No "Expect: 100-continue": it costs a round trip per request. */
  r->headers = curl_slist_append (r->headers, "Expect:");
  if (self->auth_header)
    r->headers = curl_slist_append (r->headers, self->auth_header);
  return r;
}

/* The latent format asked of the server, for models with patches only
 * (the others' requests stay as the protocol has them). */
static void
append_latent_format (GString *q, const VaeModel *m)
{
  if (m->latent_patch > 1)
    vae_wire_query_append (q, VAE_WIRE_KEY_LATENT_FORMAT,
                           vae_latent_format_name (wire_patch (m) > 1
                                                       ? VAE_LATENT_FORMAT_NORMALIZED
                                                       : VAE_LATENT_FORMAT_RAW));
}

/* Encode's query: the server returns the unscaled mode (FLUX.2: in the
 * format above). */
static GString *
unscaled_query (const VaeModel *m)
{
  GString *q = g_string_new (NULL);
  vae_wire_query_append_double (q, VAE_WIRE_KEY_SCALING, 1.0);
  vae_wire_query_append_double (q, VAE_WIRE_KEY_SHIFT, 0.0);
  append_latent_format (q, m);
  return q;
}

/* One frame (planar, model range) to 8-bit: the element's pixels; NULL
 * with ERROR when it does not fit in memory. */
static guint8 *
frame_to_rgb8 (const VaeModel *m, const float *frame, int h, int w, GError **error)
{
  guint8 *rgb = vae_try_alloc ((gsize) h * (gsize) w, 3, "an 8-bit frame for PNG", error);
  if (rgb)
    vae_pixels_to_rgb8 (m, frame, h, w, rgb, w, h, w * 3, 3);
  return rgb;
}

/* Encode requests for BATCH into REQS, as self->input says. */
static gboolean
encode_requests (RemoteEngine *self, VaeBatch *batch, GPtrArray *reqs, GError **error)
{
  const VaeModel *m = self->parent.model;
  const int p = wire_patch (m);
  const int f = m->spatial_factor * p, ic = m->image_channels;
  const int C = m->latent_channels * p * p;
  const gsize frame = (gsize) ic * (gsize) batch->h * (gsize) batch->w;
  const float lo = m->image_min, inv = 1.0f / (1.0f - m->image_min);

  if (self->input == REMOTE_INPUT_PNG) {
    /* One PNG per frame, each its own request, run concurrently. */
    const gint64 exp[4] = { 1, C, batch->h / f, batch->w / f };
    for (int n = 0; n < batch->n; n++) {
      g_autofree guint8 *rgb = frame_to_rgb8 (m, batch->input + frame * n, batch->h,
                                              batch->w, error);
      if (!rgb)
        return FALSE;
      GBytes *png = vae_png_encode (rgb, batch->w, batch->h);
      if (!png) {
        g_set_error (error, VAE_ERROR, VAE_ERROR_ENGINE,
                     "remote engine: could not make a PNG of a %dx%d frame",
                     batch->w, batch->h);
        return FALSE;
      }
      gsize size = 0;
      guint8 *body = g_bytes_unref_to_data (png, &size);
      g_ptr_array_add (reqs, request_new (self, batch, n, 1, body, size, unscaled_query (m),
                                          VAE_WIRE_CONTENT_TYPE_PNG, exp));
    }
    return TRUE;
  }

  const gsize count = frame * (gsize) batch->n;
  const gboolean f16 = self->input == REMOTE_INPUT_FLOAT16;
  guint8 *body = vae_try_alloc (count, f16 ? 2 : 1, "the request body", error);
  if (!body)
    return FALSE;
  if (f16) {
    /* [-1, 1], the range diffusers' image processor gives; a KL model's
     * range already is. */
    guint16 *h = (guint16 *) body;
    for (gsize i = 0; i < count; i++) {
      float x = batch->input[i];
      h[i] = vae_f32_to_f16 (lo == -1.0f ? x : (x - lo) * inv * 2.0f - 1.0f);
    }
  } else {
    for (gsize i = 0; i < count; i++) {
      float x = (batch->input[i] - lo) * inv;
      if (!(x >= 0.0f))          /* also NaN */
        x = 0.0f;
      else if (x > 1.0f)
        x = 1.0f;
      body[i] = (guint8) lrintf (x * 255.0f);
    }
  }
  GString *q = unscaled_query (m);
  const gint64 shape[4] = { batch->n, ic, batch->h, batch->w };
  vae_wire_query_append_tensor (q, shape, 4, f16 ? VAE_WIRE_F16 : VAE_WIRE_U8);
  const gint64 exp[4] = { batch->n, C, batch->h / f, batch->w / f };
  g_ptr_array_add (reqs, request_new (self, batch, 0, batch->n, body,
                                      count * (f16 ? 2 : 1), q,
                                      VAE_WIRE_CONTENT_TYPE_TENSOR, exp));
  return TRUE;
}

/* The decode request for BATCH: diffusion-space latents and the model's
 * factors, uint8 NHWC frames back.  NULL with ERROR when the body does not
 * fit in memory. */
static Request *
decode_request (RemoteEngine *self, VaeBatch *batch, GError **error)
{
  const VaeModel *m = self->parent.model;
  const int f = m->spatial_factor, C = m->latent_channels, p = wire_patch (m);
  const gsize frame = (gsize) C * (gsize) batch->h * (gsize) batch->w;
  const gsize count = (gsize) batch->n * frame;
  float *z = vae_try_alloc (count, sizeof (float), "the request body", error);
  if (!z)
    return NULL;
  if (p > 1)
    for (int n = 0; n < batch->n; n++)
      vae_latents_patchify (batch->input + frame * n, C, batch->h, batch->w, p,
                            z + frame * n);
  else
    memcpy (z, batch->input, count * sizeof (float));
  for (gsize i = 0; i < count; i++)
    z[i] = (float) (((double) z[i] - m->shift_factor) * m->scaling_factor);
  GString *q = g_string_new (NULL);
  vae_wire_query_append (q, VAE_WIRE_KEY_OUTPUT_TYPE, "pt");
  vae_wire_query_append_bool (q, VAE_WIRE_KEY_PARTIAL, TRUE);
  vae_wire_query_append_double (q, VAE_WIRE_KEY_SCALING, m->scaling_factor);
  vae_wire_query_append_double (q, VAE_WIRE_KEY_SHIFT, m->shift_factor);
  append_latent_format (q, m);
  const gint64 shape[4] = { batch->n, C * p * p, batch->h / p, batch->w / p };
  vae_wire_query_append_tensor (q, shape, 4, VAE_WIRE_F32);
  const gint64 exp[4] = { batch->n, batch->h * f, batch->w * f, m->image_channels };
  return request_new (self, batch, 0, batch->n, (guint8 *) z, count * sizeof (float), q,
                      VAE_WIRE_CONTENT_TYPE_TENSOR, exp);
}

static gboolean
remote_submit (VaeEngine *engine, VaeBatch *batch, GError **error)
{
  RemoteEngine *self = (RemoteEngine *) engine;
  g_autoptr (GPtrArray) reqs = g_ptr_array_new ();
  g_clear_error (&batch->error);

  gboolean ok = TRUE;
  if (batch->direction == VAE_DIRECTION_ENCODE) {
    ok = encode_requests (self, batch, reqs, error);
  } else {
    Request *r = decode_request (self, batch, error);
    if (r)
      g_ptr_array_add (reqs, r);
    ok = r != NULL;
  }
  for (guint i = 0; ok && i < reqs->len; i++)
    if (!((Request *) reqs->pdata[i])->headers) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_NO_MEMORY, "remote engine: out of memory");
      ok = FALSE;
    }
  if (!ok) {
    g_ptr_array_foreach (reqs, (GFunc) (void (*) (void)) request_free, NULL);
    return FALSE;
  }
  /* A batch's requests sit together in the queue, in frame order. */
  for (guint i = 0; i < reqs->len; i++)
    g_queue_push_tail (&self->queue, reqs->pdata[i]);
  pump (self);
  return TRUE;
}

/* Whether every request of B (at the queue's head) has finished. */
static gboolean
head_batch_done (RemoteEngine *self, VaeBatch *b)
{
  for (GList *l = self->queue.head; l && ((Request *) l->data)->batch == b; l = l->next)
    if (!((Request *) l->data)->done)
      return FALSE;
  return TRUE;
}

static VaeBatch *
remote_wait (VaeEngine *engine)
{
  RemoteEngine *self = (RemoteEngine *) engine;
  Request *head = g_queue_peek_head (&self->queue);
  if (!head)
    return NULL;
  VaeBatch *b = head->batch;
  for (;;) {
    pump (self);
    if (head_batch_done (self, b))
      break;
    /* Sleep until there is network activity, curl wants attention, or
     * the earliest backoff ends. */
    gint64 now = g_get_monotonic_time ();
    long wait_ms = 1000;
    long curl_ms = -1;
    curl_multi_timeout (self->multi, &curl_ms);
    if (curl_ms >= 0)
      wait_ms = MIN (wait_ms, curl_ms);
    if (self->inflight < self->max_inflight) {
      for (GList *l = self->queue.head; l; l = l->next) {
        Request *r = l->data;
        if (r->done || r->easy)
          continue;
        long ms = (long) ((r->not_before - now + 999) / 1000);
        wait_ms = MIN (wait_ms, MAX (ms, 0));
      }
    }
    if (wait_ms > 0)
      curl_multi_poll (self->multi, NULL, 0, (int) wait_ms, NULL);
  }
  while ((head = g_queue_peek_head (&self->queue)) && head->batch == b)
    request_free (g_queue_pop_head (&self->queue));
  return b;
}

static int
remote_preferred_batch (VaeEngine *engine)
{
  return ((RemoteEngine *) engine)->batch;
}

static void
remote_close (VaeEngine *engine)
{
  RemoteEngine *self = (RemoteEngine *) engine;
  Request *r;
  while ((r = g_queue_pop_head (&self->queue))) {
    if (r->easy) {
      curl_multi_remove_handle (self->multi, r->easy);
      curl_easy_cleanup (r->easy);
    }
    request_free (r);
  }
  if (self->idle_easy) {
    for (guint i = 0; i < self->idle_easy->len; i++)
      curl_easy_cleanup (self->idle_easy->pdata[i]);
    g_ptr_array_free (self->idle_easy, TRUE);
  }
  if (self->multi)
    curl_multi_cleanup (self->multi);
  free_endpoints (self);
  vae_clear_secret (&self->auth_header);
}

static const VaeEngineSetting remote_settings[] = {
  { "endpoint", "server URLs, comma-separated (required)" },
  { "token", "bearer token (default: $HF_TOKEN; never printed)" },
  { "timeout-ms", "per-request timeout, 1..3600000 (default: $VAE_REMOTE_TIMEOUT_MS, "
                  "else 60000)" },
  { "retries", "retries after connection errors, timeouts, 429, 502, 503, 504, 0..100 "
               "(default: $VAE_REMOTE_RETRIES, else 3)" },
  { "backoff-ms", "first retry delay, doubled each retry, 0..600000 (default: "
                  "$VAE_REMOTE_BACKOFF_MS, else 250)" },
  { "max-requests", "requests in flight at once, 1..256, at least the caller's "
                    "max-inflight (default: $VAE_REMOTE_MAX_INFLIGHT, else 4)" },
  { "batch", "preferred frames per batch, 1..4096 (default: $VAE_REMOTE_BATCH, else 8)" },
  { "input", "what encode sends: uint8 (default), float16 or png" },
  { NULL, NULL }
};

const VaeEngineVTable vae_engine_remote = {
  .name = "remote",
  .instance_size = sizeof (RemoteEngine),
  .open = remote_open,
  .submit = remote_submit,
  .wait = remote_wait,
  .preferred_batch = remote_preferred_batch,
  .close = remote_close,
  .takes_config_only = TRUE,
  .settings = remote_settings,
};
