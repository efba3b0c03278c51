// Tensors: dtype, device, shape, strides (in elements), a refcounted storage, and an
// optional grad slot through which autograd delivers gradients.
//
// Layout convention: activations are channels-last, images are [N, H, W, C] and
// token sequences [B, T, C]. Conv weights are [Cout, KH, KW, Cin], linear weights
// [out, in] (as checkpoints store them).
//
// Ownership: every constructor and op returns a tensor holding one reference;
// tensor_free drops it. Views share the storage and keep it alive.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

// cuda-emu runs the CUDA kernels on the CPU through kernels/emu (its "device"
// memory is host memory); it exists so every kernel is tested without a GPU.
typedef enum { DEV_CPU, DEV_CUDA, DEV_CUDA_EMU, DEV_COUNT } device;

typedef struct storage {
    void *data;
    size_t nbytes;
    device dev;
    int refs;
    // Storage that borrows memory (an mmap'd safetensors file) releases its owner
    // instead of freeing data.
    void *owner;
    void (*release_owner)(void *owner);
} storage;

struct grad_slot;

typedef struct tensor {
    dtype dtype;
    device dev;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t stride[TENSOR_MAX_DIMS];
    int64_t offset;  // elements from the start of storage
    storage *st;
    struct grad_slot *slot;  // non-NULL when gradients flow to this tensor
    int refs;
} tensor;

// SHAPE(2, 3, 4) expands to the (ndim, shape) argument pair.
#define SHAPE(...) \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]) { __VA_ARGS__ }

const char *device_name(device dev);

tensor *tensor_new(dtype dt, device dev, int ndim, const int64_t *shape);  // uninitialised
tensor *tensor_zeros(dtype dt, device dev, int ndim, const int64_t *shape);
tensor *tensor_new_like(const tensor *t);  // same dtype, device, shape; contiguous
tensor *tensor_zeros_like(const tensor *t);
// A tensor over borrowed memory; release_owner(owner) runs when the last view dies.
tensor *tensor_wrap(dtype dt, device dev, int ndim, const int64_t *shape, void *data,
                    void *owner, void (*release_owner)(void *));
tensor *tensor_retain(tensor *t);
void tensor_free(tensor *t);

int64_t tensor_numel(const tensor *t);
bool tensor_is_contiguous(const tensor *t);
bool tensor_same_shape(const tensor *a, const tensor *b);
void *tensor_data(const tensor *t);  // address of element 0 of the view
// "[2, 3, 4] f32" into buf; returns buf.
const char *tensor_describe(const tensor *t, char *buf, size_t len);

// A new header over the same storage (no grad slot): the building block of views.
tensor *tensor_view(const tensor *t, int ndim, const int64_t *shape, const int64_t *stride,
                    int64_t offset);
// Size-1 or missing leading dims become stride-0 dims of the given shape.
tensor *tensor_broadcast_view(const tensor *t, int ndim, const int64_t *shape);

// Host transfer with dtype conversion; float tensors only. n must equal numel.
void tensor_copy_from_f32(tensor *t, const float *src, size_t n);
void tensor_copy_to_f32(const tensor *t, float *dst, size_t n);
tensor *tensor_from_f32(dtype dt, device dev, int ndim, const int64_t *shape, const float *src);

// Leaf parameters: mark for gradients, read and reset the accumulated gradient.
void tensor_set_requires_grad(tensor *t, bool on);
bool tensor_requires_grad(const tensor *t);
tensor *tensor_grad(const tensor *t);  // borrowed, NULL when none accumulated
void tensor_zero_grad(tensor *t);

#ifdef __cplusplus
}
#endif
