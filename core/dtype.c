#include "core/dtype.h"

#include "core/check.h"

size_t dtype_size(dtype dt) {
    static const size_t sizes[DT_COUNT] = {4, 2, 2, 4, 8};
    CHECK(dt < DT_COUNT, "bad dtype %d", dt);
    return sizes[dt];
}

const char *dtype_name(dtype dt) {
    static const char *names[DT_COUNT] = {"f32", "f16", "bf16", "i32", "i64"};
    return dt < DT_COUNT ? names[dt] : "?";
}

bool dtype_is_float(dtype dt) { return dt == DT_F32 || dt == DT_F16 || dt == DT_BF16; }
