/* core.h - the core domain: routing and the command session router. */
#ifndef POLARIS_CORE_H
#define POLARIS_CORE_H

#include "daemon/daemon.h"

/* Builds a fresh config (file + command line) for a reload. */
typedef struct config *(*config_loader)(void *ctx, char *err, size_t errlen);

struct core *core_new(struct daemon *d, struct ev_loop *loop, config_loader load, void *load_ctx);
/* Runs the core loop until shutdown has finished in every domain. */
void core_run(struct core *c);
void core_free(struct core *c);

#endif
