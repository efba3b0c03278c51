#include "core/image.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

image_u8 image_new(int width, int height, int channels) {
    CHECK(width > 0 && height > 0 && (channels == 3 || channels == 4),
          "image of %dx%d with %d channels", width, height, channels);
    CHECK((int64_t)width * height <= INT32_MAX / channels, "image of %dx%d is too large", width,
          height);
    return (image_u8){width, height, channels,
                      xcalloc((size_t)width * (size_t)height * (size_t)channels, 1)};
}

void image_free(image_u8 *img) {
    free(img->pixels);
    *img = (image_u8){0};
}

image_u8 image_grid(const image_u8 *const *imgs, int n, int cols, int gap, unsigned char gray) {
    CHECK(n > 0 && cols > 0 && gap >= 0, "grid of %d images in %d columns, gap %d", n, cols, gap);
    const image_u8 *first = imgs[0];
    for (int i = 1; i < n; i++)
        CHECK(imgs[i]->width == first->width && imgs[i]->height == first->height &&
                  imgs[i]->channels == first->channels,
              "grid image %d is %dx%dx%d, image 0 is %dx%dx%d", i, imgs[i]->width,
              imgs[i]->height, imgs[i]->channels, first->width, first->height, first->channels);
    if (cols > n) cols = n;
    int rows = (n + cols - 1) / cols, w = first->width, h = first->height, ch = first->channels;
    CHECK((int64_t)cols * (w + gap) + gap <= INT32_MAX && (int64_t)rows * (h + gap) + gap <= INT32_MAX,
          "grid of %dx%d tiles of %dx%d is too large", cols, rows, w, h);
    image_u8 out = image_new(cols * (w + gap) + gap, rows * (h + gap) + gap, ch);
    memset(out.pixels, gray, (size_t)out.width * (size_t)out.height * (size_t)ch);
    size_t tile_row = (size_t)w * (size_t)ch, out_row = (size_t)out.width * (size_t)ch;
    for (int i = 0; i < n; i++) {
        size_t x0 = (size_t)(gap + (i % cols) * (w + gap)), y0 = (size_t)(gap + (i / cols) * (h + gap));
        for (int y = 0; y < h; y++)
            memcpy(out.pixels + (y0 + (size_t)y) * out_row + x0 * (size_t)ch,
                   imgs[i]->pixels + (size_t)y * tile_row, tile_row);
    }
    return out;
}

// The rounding must happen on f32 values, as torch and numpy compute it: with x87's
// wider intermediates a product just below k + 0.5 could round the other way.
_Static_assert(FLT_EVAL_METHOD == 0, "image_from_float needs float arithmetic in float");

image_u8 image_from_float(const float *x, int height, int width) {
    image_u8 img = image_new(width, height, 3);
    size_t n = (size_t)width * (size_t)height * 3;
    for (size_t i = 0; i < n; i++) {
        // fmaxf returns its other operand for a NaN, so NaN maps to 0, which is also
        // what numpy's cast of NaN to uint8 gives on x86.
        float y = fminf(fmaxf(x[i] / 2.0f + 0.5f, 0.0f), 1.0f);
        img.pixels[i] = (unsigned char)rintf(y * 255.0f);  // ties to even, as numpy's round
    }
    return img;
}
