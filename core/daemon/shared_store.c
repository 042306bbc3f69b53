/* shared_store.c - polaris.shared: JSON values that survive reloads,
 * bounded in total (plugins.shared_max_bytes) and per plugin (its share:
 * the keys it set count against it until replaced or deleted).
 *
 * Uses: the registry's kv list, under its own lock (kv_mu, never held
 * with the set's). */
#include "daemon/plugin_registry_internal.h"
#include "daemon/daemon.h"
#include "lib/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the shared store: JSON values, surviving reloads ---- */

int home_shared_get(struct plugin_home *h, const char *key, struct buf *out)
{
    struct plugin_registry *r = h->reg;
    int rc = -1;
    pthread_mutex_lock(&r->kv_mu);
    for (struct kv *k = r->kv; k; k = k->next)
        if (strcmp(k->key, key) == 0) {
            rc = buf_append(out, k->json, k->len);
            break;
        }
    pthread_mutex_unlock(&r->kv_mu);
    return rc;
}

int home_shared_set(struct plugin_home *h, const char *owner, size_t limit, const char *key,
                        const char *json, size_t len)
{
    struct plugin_registry *r = h->reg;
    pthread_mutex_lock(&r->kv_mu);
    struct kv **pp = &r->kv;
    size_t mine = 0;                           /* what the owner's other keys hold */
    struct kv **found = NULL;
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) == 0)
            found = pp;
        else if (strcmp((*pp)->owner, owner) == 0)
            mine += strlen((*pp)->key) + (*pp)->len;
    }
    size_t need = json && len ? strlen(key) + len : 0;
    if (need && mine + need > limit) {
        /* refused before anything changes: the old value stays */
        pthread_mutex_unlock(&r->kv_mu);
        return -2;
    }
    if (found) {                               /* replace or delete */
        struct kv *k = *found;
        r->kv_bytes -= strlen(k->key) + k->len;
        *found = k->next;
        free(k->key);
        free(k->json);
        free(k);
    }
    int rc = 0;
    if (need) {
        struct kv *k = malloc(sizeof *k);
        if (r->kv_bytes + need > r->kv_max || !k) {
            free(k);
            rc = -1;
        } else {
            k->key = strdup(key);
            k->json = malloc(len);
            if (!k->key || !k->json) {
                free(k->key);
                free(k->json);
                free(k);
                rc = -1;
            } else {
                memcpy(k->json, json, len);
                k->len = len;
                snprintf(k->owner, sizeof k->owner, "%s", owner);
                k->next = r->kv;
                r->kv = k;
                r->kv_bytes += need;
            }
        }
    }
    pthread_mutex_unlock(&r->kv_mu);
    return rc;
}
