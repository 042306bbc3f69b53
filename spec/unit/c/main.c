/* main.c - runs every registered C unit test; an optional argument filters
 * by substring. */
#include "harness.h"

#include <string.h>

static struct test_case *head, **tail = &head;

void harness_register(struct test_case *t)
{
    *tail = t;
    tail = &t->next;
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    for (struct test_case *t = head; t; t = t->next) {
        if (argc > 1 && !strstr(t->name, argv[1]))
            continue;
        int f = 0;
        t->fn(&f);
        if (f) {
            failed++;
            fprintf(stderr, "FAIL %s\n", t->name);
        } else {
            passed++;
            printf("ok   %s\n", t->name);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
