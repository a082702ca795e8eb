/* gst-vae CPU engine: what this CPU runs well, asked of oneDNN once.
 *
 * The engine's habits were tuned on AVX-512 (16-channel blocks, Winograd,
 * bf16); on an AVX2 machine oneDNN 2.6 has neither Winograd nor bf16
 * convolutions and its JIT convolutions want 8-channel blocks, so the
 * layout and the paths follow the ISA instead of assuming one. */
#include "onednn-private.h"

#include <stdlib.h>

static dnnl_cpu_isa_t
effective_isa (void)
{
  static gsize once = 0;
  static dnnl_cpu_isa_t isa;
  if (g_once_init_enter (&once)) {
    isa = dnnl_get_effective_cpu_isa ();
    g_once_init_leave (&once, 1);
  }
  return isa;
}

gboolean
onednn_cpu_has_avx512 (void)
{
  /* The ISA values are bit sets: avx512_core includes avx2's bits. */
  return (effective_isa () & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
}

/* VAE_ONEDNN_BLOCK=8|16 overrides the choice (to test one layout's code on
 * a machine that would pick the other). */
int
onednn_channel_block (void)
{
  static int block = 0;
  if (!block) {
    const char *env = g_getenv ("VAE_ONEDNN_BLOCK");
    if (g_strcmp0 (env, "8") == 0 || g_strcmp0 (env, "16") == 0)
      block = atoi (env);
    else
      block = onednn_cpu_has_avx512 () ? 16 : 8;
  }
  return block;
}

dnnl_format_tag_t
onednn_activation_layout (void)
{
  return onednn_channel_block () == 16 ? dnnl_nChw16c : dnnl_nChw8c;
}

const char *
onednn_cpu_isa_name (void)
{
  switch ((int) effective_isa ()) {
    case dnnl_cpu_isa_sse41: return "sse4.1";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "unknown";
  }
}
