/* pattern.h - the byte stream lsrchild's "flood" mode writes and the harness checks: position
 * dependent and non-periodic at small scales, so "the newest N bytes" cannot match by accident. */
#ifndef LSR_TEST_PATTERN_H
#define LSR_TEST_PATTERN_H

#include <stddef.h>
#include <stdint.h>

static inline unsigned char pattern_byte(size_t i, int stream)
{
    uint32_t x = (uint32_t)i * 2654435761u + (uint32_t)stream * 40503u;
    return (unsigned char)(x >> 24);
}

#endif
