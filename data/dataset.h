// A training folder: its images, their captions, and the order of each epoch.
//
// The folder's files, by name (the extension's case does not matter):
//   NAME.jpg / .jpeg / .jpe / .jfif / .png   an image (read by content, image_io.h)
//   NAME.txt   the caption of NAME's image(s), used instead of the default prompt
//              (surrounding whitespace and a UTF-8 byte order mark dropped, each
//              line break one space); text that is not UTF-8 makes the image
//              unusable (below), as Python's utf-8 decoding would stop a script
// Names starting with '.' are skipped without a word (.DS_Store, editor files);
// sub-folders are not scanned. Every other case gets a note naming its file:
//   a WebP, GIF, BMP, TIFF, HEIC, AVIF or JPEG XL image: unusable (unsupported)
//   an image that cannot be read (corrupt, truncated, not an image): unusable
//   an image without a caption file when there is no default prompt: unusable
//   a .txt without an image, a sub-folder, any other file: a warning
//   an empty caption file: a warning (the image trains with an empty caption)
// An unusable image is skipped with a warning, or in strict mode is an error.
// Every image is decoded once while the folder is opened, so a broken file shows
// up before training starts rather than in the middle of it.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char *path;         // "DIR/NAME.ext"
    char *caption;      // from NAME.txt, else the default prompt
    int width, height;  // upright, as image_load gives it
} dataset_image;

typedef struct {
    char *dir;
    int n_images;  // usable images, sorted by file name (byte order)
    dataset_image *images;
    int repeats;  // times each image appears in an epoch
    int n_items;  // n_images * repeats: the samples of one epoch
} dataset;

typedef enum { NOTE_WARNING, NOTE_ERROR } note_level;

typedef struct {
    note_level level;
    char *message;  // one line: "PATH: what is wrong"
} dataset_note;

// What the scan found wrong, file by file, in name order.
typedef struct {
    int n_notes;
    dataset_note *notes;
} dataset_report;

// Scans dir. default_caption (the instance prompt; may be NULL) captions images with
// no NAME.txt; repeats >= 1. The report receives a note for each problem (always,
// also on failure). 0, or -1 with a one-line err_msg naming the folder or file: the
// folder cannot be listed, it has no usable image, or (strict) some image is
// unusable (err_msg then gives the first and the count; the notes give each).
int dataset_open(dataset *ds, const char *dir, const char *default_caption, int repeats, bool strict,
                 dataset_report *report);
void dataset_free(dataset *ds);
void dataset_report_free(dataset_report *report);

// The order of one epoch: out receives n_items image indices, each image `repeats`
// times, shuffled by Fisher-Yates (from the last position down, swapping with
// rng_below(position + 1)) on the stream {seed, epoch << 32}. So each epoch's order
// is a pure function of (seed, epoch, n_images, repeats), and epochs draw from
// disjoint parts of the stream; the trainer gives the data order a seed of its own.
void dataset_epoch_order(const dataset *ds, uint64_t seed, uint32_t epoch, int *out);

#ifdef __cplusplus
}
#endif
