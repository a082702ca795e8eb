/* gst-vae: fallible allocations in the elements (see gstvaealloc.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "gstvaealloc.h"
#include "vae-error.h"

GstBuffer *
gst_vae_buffer_try_new (gsize size, const char *what, GError **error)
{
  gpointer data = vae_try_alloc (1, size, what, error);
  if (!data)
    return NULL;
  /* The memory is malloc's: free() gives it back when the buffer goes. */
  return gst_buffer_new_wrapped_full (0, data, size, 0, size, data, g_free);
}

/* The frame side above which tiles are worth suggesting, and the tile
 * suggested: a multiple of every model's spatial factor (8 or 16). */
#define SUGGESTED_TILE 512

void
gst_vae_post_no_memory (GstElement *element, int width, int height, guint frames,
                        const char *detail)
{
  guint tile = 0;
  const int side = MAX (width, height);
  g_autoptr (GString) hint = g_string_new (NULL);
  g_autofree char *what = NULL;

  if (g_object_class_find_property (G_OBJECT_GET_CLASS (element), "tile-size"))
    g_object_get (element, "tile-size", &tile, NULL);
  /* Tiles bound the engine's memory by the tile instead of the frame. */
  if (tile > 0 && (int) tile < side)
    g_string_append_printf (hint, "set a smaller tile-size than %u", tile);
  else if (side > SUGGESTED_TILE)
    g_string_append_printf (hint, "set the tile-size property (e.g. tile-size=%d) to run "
                            "them in tiles", SUGGESTED_TILE);
  if (frames > 1)
    g_string_append_printf (hint, "%sset a smaller batch-size", hint->len ? ", or " : "");

  if (frames > 1)
    what = g_strdup_printf ("a batch of %u frames of %dx%d", frames, width, height);
  else
    what = g_strdup_printf ("%dx%d frames", width, height);
  GST_ELEMENT_ERROR (element, RESOURCE, NO_SPACE_LEFT,
      ("Not enough memory for %s%s%s.", what, hint->len ? ": " : "", hint->str),
      ("%s", detail ? detail : "out of memory"));
}
