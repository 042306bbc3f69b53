/* report_event.c - the smallest useful libpolaris_client program.
 *   cc report_event.c $(pkg-config --cflags --libs polaris-client)
 *   POLARIS_SOCKET=/run/polaris/polaris.sock ./a.out */
#include <polaris_api.h>
#include <stdio.h>

int main(void)
{
    PolarisEventHandle ev = polaris_event_create(9001, NULL, "1.2.0");  /* NULL: /proc/self/comm */
    polaris_event_add_string(ev, "reason", "SIGSEGV");
    polaris_event_add_int(ev, "signal", 11);
    polaris_event_add_bool(ev, "core_dumped", true);
    /* the second argument: a log file to attach (the event's "logf"), or NULL */
    if (polaris_event_commit(ev, "/var/log/syslog") < 0)  /* never blocks: < 0 means dropped */
        fprintf(stderr, "event dropped (queue full)\n");
    polaris_deinit();                             /* flush for at most 500 ms */
    return 0;
}
