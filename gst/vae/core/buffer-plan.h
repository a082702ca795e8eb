/* gst-vae: which buffer holds which value while a graph runs.
 *
 * Every engine runs a graph's ops in order over activations that live only
 * from the op that writes them to the last op that reads them.  Giving each
 * value its own buffer would hold the whole network's activations at once;
 * this planner gives values "slots" that are reused once their value is
 * dead, so an engine allocates a handful of slots per plan.  It is the one
 * place that knows liveness: the engines (cpu, cuda) describe their steps
 * (which values a step reads and writes, what may be written in place, what
 * scratch a step needs while it runs), in their own units of bytes, and
 * allocate the slots themselves (allocation stays in the engines, as in
 * ggml-alloc).
 *
 * Order within a step: its aux value (when not planned yet) and its scratch
 * are taken, then its output (in place over a dying read when the engine
 * allows it, else a free slot), then the scratch is released, then every
 * read whose last use this is.  So an output never shares a slot with the
 * step's scratch or, unless asked for, with the step's inputs. */
#pragma once
#include <glib.h>
#include "graph.h"

G_BEGIN_DECLS

#define VAE_PLAN_STEP_MAX_READS 6

typedef struct {
  int reads[VAE_PLAN_STEP_MAX_READS];  /* value ids; -1 ends the list early */
  int out;                 /* the value this step writes */
  /* A read value whose slot OUT may take when this step is its last use
   * (out = f(in) in place, or a residual accumulated into); -1: none.  The
   * engine checks that the two are laid out alike. */
  int inplace;
  /* A value the step writes before OUT and that later steps may read too
   * (the cpu engine's converted copy of a convolution's input); it gets a
   * slot the first time a step names it.  -1: none. */
  int aux;
  gsize scratch_bytes;     /* held only while the step runs; 0: none */
} VaePlanStep;

typedef struct {
  int n_values;
  int *value_slot;         /* [n_values]: slot of each value, -1: never held */
  int n_steps;
  int *scratch_slot;       /* [n_steps]: slot of each step's scratch, -1: none */
  int n_slots;
  gsize *slot_bytes;       /* [n_slots]: the largest value the slot holds */
} VaeBufferPlan;

/* Plans N_STEPS steps over N_VALUES values whose sizes are VALUE_BYTES
 * (bytes, or any unit the engine likes).  INPUT is held from the start
 * (the engine copies the caller's input into it); OUTPUT lives to the end.
 * Values that no step writes and that are not INPUT get no slot. */
VaeBufferPlan *vae_buffer_plan_new (int n_values, const gsize *value_bytes,
                                    int n_steps, const VaePlanStep *steps,
                                    int input, int output);
void vae_buffer_plan_free (VaeBufferPlan *plan);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VaeBufferPlan, vae_buffer_plan_free)

/* Sum of the slot sizes: what the plan holds at once. */
gsize vae_buffer_plan_total (const VaeBufferPlan *plan);

/* The step of graph op OP as every engine sees it before its own choices:
 * the op's reads (in, in2, in3, residual), its output, no in-place, no aux,
 * no scratch. */
void vae_plan_step_from_op (const VaeOp *op, VaePlanStep *step);

G_END_DECLS
