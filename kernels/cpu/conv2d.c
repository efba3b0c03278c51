// conv2d as im2col + sgemm. The columns of an image are [Ho*Wo, KH*KW*Cin]: row p
// holds the receptive field of output pixel p in the order of a weight row
// [KH, KW, Cin], zeros where it falls in the padding. Then out = cols W^T,
// dW = sum over images of dy^T cols, and dx = col2im(dy W).
//
// Columns are built one tile of output rows at a time, a bounded buffer that is
// reused: a whole image's worth is 47 MB for SD's 64x64x320 3x3 convs and over 1 GB
// for the VAE's 512x512x128 ones. A 1x1 stride-1 unpadded conv needs no columns:
// they are x itself.
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "kernels/cpu/cpu.h"

// Bytes of one column tile: large enough for sgemm to run at full speed, small
// enough that glibc recycles the buffer instead of mapping fresh pages each call.
#define COLS_TILE_BYTES ((int64_t)16 << 20)

typedef struct {
    int64_t N, H, W, Cin, Cout, KH, KW, stride, pad;
    int64_t Ho, Wo;
    int64_t patch;      // KH * KW * Cin, the length of a weight row
    bool direct;        // 1x1, stride 1, no padding: columns are the input itself
    int64_t tile_rows;  // output rows per column tile
} conv_geom;

static conv_geom conv_geom_from(const int64_t g[9]) {
    conv_geom c = {.N = g[CG_N], .H = g[CG_H], .W = g[CG_W], .Cin = g[CG_CIN],
                   .Cout = g[CG_COUT], .KH = g[CG_KH], .KW = g[CG_KW], .stride = g[CG_STRIDE],
                   .pad = g[CG_PAD]};
    c.Ho = (c.H + 2 * c.pad - c.KH) / c.stride + 1;
    c.Wo = (c.W + 2 * c.pad - c.KW) / c.stride + 1;
    c.patch = c.KH * c.KW * c.Cin;
    c.direct = c.KH == 1 && c.KW == 1 && c.stride == 1 && c.pad == 0;
    CHECK(c.Ho > 0 && c.Wo > 0, "conv2d: empty output");
    CHECK(c.Ho * c.Wo <= INT32_MAX && c.patch <= INT32_MAX && c.Cout <= INT32_MAX,
          "conv2d: dims overflow int");
    int64_t rows = COLS_TILE_BYTES / ((int64_t)sizeof(float) * c.patch * c.Wo);
    c.tile_rows = c.direct || rows > c.Ho ? c.Ho : rows < 1 ? 1 : rows;
    return c;
}

static float *cols_buffer(const conv_geom *g) {
    return g->direct ? NULL : xmalloc((size_t)(g->tile_rows * g->Wo * g->patch) * sizeof(float));
}

// The columns of output rows [oh0, oh1) of one image.
static void im2col(float *cols /*[(oh1-oh0)*Wo, patch]*/, const float *x /*[H, W, Cin]*/,
                   const conv_geom *g, int64_t oh0, int64_t oh1) {
#pragma omp parallel for schedule(static)
    for (int64_t oh = oh0; oh < oh1; oh++)
        for (int64_t ow = 0; ow < g->Wo; ow++) {
            float *dst = cols + ((oh - oh0) * g->Wo + ow) * g->patch;
            for (int64_t kh = 0; kh < g->KH; kh++) {
                int64_t ih = oh * g->stride - g->pad + kh;
                for (int64_t kw = 0; kw < g->KW; kw++, dst += g->Cin) {
                    int64_t iw = ow * g->stride - g->pad + kw;
                    if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
                        memset(dst, 0, (size_t)g->Cin * sizeof(float));
                    else
                        memcpy(dst, x + (ih * g->W + iw) * g->Cin,
                               (size_t)g->Cin * sizeof(float));
                }
            }
        }
}

// Adds every column entry of output rows [oh0, oh1) into the input pixel it was read
// from. Written as a gather per input pixel so that threads never share a
// destination; tiles overlap in input rows when KH > stride, hence the +=.
static void col2im_add(float *dx /*[H, W, Cin]*/, const float *cols /*[(oh1-oh0)*Wo, patch]*/,
                       const conv_geom *g, int64_t oh0, int64_t oh1) {
    int64_t ih_lo = oh0 * g->stride - g->pad, ih_hi = (oh1 - 1) * g->stride - g->pad + g->KH;
    if (ih_lo < 0) ih_lo = 0;
    if (ih_hi > g->H) ih_hi = g->H;
#pragma omp parallel for schedule(static)
    for (int64_t ih = ih_lo; ih < ih_hi; ih++)
        for (int64_t iw = 0; iw < g->W; iw++) {
            float *dst = dx + (ih * g->W + iw) * g->Cin;
            for (int64_t kh = 0; kh < g->KH; kh++) {
                // The output row that read input row ih through kernel row kh, if any.
                int64_t th = ih + g->pad - kh;
                if (th < 0 || th % g->stride) continue;
                int64_t oh = th / g->stride;
                if (oh < oh0 || oh >= oh1) continue;
                for (int64_t kw = 0; kw < g->KW; kw++) {
                    int64_t tw = iw + g->pad - kw;
                    if (tw < 0 || tw % g->stride) continue;
                    int64_t ow = tw / g->stride;
                    if (ow >= g->Wo) continue;
                    const float *src = cols + ((oh - oh0) * g->Wo + ow) * g->patch +
                                       (kh * g->KW + kw) * g->Cin;
                    for (int64_t c = 0; c < g->Cin; c++) dst[c] += src[c];
                }
            }
        }
}

void cpu_conv2d_forward(tensor *out, const tensor *x_t, const tensor *w_t, const tensor *bias_t,
                        const int64_t geom[9]) {
    conv_geom g = conv_geom_from(geom);
    float *y = cpu_f32(out);              // [N, Ho, Wo, Cout]
    const float *x = cpu_f32(x_t);        // [N, H, W, Cin]
    const float *w = cpu_f32(w_t);        // [Cout, patch]
    const float *bias = cpu_f32(bias_t);  // [Cout] or NULL
    if (bias) {  // every output row starts as the bias; the products add onto it
#pragma omp parallel for schedule(static)
        for (int64_t p = 0; p < g.N * g.Ho * g.Wo; p++)
            memcpy(y + p * g.Cout, bias, (size_t)g.Cout * sizeof(float));
    }
    float *cols = cols_buffer(&g);
    for (int64_t n = 0; n < g.N; n++) {
        const float *x_n = x + n * g.H * g.W * g.Cin;
        for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += g.tile_rows) {
            int64_t oh1 = oh0 + g.tile_rows < g.Ho ? oh0 + g.tile_rows : g.Ho;
            int64_t rows = (oh1 - oh0) * g.Wo;
            if (!g.direct) im2col(cols, x_n, &g, oh0, oh1);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)g.Cout,
                        (int)g.patch, 1.0f, g.direct ? x_n : cols, (int)g.patch, w,
                        (int)g.patch, bias ? 1.0f : 0.0f,
                        y + (n * g.Ho + oh0) * g.Wo * g.Cout, (int)g.Cout);
        }
    }
    free(cols);
}

void cpu_conv2d_backward(tensor *d_x, tensor *d_w, tensor *d_bias, const tensor *d_out,
                         const tensor *x_t, const tensor *w_t, const int64_t geom[9]) {
    conv_geom g = conv_geom_from(geom);
    float *dx = cpu_f32(d_x);          // [N, H, W, Cin] or NULL
    float *dw = cpu_f32(d_w);          // [Cout, patch] or NULL
    float *db = cpu_f32(d_bias);       // [Cout] or NULL
    const float *dy = cpu_f32(d_out);  // [N, Ho, Wo, Cout]
    const float *x = cpu_f32(x_t);     // [N, H, W, Cin], read only for dW
    const float *w = cpu_f32(w_t);     // [Cout, patch], read only for dx
    int64_t pixels = g.N * g.Ho * g.Wo;

    if (db) {  // column sums of dy, in double: the sum runs over N * Ho * Wo rows
        double *acc = xcalloc((size_t)g.Cout, sizeof(double));
        for (int64_t p = 0; p < pixels; p++)
            for (int64_t c = 0; c < g.Cout; c++) acc[c] += dy[p * g.Cout + c];
        for (int64_t c = 0; c < g.Cout; c++) db[c] = (float)acc[c];
        free(acc);
    }
    if (!dx && !dw) return;
    if (dx && !g.direct) memset(dx, 0, (size_t)(g.N * g.H * g.W * g.Cin) * sizeof(float));

    float *cols = cols_buffer(&g);
    bool first_dw = true;
    for (int64_t n = 0; n < g.N; n++) {
        const float *x_n = x ? x + n * g.H * g.W * g.Cin : NULL;
        float *dx_n = dx ? dx + n * g.H * g.W * g.Cin : NULL;
        for (int64_t oh0 = 0; oh0 < g.Ho; oh0 += g.tile_rows) {
            int64_t oh1 = oh0 + g.tile_rows < g.Ho ? oh0 + g.tile_rows : g.Ho;
            int64_t rows = (oh1 - oh0) * g.Wo;
            const float *dy_tile = dy + (n * g.Ho + oh0) * g.Wo * g.Cout;  // [rows, Cout]
            if (dw) {  // dW += dy_tile^T cols_tile
                if (!g.direct) im2col(cols, x_n, &g, oh0, oh1);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g.Cout, (int)g.patch,
                            (int)rows, 1.0f, dy_tile, (int)g.Cout,
                            g.direct ? x_n + oh0 * g.Wo * g.Cin : cols, (int)g.patch,
                            first_dw ? 0.0f : 1.0f, dw, (int)g.patch);
                first_dw = false;
            }
            if (dx) {  // dcols_tile = dy_tile W, folded back onto the pixels it came from
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)g.patch,
                            (int)g.Cout, 1.0f, dy_tile, (int)g.Cout, w, (int)g.patch, 0.0f,
                            g.direct ? dx_n + oh0 * g.Wo * g.Cin : cols, (int)g.patch);
                if (!g.direct) col2im_add(dx_n, cols, &g, oh0, oh1);
            }
        }
    }
    free(cols);
}
