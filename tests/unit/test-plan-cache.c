/* gst-vae: the engines' plan cache (gst/vae/core/plan-cache.h). */
#include <glib.h>
#include "plan-cache.h"

static int freed;

static void
count_free (gpointer plan, gpointer user_data)
{
  freed++;
  g_free (plan);
}

static void
test_lru (void)
{
  VaePlanCache c = { 0 };
  VaeGraph *g = vae_graph_new (3);
  g_assert_null (vae_plan_cache_find (&c, g, 1, 64, 64));

  /* Three sizes fit; each is found again. */
  gpointer p[4];
  for (int i = 0; i < 3; i++) {
    g_assert_null (vae_plan_cache_evict (&c));
    p[i] = g_strdup_printf ("plan %d", i);
    vae_plan_cache_put (&c, g, i + 1, 64, 64, p[i]);
  }
  for (int i = 0; i < 3; i++)
    g_assert_true (vae_plan_cache_find (&c, g, i + 1, 64, 64) == p[i]);
  g_assert_null (vae_plan_cache_find (&c, g, 1, 64, 32));
  g_assert_null (vae_plan_cache_find (&c, NULL, 1, 64, 64));

  /* Batch 1 used last: batch 2 is the least recently used and goes. */
  g_assert_true (vae_plan_cache_find (&c, g, 3, 64, 64) == p[2]);
  g_assert_true (vae_plan_cache_find (&c, g, 1, 64, 64) == p[0]);
  gpointer old = vae_plan_cache_evict (&c);
  g_assert_true (old == p[1]);
  g_free (old);
  p[3] = g_strdup ("plan 3");
  vae_plan_cache_put (&c, g, 8, 64, 64, p[3]);
  g_assert_null (vae_plan_cache_find (&c, g, 2, 64, 64));
  g_assert_true (vae_plan_cache_find (&c, g, 8, 64, 64) == p[3]);

  /* A forgotten plan is the caller's; the rest are freed once by clear. */
  vae_plan_cache_forget (&c, p[2]);
  g_assert_null (vae_plan_cache_find (&c, g, 3, 64, 64));
  g_free (p[2]);
  vae_plan_cache_clear (&c, count_free, NULL);
  g_assert_cmpint (freed, ==, 2);
  g_assert_null (vae_plan_cache_find (&c, g, 1, 64, 64));
  vae_graph_free (g);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/plan-cache/lru", test_lru);
  return g_test_run ();
}
