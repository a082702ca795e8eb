#include "video-coder.h"
#include "vae-error.h"
#include <string.h>

struct _VaeVideoCoder {
  VaeStream *stream;
  const VaeModel *model;
  VaeVideoFrameFunc func;
  gpointer user_data;
  int in_c, h, w;
  gsize frame_floats;          /* one input frame */
  float *chunk;                /* the chunk being gathered, room for the largest */
  int chunk_cap, queued;
  int last;                    /* slot of the last frame pushed, -1: none */
  float *out;                  /* one chunk's output */
  gsize out_cap;
  int frames_in, frames_out, emitted_raw, limit;
};

int
vae_video_latent_frames (const VaeModel *m, int frames)
{
  if (frames <= 0)
    return 0;
  int first = m->encode_first_frames, chunk = m->encode_chunk_frames, tf = m->temporal_factor;
  int t = frames <= first ? 1 : 1 + (frames - first + chunk - 1) / chunk;
  /* Enough latents to decode every input frame again (4 t - 3 >= frames):
   * TAEHV's first latent decodes to one frame, so 7 frames take 3 latents
   * (the third made of copies of the last frame), not taehv.py's 2. */
  int need = (frames + 2 * tf - 2) / MAX (tf, 1);
  return MAX (t, need);
}

int
vae_video_decoded_frames (const VaeModel *m, int latent_frames)
{
  return latent_frames <= 0 ? 0 : m->temporal_factor * latent_frames - (m->temporal_factor - 1);
}

VaeVideoCoder *
vae_video_coder_new (VaeEngine *engine, VaeDirection direction, int h, int w,
                     VaeVideoFrameFunc func, gpointer user_data, GError **error)
{
  VaeStream *stream = vae_stream_new (engine, direction, h, w, error);
  if (!stream)
    return NULL;
  VaeVideoCoder *vc = g_new0 (VaeVideoCoder, 1);
  vc->stream = stream;
  vc->model = engine->model;
  vc->func = func;
  vc->user_data = user_data;
  vc->h = h;
  vc->w = w;
  vc->limit = -1;
  vc->last = -1;
  const VaeGraph *g = vae_stream_graph (stream);
  vc->in_c = vae_graph_channels (g, 0);
  vc->frame_floats = (gsize) vc->in_c * h * w;
  vc->chunk_cap = direction == VAE_DIRECTION_ENCODE
      ? MAX (vc->model->encode_first_frames, vc->model->encode_chunk_frames) : 1;
  vc->chunk = vae_try_alloc (vc->frame_floats * vc->chunk_cap, sizeof (float),
                             "a video chunk", error);
  if (!vc->chunk) {
    vae_video_coder_free (vc);
    return NULL;
  }
  return vc;
}

static gboolean
run_chunk (VaeVideoCoder *vc, GError **error)
{
  int c, oh, ow;
  int ot = vae_stream_output_shape (vc->stream, vc->queued, &c, &oh, &ow);
  if (ot < 0)
    return vae_stream_run (vc->stream, vc->chunk, vc->queued, NULL, error);  /* says why */
  gsize need = (gsize) ot * c * oh * ow;
  if (need > vc->out_cap) {
    g_free (vc->out);
    vc->out = vae_try_alloc (need, sizeof (float), "a video chunk's output", error);
    vc->out_cap = vc->out ? need : 0;
    if (!vc->out)
      return FALSE;
  }
  if (!vae_stream_run (vc->stream, vc->chunk, vc->queued, vc->out, error))
    return FALSE;
  vc->queued = 0;
  const gsize frame = (gsize) c * oh * ow;
  for (int i = 0; i < ot; i++) {
    int raw = vc->emitted_raw++;
    if (vc->stream->direction == VAE_DIRECTION_DECODE && raw < vc->model->decode_drop_frames)
      continue;   /* before the clip's first frame */
    if (vc->limit >= 0 && vc->frames_out >= vc->limit)
      continue;   /* the padding of the clip's last group */
    if (!vc->func (vc->out + i * frame, vc->frames_out, c, oh, ow, vc->user_data, error))
      return FALSE;
    vc->frames_out++;
  }
  return TRUE;
}

gboolean
vae_video_coder_push (VaeVideoCoder *vc, const float *frame, GError **error)
{
  memcpy (vc->chunk + vc->queued * vc->frame_floats, frame, vc->frame_floats * sizeof (float));
  vc->last = vc->queued;
  vc->queued++;
  vc->frames_in++;
  if (vc->queued < vae_stream_chunk_frames (vc->stream))
    return TRUE;
  return run_chunk (vc, error);
}

/* Completes the chunk being gathered with copies of the last frame pushed
 * (still in its slot of the chunk buffer after the chunk ran). */
static void
pad_chunk (VaeVideoCoder *vc, int want)
{
  if (vc->queued == 0 && vc->last > 0) {
    memmove (vc->chunk, vc->chunk + (gsize) vc->last * vc->frame_floats,
             vc->frame_floats * sizeof (float));
    vc->last = 0;
  }
  if (vc->queued == 0)
    vc->queued = 1;   /* slot 0 holds the last frame */
  while (vc->queued < want) {
    memcpy (vc->chunk + vc->queued * vc->frame_floats,
            vc->chunk + (gsize) vc->last * vc->frame_floats, vc->frame_floats * sizeof (float));
    vc->queued++;
  }
}

gboolean
vae_video_coder_finish (VaeVideoCoder *vc, GError **error)
{
  gboolean ok = TRUE;
  if (vc->queued > 0) {
    /* Complete the group with copies of its last frame. */
    pad_chunk (vc, vae_stream_chunk_frames (vc->stream));
    ok = run_chunk (vc, error);
  }
  /* Encode: a clip whose frames the latents so far do not decode back in
   * full (TAEHV: 7 frames give 2 latents, which decode to 5) takes more
   * chunks of copies of its last frame, so that no input frame is lost. */
  while (ok && vc->stream->direction == VAE_DIRECTION_ENCODE && vc->last >= 0
         && vae_video_decoded_frames (vc->model, vc->frames_out) < vc->frames_in) {
    int before = vc->frames_out;
    pad_chunk (vc, vae_stream_chunk_frames (vc->stream));
    ok = run_chunk (vc, error);
    if (ok && vc->frames_out == before) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_ENGINE,
                   "a padding chunk gave no latent frame");
      ok = FALSE;
    }
  }
  vae_stream_reset (vc->stream);
  vc->queued = 0;
  vc->last = -1;
  vc->frames_in = vc->frames_out = vc->emitted_raw = 0;
  vc->limit = -1;
  return ok;
}

void
vae_video_coder_set_output_limit (VaeVideoCoder *vc, int limit)
{
  vc->limit = limit;
}

int
vae_video_coder_frames_in (const VaeVideoCoder *vc)
{
  return vc->frames_in;
}

int
vae_video_coder_frames_out (const VaeVideoCoder *vc)
{
  return vc->frames_out;
}

void
vae_video_coder_free (VaeVideoCoder *vc)
{
  if (!vc)
    return;
  vae_stream_free (vc->stream);
  g_free (vc->chunk);
  g_free (vc->out);
  g_free (vc);
}
