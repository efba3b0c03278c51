// Numbers on the command line, read strictly: the whole argument is one decimal
// number (strtod / strtoll: no trailing text, nothing empty), finite, and inside
// the range. Anything else is -1 with a one-line err_msg() that names the argument
// and what it takes:
//   --cfg: expected a number from 0 to 100, got "nan"
#pragma once
#include <stdint.h>

#include "core/config.h"

#ifdef __cplusplus
extern "C" {
#endif

int arg_double(double *out, const char *name, const char *text, double lo, double hi);
int arg_int64(int64_t *out, const char *name, const char *text, int64_t lo, int64_t hi);
int arg_int(int *out, const char *name, const char *text, int lo, int hi);

// With the type and range of a config field (CFG_INT: out is an int, CFG_INT64: an
// int64_t, CFG_FLOAT: a double), so that an option and its config key take the same
// values: sdft-sample's --width is validation.width.
int arg_field(void *out, const char *name, const char *text, const cfg_field *f);

#ifdef __cplusplus
}
#endif
