#include "core/draw.h"

#include <fontconfig/fontconfig.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/utf8.h"

cairo_t *draw_new(int width, int height, double r, double g, double b) {
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    CHECK(cairo_surface_status(surface) == CAIRO_STATUS_SUCCESS, "cairo: a %dx%d canvas: %s", width, height,
          cairo_status_to_string(cairo_surface_status(surface)));
    cairo_t *cr = cairo_create(surface);
    cairo_surface_destroy(surface);  // cr holds it
    cairo_set_source_rgb(cr, r, g, b);
    cairo_paint(cr);
    return cr;
}

image_u8 draw_finish(cairo_t *cr, int channels) {
    CHECK(channels == 3 || channels == 4, "draw_finish: %d channels", channels);
    CHECK(cairo_status(cr) == CAIRO_STATUS_SUCCESS, "cairo: %s", cairo_status_to_string(cairo_status(cr)));
    cairo_surface_t *surface = cairo_get_target(cr);
    cairo_surface_flush(surface);
    int width = cairo_image_surface_get_width(surface), height = cairo_image_surface_get_height(surface);
    int stride = cairo_image_surface_get_stride(surface);
    const unsigned char *data = cairo_image_surface_get_data(surface);
    image_u8 img = image_new(width, height, channels);
    for (int y = 0; y < height; y++) {
        // RGB24 pixels are native-endian 32-bit words: unused byte, red, green, blue.
        const uint32_t *row = (const uint32_t *)(data + (size_t)y * stride);
        unsigned char *out = img.pixels + (size_t)y * width * channels;
        for (int x = 0; x < width; x++, out += channels) {
            out[0] = (unsigned char)(row[x] >> 16), out[1] = (unsigned char)(row[x] >> 8), out[2] = (unsigned char)row[x];
            if (channels == 4) out[3] = 255;
        }
    }
    cairo_destroy(cr);
    return img;
}

// cairo and fontconfig keep the fonts they loaded until the process ends; returning
// them at exit keeps leak checkers (make test-asan) quiet about them.
static void release_fonts(void) {
    cairo_debug_reset_static_data();
    FcFini();
}

void draw_font(cairo_t *cr, double size, bool bold) {
    static bool first = true;
    if (first) atexit(release_fonts), first = false;
    cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

// The first len bytes of text with every byte that is not part of a UTF-8 character
// replaced by '?' (cairo refuses malformed text and stops drawing altogether).
static char *utf8_copy(const char *text, size_t len) {
    char *out = xmalloc(len + 1);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int n = utf8_next((const unsigned char *)text + i, &cp);
        if (n == 0 || i + (size_t)n > len) out[i++] = '?';
        else memcpy(out + i, text + i, (size_t)n), i += (size_t)n;
    }
    out[len] = 0;
    return out;
}

double draw_text_width(cairo_t *cr, const char *text) {
    char *s = utf8_copy(text, strlen(text));
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    free(s);
    return e.x_advance;
}

void draw_text(cairo_t *cr, double x, double y, int align, const char *text) {
    char *s = utf8_copy(text, strlen(text));
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_move_to(cr, x - (align + 1) * e.x_advance / 2, y);
    cairo_show_text(cr, s);
    free(s);
}

// Width of the first len bytes of s (whole characters), with suffix appended.
static double prefix_width(cairo_t *cr, const char *s, size_t len, const char *suffix) {
    size_t n = strlen(suffix);
    char *t = xmalloc(len + n + 1);
    memcpy(t, s, len), memcpy(t + len, suffix, n + 1);
    cairo_text_extents_t e;
    cairo_text_extents(cr, t, &e);
    free(t);
    return e.x_advance;
}

// The length of the longest prefix of s[0, len) (whole characters) that fits width with
// suffix after it; at least one character when must_take.
static size_t fitting_prefix(cairo_t *cr, const char *s, size_t len, double width, const char *suffix,
                             bool must_take) {
    size_t best = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += (size_t)utf8_next((const unsigned char *)s + i, &cp);  // s is valid UTF-8 here
        if (prefix_width(cr, s, i, suffix) > width) {
            if (best == 0 && must_take) best = i;
            break;
        }
        best = i;
    }
    return best;
}

int draw_wrap(cairo_t *cr, const char *text, double width, int max_lines, char **lines) {
    // Nobody reads more than this in a caption; it bounds the measuring below.
    size_t len = strlen(text);
    if (len > 1024) len = 1024;
    char *s = utf8_copy(text, len);
    while (len && s[len - 1] == ' ') s[--len] = 0;
    int n = 0;
    const char *p = s, *end = s + len;
    while (n < max_lines) {
        while (*p == ' ') p++;
        if (p == end) break;
        size_t take;
        if (n == max_lines - 1 && prefix_width(cr, p, (size_t)(end - p), "") > width) {
            // The last line: as much as fits before the ellipsis.
            take = fitting_prefix(cr, p, (size_t)(end - p), width, "…", false);
            while (take && p[take - 1] == ' ') take--;
            lines[n] = xmalloc(take + sizeof "…");
            memcpy(lines[n], p, take), strcpy(lines[n] + take, "…");
            n++;
            break;
        }
        // Whole words while they fit; a first word wider than the line is cut.
        take = 0;
        for (const char *q = p; q < end;) {
            const char *word_end = strchr(q, ' ');
            if (!word_end) word_end = end;
            if (prefix_width(cr, p, (size_t)(word_end - p), "") > width) break;
            take = (size_t)(word_end - p);
            for (q = word_end; *q == ' '; q++) {
            }
        }
        if (take == 0) take = fitting_prefix(cr, p, strcspn(p, " "), width, "", true);
        lines[n] = xmalloc(take + 1);
        memcpy(lines[n], p, take), lines[n][take] = 0;
        n++;
        p += take;
    }
    free(s);
    return n;
}
