/* Unit tests for tiled runs (tiling.c).
 *
 * Two kinds of checks:
 * - with a fake engine whose ops are exactly translation-equivariant
 *   (average pooling for encode, nearest upsampling for decode), tiled
 *   output must equal untiled output up to float rounding: this checks the
 *   tile placement, the gather and scatter, and that the blend weights sum
 *   to 1 everywhere (a constant frame stays constant);
 * - with the cpu engine and the models in $VAE_TESTDATA/models, a frame
 *   that fits one tile gives exactly the untiled result, and TAEF2 tiled vs
 *   untiled stays close (numbers are printed; kl-sd-mini, whose GroupNorm
 *   sees per-tile statistics, is only reported).
 *
 * The fake-engine tests need no data; without the data the program still
 * exits 77 (skipped) after them, saying why. */
#include <glib.h>
#include <math.h>
#include <string.h>
#include "codec.h"
#include "engine.h"
#include "graph.h"
#include "model.h"
#include "safetensors.h"
#include "tiling.h"
#include "vae-error.h"

static char *testdata;   /* NULL when VAE_TESTDATA/models is not there */

/* ------------------------------------------------------------ fake engine */

typedef struct {
  VaeEngine parent;
  GQueue done;
  int preferred;
  int sized;                  /* fake_sized_vt: frames per batch at any size */
  int asked_h, asked_w;       /* the size batch_for_size was asked for */
  /* What the engine saw since the last reset. */
  int batches, max_n, first_h, first_w;
  gboolean mixed_sizes;
} FakeEngine;

static void
fake_run (VaeEngine *engine, VaeBatch *b)
{
  const VaeModel *m = engine->model;
  const int f = m->spatial_factor;
  if (b->direction == VAE_DIRECTION_ENCODE) {
    /* out[c] = (c + 1) * f x f average of in[c % 3] */
    const int oc = vae_engine_output_channels (m, b->direction);
    const int oh = b->h / f, ow = b->w / f;
    for (int n = 0; n < b->n; n++)
      for (int c = 0; c < oc; c++)
        for (int y = 0; y < oh; y++)
          for (int x = 0; x < ow; x++) {
            const float *in = b->input + ((gsize) n * 3 + c % 3) * b->h * b->w;
            double s = 0;
            for (int dy = 0; dy < f; dy++)
              for (int dx = 0; dx < f; dx++)
                s += in[(gsize) (y * f + dy) * b->w + x * f + dx];
            b->output[(((gsize) n * oc + c) * oh + y) * ow + x] =
                (float) ((c + 1) * s / (f * f));
          }
  } else {
    /* out[c] = (c + 1) * nearest-upsampled in[c % latent] */
    const int ic = m->latent_channels, oh = b->h * f, ow = b->w * f;
    for (int n = 0; n < b->n; n++)
      for (int c = 0; c < 3; c++)
        for (int y = 0; y < oh; y++)
          for (int x = 0; x < ow; x++)
            b->output[(((gsize) n * 3 + c) * oh + y) * ow + x] = (c + 1)
                * b->input[(((gsize) n * ic + c % ic) * b->h + y / f) * b->w + x / f];
  }
}

static gboolean
fake_submit (VaeEngine *engine, VaeBatch *b, GError **error)
{
  FakeEngine *self = (FakeEngine *) engine;
  if (self->batches++ == 0) {
    self->first_h = b->h;
    self->first_w = b->w;
  } else if (b->h != self->first_h || b->w != self->first_w) {
    self->mixed_sizes = TRUE;
  }
  self->max_n = MAX (self->max_n, b->n);
  fake_run (engine, b);
  g_queue_push_tail (&self->done, b);
  return TRUE;
}

static VaeBatch *
fake_wait (VaeEngine *engine)
{
  return g_queue_pop_head (&((FakeEngine *) engine)->done);
}

static int
fake_preferred (VaeEngine *engine)
{
  return ((FakeEngine *) engine)->preferred;
}

static const VaeEngineVTable fake_vt = {
  .name = "fake",
  .instance_size = sizeof (FakeEngine),
  .submit = fake_submit,
  .wait = fake_wait,
  .preferred_batch = fake_preferred,
};

static int
fake_batch_for_size (VaeEngine *engine, VaeDirection direction, int h, int w)
{
  FakeEngine *self = (FakeEngine *) engine;
  self->asked_h = h;
  self->asked_w = w;
  return self->sized;
}

/* An engine that says how many frames it takes at each size. */
static const VaeEngineVTable fake_sized_vt = {
  .name = "fake-sized",
  .instance_size = sizeof (FakeEngine),
  .submit = fake_submit,
  .wait = fake_wait,
  .preferred_batch = fake_preferred,
  .batch_for_size = fake_batch_for_size,
};

static void
fake_reset (FakeEngine *e)
{
  e->batches = e->max_n = e->first_h = e->first_w = 0;
  e->mixed_sizes = FALSE;
}

/* A model with 1x1-conv graphs: only its channel counts and factor matter
 * to the fake engine and to the tiler.  Encoder output is 2*latent
 * channels, like KL moments. */
static VaeModel *
fake_model (int f, int latent)
{
  VaeModel *m = g_new0 (VaeModel, 1);
  m->name = g_strdup ("fake");
  m->path = g_strdup ("fake");
  m->image_channels = 3;
  m->latent_channels = latent;
  m->spatial_factor = f;
  m->encoder = vae_graph_new (3);
  vae_graph_conv (m->encoder, "enc", 0, 2 * latent, 1, 1, 0, 0, 0, 0,
                  g_new0 (float, 2 * latent * 3), NULL, -1, VAE_ACT_NONE);
  m->decoder = vae_graph_new (latent);
  vae_graph_conv (m->decoder, "dec", 0, 3, 1, 1, 0, 0, 0, 0, g_new0 (float, 3 * latent),
                  NULL, -1, VAE_ACT_NONE);
  return m;
}

/* --------------------------------------------------------------- helpers */

static gsize
out_floats (const VaeModel *m, VaeDirection dir, int n, int h, int w)
{
  const int f = m->spatial_factor;
  const int c = vae_engine_output_channels (m, dir);
  return dir == VAE_DIRECTION_ENCODE ? (gsize) n * c * (h / f) * (w / f)
                                     : (gsize) n * c * (h * f) * (w * f);
}

static gsize
in_floats (const VaeModel *m, VaeDirection dir, int n, int h, int w)
{
  const int c = dir == VAE_DIRECTION_ENCODE ? m->image_channels : m->latent_channels;
  return (gsize) n * c * h * w;
}

/* Runs BATCH's input untiled into a new buffer, and tiled into another. */
static void
run_both (VaeEngine *e, VaeDirection dir, int n, int h, int w, const float *in, int tile,
          int overlap, float **untiled, float **tiled)
{
  const gsize no = out_floats (e->model, dir, n, h, w);
  GError *err = NULL;
  *untiled = g_new (float, no);
  *tiled = g_new (float, no);
  VaeBatch b = { dir, n, h, w, in, *untiled, NULL, NULL };
  g_assert_true (vae_engine_run (e, &b, &err));
  g_assert_no_error (err);
  VaeBatch t = { dir, n, h, w, in, *tiled, NULL, NULL };
  g_assert_true (vae_tiled_run (e, &t, tile, overlap, &err));
  g_assert_no_error (err);
}

static double
max_abs_diff (const float *a, const float *b, gsize n)
{
  double m = 0;
  for (gsize i = 0; i < n; i++)
    m = MAX (m, fabs ((double) a[i] - b[i]));
  return m;
}

static double
rel_l2 (const float *got, const float *ref, gsize n)
{
  double d = 0, r = 0;
  for (gsize i = 0; i < n; i++) {
    d += ((double) got[i] - ref[i]) * ((double) got[i] - ref[i]);
    r += (double) ref[i] * ref[i];
  }
  return r > 0 ? sqrt (d / r) : sqrt (d);
}

/* PSNR of pixels in the model's range [lo, 1], clamped as for display. */
static double
psnr (const float *got, const float *ref, gsize n, double lo)
{
  double se = 0;
  for (gsize i = 0; i < n; i++) {
    double a = (CLAMP (got[i], lo, 1.0) - lo) / (1.0 - lo);
    double b = (CLAMP (ref[i], lo, 1.0) - lo) / (1.0 - lo);
    se += (a - b) * (a - b);
  }
  return se > 0 ? 10 * log10 (n / se) : INFINITY;
}

/* ------------------------------------------------------------ fake tests */

static void
test_check (void)
{
  g_autoptr (VaeModel) m = fake_model (8, 4);
  GError *err = NULL;

  g_assert_true (vae_tiling_check (m, 0, 64, NULL));
  g_assert_true (vae_tiling_check (m, 128, 0, NULL));
  g_assert_true (vae_tiling_check (m, 128, 64, NULL));

  g_assert_false (vae_tiling_check (m, 128, 128, &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_ARGUMENT);
  g_test_message ("overlap >= tile: %s", err->message);
  g_assert_nonnull (strstr (err->message, "smaller than the tile size"));
  g_clear_error (&err);
  g_assert_false (vae_tiling_check (m, 64, 200, &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_ARGUMENT);
  g_clear_error (&err);
  g_assert_false (vae_tiling_check (m, 100, 16, &err));
  g_assert_nonnull (strstr (err->message, "multiples of the spatial factor 8"));
  g_clear_error (&err);
  g_assert_false (vae_tiling_check (m, 128, 20, &err));
  g_clear_error (&err);
  g_assert_false (vae_tiling_check (m, -8, 0, &err));
  g_clear_error (&err);

  /* vae_tiled_run refuses them too, before touching the engine. */
  FakeEngine fe = { .parent = { .vt = &fake_vt, .model = m }, .preferred = 1 };
  float in[1] = { 0 }, out[1];   /* never read: the arguments are refused first */
  VaeBatch b = { VAE_DIRECTION_DECODE, 1, 32, 32, in, out, NULL, NULL };
  g_assert_false (vae_tiled_run (&fe.parent, &b, 64, 64, &err));
  g_assert_error (err, VAE_ERROR, VAE_ERROR_ARGUMENT);
  g_clear_error (&err);
  g_assert_cmpint (fe.batches, ==, 0);
}

static void
test_grid (void)
{
  g_autoptr (VaeModel) m = fake_model (8, 4);
  VaeTileGrid g;

  /* 256 px, tile 128, overlap 32: steps of at most 96 px -> 3 tiles. */
  g_assert_true (vae_tile_grid (m, VAE_DIRECTION_DECODE, 32, 32, 128, 32, &g, NULL));
  g_assert_cmpint (g.tiles_y, ==, 3);
  g_assert_cmpint (g.tiles_x, ==, 3);
  g_assert_cmpint (g.tile_h, ==, 16);
  g_assert_cmpint (g.tile_w, ==, 16);
  g_assert_true (vae_tile_grid (m, VAE_DIRECTION_ENCODE, 256, 256, 128, 32, &g, NULL));
  g_assert_cmpint (g.tiles_x, ==, 3);
  g_assert_cmpint (g.tile_w, ==, 128);
  /* A side that fits is not cut; the tiles take its size. */
  g_assert_true (vae_tile_grid (m, VAE_DIRECTION_DECODE, 10, 40, 128, 32, &g, NULL));
  g_assert_cmpint (g.tiles_y, ==, 1);
  g_assert_cmpint (g.tile_h, ==, 10);
  g_assert_cmpint (g.tiles_x, ==, 3);
  /* Tile larger than the frame, and tile 0: one tile. */
  g_assert_true (vae_tile_grid (m, VAE_DIRECTION_ENCODE, 64, 48, 512, 64, &g, NULL));
  g_assert_cmpint (g.tiles_y * g.tiles_x, ==, 1);
  g_assert_cmpint (g.tile_h, ==, 64);
  g_assert_cmpint (g.tile_w, ==, 48);
  g_assert_true (vae_tile_grid (m, VAE_DIRECTION_ENCODE, 4096, 4096, 0, 64, &g, NULL));
  g_assert_cmpint (g.tiles_y * g.tiles_x, ==, 1);
  /* 4096 px at 512 / 64: steps of 448 -> 1 + ceil (3584 / 448) = 9. */
  g_assert_true (vae_tile_grid (m, VAE_DIRECTION_DECODE, 512, 512, 512, 64, &g, NULL));
  g_assert_cmpint (g.tiles_x, ==, 9);
  /* Encoder input must be a multiple of the factor. */
  g_assert_false (vae_tile_grid (m, VAE_DIRECTION_ENCODE, 100, 64, 64, 16, &g, NULL));
}

typedef struct {
  VaeDirection dir;
  int n, h, w, tile, overlap;
} FakeCase;

static void
test_fake_equivariant (void)
{
  static const FakeCase cases[] = {
    /* decode: latent sizes */
    { VAE_DIRECTION_DECODE, 1, 32, 32, 128, 32 },
    { VAE_DIRECTION_DECODE, 2, 37, 23, 128, 32 },    /* odd sizes, 2 frames */
    { VAE_DIRECTION_DECODE, 1, 10, 40, 128, 32 },    /* one side fits */
    { VAE_DIRECTION_DECODE, 1, 33, 35, 64, 48 },     /* tight: three tiles meet */
    { VAE_DIRECTION_DECODE, 1, 40, 41, 64, 0 },      /* no overlap */
    { VAE_DIRECTION_DECODE, 1, 5, 7, 128, 32 },      /* tile > frame */
    /* encode: pixel sizes */
    { VAE_DIRECTION_ENCODE, 1, 256, 256, 128, 32 },
    { VAE_DIRECTION_ENCODE, 3, 296, 184, 128, 32 },
    { VAE_DIRECTION_ENCODE, 1, 80, 320, 64, 16 },
    { VAE_DIRECTION_ENCODE, 1, 48, 40, 256, 64 },
  };
  g_autoptr (VaeModel) m = fake_model (8, 4);
  g_autoptr (GRand) rng = g_rand_new_with_seed (7);
  FakeEngine fe = { .parent = { .vt = &fake_vt, .model = m }, .preferred = 3 };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    const FakeCase *c = &cases[i];
    for (int constant = 0; constant < 2; constant++) {
      const gsize ni = in_floats (m, c->dir, c->n, c->h, c->w);
      const gsize no = out_floats (m, c->dir, c->n, c->h, c->w);
      g_autofree float *in = g_new (float, ni);
      g_autofree float *u = NULL, *t = NULL;
      VaeTileGrid g;
      for (gsize k = 0; k < ni; k++)
        in[k] = constant ? 0.75f : (float) g_rand_double_range (rng, -1, 1);
      g_assert_true (vae_tile_grid (m, c->dir, c->h, c->w, c->tile, c->overlap, &g, NULL));
      fake_reset (&fe);
      run_both (&fe.parent, c->dir, c->n, c->h, c->w, in, c->tile, c->overlap, &u, &t);
      double d = max_abs_diff (t, u, no);
      g_test_message ("fake %s n=%d %dx%d tile %d/%d: %dx%d tiles, max |diff| %.2g",
                      c->dir == VAE_DIRECTION_ENCODE ? "encode" : "decode", c->n, c->w,
                      c->h, c->tile, c->overlap, g.tiles_x, g.tiles_y, d);
      g_assert_cmpfloat (d, <=, 1e-5);
      if (g.tiles_x * g.tiles_y == 1) {
        /* Untiled path: the very same run. */
        g_assert_cmpmem (t, no * sizeof (float), u, no * sizeof (float));
        continue;
      }
      if (constant)   /* weights sum to 1: a constant frame stays constant */
        for (gsize k = 0; k < no; k++)
          g_assert_cmpfloat (fabs (t[k] - u[k]), <=, 1e-6 * fabs (u[k]) + 1e-7);
      /* One untiled batch, then the tiles in batches of <= 3. */
      g_assert_cmpint (fe.batches, ==,
                       1 + (c->n * g.tiles_x * g.tiles_y + 2) / 3);
      g_assert_cmpint (fe.max_n, <=, MAX (3, c->n));
    }
  }
}

/* All tile batches have the tile's size, however odd the frame. */
static void
test_fake_tile_sizes (void)
{
  g_autoptr (VaeModel) m = fake_model (8, 4);
  FakeEngine fe = { .parent = { .vt = &fake_vt, .model = m }, .preferred = 2 };
  const int lh = 45, lw = 29;
  g_autofree float *in = g_new0 (float, (gsize) 4 * lh * lw);
  g_autofree float *out = g_new (float, (gsize) 3 * lh * 8 * lw * 8);
  VaeBatch b = { VAE_DIRECTION_DECODE, 1, lh, lw, in, out, NULL, NULL };
  GError *err = NULL;

  g_assert_true (vae_tiled_run (&fe.parent, &b, 96, 32, &err));
  g_assert_no_error (err);
  g_assert_false (fe.mixed_sizes);
  g_assert_cmpint (fe.first_h, ==, 12);
  g_assert_cmpint (fe.first_w, ==, 12);
  g_assert_cmpint (fe.max_n, ==, 2);
}

/* Batches of tiles: the engine's answer for the tile's size, whatever its
 * preferred batch; an engine that gives none gets batches of its preferred
 * size also for tiles larger than 512x512 (no frame size is assumed). */
static void
test_fake_batch_sizes (void)
{
  g_autoptr (VaeModel) m = fake_model (8, 4);
  /* 150x150 latents (1200x1200 pixels) in 2x2 tiles of 96 latents (768). */
  const int lh = 150, lw = 150;
  g_autofree float *in = g_new0 (float, (gsize) 4 * lh * lw);
  g_autofree float *out = g_new (float, (gsize) 3 * lh * 8 * lw * 8);
  VaeBatch b = { VAE_DIRECTION_DECODE, 1, lh, lw, in, out, NULL, NULL };
  GError *err = NULL;

  FakeEngine plain = { .parent = { .vt = &fake_vt, .model = m }, .preferred = 3 };
  g_assert_true (vae_tiled_run (&plain.parent, &b, 768, 64, &err));
  g_assert_no_error (err);
  g_assert_cmpint (plain.first_h, ==, 96);
  g_assert_cmpint (plain.batches, ==, 2);     /* 3 tiles, then 1 */
  g_assert_cmpint (plain.max_n, ==, 3);

  FakeEngine sized = { .parent = { .vt = &fake_sized_vt, .model = m }, .preferred = 3,
                       .sized = 2 };
  g_assert_true (vae_tiled_run (&sized.parent, &b, 768, 64, &err));
  g_assert_no_error (err);
  g_assert_cmpint (sized.asked_h, ==, 96);    /* asked for the tile's size */
  g_assert_cmpint (sized.asked_w, ==, 96);
  g_assert_cmpint (sized.batches, ==, 2);     /* 2 tiles, then 2 */
  g_assert_cmpint (sized.max_n, ==, 2);

  /* An answer of 0 or less is one frame at a time. */
  FakeEngine zero = { .parent = { .vt = &fake_sized_vt, .model = m }, .preferred = 3 };
  g_assert_true (vae_tiled_run (&zero.parent, &b, 768, 64, &err));
  g_assert_no_error (err);
  g_assert_cmpint (zero.batches, ==, 4);
  g_assert_cmpint (zero.max_n, ==, 1);
}

/* ---------------------------------------------------------- real models */

static VaeModel *
load (const char *rel)
{
  g_autofree char *path = g_build_filename (testdata, "models", rel, NULL);
  GError *err = NULL;
  VaeModel *m = vae_model_load (path, NULL, &err);
  g_assert_no_error (err);
  return m;
}

/* H x W crop at (Y0, X0) of the 512x512 astronaut TAEF2 saw ([0, 1]),
 * box-downscaled by DOWN and mapped to [LO, 1]. */
static float *
astronaut (int y0, int x0, int h, int w, int down, float lo)
{
  g_autofree char *path = g_build_filename (testdata, "reference",
                                            "taef2__astronaut_512x512.safetensors", NULL);
  GError *err = NULL;
  g_autoptr (VaeSafetensors) st = vae_safetensors_open (path, &err);
  g_assert_no_error (err);
  const VaeTensorView *t = vae_safetensors_lookup (st, "input");
  g_assert_nonnull (t);
  g_autofree float *full = g_new (float, (gsize) 3 * 512 * 512);
  g_assert_true (vae_tensor_view_to_f32 (t, full, &err));
  g_assert_cmpint (y0 + h * down, <=, 512);
  g_assert_cmpint (x0 + w * down, <=, 512);
  float *out = g_new (float, (gsize) 3 * h * w);
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        double s = 0;
        for (int dy = 0; dy < down; dy++)
          for (int dx = 0; dx < down; dx++)
            s += full[((gsize) c * 512 + y0 + y * down + dy) * 512 + x0 + x * down + dx];
        out[((gsize) c * h + y) * w + x] = (float) (lo + (1 - lo) * s / (down * down));
      }
  return out;
}

#define REQUIRE_TESTDATA()                                                       \
  G_STMT_START {                                                                 \
    if (!testdata) {                                                             \
      g_test_skip ("VAE_TESTDATA/models is missing: real-model tiling tests "    \
                   "need ../shared/testdata");                                   \
      return;                                                                    \
    }                                                                            \
  } G_STMT_END

/* Encode and decode an image of W x H untiled and with TILE / OVERLAP;
 * returns the encoder's relative L2 and the decoded PSNR; checks that a
 * tile of at least the frame's size is exactly untiled. */
static void
compare_model (VaeEngine *e, const float *img, int h, int w, int tile, int overlap,
               double *enc_rel, double *dec_psnr)
{
  const VaeModel *m = e->model;
  const int f = m->spatial_factor, lh = h / f, lw = w / f;
  const gsize ne = out_floats (m, VAE_DIRECTION_ENCODE, 1, h, w);
  const gsize nd = out_floats (m, VAE_DIRECTION_DECODE, 1, lh, lw);
  g_autofree float *eu = NULL, *et = NULL, *du = NULL, *dt = NULL;
  GError *err = NULL;

  run_both (e, VAE_DIRECTION_ENCODE, 1, h, w, img, tile, overlap, &eu, &et);
  *enc_rel = rel_l2 (et, eu, ne);
  /* Decode the untiled latents (the mean: the first C channels of KL moments). */
  run_both (e, VAE_DIRECTION_DECODE, 1, lh, lw, eu, tile, overlap, &du, &dt);
  *dec_psnr = psnr (dt, du, nd, m->image_min);

  /* A tile that covers the frame: bit-identical to untiled. */
  g_autofree float *one = g_new (float, MAX (ne, nd));
  const int big = vae_padded_size (MAX (h, w), f);
  VaeBatch b = { VAE_DIRECTION_ENCODE, 1, h, w, img, one, NULL, NULL };
  g_assert_true (vae_tiled_run (e, &b, big, overlap < big ? overlap : 0, &err));
  g_assert_no_error (err);
  g_assert_cmpmem (one, ne * sizeof (float), eu, ne * sizeof (float));
  VaeBatch d = { VAE_DIRECTION_DECODE, 1, lh, lw, eu, one, NULL, NULL };
  g_assert_true (vae_tiled_run (e, &d, big * 2, overlap, &err));
  g_assert_no_error (err);
  g_assert_cmpmem (one, nd * sizeof (float), du, nd * sizeof (float));
}

static VaeEngine *
cpu_engine (VaeModel *m)
{
  GError *err = NULL;
  VaeEngine *e = vae_engine_new ("cpu", m, NULL, &err);
  g_assert_no_error (err);
  return e;
}

/* A tiled run of the astronaut's H x W crop at (Y0, X0), against the
 * untiled one: encode relative L2 at most MAX_REL, decode PSNR at least
 * MIN_PSNR. */
typedef struct {
  int y0, x0, h, w, tile, overlap;
  double max_rel, min_psnr;
} TiledCase;

static void
check_tiled_cases (const char *model, const TiledCase *cases, guint n)
{
  g_autoptr (VaeModel) m = load (model);
  g_autoptr (VaeEngine) e = cpu_engine (m);
  for (guint i = 0; i < n; i++) {
    const TiledCase *c = &cases[i];
    double rel, p;
    g_autofree float *img = astronaut (c->y0, c->x0, c->h, c->w, 1, 0.0f);
    compare_model (e, img, c->h, c->w, c->tile, c->overlap, &rel, &p);
    g_print ("# %s %dx%d tile %d/%d: encode rel L2 %.3g, decode PSNR %.1f dB\n", model,
             c->w, c->h, c->tile, c->overlap, rel, p);
    g_assert_cmpfloat (rel, <=, c->max_rel);
    g_assert_cmpfloat (p, >=, c->min_psnr);
  }
}

/* The TAESD architecture without GroupNorm (random weights): tiles differ
 * from the whole frame only through the zero padding at tile borders,
 * which the blend weights fade out. */
static void
test_tiny_sd (void)
{
  REQUIRE_TESTDATA ();
  static const TiledCase cases[] = {
    { 128, 128, 256, 256, 128, 32, 0.1, 45.0 },
    /* Odd size, not a multiple of the tile: 296x184 (37x23 latents). */
    { 100, 60, 184, 296, 128, 32, 0.1, 45.0 },
  };
  check_tiled_cases ("tiny-sd-random", cases, G_N_ELEMENTS (cases));
}

/* TAEF2 normalises its deepest blocks with GroupNorm(4) over the whole
 * input (the .pool. blocks), so each tile sees its own statistics: tiled
 * output is visibly different from untiled at these small tiles (about
 * 27 dB; with the pool blocks switched off the same tiles give 40 dB).
 * The bounds only catch regressions. */
static void
test_taef2 (void)
{
  REQUIRE_TESTDATA ();
  static const TiledCase cases[] = {
    /* 256x256 (the centre of the astronaut), tile 128, overlap 32: 3x3 tiles. */
    { 128, 128, 256, 256, 128, 32, 0.3, 24.0 },
    /* Odd size, not a multiple of the tile: 296x184 (37x23 latents). */
    { 100, 60, 184, 296, 128, 32, 0.3, 24.0 },
    /* Larger tiles, fewer GroupNorm regions: 512x512 in 2x2 tiles of 448. */
    { 0, 0, 512, 512, 448, 192, 0.1, 35.0 },
  };
  check_tiled_cases ("taef2", cases, G_N_ELEMENTS (cases));
}

static void
test_kl_sd_mini (void)
{
  REQUIRE_TESTDATA ();
  g_autoptr (VaeModel) m = load ("kl-sd-mini");
  g_autoptr (VaeEngine) e = cpu_engine (m);
  double rel, p;

  /* The whole astronaut at 128x128, tile 64, overlap 16: 3x3 tiles.
   * Random weights and per-tile GroupNorm statistics: reported only. */
  g_autofree float *img = astronaut (0, 0, 128, 128, 4, -1.0f);
  compare_model (e, img, 128, 128, 64, 16, &rel, &p);
  g_print ("# kl-sd-mini 128x128 tile 64/16 (GroupNorm per tile): encode rel L2 %.3g, "
           "decode PSNR %.1f dB\n", rel, p);
  g_assert_true (isfinite (rel));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  const char *env = g_getenv ("VAE_TESTDATA");
  if (env) {
    g_autofree char *models = g_build_filename (env, "models", NULL);
    if (g_file_test (models, G_FILE_TEST_IS_DIR))
      testdata = g_strdup (env);
  }

  g_test_add_func ("/tiling/check", test_check);
  g_test_add_func ("/tiling/grid", test_grid);
  g_test_add_func ("/tiling/fake-equivariant", test_fake_equivariant);
  g_test_add_func ("/tiling/fake-tile-sizes", test_fake_tile_sizes);
  g_test_add_func ("/tiling/fake-batch-sizes", test_fake_batch_sizes);
  g_test_add_func ("/tiling/tiny-sd-random", test_tiny_sd);
  g_test_add_func ("/tiling/taef2", test_taef2);
  g_test_add_func ("/tiling/kl-sd-mini", test_kl_sd_mini);

  int ret = g_test_run ();
  if (ret == 0 && !testdata) {
    g_printerr ("test-tiling: SKIPPED the real-model tests: VAE_TESTDATA/models is "
                "missing (../shared/testdata); the fake-engine tests passed\n");
    ret = 77;
  }
  g_free (testdata);
  return ret;
}
