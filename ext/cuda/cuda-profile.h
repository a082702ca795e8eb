/* gst-vae CUDA engine: where a forward pass spends its time, by kind of
 * op (VAE_CUDA_PROFILE=1).  Events are recorded between ops, so the pass
 * runs without a CUDA graph while profiling; the sums are printed to stderr
 * when the plan is freed. */
#pragma once
#include <cuda_runtime_api.h>

#include "graph.h"

typedef enum {
  CUDA_PROFILE_LAYOUT,     /* NCHW float32 <-> NHWC conversions */
  CUDA_PROFILE_PAD,
  CUDA_PROFILE_CONV,       /* cuDNN, kernel > 1 */
  CUDA_PROFILE_CONV1X1,
  CUDA_PROFILE_EPILOGUE,   /* bias / residual / activation after a conv */
  CUDA_PROFILE_GROUPNORM,
  CUDA_PROFILE_ATTENTION,
  CUDA_PROFILE_UPSAMPLE,
  CUDA_PROFILE_OTHER,
  CUDA_PROFILE_N_KINDS
} CudaProfileKind;

typedef struct _CudaProfile CudaProfile;

/* NULL (profiling off) unless ENV is "1"; CAPACITY marks per pass. */
CudaProfile *cuda_profile_new (const char *env, int capacity);
void cuda_profile_free (CudaProfile *p);
/* Everything below accepts NULL and then does nothing. */
void cuda_profile_begin (CudaProfile *p);
/* The interval since the previous mark (or the pass's start) was KIND. */
void cuda_profile_mark (CudaProfile *p, cudaStream_t stream, CudaProfileKind kind);
/* What the work after OP's last mark is. */
CudaProfileKind cuda_profile_kind (const VaeOp *op);
/* After the stream is synchronised: adds this pass's intervals. */
void cuda_profile_collect (CudaProfile *p, cudaEvent_t start, cudaEvent_t stop);
void cuda_profile_report (const CudaProfile *p, int n, int h, int w);
