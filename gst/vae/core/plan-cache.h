/* gst-vae: the few plans an engine keeps, by (graph, n, h, w).
 *
 * A plan (buffers sized, algorithms chosen, weights laid out) is dear to
 * build and only fits one shape; callers such as vae-server hand engines
 * batches of varying size, so an engine keeps a few and lets the least
 * recently used one go.  The engines own their plans (build and free
 * them); this only remembers them. */
#pragma once
#include <glib.h>
#include "graph.h"

G_BEGIN_DECLS

#define VAE_PLAN_CACHE_SLOTS 3

typedef struct {
  const VaeGraph *graph;
  int n, h, w;
  gpointer plan;             /* NULL: empty */
  guint64 used;
} VaePlanCacheSlot;

typedef struct {
  VaePlanCacheSlot slots[VAE_PLAN_CACHE_SLOTS];
  guint64 clock;
} VaePlanCache;

/* The plan kept for this shape, or NULL. */
gpointer vae_plan_cache_find (VaePlanCache *cache, const VaeGraph *graph, int n, int h,
                              int w);
/* Makes room for one more plan: returns the plan that must go (the caller
 * frees it), NULL when a slot was free.  The slot stays empty until put. */
gpointer vae_plan_cache_evict (VaePlanCache *cache);
void vae_plan_cache_put (VaePlanCache *cache, const VaeGraph *graph, int n, int h, int w,
                         gpointer plan);
/* Forgets PLAN (the caller frees it), e.g. after a failed run. */
void vae_plan_cache_forget (VaePlanCache *cache, gpointer plan);
/* Forgets every plan, calling FREE_PLAN (PLAN, USER_DATA) on each. */
void vae_plan_cache_clear (VaePlanCache *cache, void (*free_plan) (gpointer plan,
                                                                   gpointer user_data),
                           gpointer user_data);

G_END_DECLS
