#include "core/plot.h"

#include <math.h>
#include <stdlib.h>

#include "core/check.h"

static void put(image_u8 *img, int x, int y, const unsigned char rgb[3]) {
    if (x < 0 || y < 0 || x >= img->width || y >= img->height) return;
    unsigned char *p = img->pixels + ((size_t)y * img->width + x) * 3;
    p[0] = rgb[0], p[1] = rgb[1], p[2] = rgb[2];
}

// A line from (x0, y0) to (x1, y1), one pixel wide (Bresenham).
static void line(image_u8 *img, int x0, int y0, int x1, int y1, const unsigned char rgb[3]) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    for (int err = dx + dy;;) {
        put(img, x0, y0, rgb);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += sx;
        if (e2 <= dx) err += dx, y0 += sy;
    }
}

image_u8 plot_curve(const float *y, int n, int width, int height, float ema) {
    CHECK(n >= 1 && width >= 16 && height >= 16, "plot_curve: %d values on %dx%d", n, width, height);
    static const unsigned char bg[3] = {255, 255, 255}, grid[3] = {225, 225, 225}, axis[3] = {120, 120, 120};
    static const unsigned char raw[3] = {160, 190, 235}, smooth[3] = {20, 60, 160};
    image_u8 img = image_new(width, height, 3);
    for (int i = 0; i < width * height; i++) put(&img, i % width, i / width, bg);
    const int m = 8, w = width - 2 * m, h = height - 2 * m;
    for (int k = 0; k <= 4; k++) line(&img, m, m + k * h / 4, m + w, m + k * h / 4, grid);
    for (int k = 0; k <= 10; k++) line(&img, m + k * w / 10, m, m + k * w / 10, m + h, grid);
    line(&img, m, m, m, m + h, axis);
    line(&img, m, m + h, m + w, m + h, axis);
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (isfinite(y[i])) lo = fminf(lo, y[i]), hi = fmaxf(hi, y[i]);
    if (!(hi > lo)) hi = lo + 1, lo -= 1;  // flat or empty: a centered line
    int px = 0, py = 0;
    for (int i = 0; i < n; i++) {
        float v = isfinite(y[i]) ? y[i] : hi;
        int x = m + (n > 1 ? (int)((double)i * w / (n - 1)) : w / 2);
        int yr = m + (int)((hi - v) / (hi - lo) * h);
        if (i) line(&img, px, py, x, yr, raw);
        else put(&img, x, yr, raw);
        px = x, py = yr;
    }
    // The average, drawn over the raw values.
    float avg = y[0];
    for (int i = 1; i < n; i++) {
        float v0 = avg, v = isfinite(y[i]) ? y[i] : hi;
        avg = ema * avg + (1 - ema) * v;
        int x0 = m + (int)((double)(i - 1) * w / (n - 1)), x1 = m + (int)((double)i * w / (n - 1));
        line(&img, x0, m + (int)((hi - v0) / (hi - lo) * h), x1, m + (int)((hi - avg) / (hi - lo) * h), smooth);
    }
    return img;
}
