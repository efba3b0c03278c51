#include "tests/test.h"

#include "core/files.h"
#include "kernels/ops.h"
#include "kernels/tensor_file.h"
#include "tests/harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char current[256];
static int failed_checks, skipped;
int tests_passed, tests_failed, tests_skipped;

void test_begin(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(current, sizeof current, fmt, ap);
    va_end(ap);
    failed_checks = 0;
    skipped = 0;
}

void test_fail_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("  %s:%d: ", file, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    failed_checks++;
}

void test_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("SKIPPED %s: ", current);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    skipped = 1;
}

bool test_ok(void) { return failed_checks == 0; }

void test_end(void) {
    if (failed_checks) {
        printf("FAIL %s\n", current);
        tests_failed++;
    } else if (skipped) {
        tests_skipped++;
    } else {
        printf("ok   %s\n", current);
        tests_passed++;
    }
    fflush(stdout);
}

const char *repo_path(const char *rel) {
    static char buf[4][1024];
    static int next;
    const char *root = getenv("SDFT_ROOT");
    char *out = buf[next++ % 4];
    snprintf(out, sizeof buf[0], "%s/%s", root ? root : ".", rel);
    return out;
}

const char *shared_path(const char *rel) {
    static char buf[4][1024];
    static int next;
    const char *shared = getenv("SDFT_SHARED");
    char *out = buf[next++ % 4];
    if (shared)
        snprintf(out, sizeof buf[0], "%s/data/%s", shared, rel);
    else
        snprintf(out, sizeof buf[0], "%s", repo_path(""));
    if (!shared) snprintf(out + strlen(out), sizeof buf[0] - strlen(out), "../shared/data/%s", rel);
    return out;
}

static char scratch[256];

static void remove_scratch(void) {
    if (!scratch[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", scratch);
}

const char *scratch_path(const char *fmt, ...) {
    static char buf[8][1024];
    static int next;
    char *out = buf[next++ % 8], name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    snprintf(out, sizeof buf[0], "%s/%s", scratch_dir(), name);
    return out;
}

const char *scratch_dir(void) {
    if (!scratch[0]) {
        snprintf(scratch, sizeof scratch, "/tmp/sdft-test-XXXXXX");
        CHECK(mkdtemp(scratch), "mkdtemp failed");
        atexit(remove_scratch);
    }
    return scratch;
}

float *fixture_floats(st_file *f, const char *name, int64_t *n) {
    tensor *t = st_load(f, name, DT_F32, DEV_CPU);
    CHECK(t, "fixture: %s", err_msg());
    *n = tensor_numel(t);
    float *v = xmalloc((size_t)(*n ? *n : 1) * sizeof *v);
    tensor_copy_to_f32(t, v, (size_t)*n);
    tensor_free(t);
    return v;
}

float *fixture_nhwc(st_file *f, const char *name, int64_t *shape) {
    tensor *t = st_load(f, name, DT_F32, DEV_CPU);
    CHECK(t && t->ndim == 4, "fixture %s: %s", name, t ? "not 4-D" : err_msg());
    tensor *p = op_permute(t, (const int[]){0, 2, 3, 1});
    tensor *c = op_contiguous(p);
    int64_t n = tensor_numel(c);
    float *v = xmalloc((size_t)n * sizeof *v);
    tensor_copy_to_f32(c, v, (size_t)n);
    for (int d = 0; d < 4; d++) shape[d] = c->shape[d];
    tensor_free(c), tensor_free(p), tensor_free(t);
    return v;
}

int32_t *fixture_ints(st_file *f, const char *name, int64_t *n) {
    tensor *t = st_load(f, name, DT_I32, DEV_CPU);
    CHECK(t, "fixture: %s", err_msg());
    *n = tensor_numel(t);
    int32_t *v = xmalloc((size_t)(*n ? *n : 1) * sizeof *v);
    memcpy(v, tensor_data(t), (size_t)*n * sizeof *v);
    tensor_free(t);
    return v;
}

const char *test_python(void) { return getenv("PYTHON") ? getenv("PYTHON") : "python3"; }

bool have_pillow(void) {
    static int cached = -1;
    if (cached < 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s -c 'import numpy, PIL' >/dev/null 2>&1", test_python());
        cached = system(cmd) == 0;
    }
    if (!cached)
        test_skip("%s cannot import numpy and Pillow (python3 -m pip install -r tools/requirements-test.txt)",
                  test_python());
    return cached;
}

int run_python_script(const char *script, const char *fmt, ...) {
    char args[1536], cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s '%s' %s", test_python(), repo_path(script), args);
    fflush(stdout);
    int status = system(cmd);
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

float *host_floats(const tensor *t) {
    int64_t n = tensor_numel(t);
    float *v = xmalloc((size_t)(n ? n : 1) * sizeof *v);
    tensor_copy_to_f32(t, v, (size_t)n);
    return v;
}

tensor *fixture_tensor(st_file *f, const char *name, int dev) {
    tensor *t = st_load(f, name, DT_F32, DEV_CPU);
    CHECK(t, "fixture: %s", err_msg());
    if (t->ndim == 4) {
        tensor *p = op_permute(t, (const int[]){0, 2, 3, 1});
        tensor_free(t);
        t = op_contiguous(p);
        tensor_free(p);
    }
    float *v = host_floats(t);
    tensor *out = tensor_from_f32(DT_F32, (device)dev, t->ndim, t->shape, v);
    free(v);
    tensor_free(t);
    return out;
}

double fixture_error(const tensor *ours, st_file *f, const char *name) {
    tensor *ref = fixture_tensor(f, name, DEV_CPU);
    double err = INFINITY;
    if (tensor_same_shape(ours, ref)) {
        float *a = host_floats(ours), *b = host_floats(ref);
        err = rel_error(a, b, tensor_numel(ref));
        free(a), free(b);
    }
    tensor_free(ref);
    return err;
}

unsigned char *read_whole(const char *path, size_t *len) {
    char *text;
    CHECK(read_text_file(path, &text, len) == 0, "%s", err_msg());
    return (unsigned char *)text;
}

void write_whole(const char *path, const void *bytes, size_t len) {
    FILE *fp = fopen(path, "wb");
    CHECK(fp && fwrite(bytes, 1, len, fp) == len && fclose(fp) == 0, "cannot write %s", path);
}
