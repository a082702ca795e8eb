/* gst-vae: tiled encode and decode (see tiling.h).
 *
 * The grid is planned in latent units, where tile borders of both
 * directions line up (a latent sample is f x f pixels), and each side is
 * handled on its own: a tile's blend weight at (y, x) is wy(y) * wx(x), and
 * since the 1-D weights of each side sum to 1 at every position, so do
 * their products.  That keeps the weights to two small tables instead of a
 * frame-sized weight map. */
#include "tiling.h"
#include "vae-error.h"
#include <string.h>

/* One side of the grid, in latent units. */
typedef struct {
  int length;   /* the side */
  int count;    /* tiles along it */
  int size;     /* every tile's size: the tile, or the side when it fits */
} Axis;

static Axis
axis_plan (int length, int tile, int overlap)
{
  Axis a = { length, 1, length };
  if (tile > 0 && length > tile) {
    /* The fewest tiles whose overlaps stay >= OVERLAP when spread evenly. */
    const int step = tile - overlap;
    a.count = 1 + (length - tile + step - 1) / step;
    a.size = tile;
  }
  return a;
}

/* Spread evenly from 0 to length - size: consecutive starts differ by at
 * most ceil ((length - size) / (count - 1)) <= tile - overlap. */
static int
axis_start (const Axis *a, int i)
{
  if (a->count == 1)
    return 0;
  return (int) ((gint64) i * (a->length - a->size) / (a->count - 1));
}

/* Blend weights of every tile's output samples, [count][size * scale]
 * (SCALE: output samples per latent unit).  Across the overlap with a
 * neighbour a tile's raw weight ramps linearly from 0 at its edge to 1 at
 * the neighbour's edge, so two tiles crossfade with weights summing to 1;
 * borders of the frame get no ramp.  Where tiles are packed more tightly
 * than that (three meet), dividing by the sum restores 1. */
static float *
axis_weights (const Axis *a, int scale)
{
  const int s = a->size * scale;
  float *weight = g_new (float, (gsize) a->count * s);
  g_autofree double *sum = g_new0 (double, (gsize) a->length * scale);

  for (int i = 0; i < a->count; i++) {
    const int start = axis_start (a, i);
    const int before = i > 0 ? (axis_start (a, i - 1) + a->size - start) * scale : 0;
    const int after = i + 1 < a->count ? (start + a->size - axis_start (a, i + 1)) * scale : 0;
    for (int j = 0; j < s; j++) {
      double r = 1.0;
      if (before > 0)
        r = MIN (r, (j + 0.5) / before);
      if (after > 0)
        r = MIN (r, (s - j - 0.5) / after);
      weight[(gsize) i * s + j] = (float) r;
      sum[(gsize) start * scale + j] += r;
    }
  }
  for (int i = 0; i < a->count; i++) {
    const gsize first = (gsize) axis_start (a, i) * scale;
    for (int j = 0; j < s; j++)
      weight[(gsize) i * s + j] = (float) (weight[(gsize) i * s + j] / sum[first + j]);
  }
  return weight;
}

gboolean
vae_tiling_check (const VaeModel *model, int tile, int overlap, GError **error)
{
  const int f = model->spatial_factor;

  if (tile < 0 || overlap < 0) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "tile size (%d) and tile overlap (%d) must not be negative", tile, overlap);
    return FALSE;
  }
  if (tile == 0)
    return TRUE;
  if (tile % f || overlap % f) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "tile size (%d) and tile overlap (%d) must be multiples of the "
                 "spatial factor %d of model '%s'", tile, overlap, f, model->name);
    return FALSE;
  }
  if (overlap >= tile) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "tile overlap (%d) must be smaller than the tile size (%d)", overlap, tile);
    return FALSE;
  }
  return TRUE;
}

/* The two axes of a frame, in latent units. */
static gboolean
plan_axes (const VaeModel *model, VaeDirection direction, int h, int w, int tile,
           int overlap, Axis *ay, Axis *ax, GError **error)
{
  const int f = model->spatial_factor;

  if (!vae_tiling_check (model, tile, overlap, error))
    return FALSE;
  if (h < 1 || w < 1 || (direction == VAE_DIRECTION_ENCODE && (h % f || w % f))) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "bad frame size %dx%d for tiling (encoder input must be a multiple "
                 "of the spatial factor %d)", w, h, f);
    return FALSE;
  }
  const int lh = direction == VAE_DIRECTION_ENCODE ? h / f : h;
  const int lw = direction == VAE_DIRECTION_ENCODE ? w / f : w;
  *ay = axis_plan (lh, tile / f, overlap / f);
  *ax = axis_plan (lw, tile / f, overlap / f);
  return TRUE;
}

gboolean
vae_tile_grid (const VaeModel *model, VaeDirection direction, int h, int w, int tile,
               int overlap, VaeTileGrid *grid, GError **error)
{
  Axis ay, ax;
  if (!plan_axes (model, direction, h, w, tile, overlap, &ay, &ax, error))
    return FALSE;
  const int in_scale = direction == VAE_DIRECTION_ENCODE ? model->spatial_factor : 1;
  grid->tiles_y = ay.count;
  grid->tiles_x = ax.count;
  grid->tile_h = ay.size * in_scale;
  grid->tile_w = ax.size * in_scale;
  return TRUE;
}

/* Copies a TH x TW window at (Y0, X0) of each of C planes of H x W. */
static void
copy_window (const float *frame, int c, int h, int w, int y0, int x0, int th, int tw,
             float *dst)
{
  for (int ch = 0; ch < c; ch++)
    for (int y = 0; y < th; y++)
      memcpy (dst + ((gsize) ch * th + y) * tw,
              frame + ((gsize) ch * h + y0 + y) * w + x0, (gsize) tw * sizeof (float));
}

/* Adds a tile's output, weighted by WY (rows) x WX (columns), at (Y0, X0). */
static void
blend_window (const float *tile, int c, int th, int tw, const float *wy, const float *wx,
              float *frame, int h, int w, int y0, int x0)
{
  for (int ch = 0; ch < c; ch++)
    for (int y = 0; y < th; y++) {
      const float *src = tile + ((gsize) ch * th + y) * tw;
      float *dst = frame + ((gsize) ch * h + y0 + y) * w + x0;
      const float a = wy[y];
      for (int x = 0; x < tw; x++)
        dst[x] += a * wx[x] * src[x];
    }
}

gboolean
vae_tiled_run (VaeEngine *engine, VaeBatch *batch, int tile, int overlap, GError **error)
{
  const VaeModel *model = engine->model;
  const VaeDirection dir = batch->direction;
  /* Channels from the model, not its graphs: a remote engine's preset
   * model has none. */
  const int in_c = dir == VAE_DIRECTION_ENCODE ? model->image_channels
                                               : model->latent_channels;
  const int out_c = vae_engine_output_channels (model, dir);
  Axis ay, ax;

  if (!plan_axes (model, dir, batch->h, batch->w, tile, overlap, &ay, &ax, error))
    return FALSE;
  /* One tile, or a batch the engine refuses anyway (it says why). */
  if ((ay.count == 1 && ax.count == 1) || out_c < 1 || batch->n < 1)
    return vae_engine_run (engine, batch, error);

  /* Latent units -> engine input and output samples. */
  const int f = model->spatial_factor;
  const int in_scale = dir == VAE_DIRECTION_ENCODE ? f : 1;
  const int out_scale = dir == VAE_DIRECTION_ENCODE ? 1 : f;
  const int ih = ay.length * in_scale, iw = ax.length * in_scale;
  const int oh = ay.length * out_scale, ow = ax.length * out_scale;
  const int tih = ay.size * in_scale, tiw = ax.size * in_scale;
  const int toh = ay.size * out_scale, tow = ax.size * out_scale;
  const gsize in_frame = (gsize) in_c * ih * iw, out_frame = (gsize) out_c * oh * ow;
  const gsize in_tile = (gsize) in_c * tih * tiw, out_tile = (gsize) out_c * toh * tow;
  const int per_frame = ay.count * ax.count;
  const int total = batch->n * per_frame;
  /* Same-sized tiles batch together, as many as the engine runs best with
   * at the tile's size: only the engine knows what frame size its
   * preferred batch is meant for (the cuda engine takes fewer large tiles,
   * tiles being there to bound memory; cpu and remote take their batch). */
  const int tb = CLAMP (vae_engine_batch_for_size (engine, dir, tih, tiw), 1, total);

  g_autofree float *wy = axis_weights (&ay, out_scale);
  g_autofree float *wx = axis_weights (&ax, out_scale);
  g_autofree char *what = g_strdup_printf ("a batch of %d tiles of %dx%d", tb, tiw, tih);
  g_autofree float *tin = vae_try_alloc (in_tile, sizeof (float) * tb, what, error);
  if (!tin)
    return FALSE;
  g_autofree float *tout = vae_try_alloc (out_tile, sizeof (float) * tb, what, error);
  if (!tout)
    return FALSE;

  memset (batch->output, 0, out_frame * batch->n * sizeof (float));
  for (int first = 0; first < total; first += tb) {
    const int m = MIN (tb, total - first);
    for (int k = 0; k < m; k++) {
      const int t = first + k, frame = t / per_frame;
      const int ty = t % per_frame / ax.count, tx = t % ax.count;
      copy_window (batch->input + in_frame * frame, in_c, ih, iw,
                   axis_start (&ay, ty) * in_scale, axis_start (&ax, tx) * in_scale,
                   tih, tiw, tin + in_tile * k);
    }
    VaeBatch tiles = { dir, m, tih, tiw, tin, tout, NULL, NULL };
    if (!vae_engine_run (engine, &tiles, error))
      return FALSE;
    for (int k = 0; k < m; k++) {
      const int t = first + k, frame = t / per_frame;
      const int ty = t % per_frame / ax.count, tx = t % ax.count;
      blend_window (tout + out_tile * k, out_c, toh, tow, wy + (gsize) ty * toh,
                    wx + (gsize) tx * tow, batch->output + out_frame * frame, oh, ow,
                    axis_start (&ay, ty) * out_scale, axis_start (&ax, tx) * out_scale);
    }
  }
  return TRUE;
}
