/* gst-vae: graphs sharing one weight store (gst/vae/core/graph.h).  Video
 * models build a first-chunk and a steady-state graph over the same
 * weights; the store must keep them alive while any graph (or the model)
 * holds it, own each array once, and free them once (ASan checks that). */
#include <glib.h>
#include <glib/gstdio.h>
#include <unistd.h>
#include "graph.h"
#include "safetensors.h"

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

/* Arrays on the heap: a release leaves them alone (MADV_DONTNEED would
 * zero them), a split copies the parts and frees the whole. */
static void
test_heap_arrays (void)
{
  VaeWeightStore *store = vae_weight_store_new ();
  const gsize n = 3 * 64 * 1024;   /* several pages */
  float *whole = vae_weight_store_adopt (store, filled (n, 0.0f));
  for (gsize i = 0; i < n; i++)
    whole[i] = (float) i;
  float *parts[3];
  vae_weight_store_split (store, whole, 3, n / 3, parts);
  g_assert_cmpuint (vae_weight_store_count (store), ==, 3);
  for (int j = 0; j < 3; j++) {
    g_assert_cmpuint (vae_weight_store_release (store, parts[j]), ==, 0);
    g_assert_cmpfloat (parts[j][n / 3 - 1], ==, (float) (j * (n / 3) + n / 3 - 1));
  }
  g_assert_cmpuint (vae_weight_store_mapped_bytes (store), ==, 0);
  g_assert_cmpuint (vae_weight_store_released_bytes (store), ==, 0);
  vae_weight_store_unref (store);
}

/* Arrays in a file's mapping: never owned (adopting one does nothing),
 * split in place, released and read again unchanged. */
static void
test_mapped_arrays (void)
{
  const gsize n = 3 * 64 * 1024;
  g_autofree float *values = filled (n, 0.0f);
  for (gsize i = 0; i < n; i++)
    values[i] = (float) i;
  const gint64 shape[1] = { (gint64) n };
  g_autoptr (VaeSafetensorsWriter) wr = vae_safetensors_writer_new ();
  g_assert_true (vae_safetensors_writer_add (wr, "w", VAE_DTYPE_F32, 1, shape, values,
                                             n * sizeof (float), NULL));
  g_autofree char *path = NULL;
  int fd = g_file_open_tmp ("vae-graph-XXXXXX.safetensors", &path, NULL);
  g_assert_cmpint (fd, >=, 0);
  close (fd);
  g_assert_true (vae_safetensors_writer_save (wr, path, NULL));
  VaeSafetensors *st = vae_safetensors_open (path, NULL);
  g_assert_nonnull (st);
  g_autoptr (GBytes) mapping = vae_safetensors_ref_file_mapping (st);
  g_assert_nonnull (mapping);
  const float *data = (const float *) vae_safetensors_lookup (st, "w")->data;

  VaeWeightStore *store = vae_weight_store_new ();
  float *whole = vae_weight_store_add_mapped (store, mapping, data, n * sizeof (float));
  g_assert_true (vae_weight_store_adopt (store, whole) == whole);   /* not taken over */
  g_assert_cmpuint (vae_weight_store_mapped_bytes (store), ==, n * sizeof (float));
  float *parts[3];
  vae_weight_store_split (store, whole, 3, n / 3, parts);
  g_assert_true (parts[0] == whole && parts[2] == whole + 2 * (n / 3));
  g_assert_cmpuint (vae_weight_store_count (store), ==, 3);
  g_assert_cmpuint (vae_weight_store_mapped_bytes (store), ==, n * sizeof (float));
  vae_safetensors_free (st);   /* the store keeps the mapping */
  gsize released = 0;
  for (int j = 0; j < 3; j++)
    released += vae_weight_store_release (store, parts[j]);
  g_assert_cmpuint (released, >, 0);
  g_assert_cmpuint (vae_weight_store_released_bytes (store), ==, released);
  g_assert_cmpmem (parts[0], n * sizeof (float), values, n * sizeof (float));
  vae_weight_store_unref (store);
  g_unlink (path);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/graph/shared-store", test_shared_store);
  g_test_add_func ("/graph/own-store", test_own_store);
  g_test_add_func ("/graph/heap-arrays", test_heap_arrays);
  g_test_add_func ("/graph/mapped-arrays", test_mapped_arrays);
  return g_test_run ();
}
