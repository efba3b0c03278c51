#include "data/image_io.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// jpeglib.h needs stdio.h (FILE) before it, and jerror.h needs jpeglib.h's
// configuration (arithmetic coding) to list every message.
#include <jpeglib.h>
// (kept apart so that include sorting leaves the order alone)
#include <jerror.h>

#include "core/check.h"
#include "core/files.h"
#include "core/png.h"

// Images over this many pixels (768 MB as RGB) are refused before allocating them,
// the limit png_read applies.
#define MAX_PIXELS (1u << 28)

static const unsigned char JPEG_SIGNATURE[3] = {0xff, 0xd8, 0xff};
static const unsigned char PNG_SIGNATURE[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
static const char EXIF_PREFIX[6] = "Exif\0";                         // "Exif" and two NULs
static const char XMP_NAMESPACE[] = "http://ns.adobe.com/xap/1.0/";  // then a NUL

// --- orientation -------------------------------------------------------------------

static uint32_t get16(const unsigned char *p, bool little) {
    return little ? (uint32_t)p[0] | (uint32_t)p[1] << 8 : (uint32_t)p[0] << 8 | p[1];
}

static uint32_t get32(const unsigned char *p, bool little) {
    return little ? get16(p, true) | get16(p + 2, true) << 16 : get16(p, false) << 16 | get16(p + 2, false);
}

long exif_orientation(const unsigned char *exif, size_t len) {
    // Pillow strips the APP1 prefix as often as it repeats.
    while (len >= sizeof EXIF_PREFIX && memcmp(exif, EXIF_PREFIX, sizeof EXIF_PREFIX) == 0)
        exif += sizeof EXIF_PREFIX, len -= sizeof EXIF_PREFIX;
    if (len < 8) return -1;
    bool little;
    if (memcmp(exif, "II*\0", 4) == 0)
        little = true;
    else if (memcmp(exif, "MM\0*", 4) == 0)
        little = false;
    else
        return -1;
    // IFD 0: a count, then 12-byte entries (tag, type, count, value or offset).
    uint32_t ifd = get32(exif + 4, little);
    if (ifd > len - 2) return -1;
    uint32_t entries = get16(exif + ifd, little);
    for (uint32_t i = 0; i < entries; i++) {
        size_t at = (size_t)ifd + 2 + (size_t)12 * i;
        if (at + 12 > len) return -1;
        if (get16(exif + at, little) != 0x0112) continue;
        uint32_t type = get16(exif + at + 2, little), count = get32(exif + at + 4, little);
        if (count != 1) return 0;
        if (type == 3) return (long)get16(exif + at + 8, little);  // SHORT, as the standard has it
        if (type == 4) return (long)get32(exif + at + 8, little);  // LONG, which Pillow reads too
        return 0;
    }
    return -1;
}

// The orientation Pillow's getexif finds in an XMP packet: the digit after the first
// `tiff:Orientation="` or `tiff:Orientation>`; -1 when there is none.
static long xmp_orientation(const char *xmp, size_t len) {
    static const char key[] = "tiff:Orientation";
    const size_t key_len = sizeof key - 1;
    for (const char *at = xmp, *end = xmp + len; (at = memmem(at, (size_t)(end - at), key, key_len));) {
        const char *v = at + key_len;
        if (v + 1 < end && v[0] == '>' && v[1] >= '0' && v[1] <= '9') return v[1] - '0';
        if (v + 2 < end && v[0] == '=' && v[1] == '"' && v[2] >= '0' && v[2] <= '9') return v[2] - '0';
        at = v;
    }
    return -1;
}

image_u8 image_orient(const image_u8 *img, long orientation) {
    // Each orientation read as where an output pixel comes from: (x, y) names the
    // source's (y, x) when the axes swap (5-8), and the source is read right to left
    // (mirror_x) or bottom to top (mirror_y).
    static const struct {
        bool swap, mirror_x, mirror_y;
    } ways[9] = {[2] = {false, true, false}, [3] = {false, true, true}, [4] = {false, false, true},
                 [5] = {true, false, false}, [6] = {true, false, true}, [7] = {true, true, true},
                 [8] = {true, true, false}};
    const int w = img->width, h = img->height, ch = img->channels;
    bool known = orientation >= 1 && orientation <= 8;
    bool swap = known && ways[orientation].swap, mirror_x = known && ways[orientation].mirror_x,
         mirror_y = known && ways[orientation].mirror_y;
    image_u8 out = image_new(swap ? h : w, swap ? w : h, ch);
    for (int y = 0; y < out.height; y++)
        for (int x = 0; x < out.width; x++) {
            int u = swap ? y : x, v = swap ? x : y;
            int sx = mirror_x ? w - 1 - u : u, sy = mirror_y ? h - 1 - v : v;
            memcpy(out.pixels + ((size_t)y * (size_t)out.width + (size_t)x) * (size_t)ch,
                   img->pixels + ((size_t)sy * (size_t)w + (size_t)sx) * (size_t)ch, (size_t)ch);
        }
    return out;
}

// The orientation of an EXIF block, falling back on an XMP packet as Pillow does when
// the EXIF has no orientation tag.
static long orientation_of(const unsigned char *exif, size_t exif_len, const char *xmp, size_t xmp_len) {
    long o = exif ? exif_orientation(exif, exif_len) : -1;
    return o < 0 && xmp ? xmp_orientation(xmp, xmp_len) : o;
}

// --- JPEG --------------------------------------------------------------------------

// libjpeg reports a fatal error through error_exit and recoverable trouble through
// emit_message; both land here and jump back to decode_jpeg with a message.
typedef struct {
    struct jpeg_error_mgr mgr;  // first, so libjpeg's pointer to it is a pointer to us
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX + 64];
} jpeg_failure;

static NORETURN void jpeg_fail(j_common_ptr cinfo) {
    jpeg_failure *f = (jpeg_failure *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, text);
    static const char corrupt[] = "Corrupt JPEG data: ";
    if (cinfo->err->msg_code == JWRN_JPEG_EOF)
        snprintf(f->msg, sizeof f->msg, "truncated JPEG: the file ends early");
    else if (strncmp(text, corrupt, sizeof corrupt - 1) == 0)
        snprintf(f->msg, sizeof f->msg, "corrupt JPEG: %s", text + sizeof corrupt - 1);
    else
        snprintf(f->msg, sizeof f->msg, "cannot decode JPEG: %s", text);
    longjmp(f->jump, 1);
}

// libjpeg warns (level -1) and carries on when data is missing or damaged, making up
// the pixels it cannot decode (a truncated file ends in gray). Those are refused
// here; a training image with invented pixels is worse than none. Other warnings
// (padding bytes between segments, an unknown JFIF revision) leave the pixels intact
// and are ignored, as Pillow ignores all of them. Trace messages (level >= 0) too.
static void jpeg_message(j_common_ptr cinfo, int level) {
    int code = cinfo->err->msg_code;
    if (level < 0 && (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_HUFF_BAD_CODE ||
                      code == JWRN_ARITH_BAD_CODE || code == JWRN_MUST_RESYNC))
        jpeg_fail(cinfo);
}

// The orientation in a JPEG's saved APP1 segments: the Exif segments joined as Pillow
// joins them (the first whole, the others without their prefix), else the last XMP
// packet's tiff:Orientation.
static long jpeg_orientation(struct jpeg_decompress_struct *cinfo) {
    unsigned char *exif = NULL;
    size_t exif_len = 0;
    const char *xmp = NULL;
    size_t xmp_len = 0;
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        size_t n = m->data_length;
        if (n >= sizeof EXIF_PREFIX && memcmp(m->data, EXIF_PREFIX, sizeof EXIF_PREFIX) == 0) {
            size_t skip = exif ? sizeof EXIF_PREFIX : 0;
            exif = realloc(exif, exif_len + n - skip);
            CHECK(exif, "out of memory joining EXIF segments");
            memcpy(exif + exif_len, m->data + skip, n - skip);
            exif_len += n - skip;
        } else if (n >= sizeof XMP_NAMESPACE && memcmp(m->data, XMP_NAMESPACE, sizeof XMP_NAMESPACE) == 0) {
            xmp = (const char *)m->data + sizeof XMP_NAMESPACE;
            xmp_len = n - sizeof XMP_NAMESPACE;
        }
    }
    long o = orientation_of(exif, exif_len, xmp, xmp_len);
    free(exif);
    return o;
}

// Adobe's CMYK as Pillow converts it: the stored values are inverted (255 = no ink),
// Pillow un-inverts them and computes R = (255 - K) - (255 - K)·C/255 rounded,
// which is the stored C'·K'/255 rounded (never a tie: 2·C'·K' is even, 255 odd).
static void cmyk_row_to_rgb(unsigned char *rgb, const unsigned char *cmyk, int width) {
    for (int x = 0; x < width; x++, rgb += 3, cmyk += 4)
        for (int c = 0; c < 3; c++) rgb[c] = (unsigned char)(((unsigned)cmyk[c] * cmyk[3] + 127) / 255);
}

static int decode_jpeg(const char *path, const unsigned char *bytes, size_t len, image_u8 *img,
                       long *orientation) {
    struct jpeg_decompress_struct cinfo;
    jpeg_failure fail;
    cinfo.err = jpeg_std_error(&fail.mgr);
    fail.mgr.error_exit = jpeg_fail;
    fail.mgr.emit_message = jpeg_message;
    unsigned char *volatile row = NULL;
    if (setjmp(fail.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(row);
        image_free(img);
        err_set("%s: %s", path, fail.msg);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, bytes, (unsigned long)len);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(&cinfo, TRUE);
    if ((uint64_t)cinfo.image_width * cinfo.image_height > MAX_PIXELS) {
        err_set("%s: the image is %ux%u, over 2^28 pixels", path, cinfo.image_width, cinfo.image_height);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    *orientation = jpeg_orientation(&cinfo);
    bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    // libjpeg expands gray to RGB by copying, as convert("RGB") does, and turns YCCK
    // into (Adobe) CMYK.
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    const int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    *img = image_new(w, h, 3);
    if (cmyk) row = xmalloc((size_t)w * 4);
    while (cinfo.output_scanline < cinfo.output_height) {
        unsigned char *out = img->pixels + (size_t)cinfo.output_scanline * (size_t)w * 3;
        JSAMPROW rows[1] = {cmyk ? row : out};
        jpeg_read_scanlines(&cinfo, rows, 1);
        if (cmyk) cmyk_row_to_rgb(out, row, w);
    }
    // Reads on to the end marker, so a file cut after its last scan is caught too.
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    return 0;
}

// --- PNG ---------------------------------------------------------------------------

// The payload of the last eXIf chunk of a PNG's bytes (Pillow keeps the last), or NULL.
// png_read has checked the file; this only walks its chunk headers.
static const unsigned char *png_exif_chunk(const unsigned char *png, size_t len, size_t *exif_len) {
    const unsigned char *exif = NULL;
    for (size_t at = sizeof PNG_SIGNATURE; at + 12 <= len;) {
        size_t n = get32(png + at, false);
        if (n > len - at - 12) break;
        if (memcmp(png + at + 4, "eXIf", 4) == 0) exif = png + at + 8, *exif_len = n;
        if (memcmp(png + at + 4, "IEND", 4) == 0) break;
        at += 12 + n;
    }
    return exif;
}

static int hex_digit(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

// ImageMagick's "Raw profile type exif" text: "\nexif\n<length>\n" and then the EXIF
// block in hex over several lines. Pillow decodes what follows the third newline
// with bytes.fromhex; the bytes into *out (caller frees), or -1 when it is not hex.
static long raw_profile_bytes(const char *text, unsigned char **out) {
    *out = NULL;
    for (int newlines = 0; newlines < 3; text++) {
        if (!*text) return -1;
        newlines += *text == '\n';
    }
    unsigned char *bytes = xmalloc(strlen(text) / 2 + 1);
    long n = 0;
    for (const char *p = text; *p;) {
        if (strchr(" \t\n\r\v\f", *p)) {
            p++;
            continue;
        }
        int hi = hex_digit(p[0]), lo = hi < 0 ? -1 : hex_digit(p[1]);
        if (lo < 0) {
            free(bytes);
            return -1;
        }
        bytes[n++] = (unsigned char)(hi << 4 | lo);
        p += 2;
    }
    *out = bytes;
    return n;
}

// The orientation of a PNG: its eXIf chunk, else its raw EXIF profile text, then the
// XMP text when that has no orientation tag.
static long png_orientation(const unsigned char *bytes, size_t len, const png_meta *text) {
    size_t exif_len = 0;
    const unsigned char *exif = png_exif_chunk(bytes, len, &exif_len);
    unsigned char *profile = NULL;
    const char *raw = exif ? NULL : png_meta_get(text, "Raw profile type exif");
    if (raw) {
        long n = raw_profile_bytes(raw, &profile);
        if (n >= 0) exif = profile, exif_len = (size_t)n;
    }
    const char *xmp = png_meta_get(text, "XML:com.adobe.xmp");
    long o = orientation_of(exif, exif_len, xmp, xmp ? strlen(xmp) : 0);
    free(profile);
    return o;
}

static int decode_png(const char *path, const unsigned char *bytes, size_t len, image_u8 *img,
                      long *orientation) {
    png_meta text;
    if (png_read(path, img, &text) != 0) return -1;
    *orientation = png_orientation(bytes, len, &text);
    png_meta_free(&text);
    return 0;
}

// --- any image ---------------------------------------------------------------------

typedef int (*decoder)(const char *path, const unsigned char *bytes, size_t len, image_u8 *img,
                       long *orientation);

int image_load(const char *path, image_u8 *img) {
    static const struct {
        const unsigned char *signature;
        size_t signature_len;
        const char *name;
        decoder decode;
    } formats[] = {{JPEG_SIGNATURE, sizeof JPEG_SIGNATURE, "JPEG", decode_jpeg},
                   {PNG_SIGNATURE, sizeof PNG_SIGNATURE, "PNG", decode_png}};
    *img = (image_u8){0};
    char *text;
    size_t len;
    if (read_text_file(path, &text, &len) != 0) return -1;
    const unsigned char *bytes = (const unsigned char *)text;
    long orientation = -1;
    int rc = -1;
    bool known = false;
    for (size_t i = 0; i < sizeof formats / sizeof formats[0] && !known; i++) {
        size_t n = formats[i].signature_len;
        if (len >= n && memcmp(bytes, formats[i].signature, n) == 0) {
            known = true;
            rc = formats[i].decode(path, bytes, len, img, &orientation);
        } else if (len > 0 && len < n && memcmp(bytes, formats[i].signature, len) == 0) {
            known = true;
            err_set("%s: truncated %s: the file ends early", path, formats[i].name);
        }
    }
    if (!known) err_set("%s: not a JPEG or PNG file%s", path, len ? "" : " (empty)");
    free(text);
    if (rc == 0 && orientation >= 2 && orientation <= 8) {
        image_u8 upright = image_orient(img, orientation);
        image_free(img);
        *img = upright;
    }
    return rc;
}
