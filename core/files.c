#include "core/files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

// Python's json module writes infinities as bare Infinity / -Infinity (diffusers'
// DPM-Solver configs carry "lambda_min_clipped": -Infinity), which JSON lacks. Outside
// strings they become 1e999 / -1e999, same length, which parse as infinities.
static void replace_bare_infinities(char *text) {
    bool in_string = false;
    for (char *c = text; *c; c++) {
        if (in_string) {
            if (*c == '\\' && c[1]) c++;
            else if (*c == '"') in_string = false;
        } else if (*c == '"') {
            in_string = true;
        } else if (strncmp(c, "Infinity", 8) == 0) {
            memcpy(c, "1e999   ", 8);
            c += 7;
        }
    }
}

int read_json_object(const char *path, cJSON **root) {
    *root = NULL;
    char *text;
    int rc = read_text_file(path, &text, NULL);
    if (rc) return rc;
    replace_bare_infinities(text);
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

const char *path_beside_program(char *out, size_t len, const char *name) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0, "cannot read /proc/self/exe");
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    snprintf(out, len, "%s/%s", exe, name);
    return out;
}

bool is_dir(const char *path) {
    struct stat s;
    return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
}

bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int file_replace_begin(file_replacement *r, const char *path) {
    size_t len = strlen(path) + sizeof FILE_TEMP_MARK + 24;
    *r = (file_replacement){.path = path, .tmp = xmalloc(len)};
    snprintf(r->tmp, len, "%s" FILE_TEMP_MARK "%ld", path, (long)getpid());
    if (!(r->fp = fopen(r->tmp, "wbe"))) {
        err_set("%s: cannot create %s: %s", path, r->tmp, strerror(errno));
        free(r->tmp);
        return -1;
    }
    return 0;
}

// fsync of the folder holding path, so that a rename in it is durable: 0 or an errno.
static int sync_folder(const char *path) {
    const char *slash = strrchr(path, '/');
    size_t n = !slash ? 0 : slash == path ? 1 : (size_t)(slash - path);
    char *dir = memcpy(xcalloc(n ? n + 1 : 2, 1), n ? path : ".", n ? n : 1);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = fd < 0 || fsync(fd) != 0 ? errno : 0;
    if (fd >= 0) close(fd);
    free(dir);
    return err;
}

int file_replace_end(file_replacement *r, int write_errno) {
    int err = write_errno;
    if (!err && (fflush(r->fp) != 0 || fsync(fileno(r->fp)) != 0)) err = errno;
    if (fclose(r->fp) != 0 && !err) err = errno;
    int rc = -1;
    if (err) {
        if (err > 0) err_set("%s: cannot write %s: %s", r->path, r->tmp, strerror(err));
        unlink(r->tmp);
    } else if (rename(r->tmp, r->path) != 0) {
        err_set("%s: cannot rename %s over it: %s", r->path, r->tmp, strerror(errno));
        unlink(r->tmp);
    } else if ((err = sync_folder(r->path)) != 0) {
        // The new file is in place; only its durability across a crash is in doubt.
        err_set("%s: saved, but syncing its folder failed: %s", r->path, strerror(err));
    } else {
        rc = 0;
    }
    free(r->tmp);
    *r = (file_replacement){0};
    return rc;
}
