/* gst-vae: the TAEHV builder (model-taehv.c) on small synthetic taehv.py
 * state dicts written here (narrow layers, random values): the
 * configuration read off the shapes (patch, latent channels, time strides,
 * widths; never the file name), the graphs' frame counts and slots, and
 * clear errors for missing, misshapen, unexpected tensors, `_super`
 * decoders and halves that do not belong together.  No test data needed
 * (the golden check of real-size files is tests/golden video-ref). */
#include <glib.h>
#include <string.h>

#include "model.h"
#include "model-test-util.h"
#include "safetensors.h"
#include "vae-error.h"

typedef struct {
  int p, z, enc_w;
  int dec_w[4];
  int pool[3], grow[3];
  const char *drop;            /* a tensor left out */
  const char *reshape;         /* a tensor written with shape BAD_SHAPE */
  gint64 bad_shape[4];
  int bad_ndim;
  const char *extra;           /* a tensor added ([1]) */
  gboolean no_encoder, no_decoder;
  int dec_z;                   /* decoder latent channels (0: z) */
} Spec;

static char *dir;

static void
add (VaeSafetensorsWriter *w, const Spec *s, const char *name, int ndim, const gint64 *shape)
{
  if (s->drop && g_str_equal (s->drop, name))
    return;
  if (s->reshape && g_str_equal (s->reshape, name)) {
    ndim = s->bad_ndim;
    shape = s->bad_shape;
  }
  gsize n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  g_autofree float *v = g_new (float, n);
  for (gsize i = 0; i < n; i++)
    v[i] = (float) ((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
  g_autoptr (GError) error = NULL;
  g_assert_true (vae_safetensors_writer_add (w, name, VAE_DTYPE_F32, ndim, shape, v,
                                             n * sizeof (float), &error));
}

static void
conv (VaeSafetensorsWriter *w, const Spec *s, const char *prefix, int out, int in, int k,
      gboolean bias)
{
  g_autofree char *wn = g_strdup_printf ("%s.weight", prefix);
  gint64 shape[4] = { out, in, k, k };
  add (w, s, wn, 4, shape);
  if (bias) {
    g_autofree char *bn = g_strdup_printf ("%s.bias", prefix);
    add (w, s, bn, 1, shape);
  }
}

static void
memblock (VaeSafetensorsWriter *w, const Spec *s, const char *half, int idx, int c)
{
  g_autofree char *p0 = g_strdup_printf ("%s.%d.conv.0", half, idx);
  g_autofree char *p2 = g_strdup_printf ("%s.%d.conv.2", half, idx);
  g_autofree char *p4 = g_strdup_printf ("%s.%d.conv.4", half, idx);
  conv (w, s, p0, c, 2 * c, 3, TRUE);
  conv (w, s, p2, c, c, 3, TRUE);
  conv (w, s, p4, c, c, 3, TRUE);
}

/* Writes the state dict of SPEC to DIR/NAME; returns the path. */
static char *
write_model (const char *name, const Spec *s)
{
  g_autoptr (VaeSafetensorsWriter) w = vae_safetensors_writer_new ();
  const int ic = 3 * s->p * s->p, c = s->enc_w;
  if (!s->no_encoder) {
    conv (w, s, "encoder.0", c, ic, 3, TRUE);
    for (int st = 0; st < 3; st++) {
      int base = 2 + 5 * st;
      g_autofree char *tp = g_strdup_printf ("encoder.%d.conv", base);
      g_autofree char *dn = g_strdup_printf ("encoder.%d", base + 1);
      conv (w, s, tp, c, c * s->pool[st], 1, FALSE);
      conv (w, s, dn, c, c, 3, FALSE);
      for (int b = 0; b < 3; b++)
        memblock (w, s, "encoder", base + 2 + b, c);
    }
    conv (w, s, "encoder.17", s->z, c, 3, TRUE);
  }
  if (!s->no_decoder) {
    conv (w, s, "decoder.1", s->dec_w[0], s->dec_z ? s->dec_z : s->z, 3, TRUE);
    for (int st = 0; st < 3; st++) {
      int base = 3 + 6 * st, d = s->dec_w[st];
      for (int b = 0; b < 3; b++)
        memblock (w, s, "decoder", base + b, d);
      g_autofree char *tg = g_strdup_printf ("decoder.%d.conv", base + 4);
      g_autofree char *cv = g_strdup_printf ("decoder.%d", base + 5);
      conv (w, s, tg, d * s->grow[st], d, 1, FALSE);
      conv (w, s, cv, s->dec_w[st + 1], d, 3, FALSE);
    }
    conv (w, s, "decoder.22", ic, s->dec_w[3], 3, TRUE);
  }
  if (s->extra) {
    gint64 one[1] = { 1 };
    add (w, s, s->extra, 1, one);
  }
  char *path = g_build_filename (dir, name, NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (vae_safetensors_writer_save (w, path, &error));
  return path;
}

/* taew2_2's structure, narrowed: p 2, 5 latent channels, widths 4 / 6,5,4,3 */
static Spec
small_spec (void)
{
  Spec s = { .p = 2, .z = 5, .enc_w = 4, .dec_w = { 6, 5, 4, 3 },
             .pool = { 2, 2, 1 }, .grow = { 1, 2, 2 } };
  return s;
}

static int
count_kind (const VaeGraph *g, VaeOpKind kind)
{
  int n = 0;
  for (guint i = 0; i < g->ops->len; i++)
    n += vae_graph_op (g, i)->kind == kind;
  return n;
}

static void
check_frames (const VaeGraph *g, int in_t, int h, int w, int want_t, int want_c, int want_h,
              int want_w)
{
  int n = g->values->len;
  g_autofree int *t = g_new (int, n);
  g_autofree int *hh = g_new (int, n);
  g_autofree int *ww = g_new (int, n);
  g_assert_true (vae_graph_infer_shapes (g, in_t, h, w, t, hh, ww));
  g_assert_cmpint (t[g->output], ==, want_t);
  g_assert_cmpint (vae_graph_channels (g, g->output), ==, want_c);
  g_assert_cmpint (hh[g->output], ==, want_h);
  g_assert_cmpint (ww[g->output], ==, want_w);
}

static void
test_config_from_shapes (void)
{
  Spec s = small_spec ();
  /* named like taew2_1 (p 1, 16 ch in taehv.py): the shapes win */
  g_autofree char *path = write_model ("taew2_1.safetensors", &s);
  g_autoptr (GError) error = NULL;
  g_autoptr (VaeModel) m = vae_model_load (path, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (m->family, ==, VAE_FAMILY_TAEHV);
  g_assert_cmpint (m->layout, ==, VAE_LAYOUT_TAEHV);
  g_assert_cmpint (m->patch_size, ==, 2);
  g_assert_cmpint (m->latent_channels, ==, 5);
  g_assert_cmpint (m->spatial_factor, ==, 16);
  g_assert_cmpint (m->temporal_factor, ==, 4);
  g_assert_cmpint (m->encode_first_frames, ==, 4);
  g_assert_cmpint (m->encode_chunk_frames, ==, 4);
  g_assert_cmpint (m->decode_drop_frames, ==, 3);
  g_assert_cmpstr (m->variant, ==, "taehv-p2-z5");
  g_assert_true (m->image_min == 0.0f);
  g_assert_true (m->scaling_factor == 1.0 && m->shift_factor == 0.0);
  g_assert_false (m->encoder_outputs_moments);
  g_assert_null (m->encoder_first);
  g_assert_null (m->decoder_first);
  g_assert_null (m->latents_mean);
  g_assert_nonnull (m->encoder);
  g_assert_nonnull (m->decoder);
  /* 9 MemBlocks per half, one slot each */
  g_assert_cmpint (m->encoder->n_states, ==, 9);
  g_assert_cmpint (m->decoder->n_states, ==, 9);
  g_assert_cmpint (count_kind (m->encoder, VAE_OP_CAUSAL_CONV3D), ==, 9);
  g_assert_cmpint (count_kind (m->decoder, VAE_OP_CAUSAL_CONV3D), ==, 9);
  g_assert_cmpint (count_kind (m->encoder, VAE_OP_SPACE_TO_CHANNELS), ==, 1);
  g_assert_cmpint (count_kind (m->decoder, VAE_OP_CHANNELS_TO_SPACE), ==, 1);
  /* strides 2, 2, 1: two FRAMES_TO_CHANNELS; 1, 2, 2: two CHANNELS_TO_FRAMES */
  g_assert_cmpint (count_kind (m->encoder, VAE_OP_FRAMES_TO_CHANNELS), ==, 2);
  g_assert_cmpint (count_kind (m->decoder, VAE_OP_CHANNELS_TO_FRAMES), ==, 2);
  g_assert_cmpint (count_kind (m->decoder, VAE_OP_TANH_CLAMP), ==, 1);
  g_assert_true (vae_graph_is_temporal (m->encoder));
  /* 4 frames of 32x48 -> 1 latent of 2x3; 1 latent -> 4 frames */
  check_frames (m->encoder, 4, 32, 48, 1, 5, 2, 3);
  check_frames (m->encoder, 8, 32, 48, 2, 5, 2, 3);
  check_frames (m->decoder, 1, 2, 3, 4, 3, 32, 48);
  g_assert_false (vae_graph_infer_shapes (m->encoder, 3, 32, 48, NULL, NULL, NULL));
  /* every tensor went into a graph */
  g_autoptr (VaeSafetensors) st = vae_safetensors_open (path, &error);
  g_assert_no_error (error);
  guint64 n = 0;
  for (guint i = 0; i < vae_safetensors_n_tensors (st); i++)
    n += vae_safetensors_tensor_at (st, i)->n_elements;
  g_assert_cmpuint (m->n_params, ==, n);

  /* The other structure: p 1 (no patch ops), time strides 2, 2, 2 (8x) */
  Spec s1 = small_spec ();
  s1.p = 1;
  s1.pool[2] = 2;
  s1.grow[0] = 2;
  g_autofree char *p1 = write_model ("taew2_2.safetensors", &s1);
  g_autoptr (VaeModel) m1 = vae_model_load (p1, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (m1->patch_size, ==, 1);
  g_assert_cmpint (m1->spatial_factor, ==, 8);
  g_assert_cmpint (m1->temporal_factor, ==, 8);
  g_assert_cmpint (m1->decode_drop_frames, ==, 7);
  g_assert_cmpint (count_kind (m1->encoder, VAE_OP_SPACE_TO_CHANNELS), ==, 0);
  check_frames (m1->encoder, 8, 16, 24, 1, 5, 2, 3);
  check_frames (m1->decoder, 1, 2, 3, 8, 3, 16, 24);
}

static void
test_halves (void)
{
  Spec s = small_spec ();
  s.no_decoder = TRUE;
  g_autofree char *pe = write_model ("enc-only.safetensors", &s);
  g_autoptr (GError) error = NULL;
  g_autoptr (VaeModel) me = vae_model_load (pe, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (me->encoder);
  g_assert_null (me->decoder);
  g_assert_cmpint (me->temporal_factor, ==, 4);
  s = small_spec ();
  s.no_encoder = TRUE;
  g_autofree char *pd = write_model ("dec-only.safetensors", &s);
  g_autoptr (VaeModel) md = vae_model_load (pd, NULL, &error);
  g_assert_no_error (error);
  g_assert_null (md->encoder);
  g_assert_nonnull (md->decoder);
  g_assert_cmpint (md->latent_channels, ==, 5);
  g_assert_cmpint (md->patch_size, ==, 2);
}

/* The load of SPEC fails with CODE and a message holding each NEEDLE. */
static void
expect_error (const char *name, const Spec *s, VaeErrorCode code, const char *n1,
              const char *n2)
{
  g_autofree char *path = write_model (name, s);
  GError *error = NULL;
  VaeModel *m = vae_model_load (path, NULL, &error);
  if (m)
    g_error ("%s loaded although it is broken", name);
  g_assert_nonnull (error);
  if (g_test_verbose ())
    g_printerr ("  %s: %s\n", name, error->message);
  g_assert_error (error, VAE_ERROR, (gint) code);
  g_assert_nonnull (strstr (error->message, name));
  if (n1 && !strstr (error->message, n1))
    g_error ("\"%s\" does not mention \"%s\"", error->message, n1);
  if (n2 && !strstr (error->message, n2))
    g_error ("\"%s\" does not mention \"%s\"", error->message, n2);
  g_error_free (error);
}

static void
test_missing (void)
{
  static const char *const victims[] = {
    "encoder.0.bias", "encoder.7.conv.weight", "encoder.13.weight",
    "encoder.10.conv.0.weight", "encoder.16.conv.4.bias", "encoder.17.weight",
    "decoder.22.weight", "decoder.13.conv.weight", "decoder.4.conv.2.weight",
    "decoder.20.weight",
  };
  for (guint i = 0; i < G_N_ELEMENTS (victims); i++) {
    Spec s = small_spec ();
    s.drop = victims[i];
    g_autofree char *name = g_strdup_printf ("missing%u.safetensors", i);
    g_autofree char *quoted = g_strdup_printf ("'%s'", victims[i]);
    expect_error (name, &s, VAE_ERROR_MODEL, quoted, "missing");
  }
}

static void
test_misshapen (void)
{
  static const struct {
    const char *tensor;
    int ndim;
    gint64 shape[4];
    const char *says;
  } cases[] = {
    /* MemBlock conv.0 over C instead of 2C */
    { "encoder.4.conv.0.weight", 4, { 4, 4, 3, 3 }, "[4, 8, 3, 3]" },
    /* 5 image channels: not 3 p^2 */
    { "encoder.0.weight", 4, { 4, 5, 3, 3 }, "3 p^2" },
    /* a TPool over 3 channels in steps of 4 */
    { "encoder.2.conv.weight", 4, { 4, 6, 1, 1 }, "TPool" },
    /* a TGrow that is not [s C, C, 1, 1] */
    { "decoder.7.conv.weight", 4, { 6, 6, 3, 3 }, "TGrow" },
    /* a conv weight that is not 4-D */
    { "encoder.17.weight", 2, { 5, 4 }, "[out,in,kernel,kernel]" },
    /* a bias of the wrong length */
    { "decoder.1.bias", 1, { 7 }, "[6]" },
    /* decoder output not RGB x p^2 */
    { "decoder.22.weight", 4, { 4, 3, 3, 3 }, "3 p^2" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    Spec s = small_spec ();
    s.reshape = cases[i].tensor;
    s.bad_ndim = cases[i].ndim;
    memcpy (s.bad_shape, cases[i].shape, sizeof s.bad_shape);
    g_autofree char *name = g_strdup_printf ("misshapen%u.safetensors", i);
    g_autofree char *quoted = g_strdup_printf ("'%s'", cases[i].tensor);
    expect_error (name, &s, VAE_ERROR_MODEL, quoted, cases[i].says);
  }
}

static void
test_other_errors (void)
{
  Spec s = small_spec ();
  s.extra = "encoder.18.weight";
  expect_error ("extra.safetensors", &s, VAE_ERROR_MODEL, "'encoder.18.weight'", "unexpected");
  s = small_spec ();
  s.extra = "encoder.3.bias";   /* the stride-2 convs have no bias */
  expect_error ("extra-bias.safetensors", &s, VAE_ERROR_MODEL, "'encoder.3.bias'",
                "unexpected");
  s = small_spec ();
  s.extra = "decoder.0.weight";
  expect_error ("super.safetensors", &s, VAE_ERROR_UNSUPPORTED, "_super", "decoder.0.weight");
  s = small_spec ();
  s.dec_z = 7;
  expect_error ("mismatch.safetensors", &s, VAE_ERROR_MODEL, "do not belong together",
                "latent channels 5 / 7");
  s = small_spec ();
  s.pool[0] = s.pool[1] = s.pool[2] = 1;
  s.grow[0] = s.grow[1] = s.grow[2] = 1;
  expect_error ("no-time.safetensors", &s, VAE_ERROR_UNSUPPORTED, "time factor 1", NULL);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_autoptr (GError) error = NULL;
  dir = g_dir_make_tmp ("test-model-taehv-XXXXXX", &error);
  g_assert_no_error (error);
  g_test_add_func ("/taehv/config-from-shapes", test_config_from_shapes);
  g_test_add_func ("/taehv/halves", test_halves);
  g_test_add_func ("/taehv/error/missing-tensor", test_missing);
  g_test_add_func ("/taehv/error/misshapen-tensor", test_misshapen);
  g_test_add_func ("/taehv/error/other", test_other_errors);
  int ret = g_test_run ();
  model_test_remove_tree (dir);
  g_free (dir);
  return ret;
}
