// Training images from JPEG and PNG files, as RGB8 exactly as diffusers' DreamBooth
// script sees them: Image.open, ImageOps.exif_transpose, convert("RGB").
#pragma once
#include <stddef.h>

#include "core/image.h"

#ifdef __cplusplus
extern "C" {
#endif

// Reads the JPEG or PNG at path (told apart by content, not by name) as an upright
// 8-bit RGB image:
// - JPEG through libjpeg-turbo with its default (accurate integer) IDCT and fancy
//   upsampling, as Pillow decodes; grayscale expanded to RGB; CMYK and YCCK taken as
//   Adobe's inverted CMYK (Pillow assumes that for every 4-channel JPEG) and
//   converted as Pillow's convert("RGB") does: R = round(C'·K'/255) with C', K' the
//   stored (inverted) values. ICC profiles are ignored, as Pillow's convert does.
// - PNG through png_read: palette, gray and alpha as Pillow's convert("RGB"); 16-bit
//   samples cut to their high byte, as Pillow does except for 16-bit gray, which
//   Pillow opens as "I;16" and convert("RGB") clips to 255 (nearly white): there we
//   keep the picture instead.
// - The EXIF orientation (1-8) turns the image upright as Pillow's exif_transpose
//   does. It comes from where Pillow 11 looks: a JPEG's Exif APP1 segments (joined,
//   as Pillow joins them), a PNG's eXIf chunk or its "Raw profile type exif" text;
//   when that has no orientation tag, from "tiff:Orientation" in the XMP packet (a
//   JPEG's XMP APP1 segment, a PNG's "XML:com.adobe.xmp" text). Malformed EXIF is
//   ignored (Pillow would raise).
// 0, or -1 with a one-line err_msg naming the file: missing, unreadable, neither
// JPEG nor PNG, truncated, corrupt (libjpeg had to make pixels up: bad entropy-coded
// data; warnings about harmless oddities such as padding bytes between segments
// are ignored, as Pillow ignores them all), an unsupported JPEG (12-bit), or over
// 2^28 pixels. On error *img is empty.
int image_load(const char *path, image_u8 *img);

// The value of the EXIF orientation tag (0x0112 in IFD 0) of an EXIF block: a TIFF
// structure, little- or big-endian, with or without the "Exif\0\0" prefix of JPEG's
// APP1 segment. The tag's value when it is there (0 when it is not one SHORT or
// LONG), -1 when the block has no such tag or is malformed.
long exif_orientation(const unsigned char *exif, size_t len);

// img turned upright for an EXIF orientation as Pillow's exif_transpose does it:
// 2 mirrors left-right, 3 turns 180 degrees, 4 mirrors top-bottom, 5 transposes,
// 6 turns 90 degrees clockwise, 7 transposes across the other diagonal, 8 turns 90
// degrees counter-clockwise; any other value gives a copy.
image_u8 image_orient(const image_u8 *img, long orientation);

#ifdef __cplusplus
}
#endif
