#include "core/check.h"
#include "kernels/cpu/cpu.h"

static inline float apply(float a, float b, binary_op op) {
    switch (op) {
    case BIN_ADD: return a + b;
    case BIN_SUB: return a - b;
    case BIN_MUL: return a * b;
    }
    return 0.0f;
}

// Rows of the last dim are walked with their own strides, so broadcast views (stride
// 0) and contiguous inputs share one loop.
void cpu_binary(tensor *out, const tensor *a, const tensor *b, binary_op op) {
    CHECK(tensor_is_contiguous(out) && tensor_same_shape(out, a) && tensor_same_shape(out, b),
          "binary: operands must be views of the output shape");
    float *y = cpu_f32(out);
    const float *pa = (const float *)tensor_data(a), *pb = (const float *)tensor_data(b);
    CHECK(a->dtype == DT_F32 && b->dtype == DT_F32, "binary wants f32");
    int nd = out->ndim;
    int64_t cols = nd ? out->shape[nd - 1] : 1;
    int64_t rows = cols ? tensor_numel(out) / cols : 0;
    int64_t sa = nd ? a->stride[nd - 1] : 0, sb = nd ? b->stride[nd - 1] : 0;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t oa = nd > 1 ? cpu_strided_offset(r, nd - 1, out->shape, a->stride) : 0;
        int64_t ob = nd > 1 ? cpu_strided_offset(r, nd - 1, out->shape, b->stride) : 0;
        float *yr = y + r * cols;
        for (int64_t c = 0; c < cols; c++) yr[c] = apply(pa[oa + c * sa], pb[ob + c * sb], op);
    }
}

// Sums the rows of a contiguous [rows, cols] matrix into cols outputs: the bias
// gradient case. Columns go to threads in blocks so that each thread streams
// contiguous row segments and the order of additions does not depend on the thread
// count.
static void sum_leading_rows(float *y, const float *x, int64_t rows, int64_t cols) {
    enum { BLOCK = 64 };
#pragma omp parallel for schedule(static)
    for (int64_t start = 0; start < cols; start += BLOCK) {
        int64_t width = cols - start < BLOCK ? cols - start : BLOCK;
        double acc[BLOCK] = {0};
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < width; j++) acc[j] += x[r * cols + start + j];
        for (int64_t j = 0; j < width; j++) y[start + j] = (float)acc[j];
    }
}

// Each output element sums its box of input elements, in double so that long
// reductions (a bias gradient over 64x64 pixels and a batch) stay exact to f32.
void cpu_sum_reduce(tensor *out, const tensor *in) {
    CHECK(out->ndim == in->ndim && tensor_is_contiguous(out), "sum_reduce: rank");
    int nd = in->ndim;
    int64_t box_shape[TENSOR_MAX_DIMS], box_stride[TENSOR_MAX_DIMS], box = 1;
    for (int d = 0; d < nd; d++) {
        CHECK(out->shape[d] == in->shape[d] || out->shape[d] == 1, "sum_reduce: dim %d", d);
        bool reduced = out->shape[d] == 1 && in->shape[d] != 1;
        box_shape[d] = reduced ? in->shape[d] : 1;
        box_stride[d] = in->stride[d];
        box *= box_shape[d];
    }
    float *y = cpu_f32(out);
    const float *x = (const float *)tensor_data(in);
    CHECK(in->dtype == DT_F32, "sum_reduce wants f32");
    int leading = 0;
    while (leading < nd && out->shape[leading] == 1) leading++;
    bool rest_kept = true;
    for (int d = leading; d < nd; d++) rest_kept &= out->shape[d] == in->shape[d];
    if (rest_kept && tensor_is_contiguous(in)) {
        sum_leading_rows(y, x, box, tensor_numel(out));
        return;
    }
    int64_t n_out = tensor_numel(out);
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n_out; j++) {
        int64_t base = cpu_strided_offset(j, nd, out->shape, in->stride);
        double acc = 0.0;
        for (int64_t k = 0; k < box; k++) acc += x[base + cpu_strided_offset(k, nd, box_shape, box_stride)];
        y[j] = (float)acc;
    }
}
