/* gst-vae: an engine's prepared copies of weights, made once per engine.
 *
 * Engines do not run the graph's float32 OIHW weights as they are: the cpu
 * engine reorders each convolution's filter into the layout its primitive
 * wants, the cuda engine uploads it to the device as KRSC in its dtype.
 * Graphs share weight arrays (VaeWeightStore: a video model's first-chunk
 * and steady-state graphs, one graph at several batch shapes in several
 * plans), so the prepared copy is keyed by the weight's pointer plus the
 * layout it was prepared for, and every plan of the engine that needs that
 * pair borrows the one copy.  The cache owns the copies; they live until the
 * engine closes (the model, whose weights the pointers are, outlives it).
 *
 * Not thread-safe: an engine builds its plans on one thread at a time. */
#pragma once
#include <glib.h>
#include "graph.h"

G_BEGIN_DECLS

typedef struct _VaeWeightCache VaeWeightCache;

/* Frees one prepared copy (USER_DATA: the one given to _new). */
typedef void (*VaeWeightCacheFree) (gpointer data, gpointer user_data);
/* Whether two layouts (LAYOUT_SIZE bytes each) are the same; NULL: memcmp. */
typedef gboolean (*VaeWeightLayoutEqual) (gconstpointer a, gconstpointer b);

/* A cache whose layouts are opaque LAYOUT_SIZE-byte keys (copied in). */
VaeWeightCache *vae_weight_cache_new (gsize layout_size, VaeWeightLayoutEqual equal,
                                      VaeWeightCacheFree free_data, gpointer user_data);
/* Frees every prepared copy, then the cache.  NULL is ignored. */
void vae_weight_cache_free (VaeWeightCache *cache);

/* The copy of SOURCE prepared for LAYOUT, or NULL when there is none yet. */
gpointer vae_weight_cache_lookup (VaeWeightCache *cache, gconstpointer source,
                                  gconstpointer layout);
/* Adds DATA, the copy of SOURCE prepared for LAYOUT (which must not be in
 * the cache yet), and counts one preparation. */
void vae_weight_cache_insert (VaeWeightCache *cache, gconstpointer source,
                              gconstpointer layout, gpointer data);
/* From now on, inserting the copy of a SOURCE lets STORE (the model's,
 * which holds the sources) give back the memory of SOURCE's original
 * (vae_weight_store_release): the engine's plans run the copy, and a later
 * preparation of SOURCE for another layout reads the original again, which
 * the store has kept readable.  The cache keeps a reference to STORE.
 * For the caches of convolution filters; NULL: no release. */
void vae_weight_cache_release_originals (VaeWeightCache *cache, VaeWeightStore *store);
/* Copies prepared (inserted) so far. */
guint vae_weight_cache_count (const VaeWeightCache *cache);

G_END_DECLS
