// The CUDA emulator's own tests: its self-test kernels (kernels/emu/emu_selftest.cu),
// proof that a missing __syncthreads gives a wrong answer in either schedule order, and
// misuses that must stop the program, each run in a child process.
#include "tests/test.h"

#ifdef SDFT_HAVE_EMU
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/backend.h"
#include "kernels/emu/emu.h"

// Runs death case i in a child with stderr captured; the child must stop with a
// message containing the expected text.
static void expect_death(int i) {
    test_begin("emu/stops on %s", emu_selftest_death_name(i));
    int pipe_fds[2];
    CHECK(pipe(pipe_fds) == 0, "pipe");
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    CHECK(child >= 0, "fork");
    if (child == 0) {
        dup2(pipe_fds[1], 2);
        close(pipe_fds[0]);
        emu_selftest_death_run(i);
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
    EXPECT(strstr(message, emu_selftest_death_expect(i)) != NULL, "message lacks \"%s\": %s",
           emu_selftest_death_expect(i), message);
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

void suite_emu(void) {
    block_cache();
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
