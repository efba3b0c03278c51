// Suite data: the trainer's image data layer (data/). Images load as Pillow sees
// them (exif_transpose, convert("RGB")) and go through the DreamBooth transform as
// torchvision computes it, checked against Pillow at test time through
// tests/data_check.py and against tests/fixtures/data/reference.json (written by
// tools/golden/data.py with torch); JPEG and EXIF edge cases and broken files;
// folder scans with captions, repeats, notes for every odd file, and epoch orders.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jpeglib.h>  // after stdio.h, which it needs

#include "core/files.h"
#include "core/image.h"
#include "core/png.h"
#include "core/rng.h"
#include "core/sha256.h"
#include "data/dataset.h"
#include "data/image_io.h"
#include "data/transform.h"
#include "tests/test.h"

// --- helpers ---------------------------------------------------------------------

// Pillow's view of each file: exif_transpose and convert("RGB"), then torchvision's
// Resize(size) and CenterCrop(size) where sizes[i] > 0. refs[i] stays empty where
// Pillow cannot read the file. false when data_check.py failed (the test fails).
static bool pillow_reference(int n, const char *const *paths, const int *sizes, image_u8 *refs) {
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "path", paths[i]);
        cJSON_AddNumberToObject(e, "size", sizes[i]);
        cJSON_AddStringToObject(e, "out", scratch_path("reference_%d.rgb", i));
        cJSON_AddItemToArray(list, e);
        refs[i] = (image_u8){0};
    }
    char *text = cJSON_PrintUnformatted(list);
    const char *list_path = scratch_path("reference_list.json"),
               *result_path = scratch_path("reference.json");
    write_whole(list_path, text, strlen(text));
    free(text);
    cJSON_Delete(list);
    int status = run_python_script("tests/data_check.py", "reference '%s' '%s'", list_path, result_path);
    EXPECT(status == 0, "data_check.py reference exited with %d", status);
    if (status != 0) return false;
    size_t len;
    char *json = (char *)read_whole(result_path, &len);
    cJSON *results = cJSON_Parse(json);
    CHECK(cJSON_GetArraySize(results) == n, "data_check.py gave %d results for %d files",
          cJSON_GetArraySize(results), n);
    for (int i = 0; i < n; i++) {
        cJSON *r = cJSON_GetArrayItem(results, i);
        if (cJSON_GetObjectItem(r, "error")) continue;
        int w = cJSON_GetObjectItem(r, "width")->valueint, h = cJSON_GetObjectItem(r, "height")->valueint;
        const char *raw = scratch_path("reference_%d.rgb", i);
        unsigned char *pixels = read_whole(raw, &len);
        CHECK(len == (size_t)w * (size_t)h * 3, "%s: %zu bytes for %dx%d", raw, len, w, h);
        refs[i] = image_new(w, h, 3);
        memcpy(refs[i].pixels, pixels, len);
        free(pixels);
        remove(raw);
    }
    cJSON_Delete(results);
    free(json);
    return true;
}

// The largest difference between two images' bytes (INT32_MAX when their sizes
// differ), and in *differing how many bytes differ.
static int max_difference(const image_u8 *a, const image_u8 *b, long *differing) {
    *differing = 0;
    if (a->width != b->width || a->height != b->height || a->channels != b->channels) return INT32_MAX;
    int worst = 0;
    for (size_t i = 0; i < (size_t)a->width * (size_t)a->height * (size_t)a->channels; i++) {
        int d = abs((int)a->pixels[i] - (int)b->pixels[i]);
        *differing += d > 0;
        worst = d > worst ? d : worst;
    }
    return worst;
}

// An image whose every pixel and channel differs: a ramp plus noise.
static image_u8 test_image(int w, int h, uint64_t seed) {
    image_u8 img = image_new(w, h, 3);
    rng_stream s = {.seed = seed};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                int v = (c == 0   ? x * 255 / w
                         : c == 1 ? y * 255 / h
                                  : (x + y) * 127 / (w + h)) +
                        (int)rng_below(&s, 96) - 48;
                img.pixels[((size_t)y * (size_t)w + (size_t)x) * 3 + (size_t)c] =
                    (unsigned char)(v < 0     ? 0
                                    : v > 255 ? 255
                                              : v);
            }
    return img;
}

static void put16(unsigned char *p, unsigned v, bool little) {
    p[little ? 0 : 1] = (unsigned char)v;
    p[little ? 1 : 0] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v, bool little) {
    put16(p + (little ? 0 : 2), v & 0xffff, little);
    put16(p + (little ? 2 : 0), v >> 16, little);
}

// An Exif APP1 payload (with its "Exif\0\0" prefix when `prefix`) whose IFD 0 holds
// a resolution unit entry and then the orientation as a SHORT or a LONG.
static size_t exif_block(unsigned char *out, uint32_t orientation, bool little, bool as_long, bool prefix) {
    size_t at = 0;
    if (prefix) memcpy(out, "Exif\0\0", 6), at = 6;
    unsigned char *t = out + at;
    memcpy(t, little ? "II*\0" : "MM\0*", 4);
    put32(t + 4, 8, little);  // IFD 0 right after the header
    put16(t + 8, 2, little);  // two entries of 12 bytes: tag, type, count, value
    put16(t + 10, 0x0128, little), put16(t + 12, 3, little), put32(t + 14, 1, little),
        put32(t + 18, 0, little);
    put16(t + 18, 2, little);  // resolution unit: inches
    put16(t + 22, 0x0112, little), put16(t + 24, as_long ? 4 : 3, little), put32(t + 26, 1, little);
    put32(t + 30, 0, little);
    if (as_long)
        put32(t + 30, orientation, little);
    else
        put16(t + 30, orientation, little);
    put32(t + 34, 0, little);  // no next IFD
    return at + 38;
}

// Writes a JPEG through libjpeg: `in` samples of w x h pixels (1 gray, 3 RGB, 4
// CMYK per pixel) stored in color space `stored`, with an APP1 segment when app1.
static void write_jpeg(const char *path, const unsigned char *pixels, int w, int h, J_COLOR_SPACE in,
                       J_COLOR_SPACE stored, const unsigned char *app1, size_t app1_len) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    FILE *fp = fopen(path, "wb");
    CHECK(fp, "cannot write %s", path);
    jpeg_stdio_dest(&c, fp);
    int components = in == JCS_GRAYSCALE ? 1 : in == JCS_CMYK ? 4 : 3;
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = components;
    c.in_color_space = in;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, stored);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    if (app1) jpeg_write_marker(&c, JPEG_APP0 + 1, app1, (unsigned)app1_len);
    for (int y = 0; y < h; y++) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)y * (size_t)w * (size_t)components);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    CHECK(fclose(fp) == 0, "cannot write %s", path);
}

static void write_rgb_jpeg(const char *path, const image_u8 *img, const unsigned char *app1,
                           size_t app1_len) {
    write_jpeg(path, img->pixels, img->width, img->height, JCS_RGB, JCS_YCbCr, app1, app1_len);
}

// Expects err_msg to be one line that starts with path and contains want.
static void expect_error(const char *path, const char *want) {
    EXPECT(strncmp(err_msg(), path, strlen(path)) == 0, "message does not name %s: %s", path, err_msg());
    EXPECT(strstr(err_msg(), want), "message \"%s\" lacks \"%s\"", err_msg(), want);
    EXPECT(!strchr(err_msg(), '\n'), "message spans lines: %s", err_msg());
}

// --- EXIF orientation ------------------------------------------------------------

static void test_exif_parser(void) {
    test_begin("data: exif_orientation reads tag 0x0112 in either byte order, as SHORT or LONG");
    unsigned char b[64];
    for (uint32_t o = 1; o <= 8; o++)
        for (int little = 0; little < 2; little++)
            for (int as_long = 0; as_long < 2; as_long++)
                for (int prefix = 0; prefix < 2; prefix++) {
                    size_t n = exif_block(b, o, little, as_long, prefix);
                    long got = exif_orientation(b, n);
                    EXPECT(got == (long)o, "orientation %u (%s, %s, prefix %d) read as %ld", o,
                           little ? "II" : "MM", as_long ? "LONG" : "SHORT", prefix, got);
                }
    // Pillow strips a repeated prefix too.
    unsigned char twice[80];
    memcpy(twice, "Exif\0\0", 6);
    size_t n = exif_block(twice + 6, 6, true, false, true) + 6;
    EXPECT(exif_orientation(twice, n) == 6, "a doubled prefix");

    // No orientation tag; a count of 2; a RATIONAL; a wrong magic; an IFD past the end.
    n = exif_block(b, 6, true, false, false);
    b[22] = 0x13;  // the orientation entry's tag becomes 0x0113
    EXPECT(exif_orientation(b, n) == -1, "a block without the tag");
    n = exif_block(b, 6, true, false, false);
    put32(b + 26, 2, true);
    EXPECT(exif_orientation(b, n) == 0, "a count of 2");
    n = exif_block(b, 6, true, false, false);
    put16(b + 24, 5, true);
    EXPECT(exif_orientation(b, n) == 0, "a RATIONAL");
    n = exif_block(b, 6, true, false, false);
    b[2] = 43;
    EXPECT(exif_orientation(b, n) == -1, "a wrong magic number");
    n = exif_block(b, 6, false, false, false);
    put32(b + 4, 1000, false);
    EXPECT(exif_orientation(b, n) == -1, "an IFD offset past the end");
    n = exif_block(b, 6, false, false, false);
    put16(b + 8, 60000, false);
    EXPECT(exif_orientation(b, n) == 6, "entries past the end after the tag");
    put16(b + 8, 60000, false);
    b[22 + 1] = 0x13;
    EXPECT(exif_orientation(b, n) == -1, "entries past the end, no tag");

    // Every cut of a block: the tag while its entry is whole, else -1 (ASan checks
    // that nothing past the cut is read).
    n = exif_block(b, 8, false, true, true);
    for (size_t cut = 0; cut < n; cut++) {
        unsigned char *copy = xmalloc(cut + 1);
        memcpy(copy, b, cut);
        long got = exif_orientation(copy, cut);
        EXPECT(got == (cut >= 6 + 34 ? 8 : -1), "cut at %zu: %ld", cut, got);
        free(copy);
    }
    test_end();
}

static void test_orient(void) {
    test_begin("data: image_orient turns and mirrors as exif_transpose; each undoes its inverse");
    // 3x2: a b c / d e f, each pixel a different gray.
    image_u8 img = image_new(3, 2, 3);
    for (int i = 0; i < 18; i++) img.pixels[i] = (unsigned char)(i / 3 + 1);
    // Orientation 6 turns clockwise: d a / e b / f c.
    image_u8 cw = image_orient(&img, 6);
    const unsigned char want[6] = {4, 1, 5, 2, 6, 3};
    EXPECT(cw.width == 2 && cw.height == 3, "orientation 6 gives %dx%d", cw.width, cw.height);
    for (int i = 0; i < 6 && cw.width == 2; i++)
        EXPECT(cw.pixels[3 * i] == want[i], "orientation 6: pixel %d is %d, want %d", i, cw.pixels[3 * i],
               want[i]);
    image_free(&cw);
    const long inverse[9] = {0, 1, 2, 3, 4, 5, 8, 7, 6};
    for (long o = 0; o <= 9; o++) {
        image_u8 once = image_orient(&img, o), back = image_orient(&once, o <= 8 ? inverse[o] : 1);
        long differing;
        EXPECT(max_difference(&back, &img, &differing) == 0, "orientation %ld then its inverse", o);
        bool swapped = o >= 5 && o <= 8;
        EXPECT(once.width == (swapped ? 2 : 3), "orientation %ld: width %d", o, once.width);
        image_free(&once);
        image_free(&back);
    }
    image_free(&img);
    test_end();
}

// --- loading: every kind of file against Pillow ----------------------------------

static void test_load_variants(void) {
    test_begin("data: image_load equals Pillow's exif_transpose + convert(\"RGB\") on every kind of file");
    if (!have_pillow()) {
        test_end();
        return;
    }
    char dir[600];
    snprintf(dir, sizeof dir, "%s", scratch_path("data-variants"));
    CHECK(mkdir(dir, 0700) == 0, "mkdir %s", dir);
    int status = run_python_script("tests/data_check.py", "variants '%s'", dir);
    EXPECT(status == 0, "data_check.py variants exited with %d", status);
    if (status != 0) {
        test_end();
        return;
    }
    enum { MAX_FILES = 64 };
    char *paths[MAX_FILES];
    int n = 0;

    // Ours, written through libjpeg: every orientation in a hand-made APP1 segment
    // (little-endian SHORT; big-endian; LONG), one without the Exif prefix (which
    // Pillow does not take for EXIF), gray, CMYK and YCCK.
    image_u8 img = test_image(37, 23, 1);
    unsigned char app1[64];
    for (uint32_t o = 1; o <= 8; o++) {
        snprintf(paths[n] = xmalloc(700), 700, "%s/app1_o%u.jpg", dir, o);
        write_rgb_jpeg(paths[n++], &img, app1, exif_block(app1, o, true, false, true));
    }
    const struct {
        const char *name;
        uint32_t o;
        bool little, as_long, prefix;
    } app1_cases[] = {{"app1_be_o6", 6, false, false, true},
                      {"app1_be_long_o7", 7, false, true, true},
                      {"app1_long_o5", 5, true, true, true},
                      {"app1_no_prefix_o6", 6, true, false, false}};
    for (size_t i = 0; i < sizeof app1_cases / sizeof app1_cases[0]; i++) {
        snprintf(paths[n] = xmalloc(700), 700, "%s/%s.jpg", dir, app1_cases[i].name);
        write_rgb_jpeg(paths[n++], &img, app1,
                       exif_block(app1, app1_cases[i].o, app1_cases[i].little, app1_cases[i].as_long,
                                  app1_cases[i].prefix));
    }
    unsigned char gray[37 * 23], cmyk[37 * 23 * 4];
    for (int i = 0; i < 37 * 23; i++) {
        gray[i] = img.pixels[3 * i + 1];
        for (int c = 0; c < 3; c++) cmyk[4 * i + c] = img.pixels[3 * i + c];
        cmyk[4 * i + 3] = (unsigned char)(255 - i % 200);
    }
    snprintf(paths[n] = xmalloc(700), 700, "%s/libjpeg_gray.jpg", dir);
    write_jpeg(paths[n++], gray, 37, 23, JCS_GRAYSCALE, JCS_GRAYSCALE, NULL, 0);
    snprintf(paths[n] = xmalloc(700), 700, "%s/libjpeg_cmyk.jpg", dir);
    write_jpeg(paths[n++], cmyk, 37, 23, JCS_CMYK, JCS_CMYK, NULL, 0);
    snprintf(paths[n] = xmalloc(700), 700, "%s/libjpeg_ycck.jpg", dir);
    write_jpeg(paths[n++], cmyk, 37, 23, JCS_CMYK, JCS_YCCK, NULL, 0);
    image_free(&img);

    // Pillow's: see data_check.py variants.
    size_t len;
    snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/variants.json");
    char *json = (char *)read_whole(dir, &len);
    dir[strlen(dir) - strlen("/variants.json")] = '\0';
    cJSON *names = cJSON_Parse(json), *name;
    cJSON_ArrayForEach(name, names) {
        CHECK(n < MAX_FILES, "too many variants");
        snprintf(paths[n] = xmalloc(700), 700, "%s/%s", dir, name->valuestring);
        n++;
    }
    cJSON_Delete(names);
    free(json);

    int sizes[MAX_FILES] = {0};
    image_u8 refs[MAX_FILES];
    if (pillow_reference(n, (const char *const *)paths, sizes, refs)) {
        for (int i = 0; i < n; i++) {
            image_u8 ours;
            EXPECT(refs[i].pixels, "%s: Pillow cannot read it", paths[i]);
            EXPECT(image_load(paths[i], &ours) == 0, "%s", err_msg());
            long differing;
            int d = max_difference(&ours, &refs[i], &differing);
            // JPEG decoders may differ by a level; ours and Pillow's agree exactly here.
            EXPECT(d == 0, "%s: %dx%d, Pillow %dx%d; %ld values differ, by up to %d", paths[i], ours.width,
                   ours.height, refs[i].width, refs[i].height, differing, d);
            image_free(&ours);
            image_free(&refs[i]);
        }
    }
    for (int i = 0; i < n; i++) free(paths[i]);
    test_end();
}

// --- broken files ----------------------------------------------------------------

// A small JPEG with an Exif segment, in memory.
static unsigned char *small_jpeg(size_t *len) {
    image_u8 img = test_image(24, 16, 2);
    unsigned char app1[64];
    const char *path = scratch_path("small.jpg");
    write_rgb_jpeg(path, &img, app1, exif_block(app1, 6, true, false, true));
    image_free(&img);
    return read_whole(path, len);
}

static void test_truncated(void) {
    test_begin("data: every truncation of a JPEG is refused as truncated, naming the file");
    size_t len;
    unsigned char *bytes = small_jpeg(&len);
    const char *path = scratch_path("truncated.jpg");
    for (size_t n = 0; n < len; n++) {
        write_whole(path, bytes, n);
        image_u8 img;
        EXPECT(image_load(path, &img) == -1, "read a file cut at %zu of %zu bytes", n, len);
        expect_error(path, n == 0 ? "not a JPEG or PNG file (empty)" : "truncated JPEG: the file ends early");
        EXPECT(!img.pixels, "cut at %zu: left an image behind", n);
        if (!test_ok()) break;
    }
    free(bytes);
    test_end();
}

static void test_corrupt(void) {
    test_begin("data: broken and odd files give one-line errors; a byte flipped anywhere never crashes");
    image_u8 img;
    const char *missing = scratch_path("no-such.jpg");
    EXPECT(image_load(missing, &img) == -1, "read a missing file");
    expect_error(missing, "cannot open");
    const char *text = scratch_path("notes.jpg");
    write_whole(text, "a photo of a dog\n", 17);
    EXPECT(image_load(text, &img) == -1, "read a text file");
    expect_error(text, "not a JPEG or PNG file");
    EXPECT(image_load(scratch_dir(), &img) == -1, "read a folder");
    expect_error(scratch_dir(), "read error");

    size_t len;
    unsigned char *bytes = small_jpeg(&len);
    // A frame header claiming 20000 x 20000 pixels: refused before decoding.
    const char *path = scratch_path("corrupt.jpg");
    for (size_t at = 2; at + 9 < len; at++)
        if (bytes[at] == 0xff && bytes[at + 1] == 0xc0) {
            unsigned char *huge = xmalloc(len);
            memcpy(huge, bytes, len);
            put16(huge + at + 5, 20000, false), put16(huge + at + 7, 20000, false);
            write_whole(path, huge, len);
            free(huge);
            EXPECT(image_load(path, &img) == -1, "decoded 20000x20000");
            expect_error(path, "20000x20000, over 2^28 pixels");
            break;
        }
    // The entropy-coded data cut short, then the end marker: libjpeg runs out of
    // data inside the scan and would fill the rest in gray.
    size_t scan = 0;
    for (size_t at = 2; at + 1 < len; at++)
        if (bytes[at] == 0xff && bytes[at + 1] == 0xda) scan = at;
    CHECK(scan, "no SOS marker");
    unsigned char *cut = xmalloc(len);
    size_t cut_len = scan + (len - scan) / 2;
    memcpy(cut, bytes, cut_len);
    cut[cut_len++] = 0xff, cut[cut_len++] = 0xd9;
    write_whole(path, cut, cut_len);
    free(cut);
    EXPECT(image_load(path, &img) == -1, "decoded a scan cut short");
    expect_error(path, "corrupt JPEG: premature end of data segment");

    // A flip either fails with a message naming the file, or reads an image (a flip
    // in the pixel data decodes to other pixels, which nothing can tell).
    int failed = 0;
    for (size_t at = 0; at < len; at++) {
        bytes[at] ^= 0x55;
        write_whole(path, bytes, len);
        bytes[at] ^= 0x55;
        int rc = image_load(path, &img);
        if (rc == 0) {
            EXPECT(img.width > 0 && img.height > 0, "byte %zu flipped: an empty image", at);
        } else {
            failed++;
            EXPECT(strncmp(err_msg(), path, strlen(path)) == 0 && !strchr(err_msg(), '\n'),
                   "byte %zu flipped: %s", at, err_msg());
        }
        image_free(&img);
    }
    EXPECT(failed > 20, "only %d of %zu flips failed", failed, len);
    free(bytes);
    test_end();
}

// --- transform -------------------------------------------------------------------

static void test_resize_rules(void) {
    test_begin("data: Resize's size rule and CenterCrop's corner as torchvision computes them");
    const struct {
        int w, h, size, want_w, want_h;
    } sizes[] = {{1000, 777, 512, 658, 512},  {777, 1000, 512, 512, 658}, {1280, 1280, 512, 512, 512},
                 {513, 2000, 512, 512, 1996}, {7, 5, 64, 89, 64},         {300, 200, 512, 768, 512},
                 {2000, 3, 512, 341333, 512}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int w, h;
        EXPECT(resize_size(sizes[i].w, sizes[i].h, sizes[i].size, &w, &h) == 0, "%s", err_msg());
        EXPECT(w == sizes[i].want_w && h == sizes[i].want_h, "%dx%d to %d gives %dx%d, want %dx%d",
               sizes[i].w, sizes[i].h, sizes[i].size, w, h, sizes[i].want_w, sizes[i].want_h);
    }
    int w, h;
    EXPECT(resize_size(1, 100000, 512, &w, &h) == -1, "resized 1x100000 to 512x51200000");
    EXPECT(strstr(err_msg(), "1x100000") && strstr(err_msg(), "over 2^24"), "%s", err_msg());
    // Python's round: margins 1, 5 and 9 are ties that go down to the even 0, 2 and
    // 4 (rounding half up would give 1, 3 and 5); 3 and 7 go up to 2 and 4.
    const int margins[] = {0, 1, 2, 3, 4, 5, 7, 9, 10}, want[] = {0, 0, 1, 2, 2, 2, 4, 4, 5};
    for (int i = 0; i < 9; i++) {
        int x0, y0;
        center_crop_origin(64 + margins[i], 64 + margins[8 - i], 64, &x0, &y0);
        EXPECT(x0 == want[i] && y0 == want[8 - i], "margins %d and %d give (%d, %d), want (%d, %d)",
               margins[i], margins[8 - i], x0, y0, want[i], want[8 - i]);
    }
    test_end();
}

static void test_resize_window(void) {
    test_begin("data: a resize window equals the whole resize cropped; an unchanged size copies");
    const struct {
        int w, h, out_w, out_h;
    } cases[] = {{97, 61, 40, 25}, {97, 61, 200, 130}, {97, 61, 97, 30}, {30, 61, 77, 61}, {5, 3, 11, 2}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        image_u8 img = test_image(cases[i].w, cases[i].h, 10 + i);
        int ow = cases[i].out_w, oh = cases[i].out_h;
        image_u8 whole = image_resize_window(&img, ow, oh, 0, 0, ow, oh);
        const int windows[][4] = {{0, 0, 1, 1},
                                  {ow - 1, oh - 1, 1, 1},
                                  {ow / 3, oh / 4, ow / 2, oh / 2},
                                  {0, oh / 2, ow, oh - oh / 2}};
        for (int k = 0; k < 4; k++) {
            const int *wd = windows[k];
            if (wd[2] < 1 || wd[3] < 1) continue;
            image_u8 part = image_resize_window(&img, ow, oh, wd[0], wd[1], wd[2], wd[3]);
            for (int y = 0; y < wd[3]; y++)
                EXPECT(memcmp(part.pixels + (size_t)y * (size_t)wd[2] * 3,
                              whole.pixels + ((size_t)(wd[1] + y) * (size_t)ow + (size_t)wd[0]) * 3,
                              (size_t)wd[2] * 3) == 0,
                       "%dx%d to %dx%d: window %dx%d at (%d, %d) differs in row %d", cases[i].w, cases[i].h,
                       ow, oh, wd[2], wd[3], wd[0], wd[1], y);
            image_free(&part);
        }
        image_free(&whole);
        image_free(&img);
    }
    image_u8 img = test_image(31, 17, 20), same = image_resize_window(&img, 31, 17, 0, 0, 31, 17);
    long differing;
    EXPECT(max_difference(&same, &img, &differing) == 0, "a resize to the same size changed %ld values",
           differing);
    image_free(&same);
    image_free(&img);
    test_end();
}

static void test_synthetic_vs_pillow(void) {
    test_begin("data: Resize + CenterCrop equal Pillow + torchvision bit for bit on odd shapes and margins");
    if (!have_pillow()) {
        test_end();
        return;
    }
    // Up- and downscales, both orientations, and crops whose margins are ties
    // (517 and 513 at 512: margins 5 and 1).
    const int shapes[][2] = {{300, 200}, {7, 5},      {1000, 777}, {513, 2000}, {64, 64},
                             {65, 1000}, {2000, 515}, {517, 512},  {512, 513},  {1, 9}};
    const int out_sizes[] = {512, 64, 77};
    enum { N_SHAPES = sizeof shapes / sizeof shapes[0], N_SIZES = sizeof out_sizes / sizeof out_sizes[0] };
    char *paths[N_SHAPES * N_SIZES];
    int sizes[N_SHAPES * N_SIZES];
    image_u8 refs[N_SHAPES * N_SIZES];
    for (int i = 0; i < N_SHAPES; i++) {
        image_u8 img = test_image(shapes[i][0], shapes[i][1], 30 + (uint64_t)i);
        const char *path = scratch_path("shape_%d.png", i);
        CHECK(png_write(path, &img, 0, NULL, NULL) == 0, "%s", err_msg());
        image_free(&img);
        for (int k = 0; k < N_SIZES; k++)
            paths[i * N_SIZES + k] = strdup(path), sizes[i * N_SIZES + k] = out_sizes[k];
    }
    if (pillow_reference(N_SHAPES * N_SIZES, (const char *const *)paths, sizes, refs)) {
        for (int i = 0; i < N_SHAPES * N_SIZES; i++) {
            image_u8 img;
            CHECK(image_load(paths[i], &img) == 0, "%s", err_msg());
            int size = sizes[i], rw, rh, x0, y0;
            CHECK(resize_size(img.width, img.height, size, &rw, &rh) == 0, "%s", err_msg());
            center_crop_origin(rw, rh, size, &x0, &y0);
            image_u8 ours = image_resize_window(&img, rw, rh, x0, y0, size, size);
            long differing;
            int d = max_difference(&ours, &refs[i], &differing);
            EXPECT(d == 0, "%dx%d at %d: %ld values differ, by up to %d", img.width, img.height, size,
                   differing, d);
            image_free(&ours);
            image_free(&img);
            image_free(&refs[i]);
        }
    }
    for (int i = 0; i < N_SHAPES * N_SIZES; i++) free(paths[i]);
    test_end();
}

// The 256 values of ToTensor + Normalize([0.5], [0.5]) as image_to_float gives them.
static void our_levels(float out[256]) {
    image_u8 img = image_new(256, 1, 3);
    for (int i = 0; i < 256 * 3; i++) img.pixels[i] = (unsigned char)(i / 3);
    float all[256 * 3];
    image_to_float(&img, all);
    for (int i = 0; i < 256; i++) out[i] = all[3 * i];
    image_free(&img);
}

static void test_normalize_numpy(void) {
    test_begin("data: image_to_float equals ToTensor + Normalize in float32 (numpy) on all 256 levels");
    if (!have_pillow()) {
        test_end();
        return;
    }
    const char *path = scratch_path("levels.f32");
    int status = run_python_script("tests/data_check.py", "normalize '%s'", path);
    EXPECT(status == 0, "data_check.py normalize exited with %d", status);
    if (status == 0) {
        size_t len;
        float *want = (float *)read_whole(path, &len), ours[256];
        our_levels(ours);
        EXPECT(len == sizeof ours && memcmp(ours, want, sizeof ours) == 0, "levels differ from numpy's");
        EXPECT(ours[0] == -1.0f && ours[255] == 1.0f, "the ends are %g and %g", ours[0], ours[255]);
        free(want);
    }
    test_end();
}

static void test_transform_random(void) {
    test_begin("data: random crop and flip: same stream, same sample; fixed draws; the crop is the window");
    image_u8 img = test_image(90, 60, 40);
    enum { SIZE = 32, N = SIZE * SIZE * 3 };
    float *a = xmalloc(N * sizeof(float)), *b = xmalloc(N * sizeof(float)),
          *want = xmalloc(N * sizeof(float));
    const transform_options random = {SIZE, false, true}, center = {SIZE, true, false},
                            center_flip = {SIZE, true, true}, crop_only = {SIZE, false, false};
    int flips = 0, corners[32] = {0};
    for (uint64_t i = 0; i < 200; i++) {
        rng_stream s1 = {.seed = 7, .offset = 3 * i}, s2 = s1;
        transform_record r1, r2;
        EXPECT(image_transform(&img, &random, &s1, a, &r1) == 0, "%s", err_msg());
        EXPECT(image_transform(&img, &random, &s2, b, &r2) == 0, "%s", err_msg());
        EXPECT(memcmp(a, b, N * sizeof(float)) == 0 && r1.crop_x == r2.crop_x && r1.flipped == r2.flipped,
               "draw %lu differs", (unsigned long)i);
        EXPECT(s1.offset == 3 * i + 3, "a random crop and flip took %lu draws",
               (unsigned long)(s1.offset - 3 * i));
        EXPECT(r1.resized_width == 48 && r1.resized_height == 32 && r1.crop_y == 0 && r1.crop_x >= 0 &&
                   r1.crop_x <= 16,
               "record %dx%d at (%d, %d)", r1.resized_width, r1.resized_height, r1.crop_x, r1.crop_y);
        flips += r1.flipped;
        corners[r1.crop_x & 31]++;
        // The sample is the resize window at the record's corner, mirrored if flipped.
        image_u8 window = image_resize_window(&img, 48, 32, r1.crop_x, r1.crop_y, SIZE, SIZE);
        if (r1.flipped) image_flip_horizontal(&window);
        image_to_float(&window, want);
        EXPECT(memcmp(a, want, N * sizeof(float)) == 0, "draw %lu is not its window", (unsigned long)i);
        image_free(&window);
        if (!test_ok()) break;
    }
    EXPECT(flips > 60 && flips < 140, "%d flips in 200", flips);
    int used = 0;
    for (int i = 0; i <= 16; i++) used += corners[i] > 0;
    EXPECT(used == 17, "only %d of the 17 crop positions drawn in 200 samples", used);

    rng_stream s = {.seed = 7};
    EXPECT(image_transform(&img, &center, NULL, a, NULL) == 0, "center crop without a stream");
    EXPECT(image_transform(&img, &center_flip, &s, a, NULL) == 0 && s.offset == 1, "a flip took %lu draws",
           (unsigned long)s.offset);
    s.offset = 0;
    EXPECT(image_transform(&img, &crop_only, &s, a, NULL) == 0 && s.offset == 2, "a crop took %lu draws",
           (unsigned long)s.offset);
    // A flip mirrors; twice gives back the image.
    image_u8 copy = test_image(90, 60, 40);
    image_flip_horizontal(&copy);
    EXPECT(
        memcmp(copy.pixels, img.pixels + 89 * 3, 3) == 0 && memcmp(copy.pixels + 89 * 3, img.pixels, 3) == 0,
        "the flip does not mirror the first row");
    image_flip_horizontal(&copy);
    EXPECT(memcmp(copy.pixels, img.pixels, 90 * 60 * 3) == 0, "flipping twice changed the image");
    image_free(&copy);
    free(a);
    free(b);
    free(want);
    image_free(&img);
    test_end();
}

// --- the shared DreamBooth photos --------------------------------------------------

// The photos: ../shared/data/dreambooth/*/ opened as data sets. Their count; 0 (and
// the test skipped) when the folder is not there.
enum { MAX_SETS = 16 };
static int photo_sets(dataset sets[MAX_SETS]) {
    static const char *const names[] = {"backpack", "berry_bowl", "cat", "dog", "red_cartoon", "teapot"};
    int n = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "dreambooth/%s", names[i]);
        struct stat st;
        if (stat(shared_path(rel), &st) != 0) continue;
        dataset_report report;
        int rc = dataset_open(&sets[n], shared_path(rel), "a photo of sks thing", 1, true, &report);
        EXPECT(rc == 0 && report.n_notes == 0, "%s: %s (%d notes)", rel, rc ? err_msg() : "", report.n_notes);
        dataset_report_free(&report);
        n += rc == 0;
    }
    if (n == 0) test_skip("no photos under %s", shared_path("dreambooth"));
    return n;
}

static void test_photos_vs_pillow(void) {
    test_begin(
        "data: the shared DreamBooth photos through load + Resize + CenterCrop + normalise at 512 and 64 "
        "equal Pillow + torchvision within one 8-bit level");
    dataset sets[MAX_SETS];
    int n_sets = photo_sets(sets);
    if (!n_sets || !have_pillow()) {
        for (int i = 0; i < n_sets; i++) dataset_free(&sets[i]);
        test_end();
        return;
    }
    enum { MAX_PHOTOS = 256 };
    const int out_sizes[2] = {512, 64};
    const char *paths[MAX_PHOTOS];
    int sizes[MAX_PHOTOS], n = 0;
    for (int i = 0; i < n_sets; i++)
        for (int k = 0; k < sets[i].n_images; k++)
            for (int s = 0; s < 2; s++) {
                CHECK(n < MAX_PHOTOS, "too many photos");
                paths[n] = sets[i].images[k].path, sizes[n++] = out_sizes[s];
            }
    image_u8 *refs = xmalloc((size_t)n * sizeof *refs);
    float levels[256];
    our_levels(levels);  // checked against numpy and torch by the tests around
    double worst = 0.0;
    long compared = 0, differing = 0;
    if (pillow_reference(n, paths, sizes, refs)) {
        float *ours = xmalloc((size_t)512 * 512 * 3 * sizeof(float));
        for (int i = 0; i < n; i++) {
            image_u8 img;
            EXPECT(image_load(paths[i], &img) == 0, "%s", err_msg());
            const transform_options opt = {sizes[i], true, false};
            EXPECT(img.pixels && image_transform(&img, &opt, NULL, ours, NULL) == 0, "%s: %s", paths[i],
                   err_msg());
            EXPECT(refs[i].width == sizes[i] && refs[i].height == sizes[i], "%s: Pillow gave %dx%d", paths[i],
                   refs[i].width, refs[i].height);
            for (size_t j = 0; test_ok() && j < (size_t)sizes[i] * (size_t)sizes[i] * 3; j++) {
                double d = fabs((double)ours[j] - (double)levels[refs[i].pixels[j]]);
                worst = d > worst ? d : worst;
                differing += d > 0;
                compared++;
            }
            image_free(&img);
            image_free(&refs[i]);
        }
        free(ours);
        // One 8-bit level is 1/255 after ToTensor, 2/255 after Normalize to [-1, 1].
        EXPECT(worst <= 2.0 / 255 + 1e-6, "largest difference %g in [-1, 1] (%g levels)", worst,
               worst * 127.5);
        printf("  %d photo transforms, %ld values: largest difference %g levels, %ld values differ\n", n,
               compared, worst * 127.5, differing);
    }
    free(refs);
    for (int i = 0; i < n_sets; i++) dataset_free(&sets[i]);
    test_end();
}

// The fixture tools/golden/data.py writes: torch's normalised values and, for each
// photo, the SHA-256 of the diffusers script's float32 tensor (HWC) at 512 and 64.
static cJSON *reference_fixture(void) {
    char *text;
    if (read_text_file(repo_path("tests/fixtures/data/reference.json"), &text, NULL) != 0) {
        test_skip("%s (run make golden)", err_msg());
        return NULL;
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    CHECK(root && cJSON_GetObjectItem(root, "format") && cJSON_GetObjectItem(root, "format")->valueint == 1,
          "tests/fixtures/data/reference.json: not format 1 (run make golden)");
    return root;
}

static void test_normalize_torch(void) {
    test_begin("data: image_to_float equals torch's ToTensor + Normalize bit for bit (fixture)");
    cJSON *root = reference_fixture();
    if (root) {
        float ours[256];
        our_levels(ours);
        const cJSON *bits = cJSON_GetObjectItem(root, "normalize_bits");
        CHECK(cJSON_GetArraySize(bits) == 256, "normalize_bits: %d values", cJSON_GetArraySize(bits));
        for (int i = 0; i < 256; i++) {
            uint32_t want = (uint32_t)cJSON_GetArrayItem(bits, i)->valuedouble, got;
            memcpy(&got, &ours[i], 4);
            EXPECT(got == want, "level %d: %08x, torch %08x", i, got, want);
        }
        cJSON_Delete(root);
    }
    test_end();
}

static void test_photos_fixture(void) {
    test_begin(
        "data: the shared photos' training tensors equal the diffusers script's bit for bit (fixture)");
    cJSON *root = reference_fixture();
    if (!root) {
        test_end();
        return;
    }
    struct stat st;
    if (stat(shared_path("dreambooth"), &st) != 0) {
        test_skip("no photos under %s", shared_path("dreambooth"));
        cJSON_Delete(root);
        test_end();
        return;
    }
    float *ours = xmalloc((size_t)512 * 512 * 3 * sizeof(float));
    int checked = 0;
    const cJSON *photo;
    cJSON_ArrayForEach(photo, cJSON_GetObjectItem(root, "photos")) {
        const char *file = shared_path(cJSON_GetObjectItem(photo, "file")->valuestring);
        uint8_t digest[32];
        char hex[65];
        if (sha256_file(file, digest) != 0) {
            EXPECT(false, "%s", err_msg());
            continue;
        }
        sha256_hex(digest, hex);
        if (strcmp(hex, cJSON_GetObjectItem(photo, "sha256")->valuestring) != 0) {
            EXPECT(false, "%s is not the photo the fixture was made from (run make golden)", file);
            continue;
        }
        image_u8 img;
        EXPECT(image_load(file, &img) == 0, "%s", err_msg());
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItem(photo, "tensors")) {
            int size = cJSON_GetObjectItem(t, "size")->valueint;
            const transform_options opt = {size, true, false};
            EXPECT(img.pixels && image_transform(&img, &opt, NULL, ours, NULL) == 0, "%s", err_msg());
            sha256(ours, (size_t)size * (size_t)size * 3 * sizeof(float), digest);
            sha256_hex(digest, hex);
            EXPECT(strcmp(hex, cJSON_GetObjectItem(t, "sha256")->valuestring) == 0,
                   "%s at %d: the tensor differs", file, size);
            checked++;
        }
        image_free(&img);
    }
    EXPECT(checked >= 2, "the fixture lists %d tensors", checked);
    free(ours);
    cJSON_Delete(root);
    test_end();
}

// --- folders ---------------------------------------------------------------------

static const char *make_folder(const char *name) {
    const char *dir = scratch_path("%s", name);
    CHECK(mkdir(dir, 0700) == 0, "mkdir %s", dir);
    return dir;
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_whole(path, text, strlen(text));
}

static void write_png(const char *dir, const char *name, int w, int h, uint64_t seed) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    image_u8 img = test_image(w, h, seed);
    CHECK(png_write(path, &img, 0, NULL, NULL) == 0, "%s", err_msg());
    image_free(&img);
}

static void write_jpeg_file(const char *dir, const char *name, int w, int h, uint64_t seed) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    image_u8 img = test_image(w, h, seed);
    write_rgb_jpeg(path, &img, NULL, 0);
    image_free(&img);
}

// Expects a note of the level that starts with dir/name and contains want.
static void expect_note(const dataset_report *report, note_level level, const char *dir, const char *name,
                        const char *want) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    for (int i = 0; i < report->n_notes; i++) {
        const char *m = report->notes[i].message;
        if (strncmp(m, path, strlen(path)) != 0 || m[strlen(path)] != ':') continue;
        EXPECT(report->notes[i].level == level, "%s: level %d, want %d", m, report->notes[i].level, level);
        EXPECT(strstr(m, want), "note \"%s\" lacks \"%s\"", m, want);
        EXPECT(!strchr(m, '\n'), "note spans lines: %s", m);
        return;
    }
    EXPECT(false, "no note names %s", path);
}

// A folder with every kind of file; returns its path.
static const char *messy_folder(void) {
    const char *dir = make_folder("messy");
    write_png(dir, "a.png", 40, 30, 1);
    write_jpeg_file(dir, "b.jpg", 30, 40, 2);
    write_file(dir, "b.txt", "\xef\xbb\xbf  a photo of sks dog\r\n\r\n on the beach \n");
    write_png(dir, "c.PNG", 20, 20, 3);
    write_file(dir, "d.txt", "a caption with no image");
    write_file(dir, "e.webp", "RIFF....WEBPVP8 ");
    write_file(dir, "f.jpg", "\xff\xd8\xff\xe0 not really a JPEG after its first bytes");
    size_t len;
    unsigned char *jpeg = small_jpeg(&len);
    char path[700];
    snprintf(path, sizeof path, "%s/g.jpeg", dir);
    write_whole(path, jpeg, len / 2);    // truncated
    write_png(dir, "i.jpg", 16, 12, 4);  // a PNG under a JPEG name
    free(jpeg);
    write_file(dir, "h.png", "just text");
    write_png(dir, "k.png", 12, 16, 5);
    write_file(dir, "k.txt", " \n ");
    write_file(dir, "notes.md", "# my dog\n");
    write_file(dir, ".DS_Store", "junk");
    snprintf(path, sizeof path, "%s/sub", dir);
    CHECK(mkdir(path, 0700) == 0, "mkdir %s", path);
    write_png(path, "deep.png", 8, 8, 6);
    return dir;
}

static void test_dataset_scan(void) {
    test_begin("data: a folder scan finds images by name, captions beside them, a note for every odd file");
    const char *dir = messy_folder();
    dataset ds;
    dataset_report report;
    EXPECT(dataset_open(&ds, dir, "a photo of sks thing", 3, false, &report) == 0, "%s", err_msg());
    const char *want_names[] = {"a.png", "b.jpg", "c.PNG", "i.jpg", "k.png"};
    const char *want_captions[] = {"a photo of sks thing", "a photo of sks dog on the beach",
                                   "a photo of sks thing", "a photo of sks thing", ""};
    const int want_w[] = {40, 30, 20, 16, 12};
    EXPECT(ds.n_images == 5 && ds.repeats == 3 && ds.n_items == 15, "%d images, %d items", ds.n_images,
           ds.n_items);
    for (int i = 0; i < ds.n_images && i < 5; i++) {
        char path[700];
        snprintf(path, sizeof path, "%s/%s", dir, want_names[i]);
        EXPECT(strcmp(ds.images[i].path, path) == 0, "image %d is %s, want %s", i, ds.images[i].path, path);
        EXPECT(strcmp(ds.images[i].caption, want_captions[i]) == 0, "%s: caption \"%s\"", want_names[i],
               ds.images[i].caption);
        EXPECT(ds.images[i].width == want_w[i], "%s: width %d", want_names[i], ds.images[i].width);
    }
    expect_note(&report, NOTE_WARNING, dir, "d.txt", "a caption without an image");
    expect_note(&report, NOTE_WARNING, dir, "e.webp", ".webp images are not supported");
    expect_note(&report, NOTE_WARNING, dir, "e.webp", "skipping the image");
    expect_note(&report, NOTE_WARNING, dir, "f.jpg", "JPEG");
    expect_note(&report, NOTE_WARNING, dir, "g.jpeg", "truncated JPEG");
    expect_note(&report, NOTE_WARNING, dir, "h.png", "not a JPEG or PNG file");
    expect_note(&report, NOTE_WARNING, dir, "k.txt", "empty caption");
    expect_note(&report, NOTE_WARNING, dir, "notes.md", "neither an image");
    expect_note(&report, NOTE_WARNING, dir, "sub", "sub-folders are not scanned");
    EXPECT(report.n_notes == 8, "%d notes, want 8", report.n_notes);
    for (int i = 0; i < report.n_notes; i++)
        EXPECT(!strstr(report.notes[i].message, ".DS_Store"), "a note on a hidden file: %s",
               report.notes[i].message);
    dataset_free(&ds);
    dataset_report_free(&report);

    // Strict: the same folder fails, naming the first unusable image and the count;
    // each unusable image's note is an error.
    EXPECT(dataset_open(&ds, dir, "a photo of sks thing", 1, true, &report) == -1, "strict mode accepted it");
    expect_error(dir, "4 unusable images (strict mode); the first: ");
    EXPECT(strstr(err_msg(), "e.webp"), "%s", err_msg());
    EXPECT(!ds.images && !ds.n_items, "a failed open left a data set");
    expect_note(&report, NOTE_ERROR, dir, "g.jpeg", "truncated JPEG");
    expect_note(&report, NOTE_WARNING, dir, "notes.md", "neither an image");
    dataset_report_free(&report);

    // Without a default prompt, images without a caption file cannot be used.
    EXPECT(dataset_open(&ds, dir, NULL, 1, false, &report) == 0 && ds.n_images == 2, "%d images",
           ds.n_images);
    expect_note(&report, NOTE_WARNING, dir, "a.png", "no caption: no a.txt beside it and no default prompt");
    dataset_free(&ds);
    dataset_report_free(&report);
    test_end();
}

static void test_caption_encoding(void) {
    test_begin("data: a caption file that is not UTF-8 makes its image unusable, naming the file and the byte");
    const char *dir = make_folder("latin1");
    write_png(dir, "a.png", 16, 16, 1);
    write_file(dir, "a.txt", "a photo of sks caf\xe9");  // Latin-1
    write_png(dir, "b.png", 16, 16, 2);
    write_file(dir, "b.txt", "a photo of sks caf\xc3\xa9");
    dataset ds;
    dataset_report report;
    EXPECT(dataset_open(&ds, dir, NULL, 1, false, &report) == 0 && ds.n_images == 1, "%d images", ds.n_images);
    expect_note(&report, NOTE_WARNING, dir, "a.txt", "not UTF-8 text (byte 18)");
    dataset_free(&ds);
    dataset_report_free(&report);
    EXPECT(dataset_open(&ds, dir, NULL, 1, true, &report) == -1 && strstr(err_msg(), "a.txt: the caption is not UTF-8"),
           "strict: %s", err_msg());
    dataset_report_free(&report);
    test_end();
}

static void test_dataset_failures(void) {
    test_begin("data: empty, missing, image-less and all-broken folders are errors naming the folder");
    dataset ds;
    dataset_report report;
    const char *empty = make_folder("empty");
    EXPECT(dataset_open(&ds, empty, "p", 1, false, &report) == -1, "opened an empty folder");
    expect_error(empty, "no images (.jpg, .jpeg, .png) in the folder");
    EXPECT(report.n_notes == 0, "%d notes", report.n_notes);
    dataset_report_free(&report);

    const char *missing = scratch_path("no-such-folder");
    EXPECT(dataset_open(&ds, missing, "p", 1, false, &report) == -1, "opened a missing folder");
    expect_error(missing, "cannot open the folder: No such file or directory");
    dataset_report_free(&report);

    const char *texts = make_folder("texts");
    write_file(texts, "00.txt", "a caption");
    write_file(texts, "README", "hello");
    EXPECT(dataset_open(&ds, texts, "p", 1, false, &report) == -1, "opened a folder of text");
    expect_error(texts, "no images");
    expect_note(&report, NOTE_WARNING, texts, "00.txt", "a caption without an image");
    expect_note(&report, NOTE_WARNING, texts, "README", "neither an image");
    dataset_report_free(&report);

    const char *broken = make_folder("broken");
    write_file(broken, "0.jpg", "\xff\xd8\xff");
    write_file(broken, "1.png", "");
    EXPECT(dataset_open(&ds, broken, "p", 1, false, &report) == -1, "opened a folder of broken images");
    expect_error(broken, "none of its 2 images can be used");
    expect_note(&report, NOTE_WARNING, broken, "0.jpg", "truncated JPEG");
    expect_note(&report, NOTE_WARNING, broken, "1.png", "not a JPEG or PNG file (empty)");
    dataset_report_free(&report);
    EXPECT(dataset_open(&ds, broken, "p", 1, true, &report) == -1, "strict");
    expect_error(broken, "2 unusable images (strict mode); the first: ");
    dataset_report_free(&report);
    test_end();
}

static bool same_order(const int *a, const int *b, int n) { return memcmp(a, b, (size_t)n * sizeof *a) == 0; }

static void test_epoch_order(void) {
    test_begin(
        "data: epoch orders hold each image `repeats` times, repeat per (seed, epoch), differ otherwise, "
        "and are uniform");
    const char *dir = make_folder("epochs");
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof name, "%02d.png", i);
        write_png(dir, name, 8, 8, 50 + (uint64_t)i);
    }
    dataset ds;
    dataset_report report;
    CHECK(dataset_open(&ds, dir, "p", 4, false, &report) == 0, "%s", err_msg());
    dataset_report_free(&report);
    int orders[6][20], again[20];
    for (uint32_t e = 0; e < 6; e++) {
        dataset_epoch_order(&ds, 1234, e, orders[e]);
        int count[5] = {0};
        for (int i = 0; i < 20; i++) count[orders[e][i]]++;
        for (int k = 0; k < 5; k++)
            EXPECT(count[k] == 4, "epoch %u: image %d appears %d times", e, k, count[k]);
        dataset_epoch_order(&ds, 1234, e, again);
        EXPECT(same_order(orders[e], again, 20), "epoch %u is not repeatable", e);
        for (uint32_t f = 0; f < e; f++)
            EXPECT(!same_order(orders[e], orders[f], 20), "epochs %u and %u agree", f, e);
    }
    dataset_epoch_order(&ds, 1235, 0, again);
    EXPECT(!same_order(orders[0], again, 20), "seeds 1234 and 1235 agree");
    dataset_free(&ds);

    // Four items, 24000 epochs: every one of the 24 orders about 1000 times. A
    // Fisher-Yates with an off-by-one (Sattolo's cycles) reaches only 6 of them.
    dataset four = {.n_images = 4, .repeats = 1, .n_items = 4};
    int seen[24] = {0};
    for (uint32_t e = 0; e < 24000; e++) {
        int o[4];
        dataset_epoch_order(&four, 99, e, o);
        // The order's rank among the 24 (Lehmer code).
        int rank = 0;
        for (int i = 0; i < 4; i++) {
            int smaller = 0;
            for (int j = i + 1; j < 4; j++) smaller += o[j] < o[i];
            rank = rank * (4 - i) + smaller;
        }
        seen[rank]++;
    }
    double chi2 = 0;
    for (int r = 0; r < 24; r++) chi2 += (seen[r] - 1000.0) * (seen[r] - 1000.0) / 1000.0;
    // 23 degrees of freedom: chi2 > 49.7 has probability 0.001 for a uniform shuffle.
    EXPECT(chi2 < 49.7, "chi-square %.1f over the 24 orders", chi2);
    test_end();
}

void suite_data(void) {
    test_exif_parser();
    test_orient();
    test_load_variants();
    test_truncated();
    test_corrupt();
    test_resize_rules();
    test_resize_window();
    test_synthetic_vs_pillow();
    test_normalize_numpy();
    test_normalize_torch();
    test_transform_random();
    test_photos_vs_pillow();
    test_photos_fixture();
    test_dataset_scan();
    test_caption_encoding();
    test_dataset_failures();
    test_epoch_order();
}
