// Shared between the emulator's runtime files; kernels never include this.
#pragma once
#include <stddef.h>

namespace emu {
// The largest dynamic shared memory of a block (227 KiB on sm_90), and what a kernel
// gets without cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize).
constexpr size_t max_dynamic_shared_bytes = 227 * 1024;
constexpr size_t default_dynamic_shared_bytes = 48 * 1024;
// The largest opt-in any cudaFuncSetAttribute call has made.
size_t dynamic_shared_opt_in(void);
// Called by the scheduler when a launch has run: a fault injected for it
// (emu_inject_fault) becomes the device's sticky error.
void launch_finished(void);
// Fills with the garbage words that unwritten shared memory shows (NaN, +-3.4e38, ...).
void fill_garbage_pattern(void *p, size_t bytes);
}  // namespace emu
