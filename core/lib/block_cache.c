/* block_cache.c - small-block free lists for the sandbox's allocator.
 *
 * A Lua strategy makes and drops the same few objects for every event (its
 * event table, the tables' node arrays, the lazy state userdata, a few
 * strings), and the collector frees them in bursts: callgrind counted ~16
 * malloc, free and realloc calls an event at ~60 instructions each, a
 * seventeenth of the daemon's work an event. Popping a list is a handful.
 *
 * Every block of BLOCK_CACHE_SMALL bytes or less is allocated at its
 * class's size, so any block freed under a size of its class can serve
 * any later request of that class. Larger blocks are malloc's, untouched.
 *
 * Uses: libc malloc. */
#include "lib/block_cache.h"

#include <string.h>

void block_cache_init(struct block_cache *c, size_t max_bytes)
{
    memset(c->free, 0, sizeof c->free);
    c->bytes = 0;
    c->max_bytes = max_bytes;
}

void block_cache_flush(struct block_cache *c)
{
    for (unsigned k = 0; k < BLOCK_CACHE_CLASSES; k++) {
        void *p = c->free[k];
        while (p) {
            void *next = *(void **)p;
            free(p);
            p = next;
        }
        c->free[k] = NULL;
    }
    c->bytes = 0;
}

void *block_cache_realloc(struct block_cache *c, void *p, size_t on, size_t n)
{
    if (on > BLOCK_CACHE_SMALL && n > BLOCK_CACHE_SMALL)
        return realloc(p, n);
    if (on <= BLOCK_CACHE_SMALL && n <= BLOCK_CACHE_SMALL && block_cache_class(on) == block_cache_class(n))
        return p;                                  /* it has its class's size */
    void *q = block_cache_alloc(c, n);
    if (!q)
        return NULL;
    memcpy(q, p, on < n ? on : n);
    block_cache_free(c, p, on);
    return q;
}
