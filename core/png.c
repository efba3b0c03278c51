#include "core/png.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "core/files.h"
#include "core/utf8.h"

// Readers refuse images over this many pixels (768 MB as RGB) before allocating them.
#define MAX_PIXELS (1u << 28)

// One read or write in progress. libpng reports every failure through png_error with
// a generic text; the callbacks record what really happened, so the message can say
// "truncated" or give errno instead.
typedef struct {
    FILE *fp;
    int io_errno;      // errno of a failed fread or fwrite, else 0
    bool at_eof;       // a read ran into the end of the file
    char detail[160];  // a message of ours handed to png_error
    char msg[200];     // the last error message, libpng's or ours
} png_io;

static void on_error(png_structp png, png_const_charp msg) {
    png_io *io = png_get_error_ptr(png);
    snprintf(io->msg, sizeof io->msg, "%s", msg);
    png_longjmp(png, 1);
}

// libpng warns about what it recovers from (an ancillary chunk with a bad CRC, which
// it skips; an sRGB profile with known mistakes). The pixels are still right, and a
// library has no business printing on stderr.
static void on_warning(png_structp png, png_const_charp msg) {}

// --- text --------------------------------------------------------------------------

// The UTF-8 text s as a new Latin-1 string in *latin1, or NULL there when some
// character is above U+00FF. -1 when s is not UTF-8.
static int utf8_to_latin1(const char *s, char **latin1) {
    *latin1 = NULL;
    bool fits = true;
    size_t chars = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; chars++) {
        uint32_t cp;
        int len = utf8_next(p, &cp);
        if (!len) return -1;
        fits &= cp <= 0xff;
        p += len;
    }
    if (!fits) return 0;
    char *out = xmalloc(chars + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        uint32_t cp;
        p += utf8_next(p, &cp);
        *o++ = (char)cp;
    }
    *o = 0;
    *latin1 = out;
    return 0;
}

static char *latin1_to_utf8(const char *s) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) n += *p < 0x80 ? 1 : 2;
    char *out = xmalloc(n + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x80) {
            *o++ = (char)*p;
        } else {
            *o++ = (char)(0xc0 | *p >> 6);
            *o++ = (char)(0x80 | (*p & 0x3f));
        }
    }
    *o = 0;
    return out;
}

// The PNG keyword rules (section 11.3.4.2), kept to ASCII: libpng would otherwise
// rewrite or drop the key.
static bool valid_keyword(const char *key) {
    size_t n = strlen(key);
    if (n < 1 || n > 79 || key[0] == ' ' || key[n - 1] == ' ') return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c < 32 || c > 126 || (c == ' ' && key[i + 1] == ' ')) return false;
    }
    return true;
}

const char *png_meta_get(const png_meta *text, const char *key) {
    for (int i = text->count - 1; i >= 0; i--)
        if (strcmp(text->keys[i], key) == 0) return text->values[i];
    return NULL;
}

void png_meta_free(png_meta *text) {
    for (int i = 0; i < text->count; i++) {
        free(text->keys[i]);
        free(text->values[i]);
    }
    free(text->keys);
    free(text->values);
    *text = (png_meta){0};
}

// --- writing -----------------------------------------------------------------------

static void write_bytes(png_structp png, png_bytep data, size_t n) {
    png_io *io = png_get_io_ptr(png);
    if (fwrite(data, 1, n, io->fp) != n) {
        io->io_errno = errno;
        png_error(png, "write failed");
    }
}

// png_write flushes and syncs once at the end; libpng's default flush would take
// our png_io for a FILE.
static void flush_nothing(png_structp png) {}

// img and its text chunks into io->fp: false when libpng or the stream failed, with
// io saying why.
static bool encode(png_io *io, const image_u8 *img, png_textp texts, int n_text) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, io, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    CHECK(png && info, "libpng cannot start a write (out of memory, or png.h and libpng differ)");
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return false;
    }
    png_set_write_fn(png, io, write_bytes, flush_nothing);
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8,
                 img->channels == 4 ? PNG_COLOR_TYPE_RGB_ALPHA : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    // Before the image data, where Pillow puts them and where readers that stop at the
    // first IDAT still find them.
    if (n_text) png_set_text(png, info, texts, n_text);
    png_write_info(png, info);
    size_t row = (size_t)img->width * (size_t)img->channels;
    for (int y = 0; y < img->height; y++) png_write_row(png, img->pixels + (size_t)y * row);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return true;
}

int png_write(const char *path, const image_u8 *img, int n_text, const char *const *keys,
              const char *const *values) {
    CHECK(img->width > 0 && img->height > 0 && (img->channels == 3 || img->channels == 4) &&
              img->pixels,
          "png_write of a %dx%d image with %d channels", img->width, img->height, img->channels);
    CHECK(n_text >= 0, "n_text %d", n_text);
    png_textp texts = xcalloc((size_t)n_text, sizeof *texts);
    char **latin1 = xcalloc((size_t)n_text, sizeof *latin1);
    int result = -1;

    for (int i = 0; i < n_text; i++) {
        CHECK(valid_keyword(keys[i]), "PNG text key \"%s\" breaks the keyword rules", keys[i]);
        if (utf8_to_latin1(values[i], &latin1[i]) != 0) {
            err_set("%s: the value of text \"%s\" is not UTF-8", path, keys[i]);
            goto done;
        }
        // libpng takes non-const pointers but copies the strings.
        texts[i].key = (char *)keys[i];
        texts[i].text = latin1[i] ? latin1[i] : (char *)values[i];
        texts[i].compression = latin1[i] ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
    }

    file_replacement out;
    if (file_replace_begin(&out, path)) goto done;
    png_io io = {.fp = out.fp};
    int write_errno = 0;
    if (!encode(&io, img, texts, n_text)) {
        write_errno = io.io_errno ? io.io_errno : -1;
        if (write_errno < 0) err_set("%s: cannot write: %s", path, io.msg);
    }
    if (file_replace_end(&out, write_errno)) goto done;
    result = 0;
done:
    for (int i = 0; i < n_text; i++) free(latin1[i]);
    free(latin1);
    free(texts);
    return result;
}

// --- reading -----------------------------------------------------------------------

static void read_bytes(png_structp png, png_bytep data, size_t n) {
    png_io *io = png_get_io_ptr(png);
    if (fread(data, 1, n, io->fp) == n) return;
    io->at_eof = feof(io->fp);
    io->io_errno = io->at_eof ? 0 : errno;
    png_error(png, "read failed");
}

// Appends the text chunks libpng collected in info to meta (whose arrays have room).
static void take_text(png_structp png, png_infop info, png_meta *meta) {
    png_textp t;
    int n = png_get_text(png, info, &t, NULL);
    for (int i = 0; i < n; i++) {
        bool utf8 = t[i].compression >= PNG_ITXT_COMPRESSION_NONE;
        if (utf8 && !utf8_valid(t[i].text, NULL)) continue;
        meta->keys[meta->count] = latin1_to_utf8(t[i].key);  // keywords are Latin-1 in every kind
        meta->values[meta->count] = utf8 ? strcpy(xmalloc(strlen(t[i].text) + 1), t[i].text)
                                         : latin1_to_utf8(t[i].text);
        meta->count++;
    }
}

// The rest of the file after its signature into *img (RGB8) and *meta. false when
// libpng or the stream failed, with io saying why; what was allocated is left in *img
// and *meta for the caller to free.
static bool decode(png_io *io, image_u8 *img, png_meta *meta) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, io, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_infop end = png ? png_create_info_struct(png) : NULL;
    CHECK(png && info && end, "libpng cannot start a read (out of memory, or png.h and libpng differ)");
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, &end);
        return false;
    }
    png_set_read_fn(png, io, read_bytes);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if ((uint64_t)w * h > MAX_PIXELS) {
        snprintf(io->detail, sizeof io->detail, "image of %ux%u pixels is over the limit of 2^28",
                 w, h);
        png_error(png, io->detail);
    }
    // What Pillow's convert("RGB") gives, which is what Python trainers see.
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);
    if (!(color & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
    png_set_strip_alpha(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    CHECK(png_get_rowbytes(png, info) == (size_t)w * 3,
          "libpng gives %zu bytes a row for a %u-pixel RGB row (color type %d, depth %d)",
          (size_t)png_get_rowbytes(png, info), w, color, depth);
    *img = image_new((int)w, (int)h, 3);
    // An interlaced image arrives in passes, each filling in its pixels of every row.
    for (int pass = 0; pass < passes; pass++)
        for (png_uint_32 y = 0; y < h; y++) png_read_row(png, img->pixels + (size_t)y * w * 3, NULL);
    // Reads up to IEND, checking the chunks after the image data and collecting their text.
    png_read_end(png, end);
    int n = png_get_text(png, info, NULL, NULL) + png_get_text(png, end, NULL, NULL);
    meta->keys = xcalloc((size_t)n, sizeof *meta->keys);
    meta->values = xcalloc((size_t)n, sizeof *meta->values);
    take_text(png, info, meta);
    take_text(png, end, meta);
    png_destroy_read_struct(&png, &info, &end);
    return true;
}

int png_read(const char *path, image_u8 *img, png_meta *text) {
    *img = (image_u8){0};
    if (text) *text = (png_meta){0};
    FILE *fp = fopen(path, "rbe");
    if (!fp) {
        err_set("%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    unsigned char sig[8];
    size_t got = fread(sig, 1, sizeof sig, fp);
    if (got < sizeof sig && ferror(fp)) {
        err_set("%s: cannot read: %s", path, strerror(errno));
        fclose(fp);
        return -1;
    }
    if (got == 0 || png_sig_cmp(sig, 0, got) != 0) {
        err_set("%s: not a PNG file (no PNG signature)", path);
        fclose(fp);
        return -1;
    }
    png_io io = {.fp = fp, .at_eof = got < sizeof sig};
    png_meta meta = {0};
    bool ok = !io.at_eof && decode(&io, img, &meta);
    fclose(fp);
    if (!ok) {
        if (io.at_eof)
            err_set("%s: truncated PNG: the file ends early", path);
        else if (io.io_errno)
            err_set("%s: cannot read: %s", path, strerror(io.io_errno));
        else if (io.detail[0])
            err_set("%s: %s", path, io.detail);
        else
            err_set("%s: corrupt PNG: %s", path, io.msg);
        image_free(img);
        png_meta_free(&meta);
        return -1;
    }
    if (text)
        *text = meta;
    else
        png_meta_free(&meta);
    return 0;
}
