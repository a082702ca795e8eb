/* gst-vae golden tests: running one case of an image golden program, as
 * test-golden and test-golden-flux2 both do: the reference's tensors it
 * reads and the engine's runs, each failing the case (and saying why) when
 * it cannot be done. */
#pragma once
#include <glib.h>
#include "engine.h"
#include "safetensors.h"

G_BEGIN_DECLS

/* The reference tensor NAME of ST as float32 (free with g_free), checked
 * to have N elements; otherwise NULL, the test failed with LABEL. */
float *golden_ref_f32 (const char *label, const VaeSafetensors *st, const char *name, gsize n);

/* The reference tensor NAME of ST, checked to be U8 of N elements (it
 * lives as long as ST); otherwise NULL, the test failed with LABEL. */
const guint8 *golden_ref_u8 (const char *label, const VaeSafetensors *st, const char *name,
                             gsize n);

/* Runs one batch of one H x W frame through ENGINE, saying how long it
 * took; FALSE, the test failed with LABEL, when it fails. */
gboolean golden_run (const char *label, VaeEngine *engine, VaeDirection dir, int h, int w,
                     const float *in, float *out);

G_END_DECLS
