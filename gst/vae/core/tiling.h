/* gst-vae: tiled encode and decode, for frames too large to run whole.
 *
 * A frame is cut into overlapping tiles of TILE x TILE image pixels; every
 * tile runs through the engine on its own (tiles of one call all have the
 * same size, so several go into one engine batch), and the tiles' outputs
 * are blended back together: across an overlap each tile's weight ramps
 * linearly from 0 at its own edge, and the weights of the tiles that cover
 * a sample always sum to 1.  Encode blends the encoder output (every
 * channel: mean and logvar alike, so that any latent mode can be taken from
 * the result), decode blends pixels.
 *
 * Tile positions: along each side the tiles are spread evenly between the
 * two borders, every tile full-sized, with overlaps of at least OVERLAP
 * pixels (no small leftover tile at the edge).  A side that fits in one tile
 * is not cut; a frame that fits in one tile runs exactly as untiled.
 *
 * Models with GroupNorm (AutoencoderKL) normalise each tile with its own
 * statistics, so tiled output is close to, not equal to, untiled output;
 * the blend hides the seams.  TAESD-family models have no frame-wide
 * normalisation (TAEF2's pool blocks aside) and stay much closer.
 *
 * Memory: besides the caller's buffers, one engine batch of tiles. */
#pragma once
#include <glib.h>
#include "engine.h"

G_BEGIN_DECLS

#define VAE_TILE_OVERLAP_DEFAULT 64

/* How a frame is cut. */
typedef struct {
  int tiles_y, tiles_x;       /* 1 x 1: untiled */
  int tile_h, tile_w;         /* engine-input size of every tile (pixels for
                                 encode, latents for decode) */
} VaeTileGrid;

/* Checks TILE and OVERLAP (image pixels) for MODEL: TILE 0 means untiled;
 * else TILE and OVERLAP must be multiples of the spatial factor and
 * 0 <= OVERLAP < TILE. */
gboolean vae_tiling_check (const VaeModel *model, int tile, int overlap, GError **error);

/* The grid vae_tiled_run uses for one frame of engine input H x W (pixels
 * for encode, latents for decode); FALSE with ERROR for bad arguments. */
gboolean vae_tile_grid (const VaeModel *model, VaeDirection direction, int h, int w,
                        int tile, int overlap, VaeTileGrid *grid, GError **error);

/* vae_engine_run with tiles of TILE x TILE image pixels overlapping by
 * OVERLAP pixels (TILE 0: untiled).  BATCH is as for vae_engine_run
 * (direction, n, h, w, input, output); its error field is not used.  The
 * engine must have no batch pending: this submits and waits for its own. */
gboolean vae_tiled_run (VaeEngine *engine, VaeBatch *batch, int tile, int overlap,
                        GError **error);

G_END_DECLS
