/* gst-vae: the interface every engine implements (cpu, cuda, remote).
 *
 * An engine is opened with a model and options, takes batches
 * asynchronously (submit) and hands them back in submission order (wait).
 * Engines see only VaeModel's graphs and factors, never layer names.
 * A synchronous engine may run the batch inside submit. */
#pragma once
#include <glib.h>
#include "model.h"

G_BEGIN_DECLS

typedef enum {
  VAE_DIRECTION_ENCODE,   /* pixels (model range) -> encoder output */
  VAE_DIRECTION_DECODE,   /* unscaled latents -> pixels (model range) */
} VaeDirection;

typedef enum {
  VAE_PRECISION_F32,
  VAE_PRECISION_BF16,
  VAE_PRECISION_F16,
  /* The engine's own default: float32 on the CPU, float16 on the GPU. */
  VAE_PRECISION_AUTO,
} VaePrecision;

/* What every engine is opened with.  What only one engine understands is
 * not a field here but one of its settings: "key=value" strings that the
 * engine declares (VaeEngineVTable.settings) and reads at open, so that a
 * new engine adds keys, not fields that every caller must know. */
typedef struct {
  int threads;              /* 0: the engine's default */
  VaePrecision precision;   /* engines refuse what they cannot do */
  int device_id;            /* GPU engines */
  int max_inflight;         /* batches the caller keeps in flight; 0: unknown.
                             * The remote engine allows at least this many
                             * requests at once. */
  /* The engine's own settings: "key=value" strings, NULL-terminated (NULL:
   * none); for a key given twice the last one counts.  vae_engine_new
   * refuses a key the engine does not declare, naming the key and the
   * engine; the engine parses and checks the values at open.  They are
   * read at open only and not kept past it (a token among them never
   * outlives the caller's copy).  docs/engine-settings.md lists them. */
  const char *const *settings;
} VaeEngineOptions;

#define VAE_ENGINE_OPTIONS_INIT { 0, VAE_PRECISION_AUTO, 0, 0, NULL }

/* One setting an engine takes. */
typedef struct {
  const char *key;
  const char *help;         /* values and default, for people */
} VaeEngineSetting;

/* One batch of frames.  Both buffers are NCHW float32 and owned by the
 * caller, which keeps them alive until the batch comes back from wait.
 * Encode: input [n, image_channels, h, w] (h, w multiples of the spatial
 * factor), output [n, encoder channels, h/f, w/f].  Decode: input
 * [n, latent, h, w], output [n, image_channels, h*f, w*f]. */
typedef struct {
  VaeDirection direction;
  int n, h, w;
  const float *input;
  float *output;
  gpointer user_data;
  GError *error;            /* set by the engine when this batch failed */
} VaeBatch;

typedef struct _VaeEngine VaeEngine;
typedef struct _VaeStream VaeStream;

/* What an engine can say about itself (benchmarks, vae-tool bench). */
typedef struct {
  guint64 device_bytes_peak;  /* most device memory the engine held at once
                                 (weights, activations, workspaces); 0: n/a */
  double last_device_ms;      /* device time of the last batch, without the
                                 host<->device copies; < 0: n/a */
  guint64 weights_prepared;   /* convolution weights prepared (reordered,
                                 uploaded) since the engine opened: once per
                                 weight and layout, however many plans and
                                 graphs use it (weight-cache.h); 0: n/a */
} VaeEngineStats;

typedef struct {
  const char *name;
  gsize instance_size;      /* >= sizeof (VaeEngine) */
  gboolean (*open) (VaeEngine *engine, GError **error);
  /* Takes the batch (not its ownership); FALSE when it cannot be queued. */
  gboolean (*submit) (VaeEngine *engine, VaeBatch *batch, GError **error);
  /* Blocks for the oldest submitted batch; NULL when none is pending. */
  VaeBatch *(*wait) (VaeEngine *engine);
  /* Frames per batch the engine runs best with. */
  int (*preferred_batch) (VaeEngine *engine);
  void (*close) (VaeEngine *engine);
  /* Optional (NULL: nothing to say). */
  void (*stats) (VaeEngine *engine, VaeEngineStats *stats);
  /* TRUE for engines that never run the graphs (remote): they take
   * config_only models (presets). */
  gboolean takes_config_only;
  /* Optional: can the engine run on this machine?  Returns its rank for
   * backend "auto" (the usable engine with the highest rank > 0 is chosen),
   * 0 when it is usable but only when asked for by name (remote: it needs an
   * endpoint), or -1 with ERROR set saying why not ("no CUDA device").
   * Called once per process.  NULL: usable, rank 0. */
  int (*probe) (GError **error);

  /* Video models (causal, streamed; see VaeStream below).  Optional: an
   * engine without them refuses video models.  stream_open sets
   * stream->priv (the state slots, kept where the engine computes: host
   * memory for cpu, device memory for a GPU engine) for graphs at the
   * stream's input size; stream_run runs GRAPH (the model's first-chunk or
   * steady graph, chosen by the core) over IN [t, C, h, w] into OUT (sized
   * by vae_graph_infer_shapes), reading and updating the slots, with
   * AT_START telling that they are still zero (taps over them may be
   * skipped); stream_reset zeroes them; stream_close frees priv. */
  gboolean (*stream_open) (VaeEngine *engine, VaeStream *stream, GError **error);
  gboolean (*stream_run) (VaeEngine *engine, VaeStream *stream,
                          const VaeGraph *graph, gboolean at_start, const float *in,
                          int t, float *out, GError **error);
  void (*stream_reset) (VaeEngine *engine, VaeStream *stream);
  void (*stream_close) (VaeEngine *engine, VaeStream *stream);
  /* Optional: frames of H x W (engine input: pixels for encode, latents for
   * decode) per batch the engine runs best with, for callers whose frames
   * are not the sizes preferred_batch is meant for (the tiler's tiles).
   * NULL: preferred_batch, whatever the size. */
  int (*batch_for_size) (VaeEngine *engine, VaeDirection direction, int h, int w);
  /* The settings the engine takes (VaeEngineOptions.settings), ended by a
   * { NULL } entry; NULL: none. */
  const VaeEngineSetting *settings;
} VaeEngineVTable;

/* Ranks for probe: what "auto" prefers. */
#define VAE_ENGINE_RANK_CPU 10
#define VAE_ENGINE_RANK_GPU 100

/* Engines with heavy dependencies (cuda, remote) are modules: shared objects
 * named libvae-engine-NAME.so that the core opens (GModule) the first time
 * NAME is asked for.  A module exports one function, VAE_ENGINE_MODULE_SYMBOL,
 * which returns its vtable when ABI_VERSION is the one it was built for and
 * NULL otherwise (gst/vae/core/engine-module.c is that function for any
 * engine).  Modules are looked for in $VAE_ENGINE_PATH (folders, ':'
 * between them), beside the core library (the build tree), in
 * gst-vae/engines beside it and in the install's <libdir>/gst-vae/engines;
 * the first file found is the one used. */
/* 3: VaeEngineVTable.batch_for_size and .settings, VaeEngineStats.weights_prepared,
 * VaeEngineOptions.settings. */
/* 4: the stream functions of VaeEngineVTable (video models). */
#define VAE_ENGINE_ABI_VERSION 4u
#define VAE_ENGINE_MODULE_SYMBOL "vae_engine_module_get"
typedef const VaeEngineVTable *(*VaeEngineModuleGetFunc) (guint abi_version);

struct _VaeEngine {
  const VaeEngineVTable *vt;
  const VaeModel *model;    /* borrowed: outlives the engine */
  VaeEngineOptions options;   /* settings: only while open runs */
};

/* Names of the engines this build has (built in or as modules, whether or
 * not they can run here), NULL-terminated. */
const char *const *vae_engine_backends (void);

/* What the core knows of one engine of this build.  The strings belong to
 * the core and live until the process ends. */
typedef struct {
  const char *name;
  gboolean builtin;         /* linked into the core (cpu) */
  const char *module;       /* the module file opened or tried; NULL: built
                             * in, or no module file found */
  gboolean usable;          /* it can run here */
  int rank;                 /* for "auto" (see probe); -1 when not usable */
  const char *reason;       /* why not usable (the loader's message for a
                             * module that cannot be opened, naming the
                             * library that is missing; "no CUDA device"),
                             * NULL when usable */
  const VaeEngineSetting *settings;   /* what it takes; NULL: none or not
                                       * known (its module did not open) */
} VaeEngineInfo;

/* Fills INFO for BACKEND, opening its module and probing it the first time
 * (once per process).  FALSE when this build has no engine BACKEND. */
gboolean vae_engine_backend_info (const char *backend, VaeEngineInfo *info);
/* TRUE when BACKEND is in this build and can run here; else FALSE with
 * ERROR saying why (not built, its module cannot be opened, no GPU). */
gboolean vae_engine_backend_check (const char *backend, GError **error);
/* TRUE when BACKEND is in this build and can run here (cuda: its module and
 * libraries load and a GPU is present). */
gboolean vae_engine_backend_usable (const char *backend);
/* The engine "auto" stands for here: the usable one of the highest rank
 * (cuda with a GPU, else cpu); NULL with ERROR set when none is usable. */
const char *vae_engine_backend_auto (GError **error);
/* BACKEND: "cpu", "cuda", "remote" or "auto" (see vae_engine_backend_auto). */
VaeEngine *vae_engine_new (const char *backend, const VaeModel *model,
                           const VaeEngineOptions *options, GError **error);
void vae_engine_free (VaeEngine *engine);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VaeEngine, vae_engine_free)

const char *vae_engine_name (const VaeEngine *engine);
gboolean vae_engine_submit (VaeEngine *engine, VaeBatch *batch, GError **error);
VaeBatch *vae_engine_wait (VaeEngine *engine);
int vae_engine_preferred_batch (VaeEngine *engine);
/* Frames of H x W (engine input) per batch the engine runs best with (see
 * VaeEngineVTable.batch_for_size); at least 1. */
int vae_engine_batch_for_size (VaeEngine *engine, VaeDirection direction, int h, int w);
/* Fills STATS (zero / -1 where the engine has nothing to say). */
void vae_engine_stats (VaeEngine *engine, VaeEngineStats *stats);
/* submit + wait, with the batch's error moved to ERROR. */
gboolean vae_engine_run (VaeEngine *engine, VaeBatch *batch, GError **error);

/* ---- streams: video models ----
 * A video model (VaeModel.temporal_factor > 1) runs as a stream of chunks
 * per (direction, frame size): what a chunk leaves for the next (the causal
 * convolutions' last input frames) stays in the stream, so memory depends
 * on the frame size, never on the clip's length.  A caller may run several
 * streams at once (one per element, one per tile); one stream is used by
 * one thread at a time.  Chunk sizes follow the model
 * (vae_stream_chunk_frames); gst/vae/core/video-stream.h feeds a stream
 * frame by frame. */
struct _VaeStream {
  VaeEngine *engine;           /* borrowed: outlives the stream */
  VaeDirection direction;
  int h, w;                    /* the graph input's frame size */
  gboolean started;            /* a chunk has run since open or reset */
  gpointer priv;               /* the engine's */
};

/* A stream over ENGINE's video model for inputs of H x W (encode: pixels,
 * multiples of the spatial factor; decode: latents). */
VaeStream *vae_stream_new (VaeEngine *engine, VaeDirection direction, int h, int w,
                           GError **error);
/* The graph the next chunk runs: the first-chunk graph at the start. */
const VaeGraph *vae_stream_graph (const VaeStream *stream);
/* Frames the next chunk must have (encode: Wan 1 then 4, TAEHV 4; decode: 1). */
int vae_stream_chunk_frames (const VaeStream *stream);
/* Output frames (and channels, size) of the next chunk for T input frames;
 * -1 when T does not fit the graph. */
int vae_stream_output_shape (const VaeStream *stream, int t, int *c, int *h, int *w);
/* Runs one chunk: IN [t, C, h, w] (frame-major float32), OUT sized by
 * vae_stream_output_shape.  On failure the stream must be reset. */
gboolean vae_stream_run (VaeStream *stream, const float *in, int t, float *out,
                         GError **error);
/* Back to the start of a clip (zero state). */
void vae_stream_reset (VaeStream *stream);
void vae_stream_free (VaeStream *stream);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VaeStream, vae_stream_free)
/* ---- settings (VaeEngineOptions.settings) ---- */

/* For an engine's open: the value of KEY among its settings (the last one
 * given), NULL when absent. */
const char *vae_engine_setting (const VaeEngine *engine, const char *key);
/* KEY as an integer in LO..HI into *VALUE; TRUE and *VALUE untouched when
 * absent; FALSE with ERROR naming the engine, the key and the range when
 * it is not one. */
gboolean vae_engine_setting_int (const VaeEngine *engine, const char *key, int lo, int hi,
                                 int *value, GError **error);
/* KEY as one of CHOICES (NULL-terminated; any case) into *INDEX; as
 * vae_engine_setting_int otherwise. */
gboolean vae_engine_setting_choice (const VaeEngine *engine, const char *key,
                                    const char *const *choices, int *index, GError **error);
/* "key=value,key=value" (the elements' engine-options, vae-tool's and
 * vae-server's --engine-option take one each) as settings; "\," is a comma
 * and "\\" a backslash inside a value, spaces around keys are dropped.
 * NULL with ERROR for an entry without "=" or with an empty key; an empty
 * TEXT gives an empty list. */
char **vae_engine_settings_parse (const char *text, GError **error);

/* Channels of a direction's output (encode: the encoder's, moments
 * included; decode: the image's), for callers sizing output buffers. */
int vae_engine_output_channels (const VaeModel *model, VaeDirection direction);

G_END_DECLS
