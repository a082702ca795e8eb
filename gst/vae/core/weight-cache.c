/* gst-vae: an engine's prepared copies of weights (weight-cache.h). */
#include "weight-cache.h"
#include <string.h>

typedef struct {
  gpointer layout;             /* layout_size bytes, owned */
  gpointer data;
} Entry;

struct _VaeWeightCache {
  gsize layout_size;
  VaeWeightLayoutEqual equal;
  VaeWeightCacheFree free_data;
  gpointer user_data;
  GHashTable *by_source;       /* source pointer -> GPtrArray of Entry */
  guint count;
  VaeWeightStore *originals;   /* a reference, or NULL */
};

VaeWeightCache *
vae_weight_cache_new (gsize layout_size, VaeWeightLayoutEqual equal,
                      VaeWeightCacheFree free_data, gpointer user_data)
{
  VaeWeightCache *c = g_new0 (VaeWeightCache, 1);
  c->layout_size = layout_size;
  c->equal = equal;
  c->free_data = free_data;
  c->user_data = user_data;
  c->by_source = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                        (GDestroyNotify) g_ptr_array_unref);
  return c;
}

static gboolean
layout_equal (const VaeWeightCache *c, gconstpointer a, gconstpointer b)
{
  return c->equal ? c->equal (a, b) : memcmp (a, b, c->layout_size) == 0;
}

gpointer
vae_weight_cache_lookup (VaeWeightCache *c, gconstpointer source, gconstpointer layout)
{
  GPtrArray *entries = g_hash_table_lookup (c->by_source, source);
  for (guint i = 0; entries && i < entries->len; i++) {
    const Entry *e = g_ptr_array_index (entries, i);
    if (layout_equal (c, e->layout, layout))
      return e->data;
  }
  return NULL;
}

void
vae_weight_cache_insert (VaeWeightCache *c, gconstpointer source, gconstpointer layout,
                         gpointer data)
{
  g_return_if_fail (vae_weight_cache_lookup (c, source, layout) == NULL);
  GPtrArray *entries = g_hash_table_lookup (c->by_source, source);
  if (!entries) {
    entries = g_ptr_array_new ();
    g_hash_table_insert (c->by_source, (gpointer) source, entries);
  }
  Entry *e = g_new (Entry, 1);
  e->layout = g_memdup2 (layout, c->layout_size);
  e->data = data;
  g_ptr_array_add (entries, e);
  c->count++;
  /* Right away rather than once SOURCE's last layout is made, so the
   * cache needs no notion of when a plan is complete: a filter prepared
   * in several layouts in a row (a causal conv's time taps, an upsampling
   * conv's phases) is read again through minor faults from the page
   * cache, fewer in all than writing the heap copies took (Wan 2.2's
   * decoder: 1.1 M page faults against 1.75 M). */
  if (c->originals)
    vae_weight_store_release (c->originals, source);
}

void
vae_weight_cache_release_originals (VaeWeightCache *c, VaeWeightStore *store)
{
  if (store)
    vae_weight_store_ref (store);
  if (c->originals)
    vae_weight_store_unref (c->originals);
  c->originals = store;
}

guint
vae_weight_cache_count (const VaeWeightCache *c)
{
  return c->count;
}

void
vae_weight_cache_free (VaeWeightCache *c)
{
  if (!c)
    return;
  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init (&it, c->by_source);
  while (g_hash_table_iter_next (&it, NULL, &value)) {
    GPtrArray *entries = value;
    for (guint i = 0; i < entries->len; i++) {
      Entry *e = g_ptr_array_index (entries, i);
      if (c->free_data)
        c->free_data (e->data, c->user_data);
      g_free (e->layout);
      g_free (e);
    }
  }
  g_hash_table_unref (c->by_source);
  if (c->originals)
    vae_weight_store_unref (c->originals);
  g_free (c);
}
