/* envelope.c - allocation of envelopes: one malloc holding header and payload. */
#include "lib/envelope.h"

#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct envelope *envelope_new(enum env_type type, const void *data, size_t len)
{
    struct envelope *e = malloc(sizeof *e + len + 1);
    if (!e)
        return NULL;
    memset(e, 0, sizeof *e);
    e->type = (uint16_t)type;
    e->len = len;
    if (len)
        memcpy(e->data, data, len);
    e->data[len] = '\0';
    return e;
}

struct envelope *envelope_rewrite(struct envelope *e, const void *data, size_t len)
{
    struct envelope *n = e;
    if (sizeof *e + len + 1 > malloc_usable_size(e)) {
        if (!(n = envelope_new((enum env_type)e->type, data, len)))
            return NULL;
        memcpy(n, e, offsetof(struct envelope, len));   /* routing fields, not the payload */
        free(e);
    } else {
        if (len)                 /* data may be NULL for an empty payload */
            memmove(n->data, data, len);
        n->data[len] = '\0';
        n->len = len;
    }
    n->ev.rewritten = 1;
    n->ev.index.n = 0;
    return n;
}

void envelope_free(struct envelope *e)
{
    if (e)                       /* callers free what they did not hand on: often NULL */
        free(e);
}

void envelope_free_list(struct envelope *e)
{
    while (e) {
        struct envelope *n = e->next;
        free(e);
        e = n;
    }
}
