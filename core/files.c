#include "core/files.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

int read_text_file(const char *path, char **text, size_t *len) {
    *text = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        int e = errno;
        err_set("%s: cannot open: %s", path, strerror(e));
        return e == ENOENT ? 1 : -1;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (size_t got; (got = fread(buf + n, 1, cap - n - 1, fp)) > 0;) {
        n += got;
        if (cap - n < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            CHECK(buf, "out of memory reading %s", path);
        }
    }
    int failed = ferror(fp);
    fclose(fp);
    if (failed) {
        err_set("%s: read error", path);
        free(buf);
        return -1;
    }
    buf[n] = '\0';
    *text = buf;
    if (len) *len = n;
    return 0;
}

int read_json_object(const char *path, cJSON **root) {
    *root = NULL;
    char *text;
    int rc = read_text_file(path, &text, NULL);
    if (rc) return rc;
    const char *end = NULL;
    *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!*root) {
        // cJSON points where parsing stopped: count the lines up to there.
        int line = 1;
        for (const char *c = text; end && c < end && *c; c++) line += *c == '\n';
        err_set("%s:%d: malformed JSON", path, line);
    } else if (!cJSON_IsObject(*root)) {
        err_set("%s: not a JSON object", path);
        cJSON_Delete(*root);
        *root = NULL;
    }
    free(text);
    return *root ? 0 : -1;
}
