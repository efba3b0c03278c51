#include "kernels/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/half.h"
#include "kernels/autograd.h"
#include "kernels/backend.h"

const char *device_name(device dev) {
    static const char *names[DEV_COUNT] = {"cpu", "cuda", "cuda-emu"};
    return dev < DEV_COUNT ? names[dev] : "?";
}

static void contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i];
    }
}

static tensor *header_new(dtype dt, device dev, int ndim, const int64_t *shape) {
    CHECK(ndim >= 0 && ndim <= TENSOR_MAX_DIMS, "ndim %d", ndim);
    tensor *t = xcalloc(1, sizeof *t);
    t->dtype = dt;
    t->dev = dev;
    t->ndim = ndim;
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        CHECK(shape[i] >= 0, "negative dim %lld", (long long)shape[i]);
        // Elements and bytes must fit in int64 so that numel, strides and offsets can't
        // wrap; the safetensors reader refuses such shapes before they get here.
        CHECK(shape[i] == 0 || numel <= (INT64_MAX / 8) / shape[i], "shape too large");
        numel *= shape[i];
        t->shape[i] = shape[i];
    }
    contiguous_strides(ndim, t->shape, t->stride);
    t->refs = 1;
    return t;
}

tensor *tensor_new(dtype dt, device dev, int ndim, const int64_t *shape) {
    tensor *t = header_new(dt, dev, ndim, shape);
    storage *st = xcalloc(1, sizeof *st);
    st->nbytes = (size_t)tensor_numel(t) * dtype_size(dt);
    st->dev = dev;
    st->refs = 1;
    st->data = backend_for(dev)->alloc(st->nbytes);
    t->st = st;
    return t;
}

tensor *tensor_zeros(dtype dt, device dev, int ndim, const int64_t *shape) {
    tensor *t = tensor_new(dt, dev, ndim, shape);
    backend_for(dev)->fill(t, 0.0f);
    return t;
}

tensor *tensor_new_like(const tensor *t) { return tensor_new(t->dtype, t->dev, t->ndim, t->shape); }
tensor *tensor_zeros_like(const tensor *t) {
    return tensor_zeros(t->dtype, t->dev, t->ndim, t->shape);
}

tensor *tensor_wrap(dtype dt, device dev, int ndim, const int64_t *shape, void *data,
                    void *owner, void (*release_owner)(void *)) {
    tensor *t = header_new(dt, dev, ndim, shape);
    storage *st = xcalloc(1, sizeof *st);
    st->data = data;
    st->nbytes = (size_t)tensor_numel(t) * dtype_size(dt);
    st->dev = dev;
    st->refs = 1;
    st->owner = owner;
    st->release_owner = release_owner;
    t->st = st;
    return t;
}

tensor *tensor_retain(tensor *t) {
    t->refs++;
    return t;
}

static void storage_release(storage *st) {
    if (--st->refs > 0) return;
    if (st->release_owner)
        st->release_owner(st->owner);
    else
        backend_for(st->dev)->free(st->data);
    free(st);
}

void slot_release(grad_slot *s);  // autograd.c

void tensor_free(tensor *t) {
    if (!t || --t->refs > 0) return;
    if (t->slot) slot_release(t->slot);
    storage_release(t->st);
    free(t);
}

int64_t tensor_numel(const tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

bool tensor_is_contiguous(const tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

bool tensor_same_shape(const tensor *a, const tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

void *tensor_data(const tensor *t) {
    return (char *)t->st->data + (size_t)t->offset * dtype_size(t->dtype);
}

const char *tensor_describe(const tensor *t, char *buf, size_t len) {
    size_t used = strlen(format_shape(buf, len, t->ndim, t->shape));
    if (used + 1 < len) snprintf(buf + used, len - used, " %s", dtype_name(t->dtype));
    return buf;
}

tensor *tensor_view(const tensor *t, int ndim, const int64_t *shape, const int64_t *stride,
                    int64_t offset) {
    tensor *v = header_new(t->dtype, t->dev, ndim, shape);
    for (int i = 0; i < ndim; i++) v->stride[i] = stride[i];
    v->offset = offset;
    v->st = t->st;
    v->st->refs++;
    return v;
}

tensor *tensor_broadcast_view(const tensor *t, int ndim, const int64_t *shape) {
    CHECK(ndim >= t->ndim, "cannot broadcast %d dims to %d", t->ndim, ndim);
    int64_t stride[TENSOR_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        if (i < lead) {
            stride[i] = 0;
            continue;
        }
        int64_t d = t->shape[i - lead];
        CHECK(d == shape[i] || d == 1, "dim %d: %lld does not broadcast to %lld", i,
              (long long)d, (long long)shape[i]);
        stride[i] = d == shape[i] ? t->stride[i - lead] : 0;
    }
    return tensor_view(t, ndim, shape, stride, t->offset);
}

// Host staging goes through a contiguous f32 CPU tensor and the device's copy
// kernel, which does the dtype conversion and any strides.
void tensor_copy_from_f32(tensor *t, const float *src, size_t n) {
    CHECK(dtype_is_float(t->dtype) && n == (size_t)tensor_numel(t), "copy_from_f32 size");
    const backend *be = backend_for(t->dev);
    tensor *staging = tensor_new(DT_F32, t->dev, t->ndim, t->shape);
    be->upload(staging->st->data, src, n * sizeof(float));
    be->copy(t, staging);
    tensor_free(staging);
}

void tensor_copy_to_f32(const tensor *t, float *dst, size_t n) {
    CHECK(dtype_is_float(t->dtype) && n == (size_t)tensor_numel(t), "copy_to_f32 size");
    const backend *be = backend_for(t->dev);
    tensor *staging = tensor_new(DT_F32, t->dev, t->ndim, t->shape);
    be->copy(staging, t);
    be->download(dst, staging->st->data, n * sizeof(float));
    tensor_free(staging);
}

tensor *tensor_from_f32(dtype dt, device dev, int ndim, const int64_t *shape, const float *src) {
    tensor *t = tensor_new(dt, dev, ndim, shape);
    tensor_copy_from_f32(t, src, (size_t)tensor_numel(t));
    return t;
}

void tensor_set_requires_grad(tensor *t, bool on) {
    if (on && !t->slot) {
        CHECK(dtype_is_float(t->dtype), "only float tensors take gradients");
        t->slot = xcalloc(1, sizeof *t->slot);
        t->slot->refs = 1;
    } else if (!on && t->slot) {
        slot_release(t->slot);
        t->slot = NULL;
    }
}

bool tensor_requires_grad(const tensor *t) { return t->slot != NULL; }

tensor *tensor_grad(const tensor *t) { return t->slot ? t->slot->grad : NULL; }

void tensor_zero_grad(tensor *t) {
    if (t->slot && t->slot->grad) {
        tensor_free(t->slot->grad);
        t->slot->grad = NULL;
    }
}
