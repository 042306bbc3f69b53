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

#ifdef __SSE2__
/* Bit k set: byte k of v may need a look (a signed compare below 0x20
 * catches control characters and non-ASCII both: as int8 they are both
 * below it). */
static inline __attribute__((always_inline)) unsigned json_special_mask(__m128i v)
{
    __m128i special = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
        _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
    return (unsigned)_mm_movemask_epi8(special);
}
#endif

/* The first index at or after i, in u[0..n), that may need a look, or n
 * when none does. 16 bytes are tested at a time; the last few (fewer than
 * 16) with one load of u's last 16 bytes, the ones before i masked off,
 * so that nothing past u[n - 1] is read and a string's short tail is not
 * walked byte by byte (it was a sixth of an event's scan). Where u itself
 * is shorter than 16 bytes, and without SSE2, it returns i: the caller
 * goes on byte by byte. */
static inline __attribute__((always_inline)) size_t json_plain_run(const unsigned char *u, size_t i, size_t n)
{
#ifdef __SSE2__
    while (i + 16 <= n) {
        unsigned mask = json_special_mask(_mm_loadu_si128((const __m128i *)(const void *)(u + i)));
        if (mask)
            return i + (size_t)__builtin_ctz(mask);
        i += 16;
    }
    if (i < n && n >= 16) {
        unsigned mask = json_special_mask(_mm_loadu_si128((const __m128i *)(const void *)(u + n - 16)));
        mask >>= 16 - (n - i);
        return mask ? i + (size_t)__builtin_ctz(mask) : n;
    }
#else
    (void)u;
    (void)n;
#endif
    return i;
}

#endif
