/* gst-vae: the few plans an engine keeps (see plan-cache.h). */
#include "plan-cache.h"

gpointer
vae_plan_cache_find (VaePlanCache *cache, const VaeGraph *graph, int n, int h, int w)
{
  for (int i = 0; i < VAE_PLAN_CACHE_SLOTS; i++) {
    VaePlanCacheSlot *s = &cache->slots[i];
    if (s->plan && s->graph == graph && s->n == n && s->h == h && s->w == w) {
      s->used = ++cache->clock;
      return s->plan;
    }
  }
  return NULL;
}

static VaePlanCacheSlot *
empty_or_oldest (VaePlanCache *cache)
{
  VaePlanCacheSlot *pick = &cache->slots[0];
  for (int i = 0; i < VAE_PLAN_CACHE_SLOTS; i++) {
    VaePlanCacheSlot *s = &cache->slots[i];
    if (!s->plan)
      return s;
    if (s->used < pick->used)
      pick = s;
  }
  return pick;
}

gpointer
vae_plan_cache_evict (VaePlanCache *cache)
{
  VaePlanCacheSlot *s = empty_or_oldest (cache);
  gpointer old = s->plan;
  s->plan = NULL;
  return old;
}

void
vae_plan_cache_put (VaePlanCache *cache, const VaeGraph *graph, int n, int h, int w,
                    gpointer plan)
{
  VaePlanCacheSlot *s = empty_or_oldest (cache);
  g_return_if_fail (s->plan == NULL);
  s->graph = graph;
  s->n = n;
  s->h = h;
  s->w = w;
  s->plan = plan;
  s->used = ++cache->clock;
}

void
vae_plan_cache_forget (VaePlanCache *cache, gpointer plan)
{
  for (int i = 0; i < VAE_PLAN_CACHE_SLOTS; i++)
    if (cache->slots[i].plan == plan)
      cache->slots[i].plan = NULL;
}

void
vae_plan_cache_clear (VaePlanCache *cache, void (*free_plan) (gpointer plan,
                                                              gpointer user_data),
                      gpointer user_data)
{
  for (int i = 0; i < VAE_PLAN_CACHE_SLOTS; i++) {
    if (cache->slots[i].plan)
      free_plan (cache->slots[i].plan, user_data);
    cache->slots[i].plan = NULL;
  }
}
