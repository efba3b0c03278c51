// The emulated CUDA runtime API: "device" memory is host memory, and everything is
// synchronous. Allocations are recorded so that copies and frees naming memory that
// is not device memory fail as they do on a GPU.
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>

#include "kernels/emu/cuda_emu.h"
#include "kernels/emu/emu.h"
#include "kernels/emu/emu_internal.h"

struct CUstream_st {};
struct CUevent_st {
    std::chrono::steady_clock::time_point when;
    bool recorded = false;
};

namespace {

std::mutex allocations_lock;
std::map<const char *, size_t> allocations;  // start -> bytes
size_t allocated_bytes, memory_limit;        // limit 0: none (emu_set_memory_limit)

std::atomic<size_t> opt_in{0};

// As in CUDA, each host thread has its own last error; a call that fails sets it.
thread_local cudaError_t last_error = cudaSuccess;

// A fault for the next launch (emu_inject_fault), and the device's sticky error once a
// launch has faulted: synchronising calls return it from then on, as after a GPU fault.
std::atomic<int> injected_fault{0}, device_error{0};

cudaError_t fail(cudaError_t e);

// What a synchronising call returns first: the sticky error of a faulted kernel.
cudaError_t device_fault(void) {
    cudaError_t e = (cudaError_t)device_error.load();
    return e == cudaSuccess ? e : fail(e);
}

cudaError_t fail(cudaError_t e) {
    last_error = e;
    return e;
}

// Whether [p, p + bytes) lies inside one allocation.
bool is_device_range(const void *p, size_t bytes) {
    const char *c = static_cast<const char *>(p);
    std::lock_guard<std::mutex> hold(allocations_lock);
    auto it = allocations.upper_bound(c);
    if (it == allocations.begin()) return false;
    --it;
    return c - it->first >= 0 && (size_t)(c - it->first) + bytes <= it->second;
}

cudaError_t check_copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
        return fail(cudaErrorInvalidMemcpyDirection);
    if (bytes == 0) return cudaSuccess;
    if (!dst || !src) return fail(cudaErrorInvalidValue);
    if ((dst_device && !is_device_range(dst, bytes)) || (src_device && !is_device_range(src, bytes)))
        return fail(cudaErrorInvalidValue);
    return cudaSuccess;
}

}  // namespace

extern "C" void emu_inject_fault(int error) {
    injected_fault = error;
    if (error == 0) device_error = 0;
}

extern "C" void emu_set_memory_limit(size_t bytes) {
    std::lock_guard<std::mutex> hold(allocations_lock);
    memory_limit = bytes;
}

extern "C" size_t emu_allocated_bytes(void) {
    std::lock_guard<std::mutex> hold(allocations_lock);
    return allocated_bytes;
}

namespace emu {
size_t dynamic_shared_opt_in(void) { return opt_in.load(); }

void launch_finished(void) {
    int fault = injected_fault.exchange(0);
    if (fault) device_error = fault;
}

cudaError_t set_function_attribute(cudaFuncAttribute attribute, int value) {
    if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
        (size_t)value > max_dynamic_shared_bytes)
        return fail(cudaErrorInvalidValue);
    size_t seen = opt_in.load();
    while ((size_t)value > seen && !opt_in.compare_exchange_weak(seen, (size_t)value)) {
    }
    return cudaSuccess;
}
}  // namespace emu

// cudaMalloc's 256-byte alignment; the contents are garbage, as fresh GPU memory may be.
cudaError_t cudaMalloc(void **ptr, size_t bytes) {
    if (!ptr) return fail(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (bytes == 0) return cudaSuccess;
    std::lock_guard<std::mutex> hold(allocations_lock);
    if (memory_limit && allocated_bytes + bytes > memory_limit) return fail(cudaErrorMemoryAllocation);
    void *p = nullptr;
    if (posix_memalign(&p, 256, bytes) != 0) return fail(cudaErrorMemoryAllocation);
    emu::fill_garbage_pattern(p, bytes);
    allocations[static_cast<const char *>(p)] = bytes;
    allocated_bytes += bytes;
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaFree(void *ptr) {
    if (!ptr) return cudaSuccess;
    {
        std::lock_guard<std::mutex> hold(allocations_lock);
        auto it = allocations.find(static_cast<const char *>(ptr));
        if (it == allocations.end()) return fail(cudaErrorInvalidValue);
        allocated_bytes -= it->second;
        allocations.erase(it);
    }
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    if (device_error) return device_fault();  // a synchronous copy waits for the kernels before it
    cudaError_t e = check_copy(dst, src, bytes, kind);
    // memcpy, not memmove: overlapping copies are undefined in CUDA and ASan reports them.
    if (e == cudaSuccess && bytes) memcpy(dst, src, bytes);
    return e;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t) {
    return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void *ptr, int value, size_t bytes) {
    if (bytes == 0) return cudaSuccess;
    if (!is_device_range(ptr, bytes)) return fail(cudaErrorInvalidValue);
    memset(ptr, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *ptr, int value, size_t bytes, cudaStream_t) {
    return cudaMemset(ptr, value, bytes);
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) {
    if (!stream) return fail(cudaErrorInvalidValue);
    *stream = new CUstream_st;
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    if (!stream) return fail(cudaErrorInvalidResourceHandle);
    delete stream;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return device_fault(); }

cudaError_t cudaEventCreate(cudaEvent_t *event) {
    if (!event) return fail(cudaErrorInvalidValue);
    *event = new CUevent_st;
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
    if (!event) return fail(cudaErrorInvalidResourceHandle);
    delete event;
    return cudaSuccess;
}

// Work before the record has finished (launches are synchronous), so the host clock
// now is the event's time.
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
    if (!event) return fail(cudaErrorInvalidResourceHandle);
    event->when = std::chrono::steady_clock::now();
    event->recorded = true;
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    return event ? device_fault() : fail(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    if (!ms) return fail(cudaErrorInvalidValue);
    if (!start || !end || !start->recorded || !end->recorded)
        return fail(cudaErrorInvalidResourceHandle);
    *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return device_fault(); }

cudaError_t cudaGetLastError(void) {
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return last_error; }

const char *cudaGetErrorString(cudaError_t error) {
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    }
    return "unrecognized error code";
}

cudaError_t cudaFuncGetName(const char **name, const void *func) {
    if (!name || !func) return fail(cudaErrorInvalidValue);
    return fail(cudaErrorInvalidDeviceFunction);
}

cudaError_t cudaGetDeviceCount(int *count) {
    if (!count) return fail(cudaErrorInvalidValue);
    *count = 1;
    return cudaSuccess;
}
