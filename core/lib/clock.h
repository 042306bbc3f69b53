/* clock.h - a clock read as nanoseconds. CLOCK_MONOTONIC is a vDSO read
 * (~25 ns here); CLOCK_THREAD_CPUTIME_ID is a system call (~0.3 us). */
#ifndef POLARIS_CLOCK_H
#define POLARIS_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t mono_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

#endif
