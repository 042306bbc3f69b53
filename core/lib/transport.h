/* transport.h - listening sockets for the URIs of DESIGN 7:
 * vsock://any:PORT, vsock://CID:PORT, tcp://HOST:PORT, unix:PATH. */
#ifndef POLARIS_TRANSPORT_H
#define POLARIS_TRANSPORT_H

#include <stddef.h>

/* Returns a non-blocking, close-on-exec listening fd, or -1 with a message
 * in err. mode applies to unix sockets (0 = leave as umask made it). */
int transport_listen(const char *uri, unsigned mode, char *err, size_t errlen);
/* Whether a vsock URI can be reached by a guest on this machine (a host-side
 * vsock transport exists). */
int transport_vsock_usable(void);
/* Connects (blocking) to a listener at uri, as a guest or test would.
 * Returns a close-on-exec fd, or -1 with a message in err. */
int transport_connect(const char *uri, char *err, size_t errlen);
/* For unix: URIs, the path (so it can be unlinked at exit), else NULL. */
const char *transport_unix_path(const char *uri);

#endif
