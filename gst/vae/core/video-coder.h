/* gst-vae: a video model's stream fed one frame at a time.
 *
 * What every user of a video model shares (vae-tool, and the elements in a
 * later issue): input frames are gathered into the chunks the model takes
 * (Wan: frame 0 alone, then 4 at a time; TAEHV: 4 at a time), each chunk
 * runs as soon as it is complete, and every output frame goes to the
 * caller's callback as soon as it exists, so nothing ever holds more than
 * one chunk.  At the end of a clip (finish) a partial group is completed by
 * repeating its last frame, and where the latents would still not decode
 * every input frame back (TAEHV, whose first latent decodes to one frame:
 * 7 frames give taehv.py 2 latents and 5 frames back) further chunks of
 * copies run, so that 4 T' - 3 >= T: no input frame is dropped (diffusers
 * drops the frames after the last full group; we do not; the latents
 * diffusers or taehv.py would give are a prefix of ours), and the caller records the
 * real frame count so that decoding can cut the padding off again
 * (set_output_limit).  Decoding runs one latent frame per chunk and drops
 * the frames the model's decoder emits before the clip starts (TAEHV: 3).
 *
 * Frames are planar float32 in the graph's range: encode input [C, h, w]
 * pixels, output the encoder's channels (Wan: mean and logvar) per latent
 * frame; decode input the decoder's latents, output pixels. */
#pragma once
#include <glib.h>
#include "engine.h"

G_BEGIN_DECLS

typedef struct _VaeVideoCoder VaeVideoCoder;

/* One output frame: INDEX counts from 0 over the clip; C x H x W floats
 * valid during the call.  Return FALSE with ERROR set to stop. */
typedef gboolean (*VaeVideoFrameFunc) (const float *frame, int index, int c, int h, int w,
                                       gpointer user_data, GError **error);

/* H x W: the stream's input size (encode: pixels, a multiple of the
 * spatial factor; decode: latents). */
VaeVideoCoder *vae_video_coder_new (VaeEngine *engine, VaeDirection direction, int h, int w,
                                    VaeVideoFrameFunc func, gpointer user_data,
                                    GError **error);
/* Takes one input frame (copied). */
gboolean vae_video_coder_push (VaeVideoCoder *vc, const float *frame, GError **error);
/* End of the clip: completes and runs a partial chunk.  The coder is then
 * at the start of a new clip. */
gboolean vae_video_coder_finish (VaeVideoCoder *vc, GError **error);
/* Decode: emit at most LIMIT frames of this clip (the real frame count of
 * a clip whose last group was padded); -1: all. */
void vae_video_coder_set_output_limit (VaeVideoCoder *vc, int limit);
/* Frames taken and emitted in this clip so far. */
int vae_video_coder_frames_in (const VaeVideoCoder *vc);
int vae_video_coder_frames_out (const VaeVideoCoder *vc);
void vae_video_coder_free (VaeVideoCoder *vc);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VaeVideoCoder, vae_video_coder_free)

/* Latent frames a clip of FRAMES input frames gives (padding included):
 * the chunks that hold every frame, and at least (FRAMES + 6) / 4. */
int vae_video_latent_frames (const VaeModel *model, int frames);
/* Frames decoding LATENT_FRAMES gives before any cut: 4 T' - 3. */
int vae_video_decoded_frames (const VaeModel *model, int latent_frames);

G_END_DECLS
