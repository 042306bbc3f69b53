/* harness.h - a minimal C test harness: TEST(name) registers a test, CHECK
 * records a failure and goes on, REQUIRE stops the test. The runner prints
 * one line per failure and ends with "N passed, N failed". */
#ifndef POLARIS_HARNESS_H
#define POLARIS_HARNESS_H

#include <stdio.h>

struct test_case {
    const char *name;
    void (*fn)(int *failed);
    struct test_case *next;
};

void harness_register(struct test_case *t);

#define TEST(name)                                                          \
    static void name(int *failed_);                                         \
    static struct test_case name##_case = {#name, name, NULL};             \
    __attribute__((constructor)) static void name##_register(void)          \
    { harness_register(&name##_case); }                                     \
    static void name(int *failed_)

#define CHECK(cond) do {                                                    \
    if (!(cond)) {                                                          \
        fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        *failed_ = 1;                                                       \
    } } while (0)

#define REQUIRE(cond) do {                                                  \
    if (!(cond)) {                                                          \
        fprintf(stderr, "  %s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
        *failed_ = 1;                                                       \
        return;                                                             \
    } } while (0)

#endif
