// The training transform of diffusers' DreamBooth scripts, as torchvision computes it
// on PIL images:
//   transforms.Resize(size, interpolation=BILINEAR)   the shorter side to size
//   transforms.CenterCrop(size) or RandomCrop(size)   a size x size square
//   transforms.RandomHorizontalFlip()                 (the scripts that flip)
//   transforms.ToTensor(), transforms.Normalize([0.5], [0.5])   to [-1, 1]
// On a PIL image torchvision's Resize is PIL's Image.resize(size, BILINEAR) (the
// antialias argument applies to tensors only), which since Pillow 7 filters a
// downscale with a triangle as wide as the scale factor (antialiasing) and works in
// fixed point: image_resize_window below is that computation, bit for bit.
#pragma once
#include <stdbool.h>

#include "core/image.h"
#include "core/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

// The size torchvision's Resize(size) gives a width x height image: the shorter side
// becomes size and the longer int(size * long / short) (truncated; a square stays a
// square). 0, or -1 with err_msg when the longer side would exceed 2^24 pixels (an
// image over 32768 times longer than wide at size 512).
int resize_size(int width, int height, int size, int *out_width, int *out_height);

// The window [x0, x0 + w) x [y0, y0 + h) of img resized to out_width x out_height by
// Pillow's antialiased bilinear resize (Image.resize(..., BILINEAR)), computed for
// the window's pixels only: equal to resizing the whole image and cropping, without
// holding the whole. RGB or RGBA; the window must lie inside the output.
image_u8 image_resize_window(const image_u8 *img, int out_width, int out_height, int x0, int y0, int w,
                             int h);

// The top-left corner of CenterCrop(size) in a width x height image at least size
// on each side: round((width - size) / 2) and round((height - size) / 2) with
// Python's round, ties to even (a margin of 1.5 gives 2, of 2.5 gives 2).
void center_crop_origin(int width, int height, int size, int *x0, int *y0);

// Mirrors img left to right in place.
void image_flip_horizontal(image_u8 *img);

// ToTensor then Normalize([0.5], [0.5]) in float32 as torch computes them,
// (v / 255 - 0.5) / 0.5 for each byte v, into out (width * height * channels floats)
// in the image's layout: channels last (HWC).
void image_to_float(const image_u8 *img, float *out);

typedef struct {
    int size;          // the output's side: Resize(size) then a size x size crop
    bool center_crop;  // CenterCrop; else RandomCrop
    bool random_flip;  // RandomHorizontalFlip with p = 0.5
} transform_options;

// Where a transform took its pixels from (SDXL's conditioning wants the crop corner).
typedef struct {
    int resized_width, resized_height;  // after Resize
    int crop_x, crop_y;                 // the crop's top-left corner in the resized image
    bool flipped;
} transform_record;

// img through the whole transform into out: size * size * 3 floats in [-1, 1],
// channels last. The random choices come from rng, always the same number of draws
// whatever the image, so a sample's draws can be placed in a stream ahead of time:
// a random crop takes two (top, then left, as RandomCrop.get_params draws them:
// uniform over the margin + 1 positions), the flip one (flips on an odd draw of
// rng_below(2)); a center crop without flip takes none. record may be NULL. 0, or
// -1 with err_msg as resize_size (img must be RGB).
int image_transform(const image_u8 *img, const transform_options *opt, rng_stream *rng, float *out,
                    transform_record *record);

#ifdef __cplusplus
}
#endif
