/* vae-tool: encode PNGs to latents, decode latents to PNGs, benchmark and
 * inspect VAE models, on the gst-vae core and its engines.
 *
 *   vae-tool encode --model PATH --input IMG.png --output Z.safetensors
 *   vae-tool decode --model PATH --input Z.safetensors --output OUT.png
 *   vae-tool bench  --model PATH --op encode|decode --width W --height H
 *   vae-tool info   --model PATH
 *   vae-tool backends   (the engines of this build, usable here or not, and why)
 *
 * Errors end the program with exit status 1 and one line on stderr,
 * "vae-tool: <message>". */
#include <glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "engine.h"
#include "graph.h"
#include "model.h"
#include "latent-file.h"
#include "tiling.h"
#include "vae-error.h"
#include "png-io.h"
#include "vae-tool-video.h"

#define BENCH_SEED 20240601u
/* Largest decoded frame side: what the PNG writer/reader round trip allows. */
#define MAX_IMAGE_SIDE VAE_PNG_MAX_SIDE

/* ---- options shared by the subcommands ---- */

typedef struct {
  char *model;
  char *input;
  char *output;
  char *backend;
  int threads;
  char *precision;
  char **settings;            /* --engine-option KEY=VALUE, repeated */
  int tile, overlap;          /* --tile-size, --tile-overlap (pixels) */
  int norm_groups;            /* --norm-groups (0: the model's) */
  char *latent_format;        /* --latent-format normalized|raw (NULL: normalized) */
  /* bench */
  char *op;
  int width, height, batch, runs;
  int frames;                 /* bench: clip length (video models) */
  /* The image size being run, once known: named by out-of-memory errors. */
  int frame_w, frame_h;
} ToolOptions;

static void
tool_options_clear (ToolOptions *o)
{
  g_free (o->model);
  g_free (o->input);
  g_free (o->output);
  g_free (o->backend);
  g_free (o->precision);
  g_strfreev (o->settings);
  g_free (o->op);
  g_free (o->latent_format);
}

/* --latent-format as VaeLatentFormat (NULL: the default, normalized). */
static gboolean
latent_format_of (const ToolOptions *o, VaeLatentFormat *format, GError **error)
{
  *format = VAE_LATENT_FORMAT_NORMALIZED;
  if (!o->latent_format || vae_latent_format_from_name (o->latent_format, format))
    return TRUE;
  g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
               "--latent-format %s: expected normalized or raw", o->latent_format);
  return FALSE;
}

#define ENGINE_ENTRIES(o)                                                     \
  { "backend", 'b', 0, G_OPTION_ARG_STRING, &(o)->backend,                    \
    "Engine: cpu (default), auto, or any other this build has ('vae-tool backends')", "NAME" }, \
  { "threads", 't', 0, G_OPTION_ARG_INT, &(o)->threads,                       \
    "Worker threads (default: the engine's choice)", "N" },                   \
  { "precision", 'p', 0, G_OPTION_ARG_STRING, &(o)->precision,                \
    "Activation precision: auto (default: f32 on cpu, f16 on cuda), f32, bf16 or f16", "auto|f32|bf16|f16" }, \
  { "engine-option", 'O', 0, G_OPTION_ARG_STRING_ARRAY, &(o)->settings,        \
    "A setting of the engine (repeatable), e.g. endpoint=URL for remote; "    \
    "'vae-tool backends' lists them", "KEY=VALUE" }

/* Tiled runs (tiling.h); the options start as TOOL_TILE_DEFAULTS. */
#define TILE_ENTRIES(o)                                                       \
  { "tile-size", 0, 0, G_OPTION_ARG_INT, &(o)->tile,                          \
    "Run frames larger than N pixels (either side) in overlapping N x N "     \
    "tiles, blended (default 0: never)", "N" },                               \
  { "tile-overlap", 0, 0, G_OPTION_ARG_INT, &(o)->overlap,                    \
    "Least overlap of neighbouring tiles in pixels (default 64)", "N" }

/* Model loading: what the files cannot say. */
#define MODEL_ENTRIES(o)                                                      \
  { "norm-groups", 0, 0, G_OPTION_ARG_INT, &(o)->norm_groups,                 \
    "GroupNorm groups of an AutoencoderKL single file (default: 32, as "      \
    "its module tree hard-codes; diffusers folders say it in config.json)", "N" }

#define LATENT_FORMAT_ENTRY(o)                                                \
  { "latent-format", 0, 0, G_OPTION_ARG_STRING, &(o)->latent_format,          \
    "normalized (default: what the model's pipelines use; FLUX.2: 2x2 "       \
    "patches, 128 channels at 16x, BatchNorm statistics) or raw (the "        \
    "network's latents, no scaling)", "normalized|raw" }

#define TOOL_TILE_DEFAULTS .tile = 0, .overlap = VAE_TILE_OVERLAP_DEFAULT

/* The tile options against MODEL, before anything runs. */
static gboolean
check_tiles (const ToolOptions *o, const VaeModel *model, const char *command,
             GError **error)
{
  if (vae_tiling_check (model, o->tile, o->overlap, error))
    return TRUE;
  g_prefix_error (error, "%s: --tile-size/--tile-overlap: ", command);
  return FALSE;
}

/* A frame too large for memory (VAE_ERROR_NO_MEMORY): the message names
 * the image size and what helps, since the engine's own message only names
 * the buffer that did not fit. */
static void
add_memory_hint (GError **error, const ToolOptions *o)
{
  if (!error || !g_error_matches (*error, VAE_ERROR, VAE_ERROR_NO_MEMORY) || o->frame_w < 1)
    return;
  const int side = MAX (o->frame_w, o->frame_h);
  g_autofree char *hint = NULL;
  if (o->tile > 0 && o->tile < side)
    hint = g_strdup_printf ("; try a smaller --tile-size than %d", o->tile);
  else if (side > 512)
    hint = g_strdup ("; --tile-size 512 runs them in tiles");
  char *msg = g_strdup_printf ("%dx%d frames: %s%s", o->frame_w, o->frame_h,
                               (*error)->message, hint ? hint : "");
  g_free ((*error)->message);
  (*error)->message = msg;
}

/* One line: GError messages are printed as they are, minus line breaks. */
static void
print_error_line (const char *message)
{
  g_autofree char *line = g_strdup (message ? message : "unknown error");
  for (char *p = line; *p; p++)
    if (*p == '\n' || *p == '\r')
      *p = ' ';
  g_strchomp (line);
  g_printerr ("vae-tool: %s\n", line);
}

static gboolean
parse_args (GOptionContext *ctx, const char *command, int *argc, char ***argv,
            GError **error)
{
  g_autoptr (GError) perr = NULL;
  if (!g_option_context_parse (ctx, argc, argv, &perr)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "%s: %s (see 'vae-tool %s --help')", command, perr->message, command);
    return FALSE;
  }
  if (*argc > 1) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "%s: unexpected argument '%s' (see 'vae-tool %s --help')", command,
                 (*argv)[1], command);
    return FALSE;
  }
  return TRUE;
}

static gboolean
require (const char *value, const char *command, const char *option, GError **error)
{
  if (value && *value)
    return TRUE;
  g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
               "%s: --%s is required (see 'vae-tool %s --help')", command, option,
               command);
  return FALSE;
}

static gboolean
engine_options_from (const ToolOptions *o, VaeEngineOptions *eo, GError **error)
{
  VaeEngineOptions defaults = VAE_ENGINE_OPTIONS_INIT;
  *eo = defaults;
  if (o->threads < 0 || o->threads > 4096) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "--threads %d is out of range (0 to 4096; 0 = engine default)",
                 o->threads);
    return FALSE;
  }
  eo->threads = o->threads;
  eo->settings = (const char *const *) o->settings;
  if (!o->precision || g_ascii_strcasecmp (o->precision, "auto") == 0)
    eo->precision = VAE_PRECISION_AUTO;
  else if (g_ascii_strcasecmp (o->precision, "f32") == 0
           || g_ascii_strcasecmp (o->precision, "fp32") == 0)
    eo->precision = VAE_PRECISION_F32;
  else if (g_ascii_strcasecmp (o->precision, "bf16") == 0)
    eo->precision = VAE_PRECISION_BF16;
  else if (g_ascii_strcasecmp (o->precision, "f16") == 0
           || g_ascii_strcasecmp (o->precision, "fp16") == 0)
    eo->precision = VAE_PRECISION_F16;
  else {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "--precision '%s' is not known (use auto, f32, bf16 or f16)", o->precision);
    return FALSE;
  }
  return TRUE;
}

static const char *
backend_of (const ToolOptions *o)
{
  return o->backend && *o->backend ? o->backend : "cpu";
}

static const char *
precision_name (VaePrecision p)
{
  switch (p) {
  case VAE_PRECISION_BF16:
    return "bf16";
  case VAE_PRECISION_F16:
    return "f16";
  case VAE_PRECISION_AUTO:
    return "auto";
  default:
    return "f32";
  }
}

/* Shortest "%.Ng" that reads back as the same double, for people. */
static char *
format_double (double v)
{
  for (int prec = 6; prec < 17; prec++) {
    char *s = g_strdup_printf ("%.*g", prec, v);
    if (g_ascii_strtod (s, NULL) == v)
      return s;
    g_free (s);
  }
  return g_strdup_printf ("%.17g", v);
}

static VaeModel *
load_model (const ToolOptions *o, GError **error)
{
  const char *path = o->model;
  if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_IO, "%s: no such file or folder", path);
    return NULL;
  }
  VaeModelOptions mo = VAE_MODEL_OPTIONS_INIT;
  mo.norm_groups = o->norm_groups;
  return vae_model_load (path, &mo, error);
}

/* ---- encode ---- */

static gboolean
cmd_encode (int argc, char **argv, GError **error)
{
  ToolOptions o = { TOOL_TILE_DEFAULTS };
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &o.model,
      "Model: diffusers folder, LDM .safetensors, or TAESD file/folder", "PATH" },
    { "input", 'i', 0, G_OPTION_ARG_FILENAME, &o.input, "Input image (PNG)", "IMG.png" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &o.output,
      "Output latents (safetensors)", "Z.safetensors" },
    ENGINE_ENTRIES (&o),
    LATENT_FORMAT_ENTRY (&o),
    MODEL_ENTRIES (&o),
    TILE_ENTRIES (&o),
    { NULL }
  };
  g_autoptr (GOptionContext) ctx =
      g_option_context_new ("--model PATH --input IMG.png --output Z.safetensors");
  g_option_context_set_summary (ctx,
      "Encodes an image to diffusion-space latents ((mean - shift) * scaling).\n"
      "Writes tensor 'latents' (F32, [1,C,h,w]) and metadata with the model's\n"
      "scaling_factor, shift_factor, model, width, height and spatial_factor.\n"
      "Images whose size is not a multiple of the model's spatial factor are\n"
      "padded by repeating the last row and column; 'width' and 'height' keep\n"
      "the source size so that decode can crop the padding away.\n"
      "Video models (Wan, TAEHV): --input is a frame pattern with one %d\n"
      "('dir/f_%04d.png': frames from 0 to the first missing number) or one PNG\n"
      "(a 1-frame clip); 'latents' is F32 [1,C,T',h,w] (Wan: normalised by\n"
      "latents_mean/latents_std), metadata frames, temporal_factor, model, ....");
  g_option_context_add_main_entries (ctx, entries, NULL);

  gboolean ok = FALSE;
  g_autoptr (VaeModel) model = NULL;
  g_autoptr (VaeEngine) engine = NULL;
  g_autoptr (VaeLatentWriter) writer = NULL;
  g_autofree guint8 *rgb = NULL;
  g_autofree float *pixels = NULL, *enc = NULL, *latents = NULL;
  VaeEngineOptions eo;
  int width = 0, height = 0;

  if (!parse_args (ctx, "encode", &argc, &argv, error)
      || !require (o.model, "encode", "model", error)
      || !require (o.input, "encode", "input", error)
      || !require (o.output, "encode", "output", error)
      || !engine_options_from (&o, &eo, error))
    goto out;

  model = load_model (&o, error);
  if (!model)
    goto out;
  if (!model->encoder) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "%s: model '%s' has no encoder", o.model, model->name);
    goto out;
  }
  if (model->temporal_factor > 1) {
    /* A video model: --input is a clip (a frame pattern) or one image. */
    engine = vae_engine_new (backend_of (&o), model, &eo, error);
    ok = engine && vae_tool_video_encode (engine, o.input, o.output, error);
    goto out;
  }
  if (!check_tiles (&o, model, "encode", error))
    goto out;
  if (!vae_png_read_rgb8 (o.input, &rgb, &width, &height, error))
    goto out;

  VaeLatentFormat format;
  if (!latent_format_of (&o, &format, error))
    goto out;
  /* Padded to the format's factor (FLUX.2 normalised: 16); the network runs
   * at its own, NH x NW, and the codec patchifies to LH x LW. */
  const int f = vae_latent_format_factor (model, format);
  const int ph = vae_padded_size (height, f), pw = vae_padded_size (width, f);
  const int lh = ph / f, lw = pw / f;
  const int nh = ph / model->spatial_factor, nw = pw / model->spatial_factor;
  const int enc_c = vae_engine_output_channels (model, VAE_DIRECTION_ENCODE);
  const int c = vae_latent_format_channels_for_mode (model, format, VAE_LATENT_MODE);
  if (enc_c < model->latent_channels) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_MODEL,
                 "%s: encoder gives %d channels, fewer than the %d latent channels",
                 o.model, enc_c, c);
    goto out;
  }

  o.frame_w = pw;
  o.frame_h = ph;
  if (!(pixels = vae_try_alloc ((gsize) 3 * ph * pw, sizeof (float), "the input pixels", error))
      || !(enc = vae_try_alloc ((gsize) enc_c * nh * nw, sizeof (float), "the encoder output",
                                error))
      || !(latents = vae_try_alloc ((gsize) c * lh * lw, sizeof (float), "the latents", error)))
    goto out;
  vae_pixels_from_rgb8 (model, rgb, width, height, width * 3, 3, pixels, ph, pw);

  engine = vae_engine_new (backend_of (&o), model, &eo, error);
  if (!engine)
    goto out;
  VaeBatch batch = { VAE_DIRECTION_ENCODE, 1, ph, pw, pixels, enc, NULL, NULL };
  if (!vae_tiled_run (engine, &batch, o.tile, o.overlap, error))
    goto out;

  vae_latents_from_encoder_format (model, format, enc, nh, nw, VAE_LATENT_MODE, NULL,
                                   model->scaling_factor, model->shift_factor, latents);

  writer = vae_latent_writer_new ();
  const gint64 shape[4] = { 1, c, lh, lw };
  if (!vae_latent_writer_set_latents (writer, VAE_DTYPE_F32, 4, shape, latents,
                                      (gsize) c * lh * lw * sizeof (float), error))
    goto out;

  vae_latent_writer_set_double (writer, VAE_LATENT_KEY_SCALING_FACTOR, model->scaling_factor);
  vae_latent_writer_set_double (writer, VAE_LATENT_KEY_SHIFT_FACTOR, model->shift_factor);
  if (model->name && g_utf8_validate (model->name, -1, NULL))
    vae_latent_writer_set_string (writer, VAE_LATENT_KEY_MODEL, model->name);
  vae_latent_writer_set_int (writer, VAE_LATENT_KEY_WIDTH, width);
  vae_latent_writer_set_int (writer, VAE_LATENT_KEY_HEIGHT, height);
  vae_latent_writer_set_int (writer, VAE_LATENT_KEY_SPATIAL_FACTOR, f);
  vae_latent_writer_set_string (writer, VAE_LATENT_KEY_LATENT_FORMAT,
                                vae_latent_format_name (format));
  vae_latent_writer_set_string (writer, VAE_LATENT_KEY_NORMALIZATION,
                                vae_latent_normalization_name (model, format));

  if (!vae_latent_writer_save (writer, o.output, error))
    goto out;
  ok = TRUE;

out:
  add_memory_hint (error, &o);
  tool_options_clear (&o);
  return ok;
}

/* ---- decode ---- */

/* OUT with "_NNNN" before the extension of its last path component. */
static char *
frame_path (const char *out, int index)
{
  const char *slash = strrchr (out, G_DIR_SEPARATOR);
  const char *base = slash ? slash + 1 : out;
  const char *dot = strrchr (base, '.');
  if (!dot || dot == base)
    return g_strdup_printf ("%s_%04d", out, index);
  return g_strdup_printf ("%.*s_%04d%s", (int) (dot - out), out, index, dot);
}

/* The source size from the file's metadata when it is valid for latents of
 * LH x LW at spatial factor F; else the full decoded size. */
static void
crop_size (const VaeLatentFile *lf, int f, int lh, int lw, int *width, int *height)
{
  const char *ws = vae_latent_file_get_string (lf, VAE_LATENT_KEY_WIDTH);
  const char *hs = vae_latent_file_get_string (lf, VAE_LATENT_KEY_HEIGHT);
  gint64 w = 0, h = 0;

  *width = lw * f;
  *height = lh * f;
  if (!ws && !hs)
    return;
  if (vae_latent_file_get_int (lf, VAE_LATENT_KEY_WIDTH, 1, (gint64) lw * f, &w, NULL)
      && vae_latent_file_get_int (lf, VAE_LATENT_KEY_HEIGHT, 1, (gint64) lh * f, &h, NULL)
      && vae_padded_size ((int) w, f) == lw * f
      && vae_padded_size ((int) h, f) == lh * f) {
    *width = (int) w;
    *height = (int) h;
    return;
  }
  g_printerr ("vae-tool: warning: ignoring width/height metadata (%s x %s) that does "
              "not fit %dx%d latents at spatial factor %d; writing %dx%d\n",
              ws ? ws : "none", hs ? hs : "none", lw, lh, f, *width, *height);
}

static gboolean
cmd_decode (int argc, char **argv, GError **error)
{
  ToolOptions o = { TOOL_TILE_DEFAULTS };
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &o.model,
      "Model: diffusers folder, LDM .safetensors, or TAESD file/folder", "PATH" },
    { "input", 'i', 0, G_OPTION_ARG_FILENAME, &o.input,
      "Input latents (safetensors with tensor 'latents')", "Z.safetensors" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &o.output,
      "Output image (PNG); several frames: OUT_0000.png, OUT_0001.png, ...", "OUT.png" },
    ENGINE_ENTRIES (&o),
    LATENT_FORMAT_ENTRY (&o),
    MODEL_ENTRIES (&o),
    TILE_ENTRIES (&o),
    { NULL }
  };
  g_autoptr (GOptionContext) ctx =
      g_option_context_new ("--model PATH --input Z.safetensors --output OUT.png");
  g_option_context_set_summary (ctx,
      "Decodes diffusion-space latents to 8-bit RGB PNG.\n"
      "Reads tensor 'latents', [N,C,h,w] or [C,h,w], F32, F16, BF16 or F64; C must be\n"
      "the model's latent channel count.  The model's scaling and shift factors\n"
      "are used (the file's are ignored).  The image is cropped to the file's\n"
      "'width'/'height' metadata when present and valid.  With N > 1 frames,\n"
      "each frame goes to OUT with its number before the extension:\n"
      "out.png -> out_0000.png, out_0001.png, ...\n"
      "Video models: 'latents' [1,C,T',h,w]; --output is a frame pattern with one\n"
      "%d ('dir/o_%04d.png') or OUT.png (numbered as above; a 1-frame clip: OUT.png);\n"
      "the clip is cut to the file's 'frames' metadata.");
  g_option_context_add_main_entries (ctx, entries, NULL);

  gboolean ok = FALSE;
  g_autoptr (VaeModel) model = NULL;
  g_autoptr (VaeEngine) engine = NULL;
  g_autoptr (VaeLatentFile) lf = NULL;
  g_autofree float *z = NULL, *dec_in = NULL, *pixels = NULL;
  g_autofree guint8 *rgb = NULL;
  VaeEngineOptions eo;

  if (!parse_args (ctx, "decode", &argc, &argv, error)
      || !require (o.model, "decode", "model", error)
      || !require (o.input, "decode", "input", error)
      || !require (o.output, "decode", "output", error)
      || !engine_options_from (&o, &eo, error))
    goto out;

  model = load_model (&o, error);
  if (!model)
    goto out;
  if (!model->decoder) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "%s: model '%s' has no decoder", o.model, model->name);
    goto out;
  }
  if (model->temporal_factor > 1) {
    /* A video model: each frame is written as soon as it is decoded. */
    engine = vae_engine_new (backend_of (&o), model, &eo, error);
    ok = engine && vae_tool_video_decode (engine, o.input, o.output, NULL, error);
    goto out;
  }
  if (!check_tiles (&o, model, "decode", error))
    goto out;
  lf = vae_latent_file_open (o.input, error);
  if (!lf)
    goto out;
  const VaeTensorView *t = vae_latent_file_latents (lf);
  if (t->ndim != 3 && t->ndim != 4) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: tensor 'latents' has %d dimensions; [N,C,h,w] or [C,h,w] is needed",
                 o.input, t->ndim);
    goto out;
  }
  /* s: [N, C, h, w], N = 1 for a [C, h, w] tensor. */
  gint64 s[4] = { 1, 0, 0, 0 };
  for (int i = 0; i < t->ndim; i++)
    s[4 - t->ndim + i] = t->shape[i];
  const gint64 n64 = s[0];
  /* The format: --latent-format, else the file's latent_format, else the
   * one with that many channels (FLUX.2: 128 normalised, 32 raw). */
  VaeLatentFormat format = VAE_LATENT_FORMAT_NORMALIZED;
  const char *file_format = vae_latent_file_get_string (lf, VAE_LATENT_KEY_LATENT_FORMAT);
  if (o.latent_format) {
    if (!latent_format_of (&o, &format, error))
      goto out;
  } else if (!file_format || !vae_latent_format_from_name (file_format, &format)) {
    if (s[1] > 0 && s[1] < G_MAXINT)
      vae_latent_format_for_channels (model, (int) s[1], &format, NULL);
  }
  const int f = vae_latent_format_factor (model, format);
  const int want_c = vae_latent_format_channels (model, format);
  if (s[1] != want_c) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: latents have %" G_GINT64_FORMAT " channels but model '%s' takes %d "
                 "(%s latents)", o.input, s[1], model->name, want_c,
                 vae_latent_format_name (format));
    goto out;
  }
  if (n64 < 1 || s[2] < 1 || s[3] < 1 || n64 > 1000000
      || s[2] > MAX_IMAGE_SIDE / f || s[3] > MAX_IMAGE_SIDE / f) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_FORMAT,
                 "%s: latents of %" G_GINT64_FORMAT " frames of %" G_GINT64_FORMAT "x%"
                 G_GINT64_FORMAT " cannot be decoded (empty, or larger than %d pixels "
                 "a side)", o.input, n64, s[3], s[2], MAX_IMAGE_SIDE);
    goto out;
  }
  const int n = (int) n64, c = (int) s[1], lh = (int) s[2], lw = (int) s[3];
  const int oh = lh * f, ow = lw * f;
  const int out_c = vae_engine_output_channels (model, VAE_DIRECTION_DECODE);
  if (out_c != 3) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED,
                 "%s: decoder gives %d channels; only RGB (3) can be written as PNG",
                 o.model, out_c);
    goto out;
  }
  int width, height;
  crop_size (lf, f, lh, lw, &width, &height);
  o.frame_w = ow;
  o.frame_h = oh;

  const gsize frame_latent = (gsize) c * lh * lw;
  const gsize frame_pixels = (gsize) 3 * oh * ow;
  if (!(z = vae_try_alloc (frame_latent * n, sizeof (float), "the latents", error))
      || !(dec_in = vae_try_alloc (frame_latent * n, sizeof (float), "the decoder input",
                                   error)))
    goto out;
  if (!vae_tensor_view_to_f32 (t, z, error))
    goto out;
  const int nh = oh / model->spatial_factor, nw = ow / model->spatial_factor;
  for (int i = 0; i < n; i++)
    vae_latents_to_decoder_format (model, format, z + frame_latent * i, nh, nw,
                                   model->scaling_factor, model->shift_factor,
                                   dec_in + frame_latent * i);

  engine = vae_engine_new (backend_of (&o), model, &eo, error);
  if (!engine)
    goto out;
  const int chunk = CLAMP (vae_engine_preferred_batch (engine), 1, n);
  if (!(pixels = vae_try_alloc (frame_pixels * chunk, sizeof (float), "the decoded pixels",
                                error))
      || !(rgb = vae_try_alloc ((gsize) width * height, 3, "the 8-bit image", error)))
    goto out;

  for (int first = 0; first < n; first += chunk) {
    const int m = MIN (chunk, n - first);
    VaeBatch batch = { VAE_DIRECTION_DECODE, m, nh, nw, dec_in + frame_latent * first,
                       pixels, NULL, NULL };
    if (!vae_tiled_run (engine, &batch, o.tile, o.overlap, error))
      goto out;
    for (int i = 0; i < m; i++) {
      vae_pixels_to_rgb8 (model, pixels + frame_pixels * i, oh, ow, rgb, width, height,
                          width * 3, 3);
      g_autofree char *path = n > 1 ? frame_path (o.output, first + i)
                                    : g_strdup (o.output);
      if (!vae_png_write_rgb8 (path, rgb, width, height, width * 3, error))
        goto out;
    }
  }
  ok = TRUE;

out:
  add_memory_hint (error, &o);
  tool_options_clear (&o);
  return ok;
}

/* ---- bench ---- */

static int
compare_doubles (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

/* R batches with up to INFLIGHT submitted before the oldest is waited
 * for: the throughput a streaming caller gets from an asynchronous engine
 * (input and output buffers are shared: only the time matters here). */
static gboolean
bench_pipelined (VaeEngine *engine, VaeDirection dir, const ToolOptions *o, int bh, int bw,
                 const float *in, float *out, int inflight, GError **error)
{
  g_autofree VaeBatch *batches = g_new0 (VaeBatch, o->runs);
  int submitted = 0, done = 0;
  gboolean ok = TRUE;
  gint64 t0 = g_get_monotonic_time ();
  while (done < o->runs) {
    if (ok && submitted < o->runs && submitted - done < inflight) {
      VaeBatch b = { dir, o->batch, bh, bw, in, out, NULL, NULL };
      batches[submitted] = b;
      if (!vae_engine_submit (engine, &batches[submitted], error))
        return FALSE;
      submitted++;
      continue;
    }
    if (submitted == done)
      break;
    VaeBatch *b = vae_engine_wait (engine);
    done++;
    if (b && b->error) {
      if (ok)
        g_propagate_error (error, b->error);
      else
        g_error_free (b->error);
      b->error = NULL;
      ok = FALSE;
    }
  }
  if (!ok)
    return FALSE;
  double s = (g_get_monotonic_time () - t0) / 1e6 / o->runs;
  g_print ("pipelined: %d batches, up to %d in flight: %.4f s per batch, %.3f ms per frame\n",
           o->runs, inflight, s, 1e3 * s / o->batch);
  g_print ("pipelined_s=%.6f\n", s);
  return TRUE;
}

static gboolean
cmd_bench (int argc, char **argv, GError **error)
{
  ToolOptions o = { .batch = 1, .runs = 3, TOOL_TILE_DEFAULTS };
  int inflight = 1;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &o.model,
      "Model: diffusers folder, LDM .safetensors, or TAESD file/folder", "PATH" },
    { "op", 0, 0, G_OPTION_ARG_STRING, &o.op, "What to time: encode or decode",
      "encode|decode" },
    { "width", 'W', 0, G_OPTION_ARG_INT, &o.width, "Image width in pixels", "W" },
    { "height", 'H', 0, G_OPTION_ARG_INT, &o.height, "Image height in pixels", "H" },
    { "batch", 'n', 0, G_OPTION_ARG_INT, &o.batch, "Frames per batch (default 1)", "N" },
    { "runs", 'r', 0, G_OPTION_ARG_INT, &o.runs, "Timed runs (default 3)", "R" },
    { "frames", 'T', 0, G_OPTION_ARG_INT, &o.frames,
      "Video models: time whole clips of T frames (decode: their latents; "
      "default 17)", "T" },
    { "inflight", 0, 0, G_OPTION_ARG_INT, &inflight,
      "Also time R batches submitted with up to N in flight, as a pipeline "
      "does (default 1: only one at a time)", "N" },
    ENGINE_ENTRIES (&o),
    MODEL_ENTRIES (&o),
    TILE_ENTRIES (&o),
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new (
      "--model PATH --op encode|decode --width W --height H");
  g_option_context_set_summary (ctx,
      "Times the engine on random input (fixed seed): one warm-up run, then R\n"
      "timed runs of a batch of N frames of W x H pixels (decode: the latents of\n"
      "such frames).  Prints one line per run, then the throughput from the\n"
      "graph's multiply-accumulates, and as its last line median_s=<seconds per\n"
      "batch>.  FLUX.2 models (2x2 latent patches): encode ends at, and decode\n"
      "starts from, the normalised latents, the codec's patchify and\n"
      "normalisation timed with the network (--inflight: the network only).");
  g_option_context_add_main_entries (ctx, entries, NULL);

  gboolean ok = FALSE;
  g_autoptr (VaeModel) model = NULL;
  g_autoptr (VaeEngine) engine = NULL;
  g_autoptr (GRand) rng = NULL;
  g_autofree float *in = NULL, *out = NULL, *norm = NULL;
  g_autofree double *times = NULL, *device_ms = NULL;
  VaeEngineOptions eo;

  if (!parse_args (ctx, "bench", &argc, &argv, error)
      || !require (o.model, "bench", "model", error)
      || !require (o.op, "bench", "op", error)
      || !engine_options_from (&o, &eo, error))
    goto out;

  VaeDirection dir;
  if (g_str_equal (o.op, "encode"))
    dir = VAE_DIRECTION_ENCODE;
  else if (g_str_equal (o.op, "decode"))
    dir = VAE_DIRECTION_DECODE;
  else {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "bench: --op '%s' is not known (use encode or decode)", o.op);
    goto out;
  }
  if (o.width < 1 || o.height < 1 || o.width > MAX_IMAGE_SIDE
      || o.height > MAX_IMAGE_SIDE) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "bench: --width and --height are required, 1 to %d", MAX_IMAGE_SIDE);
    goto out;
  }
  if (inflight < 1 || inflight > 64) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT, "bench: --inflight must be 1 to 64");
    goto out;
  }
  if (o.batch < 1 || o.batch > 4096 || o.runs < 1 || o.runs > 100000) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT,
                 "bench: --batch must be 1 to 4096 and --runs 1 to 100000");
    goto out;
  }

  model = load_model (&o, error);
  if (!model)
    goto out;
  const VaeGraph *graph = dir == VAE_DIRECTION_ENCODE ? model->encoder : model->decoder;
  if (!graph) {
    g_set_error (error, VAE_ERROR, VAE_ERROR_UNSUPPORTED, "%s: model '%s' has no %s",
                 o.model, model->name, o.op);
    goto out;
  }
  if (model->temporal_factor > 1) {
    if (o.frames == 0)
      o.frames = 17;
    if (o.frames < 1 || o.frames > 100000) {
      g_set_error (error, VAE_ERROR, VAE_ERROR_ARGUMENT, "bench: --frames must be 1 to 100000");
      goto out;
    }
    engine = vae_engine_new (backend_of (&o), model, &eo, error);
    ok = engine && vae_tool_video_bench (engine, dir, o.width, o.height, o.frames, o.runs,
                                         error);
    goto out;
  }

  const int f = model->spatial_factor;
  /* FLUX.2 (2x2 latent patches): the codec's normalised latents are part of
   * the timed work, as in the pipeline: encode gives 128 channels at 16x
   * (patchify + BatchNorm statistics), decode takes them (the inverse, then
   * the network).  Sizes are padded to 16. */
  const gboolean patched = model->latent_patch > 1;
  const VaeLatentFormat nfmt = VAE_LATENT_FORMAT_NORMALIZED;
  const int pf = patched ? vae_latent_format_factor (model, nfmt) : f;
  const int ph = vae_padded_size (o.height, pf), pw = vae_padded_size (o.width, pf);
  const int lh = ph / f, lw = pw / f;
  const int in_c = dir == VAE_DIRECTION_ENCODE ? model->image_channels : model->latent_channels;
  const int bh = dir == VAE_DIRECTION_ENCODE ? ph : lh;
  const int bw = dir == VAE_DIRECTION_ENCODE ? pw : lw;
  const int out_c = vae_engine_output_channels (model, dir);
  const int oh = dir == VAE_DIRECTION_ENCODE ? lh : ph;
  const int ow = dir == VAE_DIRECTION_ENCODE ? lw : pw;
  const gsize n_in = (gsize) o.batch * in_c * bh * bw;
  const gsize n_out = (gsize) o.batch * out_c * oh * ow;
  /* The normalised latents of one frame (patched models only). */
  const gsize n_norm = patched ? (gsize) vae_latent_format_channels (model, nfmt)
                                 * (ph / pf) * (pw / pf) : 0;
  VaeTileGrid grid;
  if (!vae_tile_grid (model, dir, bh, bw, o.tile, o.overlap, &grid, error)) {
    g_prefix_error (error, "bench: --tile-size/--tile-overlap: ");
    goto out;
  }
  const int tiles = grid.tiles_y * grid.tiles_x;
  const int tile_scale = dir == VAE_DIRECTION_ENCODE ? 1 : f;   /* to pixels */

  o.frame_w = pw;
  o.frame_h = ph;
  times = g_new (double, o.runs);
  device_ms = g_new0 (double, o.runs);
  if (!(in = vae_try_alloc (n_in, sizeof (float), "the benchmark input", error))
      || !(out = vae_try_alloc (n_out, sizeof (float), "the benchmark output", error))
      || (patched && !(norm = vae_try_alloc (n_norm * o.batch, sizeof (float),
                                             "the normalised latents", error))))
    goto out;
  rng = g_rand_new_with_seed (BENCH_SEED);
  const double lo = dir == VAE_DIRECTION_ENCODE ? model->image_min : -1.0;
  if (patched && dir == VAE_DIRECTION_DECODE) {
    for (gsize i = 0; i < n_norm * o.batch; i++)
      norm[i] = (float) g_rand_double_range (rng, lo, 1.0);
  } else {
    for (gsize i = 0; i < n_in; i++)
      in[i] = (float) g_rand_double_range (rng, lo, 1.0);
  }

  engine = vae_engine_new (backend_of (&o), model, &eo, error);
  if (!engine)
    goto out;

  /* Tiled: the work of every tile, overlaps counted twice. */
  const double gflop = 2.0 * vae_graph_macs (graph, grid.tile_h, grid.tile_w) * tiles
                       * o.batch / 1e9;
  g_print ("bench: model=%s op=%s size=%dx%d (run at %dx%d) batch=%d backend=%s "
           "threads=%d precision=%s gflop_per_batch=%.3f\n",
           model->name, o.op, o.width, o.height, pw, ph, o.batch, vae_engine_name (engine),
           o.threads, precision_name (eo.precision), gflop);
  if (tiles > 1)
    g_print ("tiles: %dx%d per frame of %dx%d pixels, overlap >= %d pixels\n", grid.tiles_x,
             grid.tiles_y, grid.tile_w * tile_scale, grid.tile_h * tile_scale, o.overlap);
  if (patched)
    g_print ("latents: normalized, %d channels at %dx (the codec's patchify and "
             "normalisation are timed with the network)\n",
             vae_latent_format_channels (model, nfmt), pf);

  const gsize frame_in = (gsize) in_c * bh * bw, frame_out = (gsize) out_c * oh * ow;
  for (int r = -1; r < o.runs; r++) {
    VaeBatch batch = { dir, o.batch, bh, bw, in, out, NULL, NULL };
    gint64 t0 = g_get_monotonic_time ();
    if (patched && dir == VAE_DIRECTION_DECODE)
      for (int i = 0; i < o.batch; i++)
        vae_latents_to_decoder_format (model, nfmt, norm + n_norm * i, lh, lw,
                                       model->scaling_factor, model->shift_factor,
                                       in + frame_in * i);
    if (!vae_tiled_run (engine, &batch, o.tile, o.overlap, error))
      goto out;
    if (patched && dir == VAE_DIRECTION_ENCODE)
      for (int i = 0; i < o.batch; i++)
        vae_latents_from_encoder_format (model, nfmt, out + frame_out * i, lh, lw,
                                         VAE_LATENT_MODE, NULL, model->scaling_factor,
                                         model->shift_factor, norm + n_norm * i);
    double s = (g_get_monotonic_time () - t0) / 1e6;
    VaeEngineStats st;
    vae_engine_stats (engine, &st);
    if (st.last_device_ms >= 0 && tiles == 1)   /* tiled: only the last tile batch's */
      device_ms[MAX (r, 0)] = st.last_device_ms;
    if (r < 0) {
      g_print ("warm-up: %.4f s\n", s);
    } else {
      times[r] = s;
      g_print ("run %d/%d: %.4f s (%.1f GFLOP/s)\n", r + 1, o.runs, s,
               s > 0 ? gflop / s : 0.0);
    }
  }
  qsort (times, o.runs, sizeof (double), compare_doubles);
  double median = o.runs % 2 ? times[o.runs / 2]
                             : 0.5 * (times[o.runs / 2 - 1] + times[o.runs / 2]);
  g_print ("gflop_per_s=%.1f (median; %.3f GFLOP per batch, %.3f s per frame)\n",
           median > 0 ? gflop / median : 0.0, gflop, median / o.batch);
  /* GPU engines: device time without the host<->device copies and the
   * most device memory held, for comparison with a peer timed with CUDA
   * events and measured with its allocator's peak. */
  VaeEngineStats st;
  vae_engine_stats (engine, &st);
  if (st.last_device_ms >= 0 && tiles == 1) {
    qsort (device_ms, o.runs, sizeof (double), compare_doubles);
    double dm = o.runs % 2 ? device_ms[o.runs / 2]
                           : 0.5 * (device_ms[o.runs / 2 - 1] + device_ms[o.runs / 2]);
    g_print ("device_ms=%.3f (median per batch, %.3f ms per frame)\n", dm, dm / o.batch);
  }
  if (st.device_bytes_peak > 0)
    g_print ("device_peak_mib=%.1f\n", st.device_bytes_peak / 1048576.0);
  if (inflight > 1 && tiles == 1 && !bench_pipelined (engine, dir, &o, bh, bw, in, out,
                                                      inflight, error))
    goto out;
  g_print ("median_s=%.6f\n", median);
  ok = TRUE;

out:
  add_memory_hint (error, &o);
  tool_options_clear (&o);
  return ok;
}

/* ---- info ---- */

static gboolean
cmd_info (int argc, char **argv, GError **error)
{
  ToolOptions o = { 0 };
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &o.model,
      "Model: diffusers folder, LDM .safetensors, or TAESD file/folder", "PATH" },
    MODEL_ENTRIES (&o),
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("--model PATH");
  g_option_context_set_summary (ctx,
      "Prints what the loader found: family, layout, levels, channels, spatial\n"
      "factor, scaling and shift factors, encoder/decoder, parameter count.");
  g_option_context_add_main_entries (ctx, entries, NULL);

  gboolean ok = FALSE;
  g_autoptr (VaeModel) model = NULL;
  g_autofree char *scaling = NULL, *shift = NULL;

  if (!parse_args (ctx, "info", &argc, &argv, error)
      || !require (o.model, "info", "model", error))
    goto out;
  model = load_model (&o, error);
  if (!model)
    goto out;

  GString *ch = g_string_new (NULL);
  for (int i = 0; i < model->levels && i < VAE_MAX_LEVELS; i++)
    g_string_append_printf (ch, "%s%d", i ? "," : "", model->block_out_channels[i]);
  scaling = format_double (model->scaling_factor);
  shift = format_double (model->shift_factor);

  g_print ("model: %s\n", model->name);
  g_print ("path: %s\n", model->path);
  const gboolean flux2 = model->variant && g_str_equal (model->variant, "flux2");
  g_print ("family: %s\n", flux2 ? "AutoencoderKLFlux2" : vae_family_name (model->family));
  g_print ("layout: %s\n", vae_layout_name (model->layout));
  g_print ("levels: %d\n", model->levels);
  g_print ("block_out_channels: %s\n", ch->str);
  if (model->family == VAE_FAMILY_KL) {
    if (memcmp (model->decoder_block_out_channels, model->block_out_channels,
                sizeof (int) * model->levels) != 0) {
      GString *dc = g_string_new (NULL);
      for (int i = 0; i < model->levels && i < VAE_MAX_LEVELS; i++)
        g_string_append_printf (dc, "%s%d", i ? "," : "", model->decoder_block_out_channels[i]);
      g_print ("decoder_block_out_channels: %s\n", dc->str);
      g_string_free (dc, TRUE);
    }
    g_print ("layers_per_block: %d\n", model->layers_per_block);
    g_print ("norm_groups: %d\n", model->norm_groups);
    g_print ("quant_conv: %s\n", model->quant_conv ? "yes" : "no");
    g_print ("post_quant_conv: %s\n", model->post_quant_conv ? "yes" : "no");
  } else {
    g_print ("pool_blocks: %s\n", model->has_pool ? "yes" : "no");
  }
  g_print ("image_channels: %d\n", model->image_channels);
  g_print ("latent_channels: %d\n", model->latent_channels);
  g_print ("spatial_factor: %d\n", model->spatial_factor);
  g_print ("scaling_factor: %s\n", scaling);
  g_print ("shift_factor: %s\n", shift);
  if (model->latent_patch > 1 && model->temporal_factor <= 1) {
    /* The latent layout of both formats (FLUX.2). */
    g_print ("latents: normalized: %d channels at %dx (%dx%d patches of the %d, "
             "channel c*%d + dy*%d + dx, then (x - bn.running_mean) / "
             "sqrt(bn.running_var + %g)); raw: %d channels at %dx\n",
             vae_latent_format_channels (model, VAE_LATENT_FORMAT_NORMALIZED),
             vae_latent_format_factor (model, VAE_LATENT_FORMAT_NORMALIZED),
             model->latent_patch, model->latent_patch, model->latent_channels,
             model->latent_patch * model->latent_patch, model->latent_patch,
             model->batch_norm_eps, model->latent_channels, model->spatial_factor);
    g_print ("normalization: %s\n",
             vae_latent_normalization_name (model, VAE_LATENT_FORMAT_NORMALIZED));
  }
  g_print ("image_range: [%g, 1]\n", model->image_min);
  g_print ("encoder: %s\n", model->encoder ? "yes" : "no");
  g_print ("decoder: %s\n", model->decoder ? "yes" : "no");
  g_print ("parameters: %" G_GUINT64_FORMAT " (%.2f M)\n", model->n_params,
           model->n_params / 1e6);
  if (model->temporal_factor > 1) {
    vae_tool_video_info (model);
  } else if (model->encoder)
    g_print ("encoder_gmac_512x512: %.2f\n", vae_graph_macs (model->encoder, 512, 512) / 1e9);
  if (model->decoder && model->temporal_factor <= 1) {
    int l = 512 / model->spatial_factor;
    g_print ("decoder_gmac_512x512: %.2f\n", vae_graph_macs (model->decoder, l, l) / 1e9);
  }
  g_string_free (ch, TRUE);
  ok = TRUE;

out:
  tool_options_clear (&o);
  return ok;
}

/* ---- backends ---- */

/* Every engine of this build: usable here or not and why, where it comes
 * from, and what "auto" picks. */
static gboolean
cmd_backends (int argc, char **argv, GError **error)
{
  GOptionEntry entries[] = { { NULL } };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- list the engines of this build");
  g_option_context_set_summary (ctx,
      "Lists every engine (backend) this build has, whether it can run on this\n"
      "machine and, if not, why (a module whose libraries are missing, no GPU),\n"
      "and the settings it takes (--engine-option KEY=VALUE).\n"
      "Engine modules are looked for in $VAE_ENGINE_PATH first.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!parse_args (ctx, "backends", &argc, &argv, error))
    return FALSE;

  for (const char *const *b = vae_engine_backends (); *b; b++) {
    VaeEngineInfo info;
    if (!vae_engine_backend_info (*b, &info))
      continue;
    g_autofree char *from = info.builtin ? g_strdup ("built in")
        : info.module ? g_strdup_printf ("module %s", info.module) : g_strdup ("module");
    if (info.usable)
      g_print ("%-8s usable      %s%s\n", info.name, from,
               info.rank > 0 ? "" : " (used only when asked for by name)");
    else if (!info.module || strstr (info.reason, info.module))
      g_print ("%-8s not usable  %s\n", info.name, info.reason);
    else
      g_print ("%-8s not usable  %s: %s\n", info.name, from, info.reason);
    for (const VaeEngineSetting *k = info.settings; k && k->key; k++)
      g_print ("           -O %-13s %s\n", k->key, k->help);
  }
  g_autoptr (GError) auto_err = NULL;
  const char *picked = vae_engine_backend_auto (&auto_err);
  if (picked)
    g_print ("auto ->   %s\n", picked);
  else
    g_print ("auto ->   (none: %s)\n", auto_err->message);
  return TRUE;
}

/* ---- main ---- */

static const struct {
  const char *name;
  gboolean (*run) (int argc, char **argv, GError **error);
  const char *summary;
} commands[] = {
  { "encode", cmd_encode, "PNG -> diffusion-space latents (safetensors)" },
  { "decode", cmd_decode, "latents (safetensors) -> PNG" },
  { "bench", cmd_bench, "time the engine on random input" },
  { "info", cmd_info, "describe a model" },
  { "backends", cmd_backends, "list the engines of this build and whether they can run here" },
};

static void
print_usage (void)
{
  g_print ("Usage:\n"
           "  vae-tool encode --model PATH --input IMG.png --output Z.safetensors "
           "[--backend cpu] [--threads N] [--precision auto|f32|bf16|f16] "
           "[--tile-size N] [--tile-overlap N]\n"
           "  vae-tool decode --model PATH --input Z.safetensors --output OUT.png "
           "[--backend cpu] [--threads N] [--precision auto|f32|bf16|f16] "
           "[--tile-size N] [--tile-overlap N]\n"
           "  vae-tool bench --model PATH --op encode|decode --width W --height H "
           "[--batch N] [--runs R] [--backend cpu] [--threads N] [--precision auto|f32|bf16|f16] "
           "[--tile-size N] [--tile-overlap N]\n"
           "  vae-tool info --model PATH\n"
           "  vae-tool backends\n\n"
           "Commands:\n");
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    g_print ("  %-8s %s\n", commands[i].name, commands[i].summary);
  g_print ("\nBackends in this build:");
  for (const char *const *b = vae_engine_backends (); *b; b++)
    g_print (" %s", *b);
  g_print ("\n'vae-tool COMMAND --help' describes a command's options.\n");
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;

  g_set_prgname ("vae-tool");
  if (argc < 2) {
    print_error_line ("no command given (encode, decode, bench, info or backends; see 'vae-tool --help')");
    return 1;
  }
  const char *cmd = argv[1];
  if (g_str_equal (cmd, "--help") || g_str_equal (cmd, "-h") || g_str_equal (cmd, "help")) {
    print_usage ();
    return 0;
  }
  if (g_str_equal (cmd, "--version")) {
    g_print ("vae-tool 0.1.0\n");
    return 0;
  }
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++) {
    if (!g_str_equal (cmd, commands[i].name))
      continue;
    g_autofree char *prgname = g_strdup_printf ("vae-tool %s", cmd);
    g_set_prgname (prgname);
    if (commands[i].run (argc - 1, argv + 1, &error))
      return 0;
    print_error_line (error ? error->message : "failed without saying why");
    return 1;
  }
  g_autofree char *msg = g_strdup_printf (
      "unknown command '%s' (encode, decode, bench, info or backends; see 'vae-tool --help')", cmd);
  print_error_line (msg);
  return 1;
}
