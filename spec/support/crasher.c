/* crasher.c - a process that crashes on purpose, for the crash monitor
 * specs: `polaris-crasher MS [segv|abort|bus|exit]` lives MS milliseconds
 * (so the daemon sees its exec), then dies the way it is told. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
    long ms = argc > 1 ? atol(argv[1]) : 100;
    const char *how = argc > 2 ? argv[2] : "segv";
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    if (strcmp(how, "abort") == 0)
        abort();
    if (strcmp(how, "bus") == 0)
        raise(SIGBUS);
    if (strcmp(how, "exit") == 0)
        return 3;
    volatile int *nowhere = NULL;
    *nowhere = 1;                    /* a real SIGSEGV, not a raise() */
    return 0;
}
