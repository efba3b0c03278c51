// C-callable controls of the CUDA emulator (kernels/emu/cuda_emu.h) and its
// self-test (kernels/emu/emu_selftest.cpp), for the C test harness.
#pragma once
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// The order in which a block's threads run between two sync points: thread order
// (the default) or reversed. SDFT_EMU_ORDER=reverse in the environment starts the
// program reversed. Running a kernel both ways catches a missing __syncthreads
// whichever way the data flows (docs/emulation.md).
void emu_set_reverse_order(bool reverse);
bool emu_reverse_order(void);

// The emulated device's memory: a limit past which cudaMalloc fails with
// cudaErrorMemoryAllocation, as a full GPU does (0: none), and the bytes allocated.
void emu_set_memory_limit(size_t bytes);
size_t emu_allocated_bytes(void);

// A fault inside the next kernel launched (e.g. 700, cudaErrorIllegalAddress), as a GPU
// reports one: not at the launch but at the next synchronising call (cudaMemcpy,
// cudaDeviceSynchronize, ...), which from then on all return it (the error is sticky, the
// device unusable). 0 clears it. For testing how faults are reported.
void emu_inject_fault(int error);

// What the emulated cuBLASLt refuses, as the library may on some GPU and problem: with
// no_algorithm the heuristic answers CUBLAS_STATUS_NOT_SUPPORTED and no algorithm; with
// refused = n, cublasLtMatmul answers CUBLAS_STATUS_NOT_SUPPORTED for the first n
// algorithms of every heuristic's list. (false, 0) is the library's normal behaviour.
void emu_cublaslt_set_faults(bool no_algorithm, int refused);

// The cuda-emu backend's SDFT_CUDA_SYNC switch (kernels/cuda/backend.cu): read the
// environment variable again (the backend reads it once, at its first launch).
void emu_sync_launches_from_env(void);

// The self-test: every emulated feature against a plain host computation. Prints
// each failed check and returns how many failed.
int emu_selftest_run(void);
// 1 when a tiled kernel with one of its barriers removed gave a WRONG answer, i.e. the
// emulator caught the bug, in thread order and in reversed order respectively.
int emu_selftest_missing_barrier(void);
int emu_selftest_missing_barrier_reverse(void);

// Misuses the emulator must stop with a message (a deadlocked barrier, a too-large
// block, ...). Case i runs in a child process: emu_selftest_death_run(i) must not
// return, and its stderr must contain emu_selftest_death_expect(i).
int emu_selftest_death_cases(void);
const char *emu_selftest_death_name(int i);
const char *emu_selftest_death_expect(int i);
void emu_selftest_death_run(int i);

#ifdef __cplusplus
}
#endif
