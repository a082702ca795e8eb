/* Unit tests for the AutoencoderKLWan builder (model-wan.c) against the
 * models in $VAE_TESTDATA/models: what it reads from wan21-mini (diffusers
 * folder and original-layout file) and wan22-mini, and its errors on
 * broken copies.  The numerics are tests/golden/test-video-ref.c's. */
#include <glib.h>
#include <math.h>
#include <string.h>
#include "model.h"
#include "model-test-util.h"
#include "safetensors.h"
#include "vae-error.h"

static VaeModel *
load_ok (const char *rel)
{
  g_autofree char *path = model_path (rel);
  g_autoptr (GError) error = NULL;
  VaeModel *m = vae_model_load (path, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (m);
  return m;
}

/* Number of CAUSAL_CONV3D ops that own a slot, and whether slots are
 * within n_states. */
static int
count_slot_ops (const VaeGraph *g)
{
  int n = 0;
  for (guint i = 0; i < g->ops->len; i++) {
    const VaeOp *op = vae_graph_op (g, i);
    if (op->kind == VAE_OP_CAUSAL_CONV3D && op->state >= 0) {
      g_assert_cmpint (op->state, <, g->n_states);
      n++;
    }
  }
  return n;
}

/* Every slot a first-chunk graph uses is used in the steady graph by an op
 * with the same name and input channels. */
static void
check_slots_agree (const VaeGraph *first, const VaeGraph *steady)
{
  g_assert_cmpint (first->n_states, ==, steady->n_states);
  for (guint i = 0; i < first->ops->len; i++) {
    const VaeOp *a = vae_graph_op (first, i);
    if (a->kind != VAE_OP_CAUSAL_CONV3D || a->state < 0)
      continue;
    gboolean found = FALSE;
    for (guint j = 0; j < steady->ops->len && !found; j++) {
      const VaeOp *b = vae_graph_op (steady, j);
      if (b->kind == VAE_OP_CAUSAL_CONV3D && b->state == a->state) {
        g_assert_cmpstr (a->name, ==, b->name);
        g_assert_cmpint (a->in_channels, ==, b->in_channels);
        g_assert_cmpint (vae_op_history_frames (a), ==, vae_op_history_frames (b));
        g_assert_true (a->time_passthrough || a->weight == b->weight);   /* one array */
        found = TRUE;
      }
    }
    g_assert_true (found);
  }
}

static void
check_common (const VaeModel *m, int z, int spatial, int patch, const char *variant,
              int enc_slots, int dec_slots)
{
  g_assert_cmpint (m->family, ==, VAE_FAMILY_WAN);
  g_assert_cmpint (m->latent_channels, ==, z);
  g_assert_cmpint (m->spatial_factor, ==, spatial);
  g_assert_cmpint (m->temporal_factor, ==, 4);
  g_assert_cmpint (m->encode_first_frames, ==, 1);
  g_assert_cmpint (m->encode_chunk_frames, ==, 4);
  g_assert_cmpint (m->decode_drop_frames, ==, 0);
  g_assert_cmpint (m->patch_size, ==, patch);
  g_assert_cmpstr (m->variant, ==, variant);
  g_assert_true (m->encoder_outputs_moments);
  g_assert_cmpfloat (m->image_min, ==, -1.0f);
  g_assert_cmpfloat (m->scaling_factor, ==, 1.0);
  g_assert_cmpfloat (m->shift_factor, ==, 0.0);
  g_assert_nonnull (m->latents_mean);
  g_assert_nonnull (m->latents_std);
  g_assert_nonnull (m->encoder);
  g_assert_nonnull (m->encoder_first);
  g_assert_nonnull (m->decoder);
  g_assert_nonnull (m->decoder_first);
  g_assert_true (m->encoder->weights == m->weights && m->encoder_first->weights == m->weights);
  g_assert_true (m->decoder->weights == m->weights && m->decoder_first->weights == m->weights);
  g_assert_true (vae_graph_is_temporal (m->encoder));
  g_assert_cmpint (vae_graph_channels (m->encoder, 0), ==, 3);
  g_assert_cmpint (vae_graph_channels (m->encoder, m->encoder->output), ==, 2 * z);
  g_assert_cmpint (vae_graph_channels (m->encoder_first, m->encoder_first->output), ==, 2 * z);
  g_assert_cmpint (vae_graph_channels (m->decoder, 0), ==, z);
  g_assert_cmpint (vae_graph_channels (m->decoder, m->decoder->output), ==, 3);
  g_assert_cmpint (vae_graph_channels (m->decoder_first, m->decoder_first->output), ==, 3);
  /* One slot per cached conv (the doc's cache entries, less the shortcut
   * ones diffusers counts but never fills). */
  g_assert_cmpint (m->encoder->n_states, ==, enc_slots);
  g_assert_cmpint (m->decoder->n_states, ==, dec_slots);
  g_assert_cmpint (count_slot_ops (m->encoder), ==, enc_slots);
  g_assert_cmpint (count_slot_ops (m->decoder), ==, dec_slots);
  /* The first decoder chunk leaves out the upsample3d time convs. */
  g_assert_cmpint (count_slot_ops (m->decoder_first), ==, dec_slots - 2);
  g_assert_cmpint (count_slot_ops (m->encoder_first), ==, enc_slots);
  check_slots_agree (m->encoder_first, m->encoder);
  check_slots_agree (m->decoder_first, m->decoder);

  /* Frame counts: 1 -> 1 latent, 4 -> 1; 1 latent -> 1 frame first, 4 later. */
  const VaeGraph *gs[4] = { m->encoder_first, m->encoder, m->decoder_first, m->decoder };
  const int in_t[4] = { 1, 4, 1, 1 }, out_t[4] = { 1, 1, 1, 4 };
  const int hw[4] = { 64, 64, 64 / spatial, 64 / spatial };
  for (int i = 0; i < 4; i++) {
    int n = gs[i]->values->len;
    g_autofree int *t = g_new (int, n);
    g_assert_true (vae_graph_infer_shapes (gs[i], in_t[i], hw[i], hw[i], t, NULL, NULL));
    g_assert_cmpint (t[gs[i]->output], ==, out_t[i]);
  }
}

static void
test_wan21_dir (void)
{
  REQUIRE_TESTDATA ();
  g_autoptr (VaeModel) m = load_ok ("wan21-mini");
  check_common (m, 16, 8, 1, "wan2.1", 24, 32);
  g_assert_cmpint (m->layout, ==, VAE_LAYOUT_DIFFUSERS);
  g_assert_cmpint (m->levels, ==, 4);
  g_assert_cmpint (m->block_out_channels[3], ==, 48);
  g_assert_cmpfloat_with_epsilon (m->latents_mean[0], -0.1147, 1e-6);   /* config.json */
  g_assert_cmpfloat_with_epsilon (m->latents_std[15], 0.317, 1e-6);
}

/* The original-layout file: the same graphs, op by op and weight by weight
 * (its BF16 values are the folder's F32 ones), and the built-in Wan 2.1
 * normalisation. */
static void
test_wan21_original (void)
{
  REQUIRE_TESTDATA ();
  g_autoptr (VaeModel) a = load_ok ("wan21-mini");
  g_autoptr (VaeModel) b = load_ok ("wan21-mini-original.safetensors");
  check_common (b, 16, 8, 1, "wan2.1", 24, 32);
  g_assert_cmpint (b->layout, ==, VAE_LAYOUT_WAN);
  g_assert_cmpfloat_with_epsilon (b->latents_mean[0], -0.7571, 1e-6);
  g_assert_cmpfloat_with_epsilon (b->latents_std[15], 1.916, 1e-6);
  const VaeGraph *ga[4] = { a->encoder_first, a->encoder, a->decoder_first, a->decoder };
  const VaeGraph *gb[4] = { b->encoder_first, b->encoder, b->decoder_first, b->decoder };
  for (int i = 0; i < 4; i++) {
    g_assert_cmpuint (ga[i]->ops->len, ==, gb[i]->ops->len);
    for (guint j = 0; j < ga[i]->ops->len; j++) {
      const VaeOp *x = vae_graph_op (ga[i], j), *y = vae_graph_op (gb[i], j);
      g_assert_cmpint (x->kind, ==, y->kind);
      g_assert_cmpstr (x->name, ==, y->name);
      g_assert_cmpint (x->state, ==, y->state);
      gsize nw = (gsize) x->out_channels * x->in_channels * x->kt * x->kernel * x->kernel;
      if (x->weight)
        g_assert_cmpmem (x->weight, nw * sizeof (float), y->weight, nw * sizeof (float));
      if (x->bias)
        g_assert_cmpmem (x->bias, x->out_channels * sizeof (float), y->bias,
                         y->out_channels * sizeof (float));
      if (x->gamma)
        g_assert_cmpmem (x->gamma, x->in_channels * sizeof (float), y->gamma,
                         y->in_channels * sizeof (float));
    }
  }
  g_assert_cmpuint (a->n_params, ==, b->n_params);
}

static void
test_wan22_dir (void)
{
  REQUIRE_TESTDATA ();
  g_autoptr (VaeModel) m = load_ok ("wan22-mini");
  check_common (m, 48, 16, 2, "wan2.2", 24, 32);
  g_assert_cmpfloat_with_epsilon (m->latents_mean[0], -0.3681, 1e-6);
  /* AvgDown3D / DupUp3D shortcuts, DupUp3D dropping frames only first. */
  int avg = 0, dup_first = 0, dup = 0;
  for (guint i = 0; i < m->encoder->ops->len; i++)
    avg += vae_graph_op (m->encoder, i)->kind == VAE_OP_AVG_DOWN3D;
  for (guint i = 0; i < m->decoder->ops->len; i++) {
    const VaeOp *op = vae_graph_op (m->decoder, i);
    if (op->kind == VAE_OP_DUP_UP3D)
      dup += 1 + 100 * op->drop_first;
  }
  for (guint i = 0; i < m->decoder_first->ops->len; i++) {
    const VaeOp *op = vae_graph_op (m->decoder_first, i);
    if (op->kind == VAE_OP_DUP_UP3D)
      dup_first += op->drop_first;
  }
  g_assert_cmpint (avg, ==, 3);
  g_assert_cmpint (dup, ==, 3);
  g_assert_cmpint (dup_first, ==, 3);
}

/* Bare diffusers state dicts (no config.json): the structure from the
 * shapes, the real models' normalisation. */
static void
test_bare_state_dicts (void)
{
  REQUIRE_TESTDATA ();
  static const struct { const char *dir; int z, spatial, patch; const char *variant; float mean0; } cases[] = {
    { "wan21-mini", 16, 8, 1, "wan2.1", -0.7571f },
    { "wan22-mini", 48, 16, 2, "wan2.2", -0.2289f },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (VaeModel) a = load_ok (cases[i].dir);
    g_autofree char *rel = g_build_filename (cases[i].dir, "diffusion_pytorch_model.safetensors", NULL);
    g_autoptr (VaeModel) b = load_ok (rel);
    check_common (b, cases[i].z, cases[i].spatial, cases[i].patch, cases[i].variant, 24, 32);
    g_assert_cmpfloat_with_epsilon (b->latents_mean[0], cases[i].mean0, 1e-6);
    g_assert_cmpuint (a->encoder->ops->len, ==, b->encoder->ops->len);
    g_assert_cmpuint (a->decoder->ops->len, ==, b->decoder->ops->len);
    g_assert_cmpuint (a->n_params, ==, b->n_params);
  }
}

/* ------------------------------------------------------------ broken copies */

/* A copy of the diffusers folder SRC in DIR/NAME, config.json with FROM
 * replaced by TO (FROM NULL: unchanged), the weights rewritten by SPEC. */
static char *
make_dir_copy (const char *dir, const char *src, const char *name, const char *from,
               const char *to, const ModelCopySpec *spec)
{
  char *folder = g_build_filename (dir, name, NULL);
  g_autofree char *src_dir = model_path (src);
  g_autofree char *text = NULL;
  if (from) {
    g_autoptr (GError) error = NULL;
    g_autofree char *src_cfg = g_build_filename (src_dir, "config.json", NULL);
    g_file_get_contents (src_cfg, &text, NULL, &error);
    g_assert_no_error (error);
    g_assert_nonnull (strstr (text, from));
    g_auto (GStrv) parts = g_strsplit (text, from, 2);
    g_free (text);
    text = g_strjoin (to, parts[0], parts[1], NULL);
  }
  model_copy_folder (src_dir, folder, text, spec);
  return folder;
}

static char *
make_file_copy (const char *dir, const char *name, const ModelCopySpec *spec)
{
  g_autofree char *src = model_path ("wan21-mini-original.safetensors");
  char *dst = g_build_filename (dir, name, NULL);
  model_copy_write (src, dst, spec);
  return dst;
}

static void
test_missing_tensor (ModelCopyTmp *t, gconstpointer data)
{
  REQUIRE_TESTDATA ();
  static const struct { const char *src, *victim; } dirs[] = {
    { "wan21-mini", "decoder.up_blocks.1.resnets.0.conv_shortcut.weight" },
    { "wan21-mini", "encoder.down_blocks.5.time_conv.bias" },
    { "wan21-mini", "encoder.mid_block.attentions.0.to_qkv.weight" },
    { "wan22-mini", "decoder.up_blocks.0.upsampler.time_conv.weight" },
    { "wan22-mini", "encoder.down_blocks.2.downsampler.resample.1.bias" },
    { "wan22-mini", "post_quant_conv.bias" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (dirs); i++) {
    ModelCopySpec spec = { .drop = dirs[i].victim };
    g_autofree char *name = g_strdup_printf ("missing%u", i);
    g_autofree char *folder = make_dir_copy (t->dir, dirs[i].src, name, NULL, NULL, &spec);
    g_autoptr (GError) error = model_load_fails (folder, NULL);
    g_assert_error (error, VAE_ERROR, VAE_ERROR_MODEL);
    model_assert_message_has (error, dirs[i].victim);
    model_assert_message_has (error, "diffusion_pytorch_model.safetensors");
  }
  /* Original names in original files. */
  static const char *const victims[] = {
    "decoder.upsamples.7.time_conv.bias", "encoder.downsamples.3.shortcut.weight",
    "decoder.middle.1.norm.gamma", "conv2.weight", "encoder.head.0.gamma",
  };
  for (guint i = 0; i < G_N_ELEMENTS (victims); i++) {
    ModelCopySpec spec = { .drop = victims[i] };
    g_autofree char *name = g_strdup_printf ("wan_missing%u.safetensors", i);
    g_autofree char *path = make_file_copy (t->dir, name, &spec);
    g_autoptr (GError) error = model_load_fails (path, NULL);
    g_assert_error (error, VAE_ERROR, VAE_ERROR_MODEL);
    g_autofree char *quoted = g_strdup_printf ("'%s'", victims[i]);
    model_assert_message_has (error, quoted);
    model_assert_message_has (error, name);
  }
}

static void
test_wrong_shape (ModelCopyTmp *t, gconstpointer data)
{
  REQUIRE_TESTDATA ();
  ModelCopySpec spec = { .reshape = "encoder.down_blocks.5.time_conv.weight", .new_ndim = 5,
                         .new_shape = { 24, 24, 3, 3, 3 } };
  g_autofree char *folder = make_dir_copy (t->dir, "wan21-mini", "shape", NULL, NULL, &spec);
  g_autoptr (GError) error = model_load_fails (folder, NULL);
  g_assert_error (error, VAE_ERROR, VAE_ERROR_MODEL);
  model_assert_message_has (error, "'encoder.down_blocks.5.time_conv.weight'");
  model_assert_message_has (error, "[24,24,3,3,3]");
  model_assert_message_has (error, "[24,24,3,1,1]");

  ModelCopySpec ospec = { .reshape = "decoder.middle.1.to_qkv.weight", .new_ndim = 4,
                          .new_shape = { 48, 48, 1, 1 } };
  g_autofree char *path = make_file_copy (t->dir, "wan_shape.safetensors", &ospec);
  g_autoptr (GError) oerror = model_load_fails (path, NULL);
  g_assert_error (oerror, VAE_ERROR, VAE_ERROR_MODEL);
  model_assert_message_has (oerror, "'decoder.middle.1.to_qkv.weight'");
  model_assert_message_has (oerror, "[144,48,1,1]");
  model_assert_message_has (oerror, "wan_shape.safetensors");

  /* A config that does not match the weights. */
  g_autofree char *cfg = make_dir_copy (t->dir, "wan21-mini", "cfg-shape",
                                        "\"base_dim\": 12", "\"base_dim\": 16", NULL);
  g_autoptr (GError) cerror = model_load_fails (cfg, NULL);
  g_assert_error (cerror, VAE_ERROR, VAE_ERROR_MODEL);
  model_assert_message_has (cerror, "'encoder.conv_in.weight'");
}

static void
test_unknown_prefix (ModelCopyTmp *t, gconstpointer data)
{
  REQUIRE_TESTDATA ();
  ModelCopySpec spec = { .add = "model.first_stage_model.encoder.conv1.weight" };
  g_autofree char *path = make_file_copy (t->dir, "wan_prefix.safetensors", &spec);
  g_autoptr (GError) error = model_load_fails (path, NULL);
  g_assert_error (error, VAE_ERROR, VAE_ERROR_FORMAT);
  model_assert_message_has (error, "'model.first_stage_model.encoder.conv1.weight'");
  model_assert_message_has (error, "unknown key prefix");
  model_assert_message_has (error, "wan_prefix.safetensors");

  /* A tensor under a known prefix that the network does not have. */
  ModelCopySpec extra = { .add = "encoder.downsamples.11.residual.0.gamma" };
  g_autofree char *path2 = make_file_copy (t->dir, "wan_extra.safetensors", &extra);
  g_autoptr (GError) error2 = model_load_fails (path2, NULL);
  g_assert_error (error2, VAE_ERROR, VAE_ERROR_MODEL);
  model_assert_message_has (error2, "'encoder.downsamples.11.residual.0.gamma'");
}

static void
test_bad_config (ModelCopyTmp *t, gconstpointer data)
{
  REQUIRE_TESTDATA ();
  static const struct {
    const char *from, *to;
    int code;
    const char *needle;
  } cases[] = {
    { "\"attn_scales\": []", "\"attn_scales\": [0.5]", VAE_ERROR_UNSUPPORTED, "attn_scales" },
    { "\"attn_scales\": []", "\"attn_scales\": 3", VAE_ERROR_FORMAT, "attn_scales" },
    { "\"z_dim\": 16", "\"z_dim\": -4", VAE_ERROR_FORMAT, "z_dim" },
    { "\"dim_mult\": [", "\"dim_mult\": [\"x\", ", VAE_ERROR_FORMAT, "dim_mult" },
    { "  false,\n    true,\n    true\n", "  true\n", VAE_ERROR_FORMAT, "temperal_downsample" },
    { "\"in_channels\": 3", "\"in_channels\": 4", VAE_ERROR_UNSUPPORTED, "in_channels" },
    { "\"latents_mean\": [", "\"latents_mean\": [1.0, ", VAE_ERROR_FORMAT, "latents_mean" },
    { "0.3083", "-0.3083", VAE_ERROR_FORMAT, "latents_std" },
    { "\"scale_factor_spatial\": 8", "\"scale_factor_spatial\": 16", VAE_ERROR_FORMAT,
      "scale_factor_spatial" },
    { "\"is_residual\": false", "\"is_residual\": \"no\"", VAE_ERROR_FORMAT, "is_residual" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree char *name = g_strdup_printf ("cfg%u", i);
    g_autofree char *folder = make_dir_copy (t->dir, "wan21-mini", name, cases[i].from,
                                             cases[i].to, NULL);
    g_autoptr (GError) error = model_load_fails (folder, NULL);
    g_assert_error (error, VAE_ERROR, cases[i].code);
    model_assert_message_has (error, cases[i].needle);
    model_assert_message_has (error, "config.json");
  }
}

int
main (int argc, char **argv)
{
  model_test_init (&argc, &argv, "wan21-mini");
  g_test_add_func ("/model-wan/wan21-dir", test_wan21_dir);
  g_test_add_func ("/model-wan/wan21-original", test_wan21_original);
  g_test_add_func ("/model-wan/wan22-dir", test_wan22_dir);
  g_test_add_func ("/model-wan/bare-state-dicts", test_bare_state_dicts);
  model_copy_add_test ("/model-wan/error/missing-tensor", test_missing_tensor);
  model_copy_add_test ("/model-wan/error/wrong-shape", test_wrong_shape);
  model_copy_add_test ("/model-wan/error/unknown-prefix", test_unknown_prefix);
  model_copy_add_test ("/model-wan/error/bad-config", test_bad_config);
  return g_test_run ();
}
