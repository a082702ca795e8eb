/* The video coder's frame counts (video-coder.h): latents per clip, padding
 * included, so that decoding gives every input frame back, and frames per
 * decoded latents.  The coder itself runs in tests/golden/test-video-golden.c. */
#include <glib.h>
#include "model.h"
#include "video-coder.h"

static void
test_counts (void)
{
  VaeModel wan = { 0 }, taehv = { 0 };
  wan.temporal_factor = taehv.temporal_factor = 4;
  wan.encode_first_frames = 1;
  wan.encode_chunk_frames = taehv.encode_chunk_frames = taehv.encode_first_frames = 4;
  taehv.decode_drop_frames = 3;
  /* frames, Wan latents, TAEHV latents (taehv.py: ceil (T / 4); ours: at
   * least (T + 6) / 4, so that 4 t - 3 >= T). */
  const int cases[][3] = {
    { 0, 0, 0 }, { 1, 1, 1 }, { 2, 2, 2 }, { 4, 2, 2 }, { 5, 2, 2 }, { 6, 3, 3 },
    { 7, 3, 3 }, { 8, 3, 3 }, { 9, 3, 3 }, { 12, 4, 4 }, { 13, 4, 4 }, { 81, 21, 21 },
    { 84, 22, 22 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    const int t = cases[i][0];
    g_assert_cmpint (vae_video_latent_frames (&wan, t), ==, cases[i][1]);
    g_assert_cmpint (vae_video_latent_frames (&taehv, t), ==, cases[i][2]);
    if (t > 0) {
      g_assert_cmpint (vae_video_decoded_frames (&wan, cases[i][1]), >=, t);
      g_assert_cmpint (vae_video_decoded_frames (&taehv, cases[i][2]), >=, t);
    }
  }
  g_assert_cmpint (vae_video_decoded_frames (&wan, 0), ==, 0);
  g_assert_cmpint (vae_video_decoded_frames (&wan, 1), ==, 1);
  g_assert_cmpint (vae_video_decoded_frames (&taehv, 3), ==, 9);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/video-coder/frame-counts", test_counts);
  return g_test_run ();
}
