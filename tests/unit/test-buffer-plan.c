/* gst-vae: the engines' buffer planner (gst/vae/core/buffer-plan.h).
 *
 * Hand-made cases pin the planner's choices (reuse, in place, read twice,
 * scratch, aux); random step lists check its one invariant: two values
 * that are alive at the same time never share a slot, and every slot is as
 * large as what it holds. */
#include <glib.h>
#include "buffer-plan.h"

static VaePlanStep
step (int out, int r0, int r1, int r2)
{
  VaePlanStep s = { { r0, r1, r2, -1, -1, -1 }, out, -1, -1, 0 };
  return s;
}

/* A chain 0 -> 1 -> 2 -> 3 needs two slots (ping-pong), the larger first. */
static void
test_chain (void)
{
  gsize bytes[4] = { 100, 300, 200, 50 };
  VaePlanStep steps[3] = { step (1, 0, -1, -1), step (2, 1, -1, -1), step (3, 2, -1, -1) };
  g_autoptr (VaeBufferPlan) p = vae_buffer_plan_new (4, bytes, 3, steps, 0, 3);
  g_assert_cmpint (p->n_slots, ==, 2);
  g_assert_cmpint (p->value_slot[0], !=, p->value_slot[1]);
  g_assert_cmpint (p->value_slot[2], ==, p->value_slot[0]);   /* 0 is dead by then */
  g_assert_cmpint (p->value_slot[3], ==, p->value_slot[1]);
  g_assert_cmpuint (vae_buffer_plan_total (p), ==, 200 + 300);
}

/* A residual that dies at the step that reads it is accumulated into when
 * the engine asks; not when it is still needed later. */
static void
test_inplace (void)
{
  gsize bytes[4] = { 64, 64, 64, 64 };
  VaePlanStep steps[3] = { step (1, 0, -1, -1), step (2, 1, 0, -1), step (3, 2, 0, -1) };
  steps[1].inplace = 0;   /* 0 is read again by step 2: not in place */
  steps[2].inplace = 0;   /* last use of 0: in place */
  g_autoptr (VaeBufferPlan) p = vae_buffer_plan_new (4, bytes, 3, steps, 0, 3);
  g_assert_cmpint (p->value_slot[2], !=, p->value_slot[0]);
  g_assert_cmpint (p->value_slot[3], ==, p->value_slot[0]);
  g_assert_cmpint (p->value_slot[3], !=, p->value_slot[2]);
}

/* A value read twice by one step is released once: the next value must
 * not be handed the same slot as a value still alive. */
static void
test_read_twice (void)
{
  gsize bytes[5] = { 10, 10, 10, 10, 10 };
  VaePlanStep steps[4] = { step (1, 0, -1, -1), step (2, 1, 1, 1), step (3, 0, -1, -1),
                           step (4, 2, 3, -1) };
  g_autoptr (VaeBufferPlan) p = vae_buffer_plan_new (5, bytes, 4, steps, 0, 4);
  /* During step 2 (out 3) values 0, 2 are alive and 3 is written. */
  g_assert_cmpint (p->value_slot[3], !=, p->value_slot[2]);
  g_assert_cmpint (p->value_slot[3], !=, p->value_slot[0]);
  g_assert_cmpint (p->value_slot[2], !=, p->value_slot[0]);
  g_assert_cmpint (p->n_slots, ==, 3);
}

/* Scratch never aliases the step's output or live values, and is free for
 * the next step. */
static void
test_scratch_and_aux (void)
{
  gsize bytes[5] = { 8, 8, 8, 8, 8 };
  VaePlanStep steps[3] = { step (1, 0, 4, -1), step (2, 1, 4, -1), step (3, 2, -1, -1) };
  steps[0].scratch_bytes = 1000;
  steps[0].aux = 4;         /* written by step 0, read by step 1 too */
  steps[1].aux = 4;
  g_autoptr (VaeBufferPlan) p = vae_buffer_plan_new (5, bytes, 3, steps, 0, 3);
  int sc = p->scratch_slot[0];
  g_assert_cmpint (sc, >=, 0);
  g_assert_cmpint (p->scratch_slot[1], ==, -1);
  g_assert_cmpuint (p->slot_bytes[sc], >=, 1000);
  for (int v = 0; v < 2; v++)
    g_assert_cmpint (p->value_slot[v], !=, sc);
  g_assert_cmpint (p->value_slot[4], !=, sc);
  g_assert_cmpint (p->value_slot[4], !=, p->value_slot[1]);
  g_assert_cmpint (p->value_slot[4], !=, p->value_slot[0]);
  /* Step 1's output may not take the aux value's slot (read by step 1). */
  g_assert_cmpint (p->value_slot[2], !=, p->value_slot[4]);
}

/* Random step lists: live ranges that overlap never share a slot. */
static void
test_random_invariant (void)
{
  GRand *rand = g_rand_new_with_seed (1234);
  for (int iter = 0; iter < 2000; iter++) {
    const int n_steps = g_rand_int_range (rand, 1, 40);
    const int n_values = n_steps + 1;
    g_autofree gsize *bytes = g_new (gsize, n_values);
    g_autofree VaePlanStep *steps = g_new (VaePlanStep, n_steps);
    for (int v = 0; v < n_values; v++)
      bytes[v] = g_rand_int_range (rand, 1, 1000);
    for (int i = 0; i < n_steps; i++) {
      /* Step i writes value i + 1 and reads up to 4 earlier values. */
      int nr = g_rand_int_range (rand, 1, 5);
      steps[i] = step (i + 1, -1, -1, -1);
      for (int r = 0; r < nr; r++)
        steps[i].reads[r] = g_rand_int_range (rand, 0, i + 1);
      steps[i].inplace = g_rand_boolean (rand) ? steps[i].reads[0] : -1;
      steps[i].scratch_bytes = g_rand_boolean (rand) ? g_rand_int_range (rand, 1, 500) : 0;
    }
    g_autoptr (VaeBufferPlan) p = vae_buffer_plan_new (n_values, bytes, n_steps, steps, 0,
                                                       n_values - 1);
    /* Live range of each value: [written at, last read at]. */
    g_autofree int *from = g_new (int, n_values), *to = g_new (int, n_values);
    from[0] = -1;
    for (int v = 0; v < n_values; v++)
      to[v] = from[v] = v - 1;
    for (int i = 0; i < n_steps; i++)
      for (int r = 0; r < VAE_PLAN_STEP_MAX_READS && steps[i].reads[r] >= 0; r++)
        to[steps[i].reads[r]] = MAX (to[steps[i].reads[r]], i);
    to[n_values - 1] = n_steps;
    for (int a = 0; a < n_values; a++) {
      g_assert_cmpint (p->value_slot[a], >=, 0);
      g_assert_cmpuint (p->slot_bytes[p->value_slot[a]], >=, bytes[a]);
      for (int b = a + 1; b < n_values; b++) {
        if (p->value_slot[a] != p->value_slot[b])
          continue;
        /* b is written at step from[b]: a must be dead before it, or die at
         * that very step with b written in place over it. */
        gboolean ok = to[a] < from[b]
                      || (to[a] == from[b] && steps[from[b]].inplace == a);
        if (!ok)
          g_error ("iter %d: values %d [%d,%d] and %d [%d,%d] share slot %d", iter, a,
                   from[a], to[a], b, from[b], to[b], p->value_slot[a]);
      }
    }
    for (int i = 0; i < n_steps; i++) {
      int sc = p->scratch_slot[i];
      if (!steps[i].scratch_bytes) {
        g_assert_cmpint (sc, ==, -1);
        continue;
      }
      g_assert_cmpuint (p->slot_bytes[sc], >=, steps[i].scratch_bytes);
      for (int v = 0; v < n_values; v++)
        if (from[v] <= i && to[v] >= i)
          g_assert_cmpint (p->value_slot[v], !=, sc);
      g_assert_cmpint (p->value_slot[i + 1], !=, sc);
    }
  }
  g_rand_free (rand);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/buffer-plan/chain", test_chain);
  g_test_add_func ("/buffer-plan/inplace", test_inplace);
  g_test_add_func ("/buffer-plan/read-twice", test_read_twice);
  g_test_add_func ("/buffer-plan/scratch-aux", test_scratch_and_aux);
  g_test_add_func ("/buffer-plan/random-invariant", test_random_invariant);
  return g_test_run ();
}
