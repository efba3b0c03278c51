#include "core/utf8.h"

#include <string.h>

// The sequence at s, of which at most n bytes may be read: its length, or 0 when it
// is malformed or cut off by n.
static int decode(const unsigned char *s, size_t n, uint32_t *cp) {
    static const uint32_t smallest[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    int len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (!len || s[0] > 0xf4 || (size_t)len > n) return 0;
    uint32_t v = s[0] & (0x3fu >> (len - 1));
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3fu);
    }
    if (v < smallest[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return len;
}

// A NUL is never a continuation byte, so reading a terminated string stops there.
int utf8_next(const unsigned char *s, uint32_t *cp) { return decode(s, 4, cp); }

size_t utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    uint32_t cp;
    size_t i = 0;
    for (int len; i < n; i += (size_t)len)
        if (!(len = decode(u + i, n - i, &cp))) break;
    return i;
}

bool utf8_valid(const char *s, size_t *bad) {
    size_t n = strlen(s), good = utf8_valid_prefix(s, n);
    if (good < n && bad) *bad = good;
    return good == n;
}
