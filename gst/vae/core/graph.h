/* gst-vae: the small graph of ops a model module produces and an engine runs.
 *
 * Values are 4-D NCHW activations identified by an index; value 0 is the
 * graph input.  For video models N is time: one clip's frames, oldest
 * first, folded into the batch, so that every 2-D op (conv, norm,
 * attention, upsampling) runs per frame unchanged, and the few temporal
 * ops below read neighbouring frames along N.  A value's frame count
 * follows from the ops (vae_graph_infer_shapes), as its size does.
 *
 * Streaming (causal video VAEs): a clip goes through a graph chunk by
 * chunk.  What one chunk leaves for the next lives in numbered state
 * slots (VaeGraph.n_states): a CAUSAL_CONV3D op reads the last frames of
 * its input from the previous chunk from its slot (zeros at stream start)
 * and leaves its own input's last frames there.  The slots belong to a
 * stream that the engine keeps (so a GPU engine keeps them on the device);
 * a model's first-chunk and steady-state graphs share slot numbers and
 * weights.  Ops are in execution order and every op writes a new value.
 * The graph knows channel counts; spatial sizes follow from the ops
 * (vae_graph_infer_sizes) once the engine knows the input size.
 * Weights are float32, OIHW, held by a VaeWeightStore that graphs share
 * (a model's store: a video model's first-chunk and steady-state graphs
 * run over the same weights); ops point into it.  Nothing writes them:
 * large filters may lie in a read-only file mapping. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  /* out = act(conv(in) + bias [+ residual]) */
  VAE_OP_CONV2D,
  /* out = act(group_norm(in) * gamma + beta) */
  VAE_OP_GROUP_NORM,
  /* Single-head attention over all positions: q = in, k = in2, v = in3
   * (each [N,C,H,W], C = head dim); out[n,:,p] = softmax_j(q_p . k_j / sqrt(C)) v_j */
  VAE_OP_ATTENTION,
  /* Nearest-neighbour 2x upsampling. */
  VAE_OP_UPSAMPLE2X,
  /* out = scale * tanh(in / scale), TAESD's latent clamp. */
  VAE_OP_TANH_CLAMP,
  /* Causal convolution over time (Wan's CausalConv3d, TAEHV's MemBlock
   * input).  With K = kt - time_stride history frames from state slot
   * STATE, x = [history | in] (K + T frames) and
   *   out[t] = act(bias + sum_{tau < kt} conv2d(x[t * time_stride + tau], W[:, :, tau])
   *                [+ residual[t]])
   * for t < (K + T - kt) / time_stride + 1; the spatial conv is the
   * CONV2D one (kernel, stride, pads).  Afterwards the slot holds the last
   * K frames of x.  TIME_PASSTHROUGH: out = in, and the slot is updated
   * all the same (Wan's downsample3d in the first chunk).
   * Weight [out_channels, in_channels, kt, kernel, kernel]. */
  VAE_OP_CAUSAL_CONV3D,
  /* out = act(in / max(||in||_2, 1e-12) * sqrt(C) * gamma), the norm over
   * channels at each pixel of each frame (Wan's RMS_norm); no bias. */
  VAE_OP_RMS_NORM,
  /* [T, C] -> [T / s, s C]: out frame t, channel j C + c = in frame s t + j,
   * channel c (TAEHV's TPool before its 1x1 conv).  FACTOR = s. */
  VAE_OP_FRAMES_TO_CHANNELS,
  /* [T, s C] -> [s T, C]: out frame s t + j, channel c = in frame t,
   * channel j C + c (TAEHV's TGrow, Wan's upsample3d after its time conv). */
  VAE_OP_CHANNELS_TO_FRAMES,
  /* Space to channels by p = FACTOR: out[c p^2 + a p + b][y][x] =
   * in[c][p y + dy][p x + dx] with (a, b) = (dy, dx) (pixel_unshuffle;
   * TAEHV), or (dx, dy) when COLUMN_MAJOR (Wan 2.2's patchify). */
  VAE_OP_SPACE_TO_CHANNELS,
  /* The inverse of SPACE_TO_CHANNELS (same FACTOR and COLUMN_MAJOR). */
  VAE_OP_CHANNELS_TO_SPACE,
  /* Wan 2.2's AvgDown3D(Cin, Cout, ft = TIME_FACTOR, fs = FACTOR): the
   * frames front-padded with zeros to a multiple of ft (per chunk, as
   * diffusers does: right for Wan's chunks, 1 frame then multiples of 4); at each output
   * position v[c F + it fs^2 + ih fs + iw] = in[c][ft t + it][fs y + ih][fs x + iw]
   * (F = ft fs^2), and out[o] = mean of v[o g .. o g + g - 1], g = Cin F / Cout. */
  VAE_OP_AVG_DOWN3D,
  /* Wan 2.2's DupUp3D(Cin, Cout, ft, fs): out[o][ft t + it][fs y + ih][fs x + iw]
   * = in[(o F + it fs^2 + ih fs + iw) / r][t][y][x], r = Cout F / Cin; with
   * DROP_FIRST the first ft - 1 output frames are left out (the stream's
   * first chunk). */
  VAE_OP_DUP_UP3D,
  /* out = in + in2 (same shape). */
  VAE_OP_ADD,
  /* A new kind goes above this line, and VAE_OP_COUNT follows it.  Every
   * switch over VaeOpKind lists the kinds without a default (-Wswitch
   * turns a forgotten one into a build error); tests/ops has a case for
   * each kind. */
} VaeOpKind;

/* Number of op kinds: arrays indexed by kind (profiles, names). */
#define VAE_OP_COUNT ((int) VAE_OP_ADD + 1)

/* The video kinds, for the switches of an engine that refuses temporal
 * graphs as a whole (vae_graph_is_temporal) before it plans one: those
 * cases are unreachable there, and every other engine lists them one by
 * one. */
#define VAE_OP_CASES_VIDEO                                                    \
  case VAE_OP_CAUSAL_CONV3D: case VAE_OP_RMS_NORM:                            \
  case VAE_OP_FRAMES_TO_CHANNELS: case VAE_OP_CHANNELS_TO_FRAMES:             \
  case VAE_OP_SPACE_TO_CHANNELS: case VAE_OP_CHANNELS_TO_SPACE:               \
  case VAE_OP_AVG_DOWN3D: case VAE_OP_DUP_UP3D: case VAE_OP_ADD

/* "conv2d", "group_norm", ... for logs and profiles. */
const char *vae_op_kind_name (VaeOpKind kind);

typedef enum {
  VAE_ACT_NONE,
  VAE_ACT_RELU,
  VAE_ACT_SILU,
} VaeActivation;

typedef struct {
  VaeOpKind kind;
  char *name;              /* the layer's name, for logs and errors */
  int in, in2, in3;        /* value ids; -1 when unused */
  int residual;            /* CONV2D: value added before act, or -1 */
  int out;                 /* the value this op writes */
  VaeActivation act;

  /* CONV2D: weight [out_channels, in_channels, kernel, kernel] */
  int in_channels, out_channels, kernel, stride;
  int pad_top, pad_left, pad_bottom, pad_right;
  float *weight;           /* the store's (maybe mapped: read, never write) */
  float *bias;             /* the store's, NULL when the conv has none */

  /* GROUP_NORM: channels = in_channels */
  int groups;
  float eps;
  float *gamma, *beta;     /* the store's */

  /* TANH_CLAMP */
  float clamp;

  /* CAUSAL_CONV3D (plus the CONV2D fields above for the spatial part) */
  int kt, time_stride;
  int state;               /* state slot, -1 when K = 0 */
  gboolean time_passthrough;

  /* FRAMES_TO_CHANNELS, CHANNELS_TO_FRAMES, SPACE_TO_CHANNELS,
   * CHANNELS_TO_SPACE, AVG_DOWN3D, DUP_UP3D: the (spatial) factor */
  int factor;
  int time_factor;         /* AVG_DOWN3D, DUP_UP3D */
  gboolean column_major;   /* SPACE_TO_CHANNELS, CHANNELS_TO_SPACE */
  gboolean drop_first;     /* DUP_UP3D */
} VaeOp;

/* History frames a CAUSAL_CONV3D keeps in its slot. */
static inline int
vae_op_history_frames (const VaeOp *op)
{
  return op->kt - op->time_stride;
}

typedef struct {
  int channels;
} VaeValue;

/* The float32 arrays graphs point at, refcounted: every graph holds a
 * reference to its store, so weights live as long as any graph over them
 * (and the model, which holds one too).  Engines key what they derive from
 * a weight (an upload, a reorder) by its pointer, so that a weight two
 * graphs share is prepared once per engine.
 *
 * Originals and prepared copies (issue 11): an engine runs its own copy
 * of each convolution filter (reordered, uploaded), so once it has made
 * it the float32 original is dead weight, as large as the model, until a
 * later plan (another frame size or chunk length, another stream or
 * engine) prepares a layout it has not made yet and reads it again.  So
 * a filter stored as float32 in a file is not copied: it is served from
 * the file's private read-only mapping (vae_weight_store_add_mapped), and
 * after an engine prepared it (vae_weight_store_release, which the
 * engines' weight caches call) its pages are dropped with MADV_DONTNEED.
 * A later read faults them in again from the file, unchanged, since the
 * pages were never written: the pointer stays valid and right for every
 * reader, and nothing has to know whether it was released.  This is
 * simpler and safer than freeing heap copies and converting them again
 * on demand, which would need every reader of op->weight to ask for it
 * and a way to know when none is reading it.  Weights that had to be
 * converted (F16, BF16, F64 files, big-endian hosts, unaligned tensors)
 * stay on the heap, and so do the small arrays engines read while running
 * (biases, norm gammas and betas), which are not registered as mapped.
 * The price: a model file rewritten in place while a model over it is
 * loaded changes the weights it reads again (vae_safetensors_ref_file_mapping). */
typedef struct _VaeWeightStore VaeWeightStore;
VaeWeightStore *vae_weight_store_new (void);
VaeWeightStore *vae_weight_store_ref (VaeWeightStore *w);
void vae_weight_store_unref (VaeWeightStore *w);
/* Takes over DATA (a g_malloc'd array; NULL is ignored) unless the store
 * already owns or maps it; returns DATA. */
float *vae_weight_store_adopt (VaeWeightStore *w, float *data);
/* Registers DATA, N_BYTES inside MAPPING (a file's private mapping from
 * vae_safetensors_ref_file_mapping; the store keeps a reference), as an
 * array of the store that it never frees and nothing writes; returns
 * DATA.  Registering it again does nothing. */
float *vae_weight_store_add_mapped (VaeWeightStore *w, GBytes *mapping, const float *data,
                                    gsize n_bytes);
/* Splits WHOLE, an array of the store of N_PARTS * PART floats that no
 * graph uses yet, into the arrays PARTS[i] = its PART floats from i * PART
 * on, which replace it: in place when WHOLE is mapped, else copies (and
 * WHOLE is freed).  For a fused projection run as separate convolutions. */
void vae_weight_store_split (VaeWeightStore *w, float *whole, guint n_parts, gsize part,
                             float **parts);
/* An engine has prepared its own copy of DATA: when DATA is a mapped
 * array, the pages it alone covers are given back to the kernel
 * (vae_safetensors_mapping_release), to be read again from the file if
 * DATA is read again; anything else (heap arrays, NULL) is left alone.
 * Returns the bytes given back.  Safe from any thread: the store does not
 * change once its graphs are built. */
gsize vae_weight_store_release (VaeWeightStore *w, const float *data);
/* Number of arrays the store holds (owned or mapped). */
guint vae_weight_store_count (const VaeWeightStore *w);
/* Bytes of the mapped arrays; bytes given back so far (a page given back,
 * read again and given back again counts twice). */
guint64 vae_weight_store_mapped_bytes (const VaeWeightStore *w);
guint64 vae_weight_store_released_bytes (const VaeWeightStore *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VaeWeightStore, vae_weight_store_unref)

typedef struct {
  GArray *ops;             /* VaeOp */
  GArray *values;          /* VaeValue */
  int output;              /* value id of the result */
  VaeWeightStore *weights;     /* a reference: the store the ops point into */
  /* State slots its CAUSAL_CONV3D ops use (0..n_states-1); a first-chunk
   * graph and its steady-state graph have the same count and use a slot
   * for inputs of the same channels and size.  A first-chunk graph may
   * leave a slot alone (Wan's upsample3d skips its time conv, and its slot
   * stays zero), so streams size their slots from every graph they run
   * (the builder sets n_states on both). */
  int n_states;
} VaeGraph;

/* A graph with a store of its own. */
VaeGraph *vae_graph_new (int input_channels);
/* A graph whose weights go to (and may come from) WEIGHTS, shared. */
VaeGraph *vae_graph_new_shared (int input_channels, VaeWeightStore *weights);
void vae_graph_free (VaeGraph *g);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VaeGraph, vae_graph_free)

static inline const VaeOp *
vae_graph_op (const VaeGraph *g, guint i)
{
  return &g_array_index (g->ops, VaeOp, i);
}

static inline int
vae_graph_channels (const VaeGraph *g, int value)
{
  return g_array_index (g->values, VaeValue, value).channels;
}

/* Builders; each returns the new value id.  Weight/bias/gamma/beta pointers
 * (g_malloc'd float arrays) are taken over by the graph's store, or are
 * arrays it already owns (a weight shared with another graph). */
int vae_graph_conv (VaeGraph *g, const char *name, int in, int out_channels,
                    int kernel, int stride, int pad_top, int pad_left,
                    int pad_bottom, int pad_right, float *weight, float *bias,
                    int residual, VaeActivation act);
int vae_graph_group_norm (VaeGraph *g, const char *name, int in, int groups,
                          float eps, float *gamma, float *beta, VaeActivation act);
int vae_graph_attention (VaeGraph *g, const char *name, int q, int k, int v);
int vae_graph_upsample2x (VaeGraph *g, const char *name, int in);
int vae_graph_tanh_clamp (VaeGraph *g, const char *name, int in, float clamp);

/* Video ops.  STATE: the slot (see VaeGraph.n_states; slots are numbered
 * by the model so that its graphs agree), -1 for kt = time_stride.
 * WEIGHT [out_channels, C, kt, kernel, kernel]. */
int vae_graph_causal_conv3d (VaeGraph *g, const char *name, int in, int out_channels,
                             int kt, int time_stride, int kernel, int pad,
                             float *weight, float *bias, int state, int residual,
                             VaeActivation act);
/* CAUSAL_CONV3D with time_passthrough: a value equal to IN, STATE updated. */
int vae_graph_time_passthrough (VaeGraph *g, const char *name, int in, int kt,
                                int time_stride, int state);
int vae_graph_rms_norm (VaeGraph *g, const char *name, int in, float *gamma,
                        VaeActivation act);
int vae_graph_frames_to_channels (VaeGraph *g, const char *name, int in, int s);
int vae_graph_channels_to_frames (VaeGraph *g, const char *name, int in, int s);
int vae_graph_space_to_channels (VaeGraph *g, const char *name, int in, int p,
                                 gboolean column_major);
int vae_graph_channels_to_space (VaeGraph *g, const char *name, int in, int p,
                                 gboolean column_major);
int vae_graph_avg_down3d (VaeGraph *g, const char *name, int in, int out_channels,
                          int ft, int fs);
int vae_graph_dup_up3d (VaeGraph *g, const char *name, int in, int out_channels,
                        int ft, int fs, gboolean drop_first);
int vae_graph_add (VaeGraph *g, const char *name, int a, int b);

/* Spatial size of every value for an input of IN_H x IN_W (arrays of
 * n_values ints, allocated by the caller). */
void vae_graph_infer_sizes (const VaeGraph *g, int in_h, int in_w, int *h, int *w);
/* Frame count (N), height and width of every value for an input of
 * IN_T x IN_H x IN_W (T, H or W may be NULL).  FALSE when IN_T does not fit
 * the graph (a FRAMES_TO_CHANNELS over a frame count it does not divide, a
 * time conv left with no frame, an ADD over different shapes). */
gboolean vae_graph_infer_shapes (const VaeGraph *g, int in_t, int in_h, int in_w,
                                 int *t, int *h, int *w);
/* TRUE when the graph has any video op kind (a video model's): engines
 * that take only image graphs refuse it. */
gboolean vae_graph_is_temporal (const VaeGraph *g);

/* Multiply-accumulates for one frame of IN_H x IN_W (benchmarks, info). */
double vae_graph_macs (const VaeGraph *g, int in_h, int in_w);
/* ... for a chunk of IN_T frames (taps over history or zeros included, as
 * the MAC counts of docs/video-architectures.md); 0 when IN_T does not fit. */
double vae_graph_macs_t (const VaeGraph *g, int in_t, int in_h, int in_w);
/* Number of weight and bias elements. */
guint64 vae_graph_n_params (const VaeGraph *g);

G_END_DECLS
