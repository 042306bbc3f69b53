/* original_app.c - an app written against the original Polaris SDK header
 * (seeds 003, section 6.1), every function used as that header documents
 * it. The build compiles it with -Wall -Wextra -Werror -pedantic as C99 and
 * as C++ and links it unchanged against libpolaris_client (DESIGN 6).
 *
 *   original_app EVENT_ID LOG_PATH    reports four events (see main), prints
 *                                     "commit RC raw RC bad RC null RC" */
#include "polaris_api.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    uint64_t id = strtoull(argv[1], NULL, 10);
    const char *log_path = argv[2];

    /* [step 1] create, [step 2] add key-values, [step 3] commit with a log */
    PolarisEventHandle handle = polaris_event_create(id, "original_app", "2.0.1");
    polaris_event_add_string(handle, "reason", "SIGSEGV");
    polaris_event_add_int(handle, "signal", 11);
    polaris_event_add_long(handle, "uptime_ms", 9007199254740993LL);
    polaris_event_add_double(handle, "load", 0.75);
    polaris_event_add_bool(handle, "core_dumped", true);
    int commit_rc = polaris_event_commit(handle, log_path);

    /* [optional] cancel: a handle that is not sent is released */
    PolarisEventHandle unused = polaris_event_create(id + 100, NULL, NULL);
    polaris_event_add_string(unused, "never", "sent");
    polaris_event_cancel(unused);

    /* the raw interface: the body is the params object, with nesting */
    int raw_rc = polaris_report_raw(id + 1, NULL, NULL, "{\"cpu\": 90, \"detail\": {\"core\": 1}}",
                                    log_path);
    /* not JSON: refused, nothing sent */
    int bad_rc = polaris_report_raw(id + 2, "original_app", "2.0.1", "{\"cpu\": ", NULL);
    /* no log: NULL, as the header allows */
    PolarisEventHandle plain = polaris_event_create(id + 3, NULL, NULL);
    int null_rc = polaris_event_commit(plain, NULL);

    polaris_deinit();
    printf("commit %d raw %d bad %d null %d\n", commit_rc, raw_rc, bad_rc, null_rc);
    return 0;
}
