/* ipc_server.h - the ingress domain: LSP v1 over a Unix stream socket. */
#ifndef POLARIS_IPC_SERVER_H
#define POLARIS_IPC_SERVER_H

#include "daemon/daemon.h"

struct ipc_server *ipc_server_new(struct daemon *d, int listen_fd);
int  ipc_server_start(struct ipc_server *s);       /* starts its thread */
void ipc_server_join(struct ipc_server *s);
void ipc_server_free(struct ipc_server *s);
/* Thread-safe: the core queue has room again; paused clients may resume. */
void ipc_server_resume(struct ipc_server *s);

#endif
