// PNG files through libpng: samples written with their generation parameters the way
// A1111 writes them (a text chunk named "parameters", which A1111, ComfyUI and
// Pillow's img.info read back), and images read for training.
#pragma once

#include "core/image.h"

#ifdef __cplusplus
extern "C" {
#endif

// A PNG's text chunks in file order, keys and values as UTF-8 (tEXt and zTXt hold
// Latin-1, converted here; iTXt holds UTF-8). A key may repeat.
typedef struct {
    int count;
    char **keys, **values;
} png_meta;

// Writes img (8-bit, 3 channels: RGB, 4: RGBA) with n_text text chunks before the image
// data. A key is 1 to 79 printable ASCII characters without leading, trailing or
// doubled spaces (the PNG rules; a bad key is a program bug). A value is UTF-8; it goes
// into a tEXt chunk when it is Latin-1 and into an iTXt chunk otherwise, the rule
// Pillow (and so A1111) follows. The file appears atomically: it is written to
// path.tmp.<pid>, synced and renamed over path, so a failed write leaves path as it
// was. 0, or -1 with err_msg naming the path (unwritable place, full disk, value
// that is not UTF-8).
int png_write(const char *path, const image_u8 *img, int n_text, const char *const *keys,
              const char *const *values);

// Reads any PNG as 8-bit RGB the way Pillow's convert("RGB") does: palette and gray
// expanded, alpha (and tRNS transparency) dropped, 16-bit samples cut to their high
// byte (Pillow does so too, but clips 16-bit gray instead); interlaced files too. When text is not NULL it receives the text chunks
// (before and after the image data; an iTXt chunk that is not UTF-8 is skipped, as
// Pillow does). 0, or -1 with a one-line err_msg naming the file (missing, not a PNG,
// truncated, corrupt, over 2^28 pixels); on error *img and *text are empty.
int png_read(const char *path, image_u8 *img, png_meta *text);

// The value of the last chunk named key (Pillow's img.info keeps the last), or NULL.
const char *png_meta_get(const png_meta *text, const char *key);
void png_meta_free(png_meta *text);

#ifdef __cplusplus
}
#endif
