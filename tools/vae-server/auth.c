/* vae-server: authorization.
 *
 * Why a file of its own: the token check is the one place that reads the
 * secret, and it compares in constant time; keeping it apart keeps it
 * small enough to review at a glance. */
#include "vae-server.h"

gboolean
authorized (Server *s, SoupServerMessage *msg)
{
  if (!s->token)
    return TRUE;
  const char *a = soup_message_headers_get_one (
      soup_server_message_get_request_headers (msg), "Authorization");
  if (!a || g_ascii_strncasecmp (a, "Bearer ", 7))
    return FALSE;
  a += 7;
  while (*a == ' ')
    a++;
  /* Compare in constant time over the token's length. */
  const gsize tl = strlen (s->token), al = strlen (a);
  guint diff = tl != al;
  for (gsize i = 0; i < tl; i++)
    diff |= (guint) (s->token[i] ^ (i < al ? a[i] : 0));
  return diff == 0;
}
