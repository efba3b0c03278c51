#include "data/transform.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

// Pillow resamples 8-bit images in fixed point with this many fraction bits: 32 bits
// less 8 for the pixel value and 2 of headroom.
#define FRACTION_BITS 22
#define LONGEST_RESIZED (1 << 24)

int resize_size(int width, int height, int size, int *out_width, int *out_height) {
    CHECK(width > 0 && height > 0 && size > 0, "resize of %dx%d to %d", width, height, size);
    bool tall = width <= height;
    int short_side = tall ? width : height, long_side = tall ? height : width;
    // Python's int(size * long / short): an exact integer product, a correctly rounded
    // division, a truncation. The product is exact in a double too (below 2^53).
    double longer = (double)size * long_side / short_side;
    if (longer >= LONGEST_RESIZED) {
        err_set("a %dx%d image resized to %d on its shorter side would be %.0f pixels long, over 2^24", width,
                height, size, longer);
        return -1;
    }
    *out_width = tall ? size : (int)longer;
    *out_height = tall ? (int)longer : size;
    return 0;
}

// --- Pillow's antialiased bilinear resize --------------------------------------------

// The filter taps of outputs [first, first + n) along one axis: output i reads
// count[i] inputs from start[i] with fixed-point weights weight[i * max_taps + k].
typedef struct {
    int max_taps;
    int *start, *count;
    int32_t *weight;
} taps;

static double triangle(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

// The taps as Pillow computes them, each floating-point step in its order, so that
// the weights round to the same fixed-point values.
static taps bilinear_taps(int in_size, int out_size, int first, int n) {
    // Output i covers inputs [i, i + 1) * scale. A downscale widens the triangle to
    // reach `scale` inputs either side, so every input contributes (antialiasing);
    // an upscale keeps it one input wide (plain bilinear interpolation).
    double scale = (double)in_size / out_size;
    double reach = scale > 1.0 ? scale : 1.0;
    double inv_reach = 1.0 / reach;  // Pillow multiplies by the reciprocal
    taps t = {(int)ceil(reach) * 2 + 1, xmalloc((size_t)n * sizeof(int)), xmalloc((size_t)n * sizeof(int)),
              NULL};
    t.weight = xcalloc((size_t)n * (size_t)t.max_taps, sizeof(int32_t));
    double *w = xmalloc((size_t)t.max_taps * sizeof(double));
    for (int i = 0; i < n; i++) {
        double center = (first + i + 0.5) * scale;
        // Pillow rounds the ends by adding 0.5 and truncating (toward zero).
        int lo = (int)(center - reach + 0.5), hi = (int)(center + reach + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in_size) hi = in_size;
        CHECK(hi - lo >= 1 && hi - lo <= t.max_taps, "%d taps of at most %d", hi - lo, t.max_taps);
        double sum = 0.0;
        for (int k = 0; k < hi - lo; k++) {
            w[k] = triangle(((double)(lo + k) - center + 0.5) * inv_reach);
            sum += w[k];
        }
        // The nearest input is within half an input of the center: its weight is at
        // least 1/2, so the sum is never 0. Weights are never negative, so adding
        // 0.5 and truncating rounds them.
        for (int k = 0; k < hi - lo; k++)
            t.weight[(size_t)i * (size_t)t.max_taps + (size_t)k] =
                (int32_t)(0.5 + w[k] / sum * (1 << FRACTION_BITS));
        t.start[i] = lo;
        t.count[i] = hi - lo;
    }
    free(w);
    return t;
}

static void taps_free(taps *t) {
    free(t->start);
    free(t->count);
    free(t->weight);
}

// A fixed-point sum to a byte: Pillow starts sums at one half (so the shift rounds)
// and clamps; bilinear sums are never negative, but can pass 255 by rounding.
static unsigned char fixed_to_byte(int32_t sum) {
    int32_t v = sum >> FRACTION_BITS;
    return (unsigned char)(v > 255 ? 255 : v);
}

// Pillow's horizontal pass on source rows [row0, row0 + rows): the window's columns,
// rounded to bytes as Pillow stores its intermediate image.
static void resample_rows(const image_u8 *img, int row0, int rows, const taps *tx, int w,
                          unsigned char *out) {
    const int ch = img->channels;
    for (int r = 0; r < rows; r++) {
        const unsigned char *in = img->pixels + (size_t)(row0 + r) * (size_t)img->width * (size_t)ch;
        unsigned char *o = out + (size_t)r * (size_t)w * (size_t)ch;
        for (int i = 0; i < w; i++) {
            const unsigned char *p = in + (size_t)tx->start[i] * (size_t)ch;
            const int32_t *k = tx->weight + (size_t)i * (size_t)tx->max_taps;
            for (int c = 0; c < ch; c++) {
                int32_t sum = 1 << (FRACTION_BITS - 1);
                for (int j = 0; j < tx->count[i]; j++) sum += p[j * ch + c] * k[j];
                o[i * ch + c] = fixed_to_byte(sum);
            }
        }
    }
}

// Pillow's vertical pass over the horizontal pass's rows (the first of which is
// source row row0), a whole output row at a time. Integer sums do not depend on
// their order, so summing row by row gives Pillow's pixel-by-pixel result.
static void resample_columns(const unsigned char *rows, int row0, const taps *ty, int w, int h, int ch,
                             unsigned char *out) {
    const size_t line = (size_t)w * (size_t)ch;
    int32_t *sum = xmalloc(line * sizeof *sum);
    for (int i = 0; i < h; i++) {
        for (size_t e = 0; e < line; e++) sum[e] = 1 << (FRACTION_BITS - 1);
        for (int j = 0; j < ty->count[i]; j++) {
            const unsigned char *in = rows + (size_t)(ty->start[i] - row0 + j) * line;
            int32_t k = ty->weight[(size_t)i * (size_t)ty->max_taps + (size_t)j];
            for (size_t e = 0; e < line; e++) sum[e] += in[e] * k;
        }
        for (size_t e = 0; e < line; e++) out[(size_t)i * line + e] = fixed_to_byte(sum[e]);
    }
    free(sum);
}

image_u8 image_resize_window(const image_u8 *img, int out_width, int out_height, int x0, int y0, int w,
                             int h) {
    CHECK(out_width > 0 && out_height > 0 && x0 >= 0 && y0 >= 0 && w > 0 && h > 0 && x0 <= out_width - w &&
              y0 <= out_height - h,
          "window %dx%d at (%d, %d) of a %dx%d resize", w, h, x0, y0, out_width, out_height);
    // Horizontal first, then vertical, as Pillow does (the intermediate rounding
    // makes the order matter). Only the source rows the window's taps reach go
    // through the first pass. An unchanged axis has taps of weights 1 and 0, which
    // copy its pixels, as Pillow's skipping that pass does.
    taps tx = bilinear_taps(img->width, out_width, x0, w), ty = bilinear_taps(img->height, out_height, y0, h);
    int row0 = ty.start[0], rows = ty.start[h - 1] + ty.count[h - 1] - row0;
    unsigned char *between = xmalloc((size_t)rows * (size_t)w * (size_t)img->channels);
    resample_rows(img, row0, rows, &tx, w, between);
    image_u8 out = image_new(w, h, img->channels);
    resample_columns(between, row0, &ty, w, h, img->channels, out.pixels);
    free(between);
    taps_free(&tx);
    taps_free(&ty);
    return out;
}

// --- crop, flip, normalise ------------------------------------------------------------

// Python's round(margin / 2.0): ties (odd margins) go to the even neighbour.
static int half_to_even(int margin) {
    int half = margin / 2;
    return half + (margin % 2 == 1 && half % 2 == 1);
}

void center_crop_origin(int width, int height, int size, int *x0, int *y0) {
    CHECK(width >= size && height >= size && size > 0, "center crop of %d from %dx%d", size, width, height);
    *x0 = half_to_even(width - size);
    *y0 = half_to_even(height - size);
}

void image_flip_horizontal(image_u8 *img) {
    const size_t ch = (size_t)img->channels;
    unsigned char tmp[4];
    for (int y = 0; y < img->height; y++) {
        unsigned char *row = img->pixels + (size_t)y * (size_t)img->width * ch;
        for (int l = 0, r = img->width - 1; l < r; l++, r--) {
            memcpy(tmp, row + (size_t)l * ch, ch);
            memcpy(row + (size_t)l * ch, row + (size_t)r * ch, ch);
            memcpy(row + (size_t)r * ch, tmp, ch);
        }
    }
}

void image_to_float(const image_u8 *img, float *out) {
    size_t n = (size_t)img->width * (size_t)img->height * (size_t)img->channels;
    // The same float32 operations as torch: div(255), then sub_(0.5).div_(0.5).
    for (size_t i = 0; i < n; i++) out[i] = ((float)img->pixels[i] / 255.0f - 0.5f) / 0.5f;
}

int image_transform(const image_u8 *img, const transform_options *opt, rng_stream *rng, float *out,
                    transform_record *record) {
    CHECK(img->channels == 3, "transform of a %d-channel image", img->channels);
    CHECK(rng || (opt->center_crop && !opt->random_flip), "a random transform without an rng_stream");
    const int size = opt->size;
    int rw, rh, x0, y0;
    if (resize_size(img->width, img->height, size, &rw, &rh) != 0) return -1;
    if (opt->center_crop) {
        center_crop_origin(rw, rh, size, &x0, &y0);
    } else {
        y0 = (int)rng_below(rng, (uint32_t)(rh - size + 1));
        x0 = (int)rng_below(rng, (uint32_t)(rw - size + 1));
    }
    bool flip = opt->random_flip && rng_below(rng, 2) == 1;
    image_u8 crop = image_resize_window(img, rw, rh, x0, y0, size, size);
    if (flip) image_flip_horizontal(&crop);
    image_to_float(&crop, out);
    image_free(&crop);
    if (record) *record = (transform_record){rw, rh, x0, y0, flip};
    return 0;
}
