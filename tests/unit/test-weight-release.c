/* gst-vae: float32 originals leave memory once an engine has prepared
 * them (issue 11; graph.h, VaeWeightStore).
 *
 * wan21-mini is a float32 file: its filters are served from the file's
 * mapping, and once the cpu engine has prepared them (all four graphs,
 * through encode and decode streams) the pages they alone cover are no
 * longer mapped into the process (/proc/self/pagemap), where heap copies
 * would all be.  A second engine, a new frame size and a new chunk length
 * then need the originals again: their results equal the first engine's,
 * and the filters still hold what they held before.  wan22-mini (BF16)
 * keeps converted copies on the heap, which a release must leave alone:
 * the same checks of results hold there. */
#include <glib.h>
#include <glib/gstdio.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include "engine.h"
#include "model.h"

static char *testdata;   /* NULL when VAE_TESTDATA/models is not there */

#define REQUIRE_TESTDATA()                                                        \
  G_STMT_START {                                                                  \
    if (!testdata) {                                                              \
      g_test_skip ("VAE_TESTDATA/models is missing: the weight release tests "    \
                   "need ../shared/testdata");                                    \
      return;                                                                     \
    }                                                                             \
  } G_STMT_END

static VaeModel *
load (const char *rel)
{
  g_autofree char *path = g_build_filename (testdata, "models", rel, NULL);
  g_autoptr (GError) error = NULL;
  VaeModel *m = vae_model_load (path, NULL, &error);
  g_assert_no_error (error);
  return m;
}

/* Bytes of OP's filter; 0 when it has none. */
static gsize
filter_bytes (const VaeOp *op)
{
  if (!op->weight || (op->kind != VAE_OP_CONV2D && op->kind != VAE_OP_CAUSAL_CONV3D))
    return 0;
  const int kt = op->kind == VAE_OP_CAUSAL_CONV3D ? op->kt : 1;
  return (gsize) op->out_channels * op->in_channels * kt * op->kernel * op->kernel
      * sizeof (float);
}

/* Every filter of M's graphs, once: pointer -> bytes. */
static GHashTable *
model_filters (const VaeModel *m)
{
  GHashTable *f = g_hash_table_new (g_direct_hash, g_direct_equal);
  const VaeGraph *graphs[] = { m->encoder_first, m->encoder, m->decoder_first, m->decoder };
  for (guint g = 0; g < G_N_ELEMENTS (graphs); g++)
    for (guint i = 0; graphs[g] && i < graphs[g]->ops->len; i++) {
      const VaeOp *op = vae_graph_op (graphs[g], i);
      gsize n = filter_bytes (op);
      if (n)
        g_hash_table_insert (f, op->weight, GSIZE_TO_POINTER (n));
    }
  return f;
}

static guint64
total_bytes (GHashTable *filters)
{
  guint64 sum = 0;
  GHashTableIter it;
  gpointer n;
  g_hash_table_iter_init (&it, filters);
  while (g_hash_table_iter_next (&it, NULL, &n))
    sum += GPOINTER_TO_SIZE (n);
  return sum;
}

/* Of the pages that lie wholly inside the filters (*INNER), those mapped
 * into this process (bit 63 of /proc/self/pagemap, readable without
 * privileges); -1 when pagemap cannot be read. */
static gint64
resident_pages (GHashTable *filters, guint64 *inner)
{
  int fd = g_open ("/proc/self/pagemap", O_RDONLY, 0);
  if (fd < 0)
    return -1;
  const guintptr page = (guintptr) sysconf (_SC_PAGESIZE);
  gint64 present = 0;
  *inner = 0;
  GHashTableIter it;
  gpointer p, n;
  g_hash_table_iter_init (&it, filters);
  while (g_hash_table_iter_next (&it, &p, &n)) {
    const guintptr begin = ((guintptr) p + page - 1) / page;
    const guintptr end = ((guintptr) p + GPOINTER_TO_SIZE (n)) / page;
    for (guintptr v = begin; v < end; v++) {
      guint64 entry;
      if (pread (fd, &entry, sizeof entry, (off_t) (v * sizeof entry)) != sizeof entry) {
        close (fd);
        return -1;
      }
      present += (entry >> 63) & 1;
      (*inner)++;
    }
  }
  close (fd);
  return present;
}

/* The filters' bytes, concatenated in a fixed order (ORDER: the pointers). */
static GBytes *
snapshot (GHashTable *filters, GPtrArray *order)
{
  GByteArray *a = g_byte_array_new ();
  for (guint i = 0; i < order->len; i++) {
    gpointer p = g_ptr_array_index (order, i);
    g_byte_array_append (a, p, GPOINTER_TO_SIZE (g_hash_table_lookup (filters, p)));
  }
  return g_byte_array_free_to_bytes (a);
}

static int
compare_ptr (gconstpointer a, gconstpointer b)
{
  guintptr x = (guintptr) *(gconstpointer *) a, y = (guintptr) *(gconstpointer *) b;
  return x < y ? -1 : x > y;
}

static float *
random_floats (guint32 seed, gsize n)
{
  g_autoptr (GRand) rng = g_rand_new_with_seed (seed);
  float *a = g_new (float, n);
  for (gsize i = 0; i < n; i++)
    a[i] = (float) g_rand_double_range (rng, -1, 1);
  return a;
}

/* N_CHUNKS chunks of a DIR stream over H x W (engine input) on random
 * input (fixed seed); the outputs concatenated. */
static GArray *
run_stream (VaeEngine *engine, VaeDirection dir, int h, int w, int n_chunks)
{
  const VaeModel *m = engine->model;
  const int ic = dir == VAE_DIRECTION_ENCODE ? m->image_channels : m->latent_channels;
  g_autoptr (GError) error = NULL;
  g_autoptr (VaeStream) s = vae_stream_new (engine, dir, h, w, &error);
  g_assert_no_error (error);
  GArray *out = g_array_new (FALSE, FALSE, sizeof (float));
  for (int k = 0; k < n_chunks; k++) {
    const int t = vae_stream_chunk_frames (s);
    int c, oh, ow;
    const int ot = vae_stream_output_shape (s, t, &c, &oh, &ow);
    g_assert_cmpint (ot, >, 0);
    g_autofree float *in = random_floats (1000 * k + h, (gsize) t * ic * h * w);
    const guint at = out->len;
    g_array_set_size (out, at + (gsize) ot * c * oh * ow);
    if (!vae_stream_run (s, in, t, &g_array_index (out, float, at), &error))
      g_error ("%s: %s", vae_engine_name (engine), error->message);
  }
  return out;
}

static void
assert_same (GArray *a, GArray *b)
{
  g_assert_cmpuint (a->len, ==, b->len);
  g_assert_cmpuint (a->len, >, 0);
  for (guint i = 0; i < a->len; i++) {
    float x = g_array_index (a, float, i), y = g_array_index (b, float, i);
    g_assert_true (isfinite (x));
    g_assert_cmpfloat_with_epsilon (x, y, 1e-5 * (1 + fabsf (x)));
  }
}

/* Runs M through two cpu engines, the second on originals the first had
 * released (when they are mapped): encode and decode streams of two
 * chunks each (first-chunk and steady graphs), then on the second engine
 * a new frame size and a single first chunk against a fresh third. */
static void
check_results (VaeModel *m, GHashTable *filters, gboolean mapped)
{
  VaeEngineOptions options = VAE_ENGINE_OPTIONS_INIT;
  g_autoptr (GError) error = NULL;
  const int f = m->spatial_factor;

  g_autoptr (GPtrArray) order = g_ptr_array_new ();
  GHashTableIter it;
  gpointer key;
  g_hash_table_iter_init (&it, filters);
  while (g_hash_table_iter_next (&it, &key, NULL))
    g_ptr_array_add (order, key);
  g_ptr_array_sort (order, compare_ptr);
  g_autoptr (GBytes) before = snapshot (filters, order);

  g_autoptr (VaeEngine) e1 = vae_engine_new ("cpu", m, &options, &error);
  g_assert_no_error (error);
  g_autoptr (GArray) enc1 = run_stream (e1, VAE_DIRECTION_ENCODE, 2 * f, 2 * f, 2);
  g_autoptr (GArray) dec1 = run_stream (e1, VAE_DIRECTION_DECODE, 2, 2, 2);

  /* Every filter was prepared: mapped ones are given back. */
  guint64 inner = 0;
  gint64 resident = resident_pages (filters, &inner);
  const guint64 released = vae_weight_store_released_bytes (m->weights);
  g_test_message ("filters: %" G_GUINT64_FORMAT " bytes, %" G_GUINT64_FORMAT
                  " pages wholly inside, %" G_GINT64_FORMAT " of them resident; %"
                  G_GUINT64_FORMAT " bytes released", total_bytes (filters), inner,
                  resident, released);
  if (resident < 0) {
    g_test_message ("/proc/self/pagemap cannot be read: residency not checked");
  } else if (mapped) {
    g_assert_cmpuint (inner, >, 0);
    g_assert_cmpint (resident, ==, 0);
    g_assert_cmpuint (released, >=, inner * (guint64) sysconf (_SC_PAGESIZE));
  } else {
    g_assert_cmpuint (released, ==, 0);   /* heap copies stay */
    g_assert_cmpint (resident, >, 0);
  }

  /* A second engine prepares everything again from the originals. */
  g_autoptr (VaeEngine) e2 = vae_engine_new ("cpu", m, &options, &error);
  g_assert_no_error (error);
  g_autoptr (GArray) enc2 = run_stream (e2, VAE_DIRECTION_ENCODE, 2 * f, 2 * f, 2);
  g_autoptr (GArray) dec2 = run_stream (e2, VAE_DIRECTION_DECODE, 2, 2, 2);
  assert_same (enc1, enc2);
  assert_same (dec1, dec2);

  /* New plans on e2 (another frame size, a lone first chunk) against a
   * third engine built for just those. */
  g_autoptr (GArray) enc3 = run_stream (e2, VAE_DIRECTION_ENCODE, 3 * f, f, 1);
  g_autoptr (GArray) dec3 = run_stream (e2, VAE_DIRECTION_DECODE, 1, 3, 3);
  g_autoptr (VaeEngine) e3 = vae_engine_new ("cpu", m, &options, &error);
  g_assert_no_error (error);
  g_autoptr (GArray) enc4 = run_stream (e3, VAE_DIRECTION_ENCODE, 3 * f, f, 1);
  g_autoptr (GArray) dec4 = run_stream (e3, VAE_DIRECTION_DECODE, 1, 3, 3);
  assert_same (enc3, enc4);
  assert_same (dec3, dec4);

  /* Released or not, the originals read what they held. */
  g_autoptr (GBytes) after = snapshot (filters, order);
  g_assert_true (g_bytes_equal (before, after));
}

static void
test_mapped (void)
{
  REQUIRE_TESTDATA ();
  g_autoptr (VaeModel) m = load ("wan21-mini");   /* float32 */
  g_autoptr (GHashTable) filters = model_filters (m);
  g_assert_cmpuint (g_hash_table_size (filters), >, 0);
  /* Every filter is served from the file. */
  g_assert_cmpuint (vae_weight_store_mapped_bytes (m->weights), ==, total_bytes (filters));
  check_results (m, filters, TRUE);
}

static void
test_converted (void)
{
  REQUIRE_TESTDATA ();
  g_autoptr (VaeModel) m = load ("wan22-mini");   /* bfloat16: converted */
  g_autoptr (GHashTable) filters = model_filters (m);
  g_assert_cmpuint (vae_weight_store_mapped_bytes (m->weights), ==, 0);
  check_results (m, filters, FALSE);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  const char *env = g_getenv ("VAE_TESTDATA");
  if (env && *env) {
    g_autofree char *models = g_build_filename (env, "models", NULL);
    if (g_file_test (models, G_FILE_TEST_IS_DIR))
      testdata = g_strdup (env);
  }
  g_test_add_func ("/weight-release/mapped", test_mapped);
  g_test_add_func ("/weight-release/converted", test_converted);
  int rc = g_test_run ();
  g_free (testdata);
  return rc;
}
