// libFuzzer target for the safetensors reader (make fuzz). Every input is parsed;
// one that validates is walked completely and every byte of every entry read, so
// that any entry the validator lets through with a bad range shows up as an
// out-of-bounds read under AddressSanitizer. An entry of a dtype we compute with
// must span exactly its shape's elements (what kernels/tensor_file.c's tensors
// over the bytes rely on). Only core/ is linked: the parser stands alone.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/safetensors.h"

// Keeps the reads from being optimised away.
static volatile uint64_t sink;

static uint64_t checksum(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file *f = st_parse(data, size, "fuzz");
    if (!f) return 0;
    uint64_t h = 0;
    for (int i = 0; i < st_meta_count(f); i++) {
        const char *key = st_meta_key(f, i);
        h += checksum((const unsigned char *)key, strlen(key));
        h += checksum((const unsigned char *)st_meta(f, key), strlen(st_meta(f, key)));
    }
    for (int i = 0; i < st_count(f); i++) {
        const st_entry *e = st_entry_at(f, i);
        if (st_find(f, e->name) != e) __builtin_trap();  // names are unique and findable
        h += checksum(st_data(f, e), (size_t)(e->end - e->begin));
        if (e->dtype < 0) continue;
        uint64_t bytes = dtype_size((dtype)e->dtype);
        for (int d = 0; d < e->ndim; d++) bytes *= (uint64_t)e->shape[d];
        if (bytes != e->end - e->begin) __builtin_trap();
    }
    sink = h;
    st_close(f);
    return 0;
}
