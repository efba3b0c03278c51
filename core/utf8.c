#include "core/utf8.h"

int utf8_next(const unsigned char *s, uint32_t *cp) {
    static const uint32_t smallest[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    int len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (!len || s[0] > 0xf4) return 0;
    uint32_t v = s[0] & (0x3fu >> (len - 1));
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3fu);
    }
    if (v < smallest[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return len;
}

bool utf8_valid(const char *s, size_t *bad) {
    uint32_t cp;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int len = utf8_next(p, &cp);
        if (!len) {
            if (bad) *bad = (size_t)(p - (const unsigned char *)s);
            return false;
        }
        p += len;
    }
    return true;
}
