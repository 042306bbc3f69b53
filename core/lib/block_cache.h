/* block_cache.h - free lists of small heap blocks, by size class, bounded
 * in bytes: a freed block is kept for the next allocation of its class
 * instead of going back to malloc. For an allocator that frees and
 * allocates the same few sizes over and over (a Lua state's tables,
 * userdata and strings an event). One thread at a time. */
#ifndef POLARIS_BLOCK_CACHE_H
#define POLARIS_BLOCK_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

#define BLOCK_CACHE_STEP    16
#define BLOCK_CACHE_CLASSES 32                     /* blocks of 1..512 bytes */
#define BLOCK_CACHE_SMALL   (BLOCK_CACHE_STEP * BLOCK_CACHE_CLASSES)

struct block_cache {
    void *free[BLOCK_CACHE_CLASSES];   /* each block's first word links the next */
    size_t bytes;                      /* held in the lists, by class size */
    size_t max_bytes;                  /* 0: nothing is kept */
};

void block_cache_init(struct block_cache *c, size_t max_bytes);

/* Frees every block held. */
void block_cache_flush(struct block_cache *c);

static inline unsigned block_cache_class(size_t n)
{
    return (unsigned)((n - 1) / BLOCK_CACHE_STEP);
}

static inline size_t block_cache_class_size(unsigned k)
{
    return (size_t)(k + 1) * BLOCK_CACHE_STEP;
}

/* A cached block for n bytes (0 < n <= BLOCK_CACHE_SMALL), or NULL. */
static inline void *block_cache_take(struct block_cache *c, size_t n)
{
    unsigned k = block_cache_class(n);
    void *p = c->free[k];
    if (p) {
        c->free[k] = *(void **)p;
        c->bytes -= block_cache_class_size(k);
    }
    return p;
}

/* A block of at least n bytes (0 < n), NULL when malloc fails. A block
 * of n <= BLOCK_CACHE_SMALL bytes has its class's size, whether cached or
 * new, so it may be cached again when freed under any size of the same
 * class. In line: it is an allocator's fast path. */
static inline void *block_cache_alloc(struct block_cache *c, size_t n)
{
    if (n > BLOCK_CACHE_SMALL)
        return malloc(n);
    void *p = block_cache_take(c, n);
    return p ? p : malloc(block_cache_class_size(block_cache_class(n)));
}

/* Frees p (NULL: nothing), allocated by block_cache_alloc or _realloc for
 * n bytes. */
static inline void block_cache_free(struct block_cache *c, void *p, size_t n)
{
    if (!p)
        return;
    unsigned k = block_cache_class(n);
    if (__builtin_expect(n == 0 || n > BLOCK_CACHE_SMALL || c->bytes + block_cache_class_size(k) > c->max_bytes, 0)) {
        free(p);
        return;
    }
    *(void **)p = c->free[k];
    c->free[k] = p;
    c->bytes += block_cache_class_size(k);
}

/* realloc for these blocks: p held on bytes, now n (0 < n). NULL when no
 * memory, p then as it was. */
void *block_cache_realloc(struct block_cache *c, void *p, size_t on, size_t n);

#endif
