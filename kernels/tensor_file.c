#include "kernels/tensor_file.h"

#include <string.h>

#include "core/check.h"
#include "kernels/backend.h"

static void release_file(void *owner) { st_close(owner); }

tensor *st_tensor(st_file *f, const st_entry *e) {
    if (e->dtype < 0) {
        err_set("%s: tensor '%s' has dtype %s, which sdft does not compute with", st_label(f),
                st_show(e->name).s, e->dtype_str);
        return NULL;
    }
    dtype dt = (dtype)e->dtype;
    // The tensor API has no read-only tensors; the mapping's PROT_READ enforces it.
    void *bytes = (void *)st_data(f, e);
    if ((uintptr_t)bytes % dtype_size(dt) == 0)
        return tensor_wrap(dt, DEV_CPU, e->ndim, e->shape, bytes, st_retain(f), release_file);
    tensor *t = tensor_new(dt, DEV_CPU, e->ndim, e->shape);
    memcpy(tensor_data(t), bytes, e->end - e->begin);
    return t;
}

tensor *st_load(st_file *f, const char *name, dtype dt, device dev) {
    const st_entry *e = st_find(f, name);
    if (!e) {
        err_set("%s: no tensor '%s'", st_label(f), name);
        return NULL;
    }
    if (e->dtype >= 0 && e->dtype != (int)dt &&
        !(dtype_is_float((dtype)e->dtype) && dtype_is_float(dt))) {
        err_set("%s: tensor '%s' is %s and cannot load as %s", st_label(f), name, e->dtype_str,
                dtype_name(dt));
        return NULL;
    }
    tensor *src = st_tensor(f, e);
    if (!src) return NULL;
    tensor *host = tensor_new(dt, DEV_CPU, e->ndim, e->shape);
    backend_for(DEV_CPU)->copy(host, src);
    tensor_free(src);
    if (dev == DEV_CPU) return host;
    tensor *out = tensor_new(dt, dev, e->ndim, e->shape);
    backend_for(dev)->upload(tensor_data(out), tensor_data(host), out->st->nbytes);
    tensor_free(host);
    return out;
}

static void release_tensor(void *owner) { tensor_free(owner); }

void st_writer_add(st_writer *w, const char *name, tensor *t) {
    CHECK(t, "st_writer_add(%s): NULL tensor", name);
    tensor *host = tensor_retain(t);
    if (!tensor_is_contiguous(host)) {  // packed where it lives, in row-major order
        tensor *packed = tensor_new(t->dtype, t->dev, t->ndim, t->shape);
        backend_for(t->dev)->copy(packed, host);
        tensor_free(host);
        host = packed;
    }
    if (host->dev != DEV_CPU) {
        tensor *copy = tensor_new(t->dtype, DEV_CPU, t->ndim, t->shape);
        backend_for(host->dev)->download(tensor_data(copy), tensor_data(host), copy->st->nbytes);
        tensor_free(host);
        host = copy;
    }
    st_writer_add_bytes(w, name, t->dtype, t->ndim, t->shape, tensor_data(host), host,
                        release_tensor);
}
