#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int current_level = -1;

static int level_from_env(void) {
    const char *s = getenv("SDFT_LOG");
    if (!s) return LOG_INFO;
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return LOG_INFO;
}

int log_enabled(log_level level) {
    if (current_level < 0) current_level = level_from_env();
    return (int)level <= current_level;
}

void log_at(log_level level, const char *fmt, ...) {
    if (!log_enabled(level)) return;
    static const char *tags[] = {"error", "warning", "info", "debug"};
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", tags[level]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
