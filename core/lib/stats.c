/* stats.c - the counters' storage and their JSON form. */
#include "lib/stats.h"
#include "lib/buf.h"

#include <string.h>

struct stats g_stats;

int stats_append_json(struct buf *b)
{
    const char *group = NULL;
    int rc = 0;
#define X(g, n, h)                                                        \
    if (!group || strcmp(group, #g) != 0) {                               \
        rc |= buf_printf(b, "%s\"%s\":{", group ? "}," : "", #g);         \
        group = #g;                                                       \
    } else {                                                              \
        rc |= buf_putc(b, ',');                                           \
    }                                                                     \
    rc |= buf_printf(b, "\"%s\":", #n);                                   \
    if (strcmp(#n, "connected") == 0) /* a state, not a count */          \
        rc |= buf_puts(b, STAT_GET(g##_##n) ? "true" : "false");          \
    else                                                                  \
        rc |= buf_json_u64(b, STAT_GET(g##_##n));
    STATS_FIELDS(X)
#undef X
    rc |= buf_putc(b, '}');
    return rc ? -1 : 0;
}
