/* gst-vae: liveness-based slot assignment (see buffer-plan.h). */
#include "buffer-plan.h"

typedef struct {
  gsize bytes;
  gboolean busy;
} Slot;

/* The smallest free slot that fits; when none fits, the largest free one,
 * grown (growing one beats adding one more); a new slot only when every
 * slot is busy. */
static int
slot_take (GArray *slots, gsize bytes)
{
  int fit = -1, largest = -1;
  for (guint i = 0; i < slots->len; i++) {
    const Slot *s = &g_array_index (slots, Slot, i);
    if (s->busy)
      continue;
    if (s->bytes >= bytes && (fit < 0 || s->bytes < g_array_index (slots, Slot, fit).bytes))
      fit = i;
    if (largest < 0 || s->bytes > g_array_index (slots, Slot, largest).bytes)
      largest = i;
  }
  int pick = fit >= 0 ? fit : largest;
  if (pick < 0) {
    Slot s = { 0, FALSE };
    g_array_append_val (slots, s);
    pick = slots->len - 1;
  }
  Slot *s = &g_array_index (slots, Slot, pick);
  s->busy = TRUE;
  s->bytes = MAX (s->bytes, bytes);
  return pick;
}

static void
slot_release (GArray *slots, int i)
{
  if (i >= 0)
    g_array_index (slots, Slot, i).busy = FALSE;
}

VaeBufferPlan *
vae_buffer_plan_new (int n_values, const gsize *value_bytes, int n_steps,
                     const VaePlanStep *steps, int input, int output)
{
  g_return_val_if_fail (n_values > 0 && input >= 0 && input < n_values, NULL);
  g_return_val_if_fail (output >= 0 && output < n_values, NULL);

  VaeBufferPlan *plan = g_new0 (VaeBufferPlan, 1);
  plan->n_values = n_values;
  plan->n_steps = n_steps;
  plan->value_slot = g_new (int, n_values);
  plan->scratch_slot = g_new (int, MAX (n_steps, 1));
  g_autofree int *last = g_new (int, n_values);
  for (int v = 0; v < n_values; v++) {
    plan->value_slot[v] = -1;
    last[v] = -1;
  }
  for (int i = 0; i < n_steps; i++)
    for (int r = 0; r < VAE_PLAN_STEP_MAX_READS && steps[i].reads[r] >= 0; r++)
      last[steps[i].reads[r]] = i;
  last[output] = G_MAXINT;

  g_autoptr (GArray) slots = g_array_new (FALSE, FALSE, sizeof (Slot));
  plan->value_slot[input] = slot_take (slots, value_bytes[input]);

  for (int i = 0; i < n_steps; i++) {
    const VaePlanStep *s = &steps[i];
    if (s->aux >= 0 && plan->value_slot[s->aux] < 0)
      plan->value_slot[s->aux] = slot_take (slots, value_bytes[s->aux]);
    plan->scratch_slot[i] = s->scratch_bytes ? slot_take (slots, s->scratch_bytes) : -1;

    int in_place = -1;
    if (s->inplace >= 0 && last[s->inplace] == i && plan->value_slot[s->inplace] >= 0)
      in_place = plan->value_slot[s->inplace];
    if (in_place >= 0) {
      /* Slots are allocated after planning: one taken over grows as needed. */
      Slot *sl = &g_array_index (slots, Slot, in_place);
      sl->bytes = MAX (sl->bytes, value_bytes[s->out]);
      plan->value_slot[s->out] = in_place;
    } else {
      plan->value_slot[s->out] = slot_take (slots, value_bytes[s->out]);
    }

    slot_release (slots, plan->scratch_slot[i]);
    for (int r = 0; r < VAE_PLAN_STEP_MAX_READS && s->reads[r] >= 0; r++) {
      int v = s->reads[r];
      /* A value read twice by one step is released once (its last[] no
       * longer equals i after the first); the slot the output took over
       * stays busy. */
      if (last[v] != i || plan->value_slot[v] < 0)
        continue;
      last[v] = -1;
      if (plan->value_slot[v] != plan->value_slot[s->out])
        slot_release (slots, plan->value_slot[v]);
    }
  }

  plan->n_slots = slots->len;
  plan->slot_bytes = g_new (gsize, MAX (slots->len, 1));
  for (guint i = 0; i < slots->len; i++)
    plan->slot_bytes[i] = g_array_index (slots, Slot, i).bytes;
  return plan;
}

void
vae_buffer_plan_free (VaeBufferPlan *plan)
{
  if (!plan)
    return;
  g_free (plan->value_slot);
  g_free (plan->scratch_slot);
  g_free (plan->slot_bytes);
  g_free (plan);
}

gsize
vae_buffer_plan_total (const VaeBufferPlan *plan)
{
  gsize total = 0;
  for (int i = 0; i < plan->n_slots; i++)
    total += plan->slot_bytes[i];
  return total;
}

void
vae_plan_step_from_op (const VaeOp *op, VaePlanStep *step)
{
  for (int r = 0; r < VAE_PLAN_STEP_MAX_READS; r++)
    step->reads[r] = -1;
  int n = 0;
  const int reads[4] = { op->in, op->in2, op->in3, op->residual };
  for (int r = 0; r < 4; r++)
    if (reads[r] >= 0)
      step->reads[n++] = reads[r];
  step->out = op->out;
  step->inplace = -1;
  step->aux = -1;
  step->scratch_bytes = 0;
}
