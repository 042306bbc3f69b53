/* test_block_cache.c - the sandbox allocator's small-block cache: random
 * allocations, frees and reallocs checked against what each block must
 * hold (under `make asan` a block smaller than its class, or one used
 * after it went back to malloc, is a report), its byte bound, and that a
 * block comes back only for a size of its class. */
#include "harness.h"
#include "lib/block_cache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 512
#define STEPS 200000

static uint64_t rng = 0x9E3779B97F4A7C15u;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* sizes around the class edges, the small limit, and beyond it */
static size_t some_size(void)
{
    switch (next_rand() % 4) {
    case 0: return 1 + next_rand() % 64;
    case 1: return BLOCK_CACHE_SMALL - 8 + next_rand() % 16;
    case 2: return (1 + next_rand() % BLOCK_CACHE_CLASSES) * BLOCK_CACHE_STEP + next_rand() % 3 - 1;
    default: return 1 + next_rand() % (3 * BLOCK_CACHE_SMALL);
    }
}

static void fill(unsigned char *p, size_t n, unsigned tag)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(tag * 31u + i);
}

static int holds(const unsigned char *p, size_t n, unsigned tag)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(tag * 31u + i))
            return 0;
    return 1;
}

TEST(block_cache_keeps_contents_and_bound)
{
    struct block_cache c;
    block_cache_init(&c, 16 * 1024);
    unsigned char *p[SLOTS] = {0};
    size_t len[SLOTS] = {0};
    unsigned tag[SLOTS] = {0};
    int bad = 0, over = 0;
    for (unsigned step = 0; step < STEPS; step++) {
        unsigned i = (unsigned)(next_rand() % SLOTS);
        unsigned op = (unsigned)(next_rand() % 3);
        if (!p[i]) {
            len[i] = some_size();
            p[i] = block_cache_alloc(&c, len[i]);
            REQUIRE(p[i]);
            tag[i] = step;
            fill(p[i], len[i], tag[i]);       /* its whole size: ASan sees a short block */
        } else if (op == 0) {
            bad += !holds(p[i], len[i], tag[i]);
            block_cache_free(&c, p[i], len[i]);
            p[i] = NULL;
        } else {
            size_t n = some_size();
            unsigned char *q = block_cache_realloc(&c, p[i], len[i], n);
            REQUIRE(q);
            bad += !holds(q, len[i] < n ? len[i] : n, tag[i]);
            p[i] = q;
            len[i] = n;
            tag[i] = step;
            fill(q, n, tag[i]);
        }
        over += c.bytes > c.max_bytes;
    }
    CHECK(bad == 0);
    CHECK(over == 0);
    CHECK(c.bytes > 0);                      /* it did keep blocks */
    for (unsigned i = 0; i < SLOTS; i++)
        block_cache_free(&c, p[i], len[i]);
    block_cache_flush(&c);
    CHECK(c.bytes == 0);
    for (unsigned k = 0; k < BLOCK_CACHE_CLASSES; k++)
        CHECK(c.free[k] == NULL);
}

TEST(block_cache_reuses_by_class)
{
    struct block_cache c;
    block_cache_init(&c, 4096);
    void *a = block_cache_alloc(&c, 20);       /* the 32-byte class */
    REQUIRE(a);
    block_cache_free(&c, a, 20);
    CHECK(c.bytes == 32);
    void *b = block_cache_alloc(&c, 10);       /* the 16-byte class: not a */
    CHECK(b != a);
    void *d = block_cache_alloc(&c, 32);       /* a's class: a */
    CHECK(d == a);
    CHECK(c.bytes == 0);
    /* growing within the class keeps the block, past it moves it */
    CHECK(block_cache_realloc(&c, d, 32, 17) == d);
    void *e = block_cache_realloc(&c, d, 17, 33);
    REQUIRE(e);
    CHECK(c.bytes == 32);                      /* d went to the cache */
    block_cache_free(&c, b, 10);
    block_cache_free(&c, e, 33);
    /* large blocks are malloc's, never kept */
    void *big = block_cache_alloc(&c, BLOCK_CACHE_SMALL + 1);
    REQUIRE(big);
    size_t before = c.bytes;
    block_cache_free(&c, big, BLOCK_CACHE_SMALL + 1);
    CHECK(c.bytes == before);
    block_cache_flush(&c);
}

TEST(block_cache_with_no_room_keeps_nothing)
{
    struct block_cache c;
    block_cache_init(&c, 0);
    void *a = block_cache_alloc(&c, 8);
    REQUIRE(a);
    block_cache_free(&c, a, 8);
    CHECK(c.bytes == 0);
    CHECK(c.free[0] == NULL);
}
