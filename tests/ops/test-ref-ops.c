/* gst-vae: the reference ops of the video kinds (ref-ops.c) on tiny
 * hand-made inputs, against outputs computed by hand from the definitions
 * in graph.h and docs/video-architectures.md, so that test-ops compares the
 * engines with something that is itself checked.
 *
 * Each check prints what it computes; a mismatch names the element. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ref-ops.h"

static int failures;

static void
expect (const char *what, const double *got, const double *want, gsize n)
{
  for (gsize i = 0; i < n; i++)
    if (fabs (got[i] - want[i]) > 1e-12 * MAX (1.0, fabs (want[i]))) {
      g_print ("FAIL: %s: element %" G_GSIZE_FORMAT " is %.17g, expected %.17g\n", what, i,
               got[i], want[i]);
      failures++;
      return;
    }
  g_print ("ok: %s\n", what);
}

static float *
fdup (const float *v, gsize n)
{
  return g_memdup2 (v, n * sizeof (float));
}

/* ------------------------------------------------------------ causal conv */

/* 1 channel, 1x1 kernel, taps (oldest first) 1, 10, 100: out[t] =
 * x[t-2] + 10 x[t-1] + 100 x[t] + bias. */
static void
test_causal_conv_k3_s1 (void)
{
  static const float w[3] = { 1, 10, 100 }, b[1] = { 0.5f };
  g_autoptr (VaeGraph) g = vae_graph_new (1);
  vae_graph_causal_conv3d (g, "c", 0, 1, 3, 1, 1, 0, fdup (w, 3), fdup (b, 1), 0, -1,
                           VAE_ACT_NONE);
  RefState *st = ref_state_new (g, 1, 1);
  g_assert (st->n == 1 && st->sizes[0] == 2);
  const float c1[1] = { 1 }, c2[2] = { 2, 3 }, c3[1] = { -4 };
  int t, c, h, ww;
  g_autofree double *o1 = ref_graph_run_stream (g, st, 1, 1, 1, c1, 0, &t, &c, &h, &ww);
  g_assert (t == 1 && c == 1 && h == 1 && ww == 1);
  expect ("causal conv kt3 s1: first frame sees zero history", o1,
          (const double[]) { 100.5 }, 1);
  expect ("causal conv kt3 s1: slot after 1 frame = [0, x0]", st->slots[0],
          (const double[]) { 0, 1 }, 2);
  g_autofree double *o2 = ref_graph_run_stream (g, st, 2, 1, 1, c2, 0, &t, &c, &h, &ww);
  g_assert (t == 2);
  /* x = [0, 1 | 2, 3] */
  expect ("causal conv kt3 s1: history carries over", o2,
          (const double[]) { 0 + 10 + 200 + 0.5, 1 + 20 + 300 + 0.5 }, 2);
  expect ("causal conv kt3 s1: slot = last 2 frames", st->slots[0],
          (const double[]) { 2, 3 }, 2);
  g_autofree double *o3 = ref_graph_run_stream (g, st, 1, 1, 1, c3, 0, &t, &c, &h, &ww);
  expect ("causal conv kt3 s1: a 1-frame chunk after 2", o3,
          (const double[]) { 2 + 30 - 400 + 0.5 }, 1);
  expect ("causal conv kt3 s1: slot shifts by one", st->slots[0],
          (const double[]) { 3, -4 }, 2);
  ref_state_free (st);

  /* A fresh state is the start of a clip again. */
  st = ref_state_new (g, 1, 1);
  g_autofree double *o4 = ref_graph_run_stream (g, st, 1, 1, 1, c1, 0, &t, &c, &h, &ww);
  expect ("causal conv kt3 s1: new state = stream start", o4, (const double[]) { 100.5 }, 1);
  ref_state_free (st);
}

/* Wan's downsample3d time conv: kt 3, stride 2, K = 1 history frame; the
 * first chunk passes through (slot updated), later chunks convolve. */
static void
test_causal_conv_k3_s2_passthrough (void)
{
  static const float w[3] = { 1, 10, 100 };
  g_autoptr (VaeGraph) first = vae_graph_new (1);
  g_autoptr (VaeGraph) steady = vae_graph_new (1);
  vae_graph_time_passthrough (first, "pass", 0, 3, 2, 0);
  vae_graph_causal_conv3d (steady, "tc", 0, 1, 3, 2, 1, 0, fdup (w, 3), NULL, 0, -1,
                           VAE_ACT_NONE);
  RefState *st = ref_state_new (steady, 1, 1);
  g_assert (st->n == 1 && st->sizes[0] == 1);
  int t, c, h, ww;
  g_autofree double *o1 = ref_graph_run_stream (first, st, 1, 1, 1, (const float[]) { 7 }, 0,
                                                &t, &c, &h, &ww);
  g_assert (t == 1);
  expect ("time passthrough: out = in", o1, (const double[]) { 7 }, 1);
  expect ("time passthrough: slot updated", st->slots[0], (const double[]) { 7 }, 1);
  g_autofree double *o2 = ref_graph_run_stream (steady, st, 4, 1, 1,
                                                (const float[]) { 1, 2, 3, 4 }, 0, &t, &c,
                                                &h, &ww);
  g_assert (t == 2);
  /* x = [7 | 1 2 3 4]: out0 = taps over (7, 1, 2), out1 over (2, 3, 4) */
  expect ("causal conv kt3 s2: z_j = conv(y_2j-2, y_2j-1, y_2j)", o2,
          (const double[]) { 7 + 10 + 200, 2 + 30 + 400 }, 2);
  expect ("causal conv kt3 s2: slot = last frame", st->slots[0], (const double[]) { 4 }, 1);
  ref_state_free (st);

  /* Without the passthrough: 2 frames after zero history give 1. */
  st = ref_state_new (steady, 1, 1);
  g_autofree double *o3 = ref_graph_run_stream (steady, st, 2, 1, 1, (const float[]) { 1, 2 },
                                                0, &t, &c, &h, &ww);
  g_assert (t == 1);
  expect ("causal conv kt3 s2 from zero history", o3, (const double[]) { 0 + 10 + 200 }, 1);
  ref_state_free (st);

  /* kt 2 stride 2 (K = 0): frame pairs, no slot. */
  g_autoptr (VaeGraph) pair = vae_graph_new (1);
  vae_graph_causal_conv3d (pair, "pair", 0, 1, 2, 2, 1, 0, fdup ((const float[]) { 1, 10 }, 2),
                           NULL, -1, -1, VAE_ACT_NONE);
  g_assert (pair->n_states == 0);
  g_autofree double *o4 = ref_graph_run_stream (pair, NULL, 4, 1, 1,
                                                (const float[]) { 1, 2, 3, 4 }, 0, &t, &c, &h,
                                                &ww);
  g_assert (t == 2);
  expect ("causal conv kt2 s2: pairs", o4, (const double[]) { 21, 43 }, 2);
}

/* Weight layout [out, in, kt, k, k], the spatial part, residual and act:
 * 2 input channels, 1 output, kt 2 (TAEHV's MemBlock form), 3x3 pad 1 over
 * 1x2 frames. */
static void
test_causal_conv_layout (void)
{
  /* tap 0 (past): channel 0 weight 1 at the centre, channel 1 weight 2 at
   * the right neighbour (ky 1, kx 2); tap 1 (current): channel 0 weight 10
   * at the left neighbour (ky 1, kx 0), channel 1 weight -1 at the centre. */
  float w[2 * 2 * 9] = { 0 };
#define W(i, tau, ky, kx) w[(((i) * 2 + (tau)) * 3 + (ky)) * 3 + (kx)]
  W (0, 0, 1, 1) = 1;
  W (1, 0, 1, 2) = 2;
  W (0, 1, 1, 0) = 10;
  W (1, 1, 1, 1) = -1;
#undef W
  g_autoptr (VaeGraph) g = vae_graph_new (2);
  /* residual: channel count must match: out = relu(conv + residual) with a
   * 1-channel residual made by a 1x1 conv picking channel 0 */
  int r = vae_graph_conv (g, "pick0", 0, 1, 1, 1, 0, 0, 0, 0,
                          fdup ((const float[]) { 1, 0 }, 2), NULL, -1, VAE_ACT_NONE);
  vae_graph_causal_conv3d (g, "mem", 0, 1, 2, 1, 3, 1, fdup (w, 36), NULL, 0, r, VAE_ACT_RELU);
  RefState *st = ref_state_new (g, 1, 2);
  g_assert (st->sizes[0] == 2 * 1 * 2);
  /* frame: [c0: a b][c1: p q] */
  const float f0[4] = { 1, 2, 3, 4 }, f1[4] = { 5, -6, 7, 8 };
  int t, c, h, ww;
  g_autofree double *o0 = ref_graph_run_stream (g, st, 1, 1, 2, f0, 0, &t, &c, &h, &ww);
  g_assert (t == 1 && c == 1 && h == 1 && ww == 2);
  /* current tap only: x0: 10*c0[x-1] - c1[x] + c0[x] (residual)
   *   x=0: 10*0 - 3 + 1 = -2 -> 0;  x=1: 10*1 - 4 + 2 = 8 */
  expect ("causal conv kt2 3x3: current tap, pads, residual, relu", o0,
          (const double[]) { 0, 8 }, 2);
  g_autofree double *o1 = ref_graph_run_stream (g, st, 1, 1, 2, f1, 0, &t, &c, &h, &ww);
  /* past (f0): c0[x] + 2 c1[x+1]; current (f1): 10 c0[x-1] - c1[x]; + c0[x]
   *   x=0: (1 + 2*4) + (0 - 7) + 5 = 7;  x=1: (2 + 0) + (50 - 8) - 6 = 38 */
  expect ("causal conv kt2 3x3: past tap reads the previous chunk", o1,
          (const double[]) { 7, 38 }, 2);
  ref_state_free (st);
}

/* ------------------------------------------------------------- the others */

static void
test_rms_norm (void)
{
  /* c = 2 at each of 2 pixels: (3, 4) has norm 5, (0, 0) stays 0 */
  const double in[4] = { 3, 0, 4, 0 };   /* [c][p] */
  const float gamma[2] = { 1, 0.5f };
  double out[4];
  ref_rms_norm (in, 1, 2, 1, 2, gamma, VAE_ACT_NONE, out);
  const double s = sqrt (2.0) / 5;
  expect ("rms_norm: x / ||x|| * sqrt(C) * gamma; zero stays zero", out,
          (const double[]) { 3 * s, 0, 4 * s * 0.5, 0 }, 4);
  const double neg[2] = { -3, 4 };
  ref_rms_norm (neg, 1, 2, 1, 1, gamma, VAE_ACT_RELU, out);
  expect ("rms_norm + relu", out, (const double[]) { 0, 4 * s * 0.5 }, 2);
}

static void
test_frames_channels (void)
{
  /* T = 4, C = 1 (1x1): frames a b c d -> 2 frames of [a b], [c d] */
  const double in[4] = { 1, 2, 3, 4 };
  double out[4], back[4];
  ref_frames_to_channels (in, 4, 1, 1, 1, 2, out);
  expect ("frames_to_channels s2: earliest frame first", out,
          (const double[]) { 1, 2, 3, 4 }, 4);
  /* C = 2, T = 2: f0 = (1, 2), f1 = (3, 4) -> one frame (1, 2, 3, 4) */
  ref_frames_to_channels (in, 2, 2, 1, 1, 2, out);
  expect ("frames_to_channels s2, 2 ch: channel j C + c", out,
          (const double[]) { 1, 2, 3, 4 }, 4);
  /* channels_to_frames s2 of one frame of 4 channels -> 2 frames of 2 */
  ref_channels_to_frames (in, 1, 2, 1, 1, 2, back);
  expect ("channels_to_frames s2: block j is frame 2t + j", back,
          (const double[]) { 1, 2, 3, 4 }, 4);
  /* 2 frames of 2 channels, s2 -> 4 frames of 1: f0 (1,2) -> 1, 2; f1 -> 3, 4 */
  ref_channels_to_frames (in, 2, 1, 1, 1, 2, back);
  expect ("channels_to_frames s2 over 2 frames", back, (const double[]) { 1, 2, 3, 4 }, 4);
  /* 2x1 spatial, 2 frames of 1 channel: planes move whole */
  const double sp[4] = { 1, 2, 3, 4 };   /* f0 = [1 2], f1 = [3 4] */
  ref_frames_to_channels (sp, 2, 1, 1, 2, 2, out);
  expect ("frames_to_channels keeps planes", out, (const double[]) { 1, 2, 3, 4 }, 4);
}

static void
test_space_channels (void)
{
  /* 1 channel 2x2: [[1 2] [3 4]]: (dy, dx) = (0,0) 1, (0,1) 2, (1,0) 3, (1,1) 4 */
  const double in[4] = { 1, 2, 3, 4 };
  double out[4], back[4];
  ref_space_to_channels (in, 1, 1, 2, 2, 2, FALSE, out);
  expect ("space_to_channels p2, pixel_unshuffle: c*4 + dy*2 + dx", out,
          (const double[]) { 1, 2, 3, 4 }, 4);
  ref_space_to_channels (in, 1, 1, 2, 2, 2, TRUE, out);
  expect ("space_to_channels p2, column major (Wan 2.2): c*4 + dx*2 + dy", out,
          (const double[]) { 1, 3, 2, 4 }, 4);
  ref_channels_to_space (out, 1, 1, 1, 1, 2, TRUE, back);
  expect ("channels_to_space p2 column major inverts", back, in, 4);
  ref_space_to_channels (in, 1, 1, 2, 2, 2, FALSE, out);
  ref_channels_to_space (out, 1, 1, 1, 1, 2, FALSE, back);
  expect ("channels_to_space p2 row major inverts", back, in, 4);
  /* 2 channels 2x4: channel 1 lands at 4..7; x offset 2 picks the 2nd column block */
  double big[16], o16[16];
  for (int i = 0; i < 16; i++)
    big[i] = i;
  ref_space_to_channels (big, 1, 2, 2, 4, 2, FALSE, o16);
  /* out [8][1][2]: channel c*4 + dy*2 + dx, position x: in[c][dy][2x + dx] */
  expect ("space_to_channels p2, 2 ch 2x4", o16,
          (const double[]) { 0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15 }, 16);
  /* p = 1 is the identity */
  ref_space_to_channels (in, 1, 1, 2, 2, 1, FALSE, out);
  expect ("space_to_channels p1 = identity", out, in, 4);
}

static void
test_avg_down3d (void)
{
  /* (160, 320, 2, 2) scaled to (1, 2, 2, 2): out[2c + it] = 2x2 average of
   * channel c in frame it; frames 2x2: f0 = 1..4, f1 = 5..8 */
  const double two[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
  double out[16];
  ref_avg_down3d (two, 2, 1, 2, 2, 2, 2, 2, out);
  expect ("avg_down3d (1,2,2,2): out[2c+it] = avg of frame it", out,
          (const double[]) { 2.5, 6.5 }, 2);
  /* one frame (a first chunk): zero frame in front -> even channels 0 */
  ref_avg_down3d (two, 1, 1, 2, 2, 2, 2, 2, out);
  expect ("avg_down3d (1,2,2,2) first chunk: front pad", out, (const double[]) { 0, 2.5 }, 2);
  /* (2, 4, 2, 2) over 2 frames: channels c = 0, 1 each give 2 */
  double in2[16];
  for (int i = 0; i < 16; i++)
    in2[i] = i;   /* [f][c][2][2] */
  ref_avg_down3d (in2, 2, 2, 2, 2, 4, 2, 2, out);
  /* f0 c0 = 0..3 (1.5), f0 c1 = 4..7 (5.5), f1 c0 = 8..11 (9.5), f1 c1 (13.5) */
  expect ("avg_down3d (2,4,2,2): out = [c0f0, c0f1, c1f0, c1f1]", out,
          (const double[]) { 1.5, 9.5, 5.5, 13.5 }, 4);
  /* (160, 160, 1, 2) -> (2, 2, 1, 2): plain 2x2 average pool per channel */
  ref_avg_down3d (in2, 1, 2, 2, 2, 2, 1, 2, out);
  expect ("avg_down3d (c,c,1,2) = 2x2 avg pool", out, (const double[]) { 1.5, 5.5 }, 2);
  /* (640, 640, 1, 1) = identity */
  ref_avg_down3d (in2, 2, 2, 2, 2, 2, 1, 1, out);
  expect ("avg_down3d (c,c,1,1) = identity", out, in2, 16);
  /* groups across channels: (2, 1, 1, 1): g = 2, out = mean of the 2 channels */
  ref_avg_down3d (in2, 1, 2, 1, 1, 1, 1, 1, out);
  expect ("avg_down3d (2,1,1,1): mean over channel pairs", out, (const double[]) { 0.5 }, 1);
}

static void
test_dup_up3d (void)
{
  /* (1024, 1024, 2, 2) -> (2, 2, 2, 2): r = 8, a plain x2 repeat in t, h, w */
  const double in[2] = { 3, 5 };   /* 1 frame, 2 channels, 1x1 */
  double out[32];
  ref_dup_up3d (in, 1, 2, 1, 1, 2, 2, 2, FALSE, out);
  double want[16];
  for (int f = 0; f < 2; f++)
    for (int c = 0; c < 2; c++)
      for (int p = 0; p < 4; p++)
        want[(f * 2 + c) * 4 + p] = in[c];
  expect ("dup_up3d (c,c,2,2) r=8: x2 repeat in t, h, w", out, want, 16);
  ref_dup_up3d (in, 1, 2, 1, 1, 2, 2, 2, TRUE, out);
  expect ("dup_up3d drop_first: the first ft-1 frames left out", out, want + 8, 8);
  /* (1024, 512, 1, 2) -> (2, 1, 1, 2): r = 2, row offset ih copies x[2o + ih] */
  ref_dup_up3d (in, 1, 2, 1, 1, 1, 1, 2, FALSE, out);
  expect ("dup_up3d (2c,c,1,2) r=2: rows copy x[2o+ih]", out,
          (const double[]) { 3, 3, 5, 5 }, 4);
  /* ft = 1: drop_first leaves every frame */
  ref_dup_up3d (in, 1, 2, 1, 1, 1, 1, 2, TRUE, out);
  expect ("dup_up3d ft=1 drop_first = no drop", out, (const double[]) { 3, 3, 5, 5 }, 4);
  /* 2 frames in, ft 2: frames 2t, 2t+1 come from input frame t */
  const double in2[2] = { 1, 2 };   /* 2 frames, 1 channel */
  ref_dup_up3d (in2, 2, 1, 1, 1, 1, 2, 1, FALSE, out);
  expect ("dup_up3d (1,1,2,1) r=2 over 2 frames", out, (const double[]) { 1, 1, 2, 2 }, 4);
}

/* A two-op graph with two slots over three chunks: the state of each conv
 * is its own input's history. */
static void
test_stream_graph (void)
{
  g_autoptr (VaeGraph) g = vae_graph_new (1);
  /* y[t] = x[t] + x[t-1] (kt 2, slot 0); z[t] = y[t] - y[t-2] (kt 3, slot 1) */
  int y = vae_graph_causal_conv3d (g, "a", 0, 1, 2, 1, 1, 0,
                                   fdup ((const float[]) { 1, 1 }, 2), NULL, 0, -1,
                                   VAE_ACT_NONE);
  vae_graph_causal_conv3d (g, "b", y, 1, 3, 1, 1, 0, fdup ((const float[]) { -1, 0, 1 }, 3),
                           NULL, 1, -1, VAE_ACT_NONE);
  g_assert (g->n_states == 2);
  RefState *st = ref_state_new (g, 1, 1);
  const float x[9] = { 1, 2, 4, 8, 16, 32, 64, 128, 256 };
  /* whole: y = 1 3 6 12 24 48 96 192 384; z = y[t] - y[t-2] */
  const double want[9] = { 1, 3, 5, 9, 18, 36, 72, 144, 288 };
  static const int chunks[3] = { 1, 4, 4 };
  int at = 0;
  for (int k = 0; k < 3; k++) {
    int t, c, h, w;
    g_autofree double *o = ref_graph_run_stream (g, st, chunks[k], 1, 1, x + at, 0, &t, &c,
                                                 &h, &w);
    g_assert (t == chunks[k]);
    g_autofree char *what = g_strdup_printf ("2-slot stream, chunk %d of [1,4,4]", k);
    expect (what, o, want + at, chunks[k]);
    at += chunks[k];
  }
  expect ("2-slot stream: slot 0 = last input frame", st->slots[0], (const double[]) { 256 }, 1);
  expect ("2-slot stream: slot 1 = last 2 frames of y", st->slots[1],
          (const double[]) { 192, 384 }, 2);
  ref_state_free (st);
  /* the whole clip at once gives the same */
  st = ref_state_new (g, 1, 1);
  int t, c, h, w;
  g_autofree double *all = ref_graph_run_stream (g, st, 9, 1, 1, x, 0, &t, &c, &h, &w);
  expect ("2-slot stream: one 9-frame chunk = three chunks", all, want, 9);
  ref_state_free (st);
}

int
main (void)
{
  test_causal_conv_k3_s1 ();
  test_causal_conv_k3_s2_passthrough ();
  test_causal_conv_layout ();
  test_rms_norm ();
  test_frames_channels ();
  test_space_channels ();
  test_avg_down3d ();
  test_dup_up3d ();
  test_stream_graph ();
  g_print ("\ntest-ref-ops: %s\n", failures ? "FAIL" : "PASS");
  return failures ? 1 : 0;
}
