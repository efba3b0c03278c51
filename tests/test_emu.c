// The CUDA emulator's own tests: its self-test kernels (kernels/emu/emu_selftest.cu),
// proof that a missing __syncthreads gives a wrong answer in either schedule order, and
// misuses that must stop the program, each run in a child process.
#include "tests/test.h"

#ifdef SDFT_HAVE_EMU
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/backend.h"
#include "kernels/emu/emu.h"
#include "kernels/ops.h"
#include "tests/harness.h"

// Runs run() in a child with stderr captured; the child must stop with a message
// containing want.
static void expect_death_of(void (*run)(int), int arg, const char *want) {
    int pipe_fds[2];
    CHECK(pipe(pipe_fds) == 0, "pipe");
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    CHECK(child >= 0, "fork");
    if (child == 0) {
        dup2(pipe_fds[1], 2);
        close(pipe_fds[0]);
        run(arg);
        _exit(0);  // it should not have come back
    }
    close(pipe_fds[1]);
    char message[4096];
    size_t got = 0;
    ssize_t n;
    while ((n = read(pipe_fds[0], message + got, sizeof message - 1 - got)) > 0) got += (size_t)n;
    message[got] = 0;
    close(pipe_fds[0]);
    int status = 0;
    waitpid(child, &status, 0);
    EXPECT(!(WIFEXITED(status) && WEXITSTATUS(status) == 0), "the program went on");
    EXPECT(strstr(message, want) != NULL, "message lacks \"%s\": %s", want, message);
}

// Self-test death case i: the emulator must stop the misuse with its message.
static void expect_death(int i) {
    test_begin("emu/stops on %s", emu_selftest_death_name(i));
    expect_death_of(emu_selftest_death_run, i, emu_selftest_death_expect(i));
    test_end();
}

// A kernel that faults (emu_inject_fault: as an illegal address on a GPU, reported at
// the next synchronising call), launched by op_add on cuda-emu, then its result read.
static void faulting_add(int sync) {
    if (sync) setenv("SDFT_CUDA_SYNC", "1", 1);
    else unsetenv("SDFT_CUDA_SYNC");
    emu_sync_launches_from_env();
    float v[4] = {1, 2, 3, 4}, back[4];
    tensor *a = tensor_from_f32(DT_F32, DEV_CUDA_EMU, SHAPE(4), v);
    emu_inject_fault(700);
    tensor *sum = op_add(a, a);
    tensor_copy_to_f32(sum, back, 4);
}

// SDFT_CUDA_SYNC=1: a fault is reported at its own launch, naming the kernel's launch
// (expression, host function, file and line), instead of at whatever call synchronises
// next.
static void sync_launches(void) {
    test_begin("emu/SDFT_CUDA_SYNC=1: a faulting kernel is reported at its launch, naming it");
    expect_death_of(faulting_add, 1,
                    "launched in emu_binary failed (run): an illegal memory access was encountered");
    expect_death_of(faulting_add, 1, "kernels/cuda/elementwise.cu:");
    test_end();
    test_begin("emu/without SDFT_CUDA_SYNC: the fault surfaces at the next synchronising call");
    expect_death_of(faulting_add, 0, "cudaMemcpy(");
    expect_death_of(faulting_add, 0, "): an illegal memory access was encountered");
    test_end();
}

// The CUDA backend's block cache (kernels/cuda/memory.cu), on the emulated device.
static void block_cache(void) {
    test_begin("emu/block cache: a freed block is reused for its size, refilled with garbage");
    emu_release_cached();
    device_memory_stats s0, s1, s2;
    emu_memory_stats(&s0);
    enum { N = 1000 };
    float ones[N], back[N];
    for (int i = 0; i < N; i++) ones[i] = 1.0f;
    tensor *a = tensor_from_f32(DT_F32, DEV_CUDA_EMU, SHAPE(N), ones);
    void *block = tensor_data(a);
    tensor_free(a);
    emu_memory_stats(&s1);
    tensor *b = tensor_new(DT_F32, DEV_CUDA_EMU, SHAPE(N));
    EXPECT(tensor_data(b) == block, "a block of the same size was not reused");
    tensor_copy_to_f32(b, back, N);
    EXPECT(memcmp(back, ones, sizeof back) != 0, "the reused block still holds the freed tensor's values");
    tensor *c = tensor_new(DT_F32, DEV_CUDA_EMU, SHAPE(N + 1));
    EXPECT(tensor_data(c) != block, "two live tensors share a block");
    emu_memory_stats(&s2);
    EXPECT(s2.device_allocs == s1.device_allocs + 1, "%llu device allocations for two tensors, want 1 (one reused)",
           (unsigned long long)(s2.device_allocs - s1.device_allocs));
    EXPECT(s2.in_use == s0.in_use + (2 * N + 1) * sizeof(float), "in use %zu, was %zu", s2.in_use, s0.in_use);
    tensor_free(b), tensor_free(c);
    emu_memory_stats(&s2);
    EXPECT(s2.in_use == s0.in_use && s2.cached >= (2 * N + 1) * sizeof(float), "after freeing: in use %zu, cached %zu",
           s2.in_use, s2.cached);
    test_end();

    test_begin("emu/block cache: out of device memory, the cached blocks are returned and the allocation retried");
    enum { BIG = 1 << 20 };
    tensor *held = tensor_new(DT_F32, DEV_CUDA_EMU, SHAPE(BIG));
    tensor_free(held);  // now cached: the device has one BIG block allocated
    emu_set_memory_limit(emu_allocated_bytes() + BIG * sizeof(float) / 2);
    tensor *other = tensor_new(DT_F32, DEV_CUDA_EMU, SHAPE(BIG - 1));  // fits only without the cached one
    emu_memory_stats(&s1);
    EXPECT(s1.cached == 0, "%zu bytes still cached", s1.cached);
    tensor_free(other);
    emu_set_memory_limit(0);
    emu_release_cached();
    test_end();
}

// gemm with K = 0 leaves C = beta C + bias: a kernel of its own on the CUDA backend,
// since cuBLASLt is not promised to take an empty reduction. Compared with the CPU in
// f32 (the CPU's only gemm type); the values are exact in bf16 too.
static void gemm_empty_reduction_on(device dev, dtype dt, const float *bias, float beta, float *out) {
    enum { BATCH = 2, M = 3, N = 5 };
    float c0[BATCH * M * N], unused = 7;
    for (int i = 0; i < BATCH * M * N; i++) c0[i] = (float)(i % 7) - 3;
    tensor *c = tensor_from_f32(dt, dev, SHAPE(BATCH, M, N), c0);
    tensor *ab = tensor_from_f32(dt, dev, SHAPE(1), &unused);
    tensor *bias_t = bias ? tensor_from_f32(dt, dev, SHAPE(N), bias) : NULL;
    backend_for(dev)->gemm(c, ab, ab, bias_t, BATCH, M, N, 0, false, false, 1.0f, beta, 0, 0, M * N);
    tensor_copy_to_f32(c, out, BATCH * M * N);
    tensor_free(c), tensor_free(ab), tensor_free(bias_t);
}

static void gemm_empty_reduction(void) {
    const float bias[5] = {0.25f, -0.5f, 0.75f, 1.0f, -1.25f};
    const dtype types[2] = {DT_F32, DT_BF16};
    float from_cpu[30], from_emu[30];
    for (int t = 0; t < 2; t++)
        for (int with_bias = 0; with_bias < 2; with_bias++)
            for (int b = 0; b < 2; b++) {
                float beta = b ? 0.5f : 0.0f;
                test_begin("emu/gemm with K = 0 is beta C + bias as on the CPU (%s, %s, beta %g)",
                           dtype_name(types[t]), with_bias ? "bias" : "no bias", beta);
                gemm_empty_reduction_on(DEV_CPU, DT_F32, with_bias ? bias : NULL, beta, from_cpu);
                gemm_empty_reduction_on(DEV_CUDA_EMU, types[t], with_bias ? bias : NULL, beta, from_emu);
                EXPECT(memcmp(from_cpu, from_emu, sizeof from_cpu) == 0, "C[1] cpu %g, cuda-emu %g", from_cpu[1],
                       from_emu[1]);
                test_end();
            }
}

// One product c [M, N] = a [M, K] b [K, N] + bias on dev in dt; the bias is a view
// starting bias_offset elements into a buffer of N + 1 values (1: not 16-byte aligned).
static void gemm_case_on(device dev, dtype dt, int M, int N, int K, int bias_offset, const float *av,
                         const float *bv, const float *bias_values, float *out) {
    tensor *a = tensor_from_f32(dt, dev, SHAPE(M, K), av), *b = tensor_from_f32(dt, dev, SHAPE(K, N), bv);
    tensor *bias_buffer = tensor_from_f32(dt, dev, SHAPE(N + 1), bias_values);
    tensor *bias = tensor_view(bias_buffer, 1, (int64_t[]){N}, (int64_t[]){1}, bias_offset);
    tensor *c = tensor_new(dt, dev, SHAPE(M, N));
    backend_for(dev)->gemm(c, a, b, bias, 1, M, N, K, false, false, 1.0f, 0.0f, 0, 0, 0);
    tensor_copy_to_f32(c, out, (size_t)(M * N));
    tensor_free(a), tensor_free(b), tensor_free(bias_buffer), tensor_free(bias), tensor_free(c);
}

// The product on cuda-emu against the CPU's (f32, on the same values, exact in bf16:
// multiples of 1/4), with what the emulated cuBLASLt refuses set as given.
static void gemm_refusal_case(const char *what, dtype dt, int M, int N, int K, int bias_offset, bool no_algorithm,
                              int refused) {
    test_begin("emu/gemm when %s: falls back and matches the CPU (%s)", what, dtype_name(dt));
    float *av = xmalloc((size_t)(M * K) * sizeof *av), *bv = xmalloc((size_t)(K * N) * sizeof *bv);
    float *bias = xmalloc((size_t)(N + 1) * sizeof *bias), *want = xmalloc((size_t)(M * N) * sizeof *want);
    float *got = xmalloc((size_t)(M * N) * sizeof *got);
    for (int i = 0; i < M * K; i++) av[i] = (float)(i % 7 - 3) * 0.25f;
    for (int i = 0; i < K * N; i++) bv[i] = (float)(i % 5 - 2) * 0.5f;
    for (int i = 0; i <= N; i++) bias[i] = (float)(i % 3) - 1.0f;
    gemm_case_on(DEV_CPU, DT_F32, M, N, K, bias_offset, av, bv, bias, want);
    emu_cublaslt_set_faults(no_algorithm, refused);
    gemm_case_on(DEV_CUDA_EMU, dt, M, N, K, bias_offset, av, bv, bias, got);
    emu_cublaslt_set_faults(false, 0);
    double err = rel_error(got, want, M * N);
    EXPECT(err <= (dt == DT_F32 ? 1e-6 : 1e-2), "relative error %.3g against the cpu", err);
    free(av), free(bv), free(bias), free(want), free(got);
    test_end();
}

// cuBLASLt's answers gemm.cu must survive (each case a shape of its own: plans are kept
// per problem), and split-K partial sums that must not be rounded to bf16.
static void gemm_refusals(void) {
    const dtype types[2] = {DT_F32, DT_BF16};
    for (int t = 0; t < 2; t++) {
        gemm_refusal_case("the heuristic has no algorithm", types[t], 5, 6, 7, 0, true, 0);
        gemm_refusal_case("the matmul refuses the first algorithm", types[t], 5, 7, 9, 0, false, 1);
        gemm_refusal_case("the matmul refuses every algorithm", types[t], 3, 7, 9, 0, false, 100);
        gemm_refusal_case("the bias is not 16-byte aligned", types[t], 4, 8, 16, 1, false, 0);
    }

    // 128 + 129 = 257 is not a bf16 (256 and 258 are): a split of K = 4 in halves that
    // rounded its first partial sum to bf16 would give 256 - 256 = 0 instead of 1.
    test_begin("emu/gemm in bf16: split-K partial sums are not rounded to bf16");
    const float a[4] = {1, 1, 1, 1}, b[4] = {128, 129, -128, -128}, bias[2] = {0, 0};
    float got;
    gemm_case_on(DEV_CUDA_EMU, DT_BF16, 1, 1, 4, 0, a, b, bias, &got);
    EXPECT(got == 1.0f, "1 x 4 by 4 x 1 gave %g, want 1", got);
    test_end();
}

void suite_emu(void) {
    block_cache();
    sync_launches();
    gemm_refusals();
    gemm_empty_reduction();
    test_begin("emu/self-test kernels in thread and reversed order");
    int failures = emu_selftest_run();
    EXPECT(failures == 0, "%d self-test checks failed", failures);
    test_end();

    test_begin("emu/missing __syncthreads gives a wrong answer in thread order");
    EXPECT(emu_selftest_missing_barrier() == 1, "a tiled kernel without a barrier was right");
    test_end();

    test_begin("emu/missing __syncthreads gives a wrong answer in reversed order");
    EXPECT(emu_selftest_missing_barrier_reverse() == 1, "a tiled kernel without a barrier was right");
    test_end();

    for (int i = 0; i < emu_selftest_death_cases(); i++) expect_death(i);
}
#else
void suite_emu(void) {
    test_begin("emu");
    test_skip("this build has no CUDA sources, so no emulator");
    test_end();
}
#endif
