// A small test framework. A test is a named case between test_begin and test_end;
// it fails if any EXPECT inside it failed, and is skipped (with a reason printed
// as SKIPPED) if test_skip was called. The runner ends with
// "N passed, M failed, K skipped".
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/check.h"

void test_begin(const char *fmt, ...) PRINTF_LIKE(1, 2);
void test_end(void);
void test_skip(const char *fmt, ...) PRINTF_LIKE(1, 2);
void test_fail_at(const char *file, int line, const char *fmt, ...) PRINTF_LIKE(3, 4);
bool test_ok(void);  // no failure yet in the current test

#define EXPECT(cond, ...)                                               \
    do {                                                                \
        if (!(cond)) test_fail_at(__FILE__, __LINE__, __VA_ARGS__);     \
    } while (0)

// Path of a repository-relative file (tests run from the repository root, or from
// wherever SDFT_ROOT points).
const char *repo_path(const char *rel);
// Path of a file under ../shared/data (SDFT_SHARED overrides the shared folder).
const char *shared_path(const char *rel);
// A fresh scratch directory for this run (removed at exit).
const char *scratch_dir(void);
// "<scratch dir>/<formatted name>", from a ring of 8 buffers.
const char *scratch_path(const char *fmt, ...) PRINTF_LIKE(1, 2);

// A whole file's bytes, NUL-terminated (caller frees), and writing bytes to a file;
// both abort naming the file when it cannot be read or written.
unsigned char *read_whole(const char *path, size_t *len);
void write_whole(const char *path, const void *bytes, size_t len);

// The test venv's Python (PYTHON, as make test sets it; else python3).
const char *test_python(void);
// Whether that Python has numpy and Pillow; skips the current test when not.
bool have_pillow(void);
// Runs the repository script with printf-style arguments through that Python; its
// exit status, -1 when it did not exit normally.
int run_python_script(const char *script, const char *fmt, ...) PRINTF_LIKE(2, 3);

// Fixture tensors as host f32 arrays (caller frees); abort naming the tensor when
// absent. fixture_floats: as stored, *n elements. fixture_nhwc: a 4-D NCHW tensor
// (torch's layout) permuted to our NHWC, its NHWC shape in shape[4].
struct st_file;
float *fixture_floats(struct st_file *f, const char *name, int64_t *n);
float *fixture_nhwc(struct st_file *f, const char *name, int64_t *shape);
int32_t *fixture_ints(struct st_file *f, const char *name, int64_t *n);  // an I32 tensor
// A fixture tensor as an f32 tensor on dev, 4-D NCHW permuted to NHWC.
struct tensor;
struct tensor *fixture_tensor(struct st_file *f, const char *name, int dev);
// Relative L2 error of ours against that fixture tensor (INFINITY when shapes differ).
double fixture_error(const struct tensor *ours, struct st_file *f, const char *name);
// A tensor's values as host f32 (caller frees).
float *host_floats(const struct tensor *t);

// The suites; tests/main.c runs them in order.
void suite_rng(void);
void suite_tensor(void);
void suite_autograd(void);
void suite_safetensors(void);
void suite_ops(void);
void suite_golden(void);
void suite_emu(void);
void suite_planted(void);
void suite_tokenizer(void);
void suite_models(void);
void suite_schedulers(void);
void suite_pipeline(void);
void suite_train(void);
void suite_eval(void);
void suite_cli(void);
void suite_png(void);
void suite_data(void);
void suite_config(void);
void suite_lora(void);
void suite_full(void);  // only when named: make test-full
