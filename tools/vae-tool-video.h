/* vae-tool: the subcommands' video-model paths (vae-tool-video.c). */
#pragma once
#include <glib.h>
#include "engine.h"

G_BEGIN_DECLS

/* INPUT: one PNG (a 1-frame clip) or a printf pattern ("dir/f_%04d.png":
 * frames 0 up to the first missing one). */
gboolean vae_tool_video_encode (VaeEngine *engine, const char *input, const char *output,
                                GError **error);
/* OUTPUT: a printf pattern, or a path that gets _NNNN before its
 * extension.  FRAMES_WRITTEN may be NULL. */
gboolean vae_tool_video_decode (VaeEngine *engine, const char *input, const char *output,
                                int *frames_written, GError **error);
/* Times whole clips of FRAMES frames of WIDTH x HEIGHT (decode: their
 * latents), RUNS times after a warm-up; prints median_s=. */
gboolean vae_tool_video_bench (VaeEngine *engine, VaeDirection dir, int width, int height,
                               int frames, int runs, GError **error);
/* Multiply-accumulates of a whole clip (first chunk and steady chunks). */
double vae_tool_video_clip_macs (const VaeModel *m, VaeDirection dir, int frames, int ph,
                                 int pw);
/* The video lines of `vae-tool info`. */
void vae_tool_video_info (const VaeModel *m);

G_END_DECLS
