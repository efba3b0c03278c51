#include "core/image.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/draw.h"

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

// Tile i over a caption band of band_height pixels in the gap's gray.
static image_u8 captioned_tile(const image_u8 *tile, const char *caption, const char *note, int band_height,
                               double font, unsigned char gray) {
    int w = tile->width, h = tile->height, ch = tile->channels;
    double level = gray / 255.0, ink = gray >= 128 ? 0.1 : 0.95, faint = gray >= 128 ? 0.4 : 0.7;
    cairo_t *cr = draw_new(w, band_height, level, level, level);
    const double pad = 4, line = round(1.25 * font);
    char *lines[2];
    draw_font(cr, font, false);
    int n = caption ? draw_wrap(cr, caption, w - 2 * pad, 2, lines) : 0;
    cairo_set_source_rgb(cr, ink, ink, ink);
    for (int i = 0; i < n; i++) {
        draw_text(cr, pad, pad + font + i * line, -1, lines[i]);
        free(lines[i]);
    }
    if (note) {
        cairo_set_source_rgb(cr, faint, faint, faint);
        draw_text(cr, pad, pad + font + 2 * line, -1, note);
    }
    image_u8 band = draw_finish(cr, ch);
    image_u8 out = image_new(w, h + band_height, ch);
    memcpy(out.pixels, tile->pixels, (size_t)w * h * ch);
    memcpy(out.pixels + (size_t)w * h * ch, band.pixels, (size_t)w * band_height * ch);
    image_free(&band);
    return out;
}

image_u8 image_grid_captioned(const image_u8 *const *imgs, const char *const *captions, const char *const *notes,
                              int n, int cols, int gap, unsigned char gray) {
    CHECK(n > 0, "grid of %d images", n);
    // Text in proportion to the tiles, but readable on small ones: 10 px on 64-px
    // tiles, 16 px on 512-px ones; three lines (two of caption, one of note).
    double font = fmin(16, fmax(10, imgs[0]->width / 32.0));
    int band_height = (int)(8 + 3 * round(1.25 * font));
    image_u8 *tiles = xmalloc((size_t)n * sizeof *tiles);
    const image_u8 **ptrs = xmalloc((size_t)n * sizeof *ptrs);
    for (int i = 0; i < n; i++) {
        tiles[i] = captioned_tile(imgs[i], captions ? captions[i] : NULL, notes ? notes[i] : NULL, band_height, font,
                                  gray);
        ptrs[i] = &tiles[i];
    }
    image_u8 out = image_grid(ptrs, n, cols, gap, gray);
    for (int i = 0; i < n; i++) image_free(&tiles[i]);
    free(tiles), free(ptrs);
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
