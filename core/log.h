// Levelled logging to stderr. The level comes from SDFT_LOG (error, warn, info,
// debug); the default is info.
#pragma once
#include "core/check.h"

typedef enum { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG } log_level;

void log_at(log_level level, const char *fmt, ...) PRINTF_LIKE(2, 3);
int log_enabled(log_level level);

#define log_error(...) log_at(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_at(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_at(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_DEBUG, __VA_ARGS__)
