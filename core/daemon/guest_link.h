/* guest_link.h - the egress domain: PLP v1 to the guest. */
#ifndef POLARIS_GUEST_LINK_H
#define POLARIS_GUEST_LINK_H

#include "daemon/daemon.h"

struct guest_link *guest_link_new(struct daemon *d, int listen_fd, const char *uri);
int  guest_link_start(struct guest_link *g);
void guest_link_join(struct guest_link *g);
void guest_link_free(struct guest_link *g);
const char *guest_link_uri(const struct guest_link *g);

/* Hands a list of events (ENV_FORWARD_EVENT) to the guest link, counted
 * first in d->egress_events/bytes: any thread. */
void egress_push_events(struct daemon *d, struct envelope *head);

#endif
