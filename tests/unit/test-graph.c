/* gst-vae: graphs sharing one weight store (gst/vae/core/graph.h).  Video
 * models build a first-chunk and a steady-state graph over the same
 * weights; the store must keep them alive while any graph (or the model)
 * holds it, own each array once, and free them once (ASan checks that). */
#include <glib.h>
#include "graph.h"

static float *
filled (gsize n, float v)
{
  float *a = g_new (float, n);
  for (gsize i = 0; i < n; i++)
    a[i] = v;
  return a;
}

static void
test_shared_store (void)
{
  VaeWeightStore *store = vae_weight_store_new ();
  float *w = filled (4 * 3 * 3 * 3, 0.5f), *b = filled (4, 1.0f);

  VaeGraph *first = vae_graph_new_shared (3, store);
  VaeGraph *steady = vae_graph_new_shared (3, store);
  vae_graph_conv (first, "conv", 0, 4, 3, 1, 1, 1, 1, 1, w, b, -1, VAE_ACT_NONE);
  /* The same arrays in a second graph: not owned twice. */
  vae_graph_conv (steady, "conv", 0, 4, 3, 1, 1, 1, 1, 1, w, b, -1, VAE_ACT_SILU);
  g_assert_cmpuint (vae_weight_store_count (store), ==, 2);
  g_assert_true (vae_graph_op (first, 0)->weight == vae_graph_op (steady, 0)->weight);

  /* The store outlives the caller's reference and the first graph. */
  vae_weight_store_unref (store);
  vae_graph_free (first);
  const VaeOp *op = vae_graph_op (steady, 0);
  g_assert_cmpfloat (op->weight[107], ==, 0.5f);
  g_assert_cmpfloat (op->bias[3], ==, 1.0f);
  vae_graph_free (steady);
}

static void
test_own_store (void)
{
  /* A graph made alone has a store of its own, freed with it. */
  VaeGraph *g = vae_graph_new (2);
  vae_graph_group_norm (g, "norm", 0, 1, 1e-5f, filled (2, 1.0f), filled (2, 0.0f),
                        VAE_ACT_NONE);
  vae_graph_conv (g, "proj", 1, 2, 1, 1, 0, 0, 0, 0, filled (4, 1.0f), NULL, -1,
                  VAE_ACT_NONE);
  g_assert_cmpuint (vae_weight_store_count (g->weights), ==, 3);
  g_assert_cmpuint (vae_graph_n_params (g), ==, 2 * 2 + 4);
  vae_graph_free (g);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/graph/shared-store", test_shared_store);
  g_test_add_func ("/graph/own-store", test_own_store);
  return g_test_run ();
}
