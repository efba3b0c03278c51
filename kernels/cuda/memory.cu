// Device memory.
//
// Blocks are cached: cudaFree waits for the whole device, and a UNet step allocates
// and frees hundreds of activations, so a freed block goes to a free list of its size
// and the next request of that size takes it back. All work runs on the default
// stream, in order, so a block the host frees after launching its last reader can go
// to the next kernel at once: that kernel runs after the reader. When cudaMalloc runs
// out of memory, the cached blocks are returned to the device and it tries again.
//
// On a GPU, sizes round up to 512 B below 1 MiB and to 2 MiB above, so nearby shapes
// share blocks. The emulator keeps exact sizes, so that AddressSanitizer still sees
// every byte past a tensor's end, and refills a reused block with garbage as fresh
// cudaMalloc memory holds, so that a kernel reading what it never wrote still fails.
#include <mutex>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/kernels.cuh"
#ifdef SDFT_EMU
#include "kernels/emu/emu_internal.h"
#endif

namespace {

struct block_cache {
    std::mutex lock;
    std::unordered_map<size_t, std::vector<void *>> free_lists;  // by block size
    std::unordered_map<void *, size_t> live;                     // block -> size
    device_memory_stats stats = {};
};

block_cache &cache() {
    static block_cache *c = new block_cache;  // never destroyed: tensors may outlive main
    return *c;
}

size_t block_size(size_t nbytes) {
    if (nbytes == 0) nbytes = 1;
#ifdef SDFT_EMU
    return nbytes;
#else
    const size_t small = 512, large = 2u << 20;
    size_t step = nbytes < (1u << 20) ? small : large;
    return (nbytes + step - 1) / step * step;
#endif
}

// Frees every cached block; the caller holds the lock.
void release_locked(block_cache &c) {
    for (auto &entry : c.free_lists)
        for (void *p : entry.second) CUDA_CHECK(cudaFree(p));
    c.free_lists.clear();
    c.stats.cached = 0;
}

}  // namespace

void *CUDA_FN(alloc)(size_t nbytes) {
    block_cache &c = cache();
    std::lock_guard<std::mutex> hold(c.lock);
    size_t size = block_size(nbytes);
    void *p = nullptr;
    auto list = c.free_lists.find(size);
    if (list != c.free_lists.end() && !list->second.empty()) {
        p = list->second.back();
        list->second.pop_back();
        c.stats.cached -= size;
#ifdef SDFT_EMU
        emu::fill_garbage_pattern(p, size);
#endif
    } else {
        cudaError_t e = cudaMalloc(&p, size);
        if (e == cudaErrorMemoryAllocation) {
            cudaGetLastError();  // clear it: the retry decides
            release_locked(c);
            e = cudaMalloc(&p, size);
        }
        CUDA_CHECK(e);
        c.stats.device_allocs++;
    }
    c.live[p] = size;
    c.stats.in_use += size;
    if (c.stats.in_use > c.stats.peak_in_use) c.stats.peak_in_use = c.stats.in_use;
    return p;
}

void CUDA_FN(free)(void *p) {
    if (!p) return;
    block_cache &c = cache();
    std::lock_guard<std::mutex> hold(c.lock);
    auto it = c.live.find(p);
    CHECK(it != c.live.end(), "cuda free: %p is not a live block of this backend", p);
    size_t size = it->second;
    c.live.erase(it);
    c.free_lists[size].push_back(p);
    c.stats.in_use -= size;
    c.stats.cached += size;
}

void CUDA_FN(memory_stats)(device_memory_stats *out) {
    block_cache &c = cache();
    std::lock_guard<std::mutex> hold(c.lock);
    *out = c.stats;
}

void CUDA_FN(release_cached)(void) {
    block_cache &c = cache();
    std::lock_guard<std::mutex> hold(c.lock);
    release_locked(c);
    c.stats.peak_in_use = c.stats.in_use;
}

void CUDA_FN(upload)(void *dst, const void *src, size_t nbytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, nbytes, cudaMemcpyHostToDevice));
}

void CUDA_FN(download)(void *dst, const void *src, size_t nbytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, nbytes, cudaMemcpyDeviceToHost));
}

#ifndef SDFT_EMU
extern "C" int cuda_device_count(void) {
    int n = 0;
    // No driver or no GPU reads as zero devices: the backend is then unavailable.
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}
#endif
