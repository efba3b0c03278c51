// UTF-8 text: decoding one character and checking a whole string. Malformed, as
// Python's decoder has it: a stray or missing continuation byte, an overlong form, a
// surrogate, a code point past U+10FFFF.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Decodes the sequence at s into *cp: its length in bytes, or 0 when malformed. It
// stops at a NUL, which is never a continuation byte.
int utf8_next(const unsigned char *s, uint32_t *cp);
// Offset of the first byte of s[0..n) that breaks UTF-8, or n when none does (NULs
// count as characters: for length-delimited text such as a file header).
size_t utf8_valid_prefix(const char *s, size_t n);
// Whether the NUL-terminated s is UTF-8; when not, *bad (may be NULL) receives the
// offset of the first byte that breaks it.
bool utf8_valid(const char *s, size_t *bad);

#ifdef __cplusplus
}
#endif
