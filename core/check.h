// Error handling in two flavours.
//
// CHECK: an invariant of the program itself (a shape mismatch in model code, a
// failed allocation). Breaking one is a bug, so it prints file:line and aborts.
//
// err_set / err_msg: bad *input* (a malformed file, a config typo). Functions that
// read user data return an error code and leave a one-line message behind, so the
// caller decides whether to stop, skip or report, and tests can check the text.
#pragma once
#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define NORETURN __attribute__((noreturn))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define NORETURN
#define PRINTF_LIKE(f, a)
#endif

NORETURN void die_at(const char *file, int line, const char *fmt, ...) PRINTF_LIKE(3, 4);
// The condition's text travels as an argument: it may contain '%'.
NORETURN void die_check_at(const char *file, int line, const char *cond, const char *fmt, ...)
    PRINTF_LIKE(4, 5);

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (!(cond)) die_check_at(__FILE__, __LINE__, #cond, __VA_ARGS__);        \
    } while (0)
#define DIE(...) die_at(__FILE__, __LINE__, __VA_ARGS__)

// malloc/calloc that never return NULL.
void *xmalloc_at(size_t n, const char *file, int line);
void *xcalloc_at(size_t count, size_t size, const char *file, int line);
#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(c, s) xcalloc_at((c), (s), __FILE__, __LINE__)

// The last input error of this thread: one line, without trailing newline. The
// arguments may include err_msg() itself, to add context to an error from below.
void err_set(const char *fmt, ...) PRINTF_LIKE(1, 2);
const char *err_msg(void);

#ifdef __cplusplus
}
#endif
