/* Unit tests for model loading (model.c, model-kl.c, model-tiny.c) against
 * the models in $VAE_TESTDATA/models, and its errors on broken copies. */
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include "model.h"
#include "model-test-util.h"
#include "safetensors.h"
#include "vae-error.h"

/* ------------------------------------------------------------- expectations */

typedef struct {
  const char *rel;
  VaeFamily family;
  VaeLayout layout;
  const char *name;
  int levels, latent, spatial;
  int block_out_channels[4];
  int layers_per_block, norm_groups;
  gboolean quant, post_quant;
  double scaling, shift;
  gboolean encoder, decoder, pool;
  const char *weights[2];      /* files whose element counts make n_params */
} Expect;

static const Expect expects[] = {
  { "kl-sd-mini", VAE_FAMILY_KL, VAE_LAYOUT_DIFFUSERS, "kl-sd-mini", 4, 4, 8,
    { 32, 64, 64, 64 }, 2, 32, TRUE, TRUE, 0.18215, 0.0, TRUE, TRUE, FALSE,
    { "kl-sd-mini/diffusion_pytorch_model.safetensors", NULL } },
  { "kl-sd-mini-ldm.safetensors", VAE_FAMILY_KL, VAE_LAYOUT_LDM, "kl-sd-mini-ldm", 4, 4, 8,
    { 32, 64, 64, 64 }, 2, 32, TRUE, TRUE, 0.18215, 0.0, TRUE, TRUE, FALSE,
    { "kl-sd-mini-ldm.safetensors", NULL } },
  { "kl-flux-mini", VAE_FAMILY_KL, VAE_LAYOUT_DIFFUSERS, "kl-flux-mini", 4, 16, 8,
    { 32, 32, 64, 64 }, 1, 16, FALSE, FALSE, 0.3611, 0.1159, TRUE, TRUE, FALSE,
    { "kl-flux-mini/diffusion_pytorch_model.safetensors", NULL } },
  { "tiny-sd-random", VAE_FAMILY_TINY, VAE_LAYOUT_DIFFUSERS, "tiny-sd-random", 4, 4, 8,
    { 64, 64, 64, 64 }, 0, 0, FALSE, FALSE, 1.0, 0.0, TRUE, TRUE, FALSE,
    { "tiny-sd-random/diffusion_pytorch_model.safetensors", NULL } },
  { "taef2", VAE_FAMILY_TINY, VAE_LAYOUT_TAESD, "taef2", 4, 32, 8,
    { 64, 64, 64, 64 }, 0, 0, FALSE, FALSE, 1.0, 0.0, TRUE, TRUE, TRUE,
    { "taef2/taef2_encoder.safetensors", "taef2/taef2_decoder.safetensors" } },
  { "taef2/taef2_encoder.safetensors", VAE_FAMILY_TINY, VAE_LAYOUT_TAESD, "taef2", 4, 32, 8,
    { 64, 64, 64, 64 }, 0, 0, FALSE, FALSE, 1.0, 0.0, TRUE, FALSE, TRUE,
    { "taef2/taef2_encoder.safetensors", NULL } },
  { "taef2/taef2_decoder.safetensors", VAE_FAMILY_TINY, VAE_LAYOUT_TAESD, "taef2", 4, 32, 8,
    { 64, 64, 64, 64 }, 0, 0, FALSE, FALSE, 1.0, 0.0, FALSE, TRUE, TRUE,
    { "taef2/taef2_decoder.safetensors", NULL } },
};

/* Sum of the element counts of every tensor in PATH, computed without the
 * model code. */
static guint64
file_elements (const char *path)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (VaeSafetensors) st = vae_safetensors_open (path, &error);
  g_assert_no_error (error);
  guint64 n = 0;
  for (guint i = 0; i < vae_safetensors_n_tensors (st); i++)
    n += vae_safetensors_tensor_at (st, i)->n_elements;
  return n;
}

static guint
count_ops (const VaeGraph *g, VaeOpKind kind)
{
  guint n = 0;
  for (guint i = 0; i < g->ops->len; i++)
    n += vae_graph_op (g, i)->kind == kind;
  return n;
}

/* Every op reads values written before it, and every conv / norm has its
 * parameters, all finite. */
static void
check_graph_sane (const VaeGraph *g)
{
  g_assert_cmpuint (g->ops->len, >, 0);
  g_assert_cmpint (g->output, ==, (int) g->values->len - 1);
  for (guint i = 0; i < g->ops->len; i++) {
    const VaeOp *op = vae_graph_op (g, i);
    g_assert_nonnull (op->name);
    g_assert_cmpint (op->out, ==, (int) i + 1);
    g_assert_cmpint (op->in, >=, 0);
    g_assert_cmpint (op->in, <, op->out);
    g_assert_cmpint (op->in2, <, op->out);
    g_assert_cmpint (op->in3, <, op->out);
    g_assert_cmpint (op->residual, <, op->out);
    g_assert_cmpint (vae_graph_channels (g, op->out), ==, op->out_channels);
    if (op->kind == VAE_OP_CONV2D) {
      g_assert_nonnull (op->weight);
      gsize n = (gsize) op->out_channels * op->in_channels * op->kernel * op->kernel;
      for (gsize j = 0; j < n; j++)
        g_assert_true (isfinite (op->weight[j]));
      if (op->residual >= 0)
        g_assert_cmpint (vae_graph_channels (g, op->residual), ==, op->out_channels);
    } else if (op->kind == VAE_OP_GROUP_NORM) {
      g_assert_nonnull (op->gamma);
      g_assert_nonnull (op->beta);
      g_assert_cmpint (op->in_channels % op->groups, ==, 0);
    }
  }
}

static void
test_load (gconstpointer data)
{
  const Expect *x = data;
  REQUIRE_TESTDATA ();
  g_autofree char *path = model_path (x->rel);
  g_autoptr (GError) error = NULL;
  g_autoptr (VaeModel) m = vae_model_load (path, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (m);

  g_assert_cmpint (m->family, ==, x->family);
  g_assert_cmpint (m->layout, ==, x->layout);
  g_assert_cmpstr (m->name, ==, x->name);
  g_assert_cmpstr (m->path, ==, path);
  g_assert_cmpint (m->image_channels, ==, 3);
  g_assert_cmpint (m->levels, ==, x->levels);
  for (int i = 0; i < x->levels; i++)
    g_assert_cmpint (m->block_out_channels[i], ==, x->block_out_channels[i]);
  g_assert_cmpint (m->latent_channels, ==, x->latent);
  g_assert_cmpint (m->spatial_factor, ==, x->spatial);
  g_assert_cmpint (m->layers_per_block, ==, x->layers_per_block);
  g_assert_cmpint (m->norm_groups, ==, x->norm_groups);
  g_assert_cmpint (m->quant_conv, ==, x->quant);
  g_assert_cmpint (m->post_quant_conv, ==, x->post_quant);
  g_assert_cmpint (m->has_pool, ==, x->pool);
  g_assert_cmpfloat_with_epsilon (m->scaling_factor, x->scaling, 1e-12);
  g_assert_cmpfloat_with_epsilon (m->shift_factor, x->shift, 1e-12);
  g_assert_cmpint (m->encoder != NULL, ==, x->encoder);
  g_assert_cmpint (m->decoder != NULL, ==, x->decoder);

  gboolean kl = x->family == VAE_FAMILY_KL;
  g_assert_cmpfloat (m->image_min, ==, kl ? -1.0f : 0.0f);
  g_assert_cmpint (m->encoder_outputs_moments, ==, kl);

  /* n_params: every tensor of the files, counted independently. */
  guint64 expected = 0;
  for (int i = 0; i < 2 && x->weights[i]; i++) {
    g_autofree char *w = model_path (x->weights[i]);
    expected += file_elements (w);
  }
  g_assert_cmpuint (m->n_params, ==, expected);

  int size = 64, lat = 64 / x->spatial;
  if (m->encoder) {
    const VaeGraph *g = m->encoder;
    check_graph_sane (g);
    g_assert_cmpint (vae_graph_channels (g, 0), ==, 3);
    g_assert_cmpint (vae_graph_channels (g, g->output), ==, kl ? 2 * x->latent : x->latent);
    g_autofree int *h = g_new (int, g->values->len);
    g_autofree int *w = g_new (int, g->values->len);
    vae_graph_infer_sizes (g, size, size, h, w);
    g_assert_cmpint (h[g->output], ==, lat);
    g_assert_cmpint (w[g->output], ==, lat);
    if (kl) {
      g_assert_cmpuint (count_ops (g, VAE_OP_ATTENTION), ==, 1);
      guint down = 0;
      for (guint i = 0; i < g->ops->len; i++) {
        const VaeOp *op = vae_graph_op (g, i);
        if (op->kind == VAE_OP_CONV2D && op->stride == 2) {
          down++;
          g_assert_cmpint (op->pad_top, ==, 0);
          g_assert_cmpint (op->pad_left, ==, 0);
          g_assert_cmpint (op->pad_bottom, ==, 1);
          g_assert_cmpint (op->pad_right, ==, 1);
        }
        if (op->kind == VAE_OP_GROUP_NORM)
          g_assert_cmpfloat (op->eps, ==, 1e-6f);
      }
      g_assert_cmpuint (down, ==, (guint) x->levels - 1);
    } else {
      /* 1 + 3 + 3 + 3 Blocks, the last three with TAEF2's pool step. */
      g_assert_cmpuint (count_ops (g, VAE_OP_GROUP_NORM), ==, x->pool ? 3 : 0);
    }
  }
  if (m->decoder) {
    const VaeGraph *g = m->decoder;
    check_graph_sane (g);
    g_assert_cmpint (vae_graph_channels (g, 0), ==, x->latent);
    g_assert_cmpint (vae_graph_channels (g, g->output), ==, 3);
    g_autofree int *h = g_new (int, g->values->len);
    g_autofree int *w = g_new (int, g->values->len);
    vae_graph_infer_sizes (g, lat, lat, h, w);
    g_assert_cmpint (h[g->output], ==, size);
    g_assert_cmpint (w[g->output], ==, size);
    g_assert_cmpuint (count_ops (g, VAE_OP_UPSAMPLE2X), ==, (guint) x->levels - 1);
    if (kl) {
      g_assert_cmpuint (count_ops (g, VAE_OP_ATTENTION), ==, 1);
      g_assert_cmpuint (count_ops (g, VAE_OP_TANH_CLAMP), ==, 0);
    } else {
      const VaeOp *first = vae_graph_op (g, 0);
      g_assert_cmpint (first->kind, ==, VAE_OP_TANH_CLAMP);
      g_assert_cmpfloat (first->clamp, ==, 3.0f);
      g_assert_cmpint (vae_graph_op (g, 1)->act, ==, VAE_ACT_RELU);
      g_assert_cmpuint (count_ops (g, VAE_OP_GROUP_NORM), ==, x->pool ? 3 : 0);
    }
  }
  if (x->pool) {
    /* TAEF2's pool: conv1x1 64->256 (no bias), GN(4, 256, eps 1e-5)+ReLU,
     * conv1x1 256->64 (no bias) adding the block input. */
    const VaeGraph *g = m->encoder ? m->encoder : m->decoder;
    for (guint i = 1; i + 1 < g->ops->len; i++) {
      const VaeOp *op = vae_graph_op (g, i);
      if (op->kind != VAE_OP_GROUP_NORM)
        continue;
      const VaeOp *pre = vae_graph_op (g, i - 1), *post = vae_graph_op (g, i + 1);
      g_assert_cmpint (op->groups, ==, 4);
      g_assert_cmpfloat (op->eps, ==, 1e-5f);
      g_assert_cmpint (op->act, ==, VAE_ACT_RELU);
      g_assert_cmpint (op->in_channels, ==, 256);
      g_assert_cmpint (pre->kind, ==, VAE_OP_CONV2D);
      g_assert_cmpint (pre->kernel, ==, 1);
      g_assert_null (pre->bias);
      g_assert_cmpint (post->kind, ==, VAE_OP_CONV2D);
      g_assert_cmpint (post->out_channels, ==, 64);
      g_assert_null (post->bias);
      g_assert_cmpint (post->residual, ==, pre->in);
      g_assert_cmpint (post->act, ==, VAE_ACT_NONE);
    }
  }
}

/* ---------------------------------------------------------- graph equality */

static void
assert_floats_equal (const float *a, const float *b, gsize n, const char *what)
{
  g_assert_true ((a == NULL) == (b == NULL));
  if (a && memcmp (a, b, n * sizeof (float)) != 0)
    g_error ("%s differs", what);
}

static void
assert_graphs_equal (const VaeGraph *a, const VaeGraph *b)
{
  g_assert_nonnull (a);
  g_assert_nonnull (b);
  g_assert_cmpuint (a->ops->len, ==, b->ops->len);
  g_assert_cmpuint (a->values->len, ==, b->values->len);
  g_assert_cmpint (a->output, ==, b->output);
  for (guint i = 0; i < a->values->len; i++)
    g_assert_cmpint (vae_graph_channels (a, i), ==, vae_graph_channels (b, i));
  for (guint i = 0; i < a->ops->len; i++) {
    const VaeOp *x = vae_graph_op (a, i), *y = vae_graph_op (b, i);
    g_assert_cmpstr (x->name, ==, y->name);
    g_assert_cmpint (x->kind, ==, y->kind);
    g_assert_cmpint (x->in, ==, y->in);
    g_assert_cmpint (x->in2, ==, y->in2);
    g_assert_cmpint (x->in3, ==, y->in3);
    g_assert_cmpint (x->residual, ==, y->residual);
    g_assert_cmpint (x->out, ==, y->out);
    g_assert_cmpint (x->act, ==, y->act);
    g_assert_cmpint (x->in_channels, ==, y->in_channels);
    g_assert_cmpint (x->out_channels, ==, y->out_channels);
    g_assert_cmpint (x->kernel, ==, y->kernel);
    g_assert_cmpint (x->stride, ==, y->stride);
    g_assert_cmpint (x->pad_top, ==, y->pad_top);
    g_assert_cmpint (x->pad_left, ==, y->pad_left);
    g_assert_cmpint (x->pad_bottom, ==, y->pad_bottom);
    g_assert_cmpint (x->pad_right, ==, y->pad_right);
    g_assert_cmpint (x->groups, ==, y->groups);
    g_assert_cmpfloat (x->eps, ==, y->eps);
    g_assert_cmpfloat (x->clamp, ==, y->clamp);
    gsize nw = (gsize) x->out_channels * x->in_channels * x->kernel * x->kernel;
    if (x->kind == VAE_OP_CONV2D) {
      assert_floats_equal (x->weight, y->weight, nw, x->name);
      assert_floats_equal (x->bias, y->bias, x->out_channels, x->name);
    }
    if (x->kind == VAE_OP_GROUP_NORM) {
      assert_floats_equal (x->gamma, y->gamma, x->in_channels, x->name);
      assert_floats_equal (x->beta, y->beta, x->in_channels, x->name);
    }
  }
}

static VaeModel *
load_ok (const char *path)
{
  g_autoptr (GError) error = NULL;
  VaeModel *m = vae_model_load (path, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (m);
  return m;
}

static void
assert_models_equal (const VaeModel *a, const VaeModel *b)
{
  g_assert_cmpint (a->family, ==, b->family);
  g_assert_cmpint (a->levels, ==, b->levels);
  g_assert_cmpint (a->latent_channels, ==, b->latent_channels);
  g_assert_cmpuint (a->n_params, ==, b->n_params);
  g_assert_true ((a->encoder == NULL) == (b->encoder == NULL));
  g_assert_true ((a->decoder == NULL) == (b->decoder == NULL));
  if (a->encoder)
    assert_graphs_equal (a->encoder, b->encoder);
  if (a->decoder)
    assert_graphs_equal (a->decoder, b->decoder);
}

/* REL_B loads as REL_A does (same ops, same float32 weights); returns
 * REL_B's model. */
static VaeModel *
assert_loads_equal (const char *rel_a, const char *rel_b)
{
  g_autofree char *pa = model_path (rel_a);
  g_autofree char *pb = model_path (rel_b);
  g_autoptr (VaeModel) a = load_ok (pa);
  VaeModel *b = load_ok (pb);
  assert_models_equal (a, b);
  return b;
}

/* The LDM file holds kl-sd-mini's weights in F16 (exactly representable):
 * same ops, same float32 weights. */
static void
test_ldm_equals_diffusers (void)
{
  REQUIRE_TESTDATA ();
  g_autoptr (VaeModel) l = assert_loads_equal ("kl-sd-mini", "kl-sd-mini-ldm.safetensors");
}

/* A bare diffusers state dict without config.json: inferred like an LDM file. */
static void
test_bare_state_dicts (void)
{
  REQUIRE_TESTDATA ();
  g_autoptr (VaeModel) kb = assert_loads_equal ("kl-sd-mini",
      "kl-sd-mini/diffusion_pytorch_model.safetensors");
  g_assert_cmpint (kb->layout, ==, VAE_LAYOUT_DIFFUSERS);
  g_assert_cmpstr (kb->name, ==, "diffusion_pytorch_model");

  g_autoptr (VaeModel) tb = assert_loads_equal ("tiny-sd-random",
      "tiny-sd-random/diffusion_pytorch_model.safetensors");
}

/* The TAESD folder gives the same graphs as its two files alone. */
static void
test_taesd_halves (void)
{
  REQUIRE_TESTDATA ();
  g_autofree char *dir = model_path ("taef2");
  g_autofree char *ep = model_path ("taef2/taef2_encoder.safetensors");
  g_autofree char *dp = model_path ("taef2/taef2_decoder.safetensors");
  g_autoptr (VaeModel) both = load_ok (dir);
  g_autoptr (VaeModel) enc = load_ok (ep);
  g_autoptr (VaeModel) dec = load_ok (dp);
  assert_graphs_equal (both->encoder, enc->encoder);
  assert_graphs_equal (both->decoder, dec->decoder);
  g_assert_cmpuint (both->n_params, ==, enc->n_params + dec->n_params);
}

static void
test_options (void)
{
  REQUIRE_TESTDATA ();
  g_autofree char *path = model_path ("kl-flux-mini");
  g_autoptr (GError) error = NULL;

  VaeModelOptions keep = VAE_MODEL_OPTIONS_INIT;
  g_autoptr (VaeModel) a = vae_model_load (path, &keep, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat_with_epsilon (a->scaling_factor, 0.3611, 1e-12);
  g_assert_cmpfloat_with_epsilon (a->shift_factor, 0.1159, 1e-12);

  VaeModelOptions set = { 0.5, -0.25 };
  g_autoptr (VaeModel) b = vae_model_load (path, &set, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat (b->scaling_factor, ==, 0.5);
  g_assert_cmpfloat (b->shift_factor, ==, -0.25);

  VaeModelOptions negative = { -1.0, NAN };
  g_autoptr (VaeModel) c = vae_model_load (path, &negative, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat_with_epsilon (c->scaling_factor, 0.3611, 1e-12);

  VaeModelOptions zero = { 0.0, NAN };
  g_autoptr (VaeModel) z = vae_model_load (path, &zero, &error);
  g_assert_null (z);
  g_assert_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT);
}

static void
test_names (void)
{
  g_assert_cmpstr (vae_family_name (VAE_FAMILY_KL), ==, "AutoencoderKL");
  g_assert_cmpstr (vae_family_name (VAE_FAMILY_TINY), ==, "AutoencoderTiny");
  g_assert_cmpstr (vae_layout_name (VAE_LAYOUT_DIFFUSERS), ==, "diffusers");
  g_assert_cmpstr (vae_layout_name (VAE_LAYOUT_LDM), ==, "ldm");
  g_assert_cmpstr (vae_layout_name (VAE_LAYOUT_TAESD), ==, "taesd");
}

/* ------------------------------------------------------------ broken copies */

/* A copy of kl-sd-mini in DIR/NAME with CONFIG (NULL: the original) and the
 * weights rewritten by SPEC. */
static char *
make_kl_copy (const char *dir, const char *name, const char *config,
              const ModelCopySpec *spec)
{
  char *folder = g_build_filename (dir, name, NULL);
  g_autofree char *src = model_path ("kl-sd-mini");
  model_copy_folder (src, folder, config, spec);
  return folder;
}

/* A broken copy that must fail to load: SRC (a model's file; NULL: a copy
 * of kl-sd-mini in the folder DST) rewritten by SPEC into DST, failing with
 * CODE and an error message that mentions every MENTION. */
typedef struct {
  const char *src;
  const char *dst;
  ModelCopySpec spec;
  VaeErrorCode code;
  const char *mention[3];
} BrokenCopy;

static void
check_broken_copies (ModelCopyTmp *t, const BrokenCopy *cases, guint n)
{
  for (guint i = 0; i < n; i++) {
    const BrokenCopy *c = &cases[i];
    g_autofree char *path = NULL;
    if (c->src) {
      g_autofree char *src = model_path (c->src);
      path = g_build_filename (t->dir, c->dst, NULL);
      model_copy_write (src, path, &c->spec);
    } else {
      path = make_kl_copy (t->dir, c->dst, NULL, &c->spec);
    }
    g_autoptr (GError) error = model_load_fails (path, NULL);
    g_assert_error (error, VAE_ERROR, (gint) c->code);
    for (guint k = 0; k < G_N_ELEMENTS (c->mention) && c->mention[k]; k++)
      model_assert_message_has (error, c->mention[k]);
  }
}

#define KL_WEIGHTS "diffusion_pytorch_model.safetensors"

static void
test_missing_tensor (ModelCopyTmp *t, gconstpointer data)
{
  REQUIRE_TESTDATA ();
  static const BrokenCopy cases[] = {
    { NULL, "missing0", { .drop = "encoder.down_blocks.1.resnets.0.conv_shortcut.weight" },
      VAE_ERROR_MODEL, { "encoder.down_blocks.1.resnets.0.conv_shortcut.weight", KL_WEIGHTS } },
    { NULL, "missing1", { .drop = "decoder.mid_block.attentions.0.to_k.bias" },
      VAE_ERROR_MODEL, { "decoder.mid_block.attentions.0.to_k.bias", KL_WEIGHTS } },
    { NULL, "missing2", { .drop = "post_quant_conv.bias" },
      VAE_ERROR_MODEL, { "post_quant_conv.bias", KL_WEIGHTS } },
    { NULL, "missing3", { .drop = "decoder.up_blocks.2.upsamplers.0.conv.weight" },
      VAE_ERROR_MODEL, { "decoder.up_blocks.2.upsamplers.0.conv.weight", KL_WEIGHTS } },
    /* LDM names in LDM files. */
    { "kl-sd-mini-ldm.safetensors", "ldm.safetensors",
      { .drop = "decoder.up.1.upsample.conv.weight" },
      VAE_ERROR_MODEL, { "'decoder.up.1.upsample.conv.weight'", "ldm.safetensors" } },
    /* A TAESD pool step. */
    { "taef2/taef2_encoder.safetensors", "broken_encoder.safetensors",
      { .drop = "12.pool.1.bias" },
      VAE_ERROR_MODEL, { "'12.pool.1.bias'", "broken_encoder.safetensors" } },
  };
  check_broken_copies (t, cases, G_N_ELEMENTS (cases));
}

static void
test_wrong_shape (ModelCopyTmp *t, gconstpointer data)
{
  REQUIRE_TESTDATA ();
  static const BrokenCopy cases[] = {
    { NULL, "shape", { .reshape = "decoder.mid_block.resnets.0.conv1.weight", .new_ndim = 4,
                       .new_shape = { 64, 64, 1, 1 } },
      VAE_ERROR_MODEL, { "decoder.mid_block.resnets.0.conv1.weight", "[64,64,1,1]",
                         "[64,64,3,3]" } },
    /* An attention projection: linear [C,C] expected, [C,2C] given. */
    { NULL, "attn", { .reshape = "encoder.mid_block.attentions.0.to_v.weight", .new_ndim = 2,
                      .new_shape = { 64, 128 } },
      VAE_ERROR_MODEL, { "encoder.mid_block.attentions.0.to_v.weight", "[64,128]",
                         "[64,64]" } },
    /* A TAESD conv. */
    { "taef2/taef2_decoder.safetensors", "bad_decoder.safetensors",
      { .reshape = "9.conv.2.weight", .new_ndim = 4, .new_shape = { 64, 32, 3, 3 } },
      VAE_ERROR_MODEL, { "9.conv.2.weight", "[64,32,3,3]", "[64,64,3,3]" } },
  };
  check_broken_copies (t, cases, G_N_ELEMENTS (cases));
}

static void
test_bad_config (ModelCopyTmp *t, gconstpointer data)
{
  REQUIRE_TESTDATA ();
  static const struct {
    const char *config;
    VaeErrorCode code;
    const char *mention;
  } cases[] = {
    { "{ \"block_out_channels\": [32, 64", VAE_ERROR_FORMAT, "not valid JSON" },
    { "this is not json", VAE_ERROR_FORMAT, "not valid JSON" },
    { "[1, 2, 3]", VAE_ERROR_FORMAT, "JSON object" },
    { "{ \"_class_name\": \"AutoencoderKL\", \"block_out_channels\": [] }",
      VAE_ERROR_FORMAT, "block_out_channels" },
    { "{ \"_class_name\": \"AutoencoderKL\", \"block_out_channels\": [32,32,32,32,32,32,32,32,32] }",
      VAE_ERROR_FORMAT, "block_out_channels" },
    { "{ \"_class_name\": \"AutoencoderKL\", \"block_out_channels\": [32, 64, 0, 64] }",
      VAE_ERROR_FORMAT, "block_out_channels" },
    { "{ \"_class_name\": \"AutoencoderKL\", \"block_out_channels\": \"wide\" }",
      VAE_ERROR_FORMAT, "block_out_channels" },
    { "{ \"block_out_channels\": [32, 64, 64, 64], \"norm_num_groups\": 7 }",
      VAE_ERROR_FORMAT, "divisible" },
    { "{ \"block_out_channels\": [32, 64, 64, 64], \"layers_per_block\": 0 }",
      VAE_ERROR_FORMAT, "layers_per_block" },
    { "{ \"block_out_channels\": [32, 64, 64, 64], \"latent_channels\": -4 }",
      VAE_ERROR_FORMAT, "latent_channels" },
    { "{ \"block_out_channels\": [32, 64, 64, 64], \"layers_per_block\": 2.5 }",
      VAE_ERROR_FORMAT, "layers_per_block" },
    { "{ \"block_out_channels\": [32, 64, 64, 64], \"use_quant_conv\": \"yes\" }",
      VAE_ERROR_FORMAT, "use_quant_conv" },
    { "{ \"block_out_channels\": [32, 64, 64, 64], \"scaling_factor\": 0 }",
      VAE_ERROR_FORMAT, "scaling_factor" },
    { "{ \"block_out_channels\": [32, 64, 64, 64], \"in_channels\": 4 }",
      VAE_ERROR_UNSUPPORTED, "in_channels" },
    { "{ \"block_out_channels\": [32, 64, 64, 64], \"act_fn\": \"gelu\" }",
      VAE_ERROR_UNSUPPORTED, "act_fn" },
    { "{ \"_class_name\": \"UNet2DConditionModel\" }", VAE_ERROR_UNSUPPORTED, "_class_name" },
    { "{ \"_class_name\": \"AutoencoderKL\", \"block_out_channels\": [32, 64, 64, 64], "
      "\"down_block_types\": [\"DownEncoderBlock2D\"] }", VAE_ERROR_FORMAT, "down_block_types" },
    /* Sensible config, wrong model: shapes disagree. */
    { "{ \"block_out_channels\": [32, 64, 64, 64], \"layers_per_block\": 2, "
      "\"latent_channels\": 16 }", VAE_ERROR_MODEL, "encoder.conv_out.weight" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *name = g_strdup_printf ("config%u", i);
    g_autofree char *folder = make_kl_copy (t->dir, name, cases[i].config, NULL);
    g_autoptr (GError) error = model_load_fails (folder, NULL);
    g_assert_error (error, VAE_ERROR, (gint) cases[i].code);
    model_assert_message_has (error, cases[i].mention);
    if (cases[i].code != VAE_ERROR_MODEL)
      model_assert_message_has (error, "config.json");
  }
}

static void
test_bad_paths (ModelCopyTmp *t, gconstpointer data)
{
  g_autofree char *nowhere = g_build_filename (t->dir, "no-such-model", NULL);
  g_autoptr (GError) e1 = model_load_fails (nowhere, NULL);
  g_assert_error (e1, VAE_ERROR, VAE_ERROR_IO);
  model_assert_message_has (e1, "no-such-model");

  g_autoptr (GError) e2 = model_load_fails ("", NULL);
  g_assert_error (e2, VAE_ERROR, VAE_ERROR_ARGUMENT);

  /* An empty folder. */
  g_autofree char *empty = g_build_filename (t->dir, "empty", NULL);
  g_assert_cmpint (g_mkdir (empty, 0755), ==, 0);
  g_autoptr (GError) e3 = model_load_fails (empty, NULL);
  g_assert_error (e3, VAE_ERROR, VAE_ERROR_UNSUPPORTED);
  model_assert_message_has (e3, "empty");

  /* A file that is not safetensors. */
  g_autofree char *text = g_build_filename (t->dir, "notes.safetensors", NULL);
  g_assert_true (g_file_set_contents (text, "hello", -1, NULL));
  g_autoptr (GError) e4 = model_load_fails (text, NULL);
  model_assert_message_has (e4, "notes.safetensors");

  /* A valid safetensors file with no VAE in it. */
  g_autofree char *other = g_build_filename (t->dir, "other.safetensors", NULL);
  {
    g_autoptr (VaeSafetensorsWriter) w = vae_safetensors_writer_new ();
    float v[2] = { 1, 2 };
    gint64 shape[1] = { 2 };
    g_autoptr (GError) error = NULL;
    vae_safetensors_writer_add (w, "text_model.embeddings.weight", VAE_DTYPE_F32, 1, shape,
                                v, sizeof v, &error);
    g_assert_no_error (error);
    vae_safetensors_writer_save (w, other, &error);
    g_assert_no_error (error);
  }
  g_autoptr (GError) e5 = model_load_fails (other, NULL);
  g_assert_error (e5, VAE_ERROR, VAE_ERROR_UNSUPPORTED);
  model_assert_message_has (e5, "other.safetensors");

  /* A diffusers folder without weights. */
  g_autofree char *noweights = g_build_filename (t->dir, "noweights", NULL);
  g_autofree char *cfg = g_build_filename (noweights, "config.json", NULL);
  g_assert_cmpint (g_mkdir (noweights, 0755), ==, 0);
  g_assert_true (g_file_set_contents (cfg, "{}", -1, NULL));
  g_autoptr (GError) e6 = model_load_fails (noweights, NULL);
  model_assert_message_has (e6, "diffusion_pytorch_model.safetensors");
}

/* Full checkpoints prefix the VAE with first_stage_model. and hold other
 * models beside it. */
static void
test_ldm_prefix (ModelCopyTmp *t, gconstpointer data)
{
  REQUIRE_TESTDATA ();
  g_autofree char *src = model_path ("kl-sd-mini-ldm.safetensors");
  g_autofree char *dst = g_build_filename (t->dir, "sd-full.safetensors", NULL);
  ModelCopySpec spec = { .prefix = "first_stage_model.", .add_foreign = TRUE };
  model_copy_write (src, dst, &spec);
  g_autoptr (VaeModel) p = load_ok (dst);
  g_autoptr (VaeModel) l = load_ok (src);
  g_assert_cmpint (p->layout, ==, VAE_LAYOUT_LDM);
  g_assert_cmpstr (p->name, ==, "sd-full");
  assert_models_equal (p, l);

  /* A prefixed tensor missing is named with its prefix. */
  g_autofree char *dst2 = g_build_filename (t->dir, "sd-broken.safetensors", NULL);
  ModelCopySpec spec2 = { .prefix = "first_stage_model.", .drop = "encoder.mid.attn_1.q.bias" };
  model_copy_write (src, dst2, &spec2);
  g_autoptr (GError) error = model_load_fails (dst2, NULL);
  model_assert_message_has (error, "'first_stage_model.encoder.mid.attn_1.q.bias'");
}

/* Tiny structure checks: unknown tensors, and a folder that is ambiguous. */
static void
test_tiny_structure (ModelCopyTmp *t, gconstpointer data)
{
  REQUIRE_TESTDATA ();
  g_autofree char *src = model_path ("taef2/taef2_encoder.safetensors");

  static const BrokenCopy cases[] = {
    { "taef2/taef2_encoder.safetensors", "extra_encoder.safetensors",
      { .add = "5.attn.weight" }, VAE_ERROR_MODEL, { "5.attn.weight" } },
    /* A Block where the output conv should be. */
    { "taef2/taef2_encoder.safetensors", "noout_encoder.safetensors",
      { .drop = "14.weight" }, VAE_ERROR_MODEL, { "14" } },
  };
  check_broken_copies (t, cases, G_N_ELEMENTS (cases));

  /* Two different TAESD models in one folder. */
  g_autofree char *dir = g_build_filename (t->dir, "two", NULL);
  g_assert_cmpint (g_mkdir (dir, 0755), ==, 0);
  g_autofree char *a = g_build_filename (dir, "taea_encoder.safetensors", NULL);
  g_autofree char *b = g_build_filename (dir, "taeb_encoder.safetensors", NULL);
  ModelCopySpec none = { 0 };
  model_copy_write (src, a, &none);
  model_copy_write (src, b, &none);
  g_autoptr (GError) e3 = model_load_fails (dir, NULL);
  g_assert_error (e3, VAE_ERROR, VAE_ERROR_UNSUPPORTED);

  /* A folder with only an encoder. */
  g_autofree char *one = g_build_filename (t->dir, "one", NULL);
  g_assert_cmpint (g_mkdir (one, 0755), ==, 0);
  g_autofree char *c = g_build_filename (one, "taef2_encoder.safetensors", NULL);
  model_copy_write (src, c, &none);
  g_autoptr (VaeModel) m = load_ok (one);
  g_assert_nonnull (m->encoder);
  g_assert_null (m->decoder);
  g_assert_cmpstr (m->name, ==, "one");
}

/* FLUX.2's AutoencoderKLFlux2: both diffusers folders and BFL's single file,
 * the decoder's own widths, the BatchNorm statistics as the latent
 * normalisation, and the config keys it adds. */
static void
test_flux2 (ModelCopyTmp *t, gconstpointer data)
{
  REQUIRE_TESTDATA ();
  g_autoptr (GError) error = NULL;
  static const struct { const char *rel; VaeLayout layout; int dec[4]; } cases[] = {
    { "flux2-mini", VAE_LAYOUT_DIFFUSERS, { 32, 32, 64, 64 } },
    { "flux2-mini-dec", VAE_LAYOUT_DIFFUSERS, { 32, 64, 64, 96 } },
    { "flux2-mini-original.safetensors", VAE_LAYOUT_LDM, { 32, 32, 64, 64 } },
  };
  g_autofree float *std0 = NULL;
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *path = model_path (cases[i].rel);
    VaeModelOptions o = VAE_MODEL_OPTIONS_INIT;
    o.norm_groups = cases[i].layout == VAE_LAYOUT_LDM ? 16 : 0;
    g_autoptr (VaeModel) m = vae_model_load (path, &o, &error);
    g_assert_no_error (error);
    g_assert_cmpint (m->family, ==, VAE_FAMILY_KL);
    g_assert_cmpstr (m->variant, ==, "flux2");
    g_assert_cmpint (m->layout, ==, cases[i].layout);
    g_assert_cmpint (m->latent_channels, ==, 32);
    g_assert_cmpint (m->spatial_factor, ==, 8);
    g_assert_cmpint (m->latent_patch, ==, 2);
    g_assert_cmpint (m->norm_groups, ==, 16);
    g_assert_cmpfloat (m->batch_norm_eps, ==, 1e-4);
    g_assert_cmpfloat (m->scaling_factor, ==, 1.0);
    g_assert_cmpfloat (m->shift_factor, ==, 0.0);
    g_assert_true (m->quant_conv && m->post_quant_conv);
    for (int l = 0; l < 4; l++)
      g_assert_cmpint (m->decoder_block_out_channels[l], ==, cases[i].dec[l]);
    g_assert_nonnull (m->latents_mean);
    g_assert_nonnull (m->latents_std);
    for (int c = 0; c < 128; c++)
      g_assert_true (m->latents_std[c] > 0.0f);
    if (i == 0)
      std0 = g_memdup2 (m->latents_std, 128 * sizeof (float));
    else if (i == 2)   /* the same statistics under BFL's names */
      g_assert_cmpmem (std0, 128 * sizeof (float), m->latents_std, 128 * sizeof (float));
  }
  /* Without the option BFL's file gets its module tree's GroupNorm(32). */
  {
    g_autofree char *path = model_path ("flux2-mini-original.safetensors");
    g_autoptr (VaeModel) m = vae_model_load (path, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpint (m->norm_groups, ==, 32);
  }

  /* Config keys: decoder_block_out_channels absent = null = the encoder's;
   * wrong lengths, patches and widths are refused. */
  g_autofree char *src_cfg_path = model_path ("flux2-mini/config.json");
  g_autofree char *src_w = model_path ("flux2-mini/diffusion_pytorch_model.safetensors");
  g_autofree char *cfg = NULL;
  g_file_get_contents (src_cfg_path, &cfg, NULL, &error);
  g_assert_no_error (error);
  static const struct { const char *from, *to; VaeErrorCode code; const char *mention; } edits[] = {
    { "\"decoder_block_out_channels\": null,", "", 0, NULL },
    { "\"decoder_block_out_channels\": null", "\"decoder_block_out_channels\": [32, 64]",
      VAE_ERROR_FORMAT, "decoder_block_out_channels" },
    { "\"decoder_block_out_channels\": null",
      "\"decoder_block_out_channels\": [32, 64, 64, 96]", VAE_ERROR_MODEL, "decoder" },
    { "\"batch_norm_eps\": 0.0001", "\"batch_norm_eps\": -1", VAE_ERROR_FORMAT,
      "batch_norm_eps" },
    { "\"patch_size\": [\n    2,\n    2\n  ]", "\"patch_size\": [2, 1]",
      VAE_ERROR_UNSUPPORTED, "patch_size" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (edits); i++) {
    g_assert_nonnull (strstr (cfg, edits[i].from));
    g_autofree char *folder = g_strdup_printf ("%s/flux2-%u", t->dir, i);
    g_assert_cmpint (g_mkdir_with_parents (folder, 0755), ==, 0);
    g_auto (GStrv) parts = g_strsplit (cfg, edits[i].from, 2);
    g_autofree char *edited = g_strjoinv (edits[i].to, parts);
    g_autofree char *dst_cfg = g_build_filename (folder, "config.json", NULL);
    g_autofree char *dst_w = g_build_filename (folder, "diffusion_pytorch_model.safetensors",
                                               NULL);
    g_file_set_contents (dst_cfg, edited, -1, &error);
    g_assert_no_error (error);
    g_assert_cmpint (symlink (src_w, dst_w), ==, 0);
    g_autoptr (VaeModel) m = vae_model_load (folder, NULL, &error);
    if (!edits[i].mention) {
      g_assert_no_error (error);
      g_assert_cmpint (m->decoder_block_out_channels[3], ==, 64);
      continue;
    }
    g_assert_null (m);
    g_assert_error (error, VAE_ERROR, (gint) edits[i].code);
    model_assert_message_has (error, edits[i].mention);
    g_clear_error (&error);
  }
}

int
main (int argc, char **argv)
{
  model_test_init (&argc, &argv, NULL);

  for (guint i = 0; i < G_N_ELEMENTS (expects); i++) {
    g_autofree char *name = g_strdup_printf ("/model/load/%s", expects[i].rel);
    g_test_add_data_func (name, &expects[i], test_load);
  }
  g_test_add_func ("/model/ldm-equals-diffusers", test_ldm_equals_diffusers);
  g_test_add_func ("/model/bare-state-dicts", test_bare_state_dicts);
  g_test_add_func ("/model/taesd-halves", test_taesd_halves);
  g_test_add_func ("/model/options", test_options);
  g_test_add_func ("/model/names", test_names);
  model_copy_add_test ("/model/error/missing-tensor", test_missing_tensor);
  model_copy_add_test ("/model/error/wrong-shape", test_wrong_shape);
  model_copy_add_test ("/model/error/bad-config", test_bad_config);
  model_copy_add_test ("/model/error/bad-paths", test_bad_paths);
  model_copy_add_test ("/model/ldm-prefix", test_ldm_prefix);
  model_copy_add_test ("/model/flux2", test_flux2);
  model_copy_add_test ("/model/tiny-structure", test_tiny_structure);

  int ret = g_test_run ();
  g_free (model_testdata);
  return ret;
}
