// libFuzzer target for the safetensors reader (make fuzz). Every input is parsed;
// one that validates is walked completely, with each supported tensor built and
// every byte of it read, so that any entry the validator lets through with a bad
// range shows up as an out-of-bounds read under AddressSanitizer.
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
        tensor *t = st_tensor(f, e);
        if (!t) __builtin_trap();
        h += checksum(tensor_data(t), (size_t)tensor_numel(t) * dtype_size(t->dtype));
        tensor_free(t);
    }
    sink = h;
    st_close(f);
    return 0;
}
