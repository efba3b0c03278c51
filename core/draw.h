// 2-D drawing with cairo for the pictures we write (the loss plot, captioned grids):
// a canvas in cairo's RGB24 format, text in DejaVu Sans (Debian's fonts-dejavu-core),
// and the finished canvas as an 8-bit image, which core/png.c writes.
#pragma once
#include <cairo.h>
#include <stdbool.h>

#include "core/image.h"

// A width x height canvas filled with the color (r, g, b), each in [0, 1].
cairo_t *draw_new(int width, int height, double r, double g, double b);
// The canvas as an 8-bit image of 3 (RGB) or 4 (RGBA, opaque) channels; frees cr.
image_u8 draw_finish(cairo_t *cr, int channels);

// Selects DejaVu Sans (fonts-dejavu-core, which make deps installs; fontconfig's
// nearest match where it is missing, and cairo's own built-in font on a machine with no
// fonts at all, so text is always drawn) at size pixels.
void draw_font(cairo_t *cr, double size, bool bold);
// The advance width of text in the current font, in pixels.
double draw_text_width(cairo_t *cr, const char *text);
// Draws text with its baseline at y and its left end, center or right end (align -1,
// 0, 1) at x. Bytes that are not UTF-8 are drawn as '?'.
void draw_text(cairo_t *cr, double x, double y, int align, const char *text);
// Breaks text at spaces into at most max_lines lines no wider than width pixels (a
// word wider than a line is cut); when text does not fit, the last line ends in "…".
// The lines are malloc'd into lines[]; returns their count (0 for empty text).
int draw_wrap(cairo_t *cr, const char *text, double width, int max_lines, char **lines);
