/* gst-vae: the error domain shared by the core and the engines. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

#define VAE_ERROR (vae_error_quark ())
GQuark vae_error_quark (void);

typedef enum {
  VAE_ERROR_IO,            /* a file could not be opened, read or written */
  VAE_ERROR_FORMAT,        /* a file is corrupt or not what it claims to be */
  VAE_ERROR_MODEL,         /* a model is missing a tensor, or one is misshapen */
  VAE_ERROR_UNSUPPORTED,   /* valid input this build cannot handle */
  VAE_ERROR_ENGINE,        /* the engine failed while running */
  VAE_ERROR_ARGUMENT,      /* a caller passed a bad value */
  VAE_ERROR_NO_MEMORY,     /* an allocation failed (a frame, batch or plan too
                            * large for this machine's memory) */
} VaeErrorCode;

/* Allocations that can fail.  GLib's g_malloc and g_aligned_alloc abort the
 * process when memory runs out; a frame too large for memory must instead
 * come back as an error that the caller can report (an element error, an
 * HTTP 503, exit status 1).  Use these for every buffer whose size follows
 * from the input (frames, activations, plans, staging); WHAT names the
 * buffer in the message ("activations for 1x3x8192x8192").  Both return NULL
 * with ERROR set (VAE_ERROR_NO_MEMORY) on failure or on a size that
 * overflows; n_blocks * block_size bytes, zeroed.  Free with vae_free /
 * vae_aligned_free. */
gpointer vae_try_alloc0 (gsize n_blocks, gsize block_size, const char *what,
                         GError **error);
gpointer vae_try_aligned_alloc0 (gsize n_blocks, gsize block_size, gsize alignment,
                                 const char *what, GError **error);
/* The same without zeroing, for buffers that are filled before they are
 * read, or that are zeroed later: allocating every buffer of a set first
 * and touching them only once all succeeded keeps a set that does not fit
 * from taking physical memory before it fails. */
gpointer vae_try_alloc (gsize n_blocks, gsize block_size, const char *what,
                        GError **error);
gpointer vae_try_aligned_alloc (gsize n_blocks, gsize block_size, gsize alignment,
                                const char *what, GError **error);
#define vae_free g_free
#define vae_aligned_free g_aligned_free

/* Wipes a string holding a secret (a token), frees it and sets *SECRET to
 * NULL; nothing for NULL. */
void vae_clear_secret (char **secret);

/* Human-readable size ("17.2 GB") for messages; returns a new string. */
char *vae_format_bytes (guint64 bytes);

G_END_DECLS
