// sdft-demo-images DIR: the demo's "subject", drawn here so the project needs no
// photos: a red ball with a yellow band, at different places and sizes on different
// backgrounds, as six 160x160 PNGs (DIR/00.png ...). Deterministic.
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>

#include "core/check.h"
#include "core/png.h"
#include "core/rng.h"

#define SIZE 160
#define COUNT 6

static unsigned char clamp_byte(float v) { return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f); }

static void draw(image_u8 *img, rng_stream *rng, int index) {
    float u[8];
    rng_fill_uniform(rng, u, 8);
    // A background gradient between two muted colors, and a ground line.
    float top[3] = {120 + 100 * u[0], 140 + 90 * u[1], 160 + 80 * u[2]}, ground = 0.55f + 0.2f * u[3];
    float cx = SIZE * (0.35f + 0.3f * u[4]), cy = SIZE * (0.4f + 0.2f * u[5]), r = SIZE * (0.18f + 0.1f * u[6]);
    float band = 0.6f * u[7] - 0.3f;  // the band's tilt
    for (int y = 0; y < SIZE; y++)
        for (int x = 0; x < SIZE; x++) {
            float t = (float)y / SIZE, rgb[3];
            for (int c = 0; c < 3; c++) rgb[c] = t < ground ? top[c] * (1 - 0.4f * t) : 90 + 40 * c + 20 * (index % 3);
            float dx = (x - cx) / r, dy = (y - cy) / r, d2 = dx * dx + dy * dy;
            if (d2 < 1) {
                float shade = 0.55f + 0.45f * sqrtf(1 - d2) - 0.2f * dx;  // lit from the left
                bool in_band = fabsf(dy - band * dx) < 0.18f;
                rgb[0] = (in_band ? 245 : 215) * shade;
                rgb[1] = (in_band ? 205 : 35) * shade;
                rgb[2] = (in_band ? 40 : 35) * shade;
            }
            unsigned char *p = img->pixels + ((size_t)y * SIZE + x) * 3;
            for (int c = 0; c < 3; c++) p[c] = clamp_byte(rgb[c]);
        }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: sdft-demo-images DIR\n");
        return 2;
    }
    mkdir(argv[1], 0777);
    rng_stream rng = {.seed = 20261121};
    for (int i = 0; i < COUNT; i++) {
        image_u8 img = image_new(SIZE, SIZE, 3);
        draw(&img, &rng, i);
        char path[4096];
        snprintf(path, sizeof path, "%s/%02d.png", argv[1], i);
        if (png_write(path, &img, 0, NULL, NULL)) {
            fprintf(stderr, "sdft-demo-images: %s\n", err_msg());
            return 1;
        }
        image_free(&img);
    }
    return 0;
}
