/* json_plain.h - finding where a JSON string's plain bytes end. The scanner,
 * the string writer and the Lua decoder all spend most of their time on
 * string bytes that need nothing done: no quote, no backslash, no control
 * character, nothing beyond ASCII. */
#ifndef POLARIS_JSON_PLAIN_H
#define POLARIS_JSON_PLAIN_H

#include <stddef.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* The first index at or after i, in u[0..n), that may need a look: 16
 * bytes are tested at a time (a signed compare below 0x20 catches control
 * characters and non-ASCII both, as int8 they are both below it). Where
 * fewer than 16 bytes are left it returns there: the caller goes on byte
 * by byte. Without SSE2 it returns i. */
static inline __attribute__((always_inline)) size_t json_plain_run(const unsigned char *u, size_t i, size_t n)
{
#ifdef __SSE2__
    while (i + 16 <= n) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(u + i));
        __m128i special = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
            _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
        int mask = _mm_movemask_epi8(special);
        if (mask)
            return i + (size_t)__builtin_ctz((unsigned)mask);
        i += 16;
    }
#else
    (void)u;
    (void)n;
#endif
    return i;
}

#endif
