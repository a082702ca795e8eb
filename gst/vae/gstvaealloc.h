/* gst-vae: allocations in the elements that can fail, and the element error
 * for frames too large for memory.
 *
 * gst_buffer_new_allocate with the default allocator takes its memory with
 * g_malloc, which ends the process when the memory is not there; buffers
 * sized by the stream (a 16384x16384 decoded frame, a latent file's frames)
 * come from here instead, and a failure becomes an element error that names
 * the frame size and what helps (tile-size, batch-size). */
#pragma once
#include <gst/gst.h>

G_BEGIN_DECLS

/* A writable buffer of SIZE bytes in system memory, or NULL with ERROR
 * (VAE_ERROR_NO_MEMORY); WHAT names it in the message. */
GstBuffer *gst_vae_buffer_try_new (gsize size, const char *what, GError **error);

/* Posts RESOURCE / NO_SPACE_LEFT for FRAMES frames (1, or the batch) of
 * WIDTH x HEIGHT image pixels that do not fit in memory.  The message names
 * the size and suggests the element's tile-size property (a smaller one when
 * it is set) and, for batches, a smaller batch-size; DETAIL (the GError's
 * message) goes to the debug text. */
void gst_vae_post_no_memory (GstElement *element, int width, int height, guint frames,
                             const char *detail);

G_END_DECLS
