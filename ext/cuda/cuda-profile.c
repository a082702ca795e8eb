/* gst-vae CUDA engine: per-kind timing of forward passes (see cuda-profile.h). */
#include <glib.h>
#include <stdio.h>

#include "cuda-profile.h"

struct _CudaProfile {
  cudaEvent_t *events;
  CudaProfileKind *kinds;
  int capacity, used;
  double ms[CUDA_PROFILE_N_KINDS];
  int passes;
};

static const char *const kind_names[CUDA_PROFILE_N_KINDS] = {
  "layout", "pad", "conv", "conv1x1", "epilogue", "groupnorm", "attention", "upsample",
  "other",
};

CudaProfile *
cuda_profile_new (const char *env, int capacity)
{
  if (!env || g_strcmp0 (env, "1") != 0)
    return NULL;
  CudaProfile *p = g_new0 (CudaProfile, 1);
  p->capacity = capacity;
  p->events = g_new0 (cudaEvent_t, capacity);
  p->kinds = g_new0 (CudaProfileKind, capacity);
  for (int i = 0; i < capacity; i++)
    if (cudaEventCreate (&p->events[i]) != cudaSuccess) {
      p->capacity = i;
      break;
    }
  return p;
}

void
cuda_profile_free (CudaProfile *p)
{
  if (!p)
    return;
  for (int i = 0; i < p->capacity; i++)
    cudaEventDestroy (p->events[i]);
  g_free (p->events);
  g_free (p->kinds);
  g_free (p);
}

void
cuda_profile_begin (CudaProfile *p)
{
  if (p)
    p->used = 0;
}

void
cuda_profile_mark (CudaProfile *p, cudaStream_t stream, CudaProfileKind kind)
{
  if (!p || p->used >= p->capacity)
    return;
  p->kinds[p->used] = kind;
  cudaEventRecord (p->events[p->used++], stream);
}

CudaProfileKind
cuda_profile_kind (const VaeOp *op)
{
  switch (op->kind) {
  case VAE_OP_CONV2D:
    return CUDA_PROFILE_EPILOGUE;   /* the conv itself was marked before */
  case VAE_OP_GROUP_NORM:
    return CUDA_PROFILE_GROUPNORM;
  case VAE_OP_ATTENTION:
    return CUDA_PROFILE_ATTENTION;
  case VAE_OP_UPSAMPLE2X:
    return CUDA_PROFILE_UPSAMPLE;
  case VAE_OP_TANH_CLAMP:
    return CUDA_PROFILE_OTHER;
  VAE_OP_CASES_VIDEO:
    return CUDA_PROFILE_OTHER;   /* video models are refused at open */
  }
  return CUDA_PROFILE_OTHER;
}

void
cuda_profile_collect (CudaProfile *p, cudaEvent_t start, cudaEvent_t stop)
{
  if (!p)
    return;
  cudaEvent_t prev = start;
  for (int i = 0; i < p->used; i++) {
    float ms = 0;
    if (cudaEventElapsedTime (&ms, prev, p->events[i]) == cudaSuccess)
      p->ms[p->kinds[i]] += ms;
    prev = p->events[i];
  }
  float ms = 0;
  if (cudaEventElapsedTime (&ms, prev, stop) == cudaSuccess)
    p->ms[CUDA_PROFILE_LAYOUT] += ms;
  p->passes++;
}

void
cuda_profile_report (const CudaProfile *p, int n, int h, int w)
{
  if (!p || p->passes == 0)
    return;
  double total = 0;
  for (int k = 0; k < CUDA_PROFILE_N_KINDS; k++)
    total += p->ms[k];
  fprintf (stderr, "cuda profile: batch %d of %dx%d, %d passes, %.3f ms per pass:", n, w, h,
           p->passes, total / p->passes);
  for (int k = 0; k < CUDA_PROFILE_N_KINDS; k++)
    if (p->ms[k] > 0)
      fprintf (stderr, " %s %.3f (%.0f%%)", kind_names[k], p->ms[k] / p->passes,
               100.0 * p->ms[k] / total);
  fprintf (stderr, "\n");
}
