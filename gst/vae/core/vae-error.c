#include "vae-error.h"

#include <stdlib.h>
#include <string.h>

G_DEFINE_QUARK (vae-error-quark, vae_error)

char *
vae_format_bytes (guint64 bytes)
{
  return g_format_size_full (bytes, G_FORMAT_SIZE_DEFAULT);
}

static gboolean
checked_size (gsize n_blocks, gsize block_size, gsize *out, const char *what,
              GError **error)
{
  if (block_size != 0 && n_blocks > G_MAXSIZE / block_size) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_NO_MEMORY,
                 "out of memory: %s would need more than %" G_GSIZE_FORMAT
                 " x %" G_GSIZE_FORMAT " bytes (size overflows)",
                 what ? what : "a buffer", n_blocks, block_size);
    return FALSE;
  }
  *out = n_blocks * block_size;
  return TRUE;
}

static void
set_no_memory (gsize size, const char *what, GError **error)
{
  char *s = vae_format_bytes (size);
  g_set_error (error, VAE_ERROR, VAE_ERROR_NO_MEMORY,
               "out of memory: could not allocate %s for %s", s,
               what ? what : "a buffer");
  g_free (s);
}

gpointer
vae_try_alloc0 (gsize n_blocks, gsize block_size, const char *what, GError **error)
{
  gsize size;
  if (!checked_size (n_blocks, block_size, &size, what, error))
    return NULL;
  /* calloc, not g_try_malloc0: the kernel then hands out zero pages lazily. */
  gpointer p = calloc (1, size ? size : 1);
  if (!p)
    set_no_memory (size, what, error);
  return p;
}

gpointer
vae_try_aligned_alloc0 (gsize n_blocks, gsize block_size, gsize alignment,
                        const char *what, GError **error)
{
  gsize size;
  if (!checked_size (n_blocks, block_size, &size, what, error))
    return NULL;
  if (alignment < sizeof (void *))
    alignment = sizeof (void *);
  /* Round up so that size is a multiple of alignment (aligned_alloc's rule). */
  gsize rounded = (size + alignment - 1) / alignment * alignment;
  if (rounded < size) {
    set_no_memory (size, what, error);
    return NULL;
  }
  void *p = NULL;
  /* posix_memalign pairs with free(), which g_aligned_free calls on glibc. */
  if (posix_memalign (&p, alignment, rounded ? rounded : alignment) != 0) {
    set_no_memory (size, what, error);
    return NULL;
  }
  memset (p, 0, rounded);
  return p;
}
