#include "vae-error.h"

#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

G_DEFINE_QUARK (vae-error-quark, vae_error)

char *
vae_format_bytes (guint64 bytes)
{
  char *s = g_format_size_full (bytes, G_FORMAT_SIZE_DEFAULT);
  /* GLib puts a no-break space (UTF-8 C2 A0) between value and unit; these
   * strings end up in logs, element errors and HTTP bodies, where a plain
   * space reads the same and survives conversion to ASCII. */
  char *nbsp = strstr (s, "\xc2\xa0");
  if (nbsp) {
    nbsp[0] = ' ';
    memmove (nbsp + 1, nbsp + 2, strlen (nbsp + 2) + 1);
  }
  return s;
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
vae_try_alloc (gsize n_blocks, gsize block_size, const char *what, GError **error)
{
  gsize size;
  if (!checked_size (n_blocks, block_size, &size, what, error))
    return NULL;
  gpointer p = malloc (size ? size : 1);
  if (!p)
    set_no_memory (size, what, error);
  return p;
}

/* Aligned buffers from this size up are asked to be backed by 2 MiB pages
 * (below).  Why: the engines walk activations in channel-block planes
 * (nChw8c: a 128-pixel row of one block is one 4 KiB page) and stream
 * transformed filters of tens of MiB, so with 4 KiB pages nearly every
 * row a kernel reads is a TLB miss; Debian's default transparent huge page
 * policy ("madvise") gives 2 MiB pages only to memory that asks. */
#define HUGE_PAGE ((gsize) 2 << 20)
#define HUGE_FROM ((gsize) 4 << 20)

/* posix_memalign for SIZE bytes rounded up to ALIGNMENT (large ones to
 * 2 MiB pages, asked to be huge); NULL with ERROR. */
static gpointer
aligned_alloc_checked (gsize n_blocks, gsize block_size, gsize alignment,
                       const char *what, gsize *rounded_out, GError **error)
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
  if (rounded == 0)
    rounded = alignment;
  *rounded_out = rounded;   /* what a caller may use (and alloc0 zeroes) */
#ifdef MADV_HUGEPAGE
  const gboolean huge = rounded >= HUGE_FROM && rounded <= G_MAXSIZE - HUGE_PAGE;
  if (huge) {
    alignment = MAX (alignment, HUGE_PAGE);
    rounded = (rounded + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
  }
#endif
  void *p = NULL;
  /* posix_memalign pairs with free(), which g_aligned_free calls on glibc. */
  if (posix_memalign (&p, alignment, rounded) != 0) {
    set_no_memory (size, what, error);
    return NULL;
  }
#ifdef MADV_HUGEPAGE
  /* Before the first touch; a hint only: where the kernel has none to
   * give (or THP is off) the buffer stays in 4 KiB pages. */
  if (huge)
    (void) madvise (p, rounded, MADV_HUGEPAGE);
#endif
  return p;
}

gpointer
vae_try_aligned_alloc0 (gsize n_blocks, gsize block_size, gsize alignment,
                        const char *what, GError **error)
{
  gsize rounded = 0;
  gpointer p = aligned_alloc_checked (n_blocks, block_size, alignment, what, &rounded,
                                      error);
  if (p)
    memset (p, 0, rounded);
  return p;
}

gpointer
vae_try_aligned_alloc (gsize n_blocks, gsize block_size, gsize alignment,
                       const char *what, GError **error)
{
  gsize rounded = 0;
  return aligned_alloc_checked (n_blocks, block_size, alignment, what, &rounded, error);
}

void
vae_clear_secret (char **secret)
{
  if (*secret) {
    /* volatile: the wipe of memory about to be freed is not optimised out. */
    volatile char *p = *secret;
    while (*p)
      *p++ = 0;
    g_clear_pointer (secret, g_free);
  }
}
