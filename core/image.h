// 8-bit images in host memory: what the sampler hands to the PNG writer, what the PNG
// reader hands to training, and contact sheets of several samples.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

// Row-major, channels interleaved (3: RGB, 4: RGBA); pixels is width*height*channels
// bytes, malloc'd and owned by the image.
typedef struct {
    int width, height, channels;
    unsigned char *pixels;
} image_u8;

// A zero-filled image.
image_u8 image_new(int width, int height, int channels);
// Frees the pixels and zeroes the struct (safe on a zeroed one).
void image_free(image_u8 *img);

// A contact sheet: n images of one size and channel count, tiled row by row in
// `cols` columns (fewer when n < cols), with `gap` pixels of the gray level `gray`
// between the tiles and around the edge; cells of an incomplete last row are gray.
image_u8 image_grid(const image_u8 *const *imgs, int n, int cols, int gap, unsigned char gray);
// The same sheet (RGB or RGBA tiles) with a caption band under every tile, so that a
// reader can tell the tiles apart: captions[i] (the prompt) wrapped to the tile's width
// in at most two lines, the second ellipsized when it does not fit, and notes[i] (say
// "seed 6") in gray on a line of its own. Either array, or any entry, may be NULL.
image_u8 image_grid_captioned(const image_u8 *const *imgs, const char *const *captions, const char *const *notes,
                              int n, int cols, int gap, unsigned char gray);

// The VAE's output, a float image [height, width, 3] in [-1, 1] (channels-last), as
// RGB8 exactly as diffusers 0.30's VaeImageProcessor.postprocess writes it:
// round(clamp(x / 2 + 0.5, 0, 1) * 255) in f32, with ties to even (numpy's round).
// NaN becomes 0.
image_u8 image_from_float(const float *x, int height, int width);

#ifdef __cplusplus
}
#endif
