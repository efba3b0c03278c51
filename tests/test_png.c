// Suite png: PNG files written the way A1111 writes samples (read back by Pillow, the
// reader of A1111, ComfyUI and diffusers, through tests/png_check.py), png_read on
// every color type and on broken files, atomic writes, contact sheets, the VAE
// output's conversion to RGB8 against numpy, and SHA-256 (FIPS vectors, hashlib).
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/draw.h"
#include "core/image.h"
#include "core/plot.h"
#include "core/png.h"
#include "core/rng.h"
#include "core/sha256.h"
#include "tests/test.h"

// --- helpers ---------------------------------------------------------------------

// n reproducible pseudo-random bytes.
static void random_bytes(unsigned char *out, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i += 16) {
        uint32_t x[4];
        rng_block_at(x, seed, i / 16);
        for (size_t j = 0; j < 16 && i + j < n; j++) out[i + j] = (unsigned char)(x[j / 4] >> (8 * (j % 4)));
    }
}


// Expects err_msg to be one line that starts with path and contains want.
static void expect_error(const char *path, const char *want) {
    EXPECT(strncmp(err_msg(), path, strlen(path)) == 0, "message does not name %s: %s", path,
           err_msg());
    EXPECT(strstr(err_msg(), want), "message \"%s\" lacks \"%s\"", err_msg(), want);
    EXPECT(!strchr(err_msg(), '\n'), "message spans lines: %s", err_msg());
}

static bool same_pixels(const image_u8 *a, const image_u8 *b) {
    return a->width == b->width && a->height == b->height && a->channels == b->channels &&
           memcmp(a->pixels, b->pixels, (size_t)a->width * (size_t)a->height * (size_t)a->channels) == 0;
}

// The RGB part of an RGB or RGBA image, as png_read returns it.
static image_u8 rgb_of(const image_u8 *img) {
    image_u8 out = image_new(img->width, img->height, 3);
    for (size_t i = 0; i < (size_t)img->width * (size_t)img->height; i++)
        memcpy(out.pixels + 3 * i, img->pixels + (size_t)img->channels * i, 3);
    return out;
}

// --- SHA-256 ---------------------------------------------------------------------

static void expect_digest(const uint8_t digest[32], const char *want, const char *what) {
    char hex[65];
    sha256_hex(digest, hex);
    EXPECT(strcmp(hex, want) == 0, "%s: %s, want %s", what, hex, want);
}

static void test_sha256_vectors(void) {
    test_begin("png: sha256 gives the FIPS 180-2 vectors (empty, abc, 448 bits, a million a)");
    uint8_t d[32];
    sha256("", 0, d);
    expect_digest(d, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "empty");
    sha256("abc", 3, d);
    expect_digest(d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "abc");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256(m448, strlen(m448), d);
    expect_digest(d, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", "448 bits");
    // A million 'a' fed in pieces of 1 to 1000 bytes, so updates start and end
    // everywhere within a block.
    char a[1000];
    memset(a, 'a', sizeof a);
    sha256_ctx c;
    sha256_init(&c);
    for (size_t done = 0, step = 1; done < 1000000; step = step % 1000 + 1) {
        size_t n = step < 1000000 - done ? step : 1000000 - done;
        sha256_update(&c, a, n);
        done += n;
    }
    sha256_final(&c, d);
    expect_digest(d, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", "1e6 a");
    test_end();
}

static void test_sha256_padding(void) {
    test_begin("png: sha256 of every length 0-200 (each padding case) and of every two-part split");
    // The digest of the concatenated digests of 'a' * n for n = 0..200, from hashlib.
    char a[200];
    memset(a, 'a', sizeof a);
    sha256_ctx chain;
    sha256_init(&chain);
    for (size_t n = 0; n <= 200; n++) {
        uint8_t d[32];
        sha256(a, n, d);
        sha256_update(&chain, d, 32);
    }
    uint8_t d[32];
    sha256_final(&chain, d);
    expect_digest(d, "1be2d7d291484baf4c78d463a65b40a26c255b1946e5205eac8edad606a76fdd", "chain");

    unsigned char msg[300];
    random_bytes(msg, sizeof msg, 1);
    uint8_t whole[32];
    sha256(msg, sizeof msg, whole);
    for (size_t i = 0; i <= sizeof msg; i++) {
        sha256_ctx c;
        sha256_init(&c);
        sha256_update(&c, msg, i);
        sha256_update(&c, msg + i, 0);
        sha256_update(&c, msg + i, sizeof msg - i);
        sha256_final(&c, d);
        EXPECT(memcmp(d, whole, 32) == 0, "split at %zu differs", i);
    }
    test_end();
}

static void test_sha256_file(void) {
    test_begin("png: sha256_file matches sha256 and Python's hashlib; its errors name the file");
    size_t n = 3 * (1 << 20) + 12345;  // crosses sha256_file's 1 MiB reads
    unsigned char *bytes = xmalloc(n);
    random_bytes(bytes, n, 2);
    const char *path = scratch_path("model.safetensors");
    write_whole(path, bytes, n);
    uint8_t from_file[32], from_memory[32];
    EXPECT(sha256_file(path, from_file) == 0, "%s", err_msg());
    sha256(bytes, n, from_memory);
    EXPECT(memcmp(from_file, from_memory, 32) == 0, "sha256_file differs from sha256");
    char hex[65];
    sha256_hex(from_file, hex);
    EXPECT(strlen(hex) == 64 && strspn(hex, "0123456789abcdef") == 64, "hex %s", hex);

    char cmd[2048], line[128] = "";
    snprintf(cmd, sizeof cmd,
             "%s -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], \"rb\").read())"
             ".hexdigest())' '%s'",
             test_python(), path);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    CHECK(p, "popen %s", cmd);
    bool got = fgets(line, sizeof line, p) != NULL;
    int status = pclose(p);
    if (!got || status != 0) {
        test_skip("%s cannot run hashlib", test_python());
    } else {
        line[strcspn(line, "\n")] = 0;
        EXPECT(strcmp(line, hex) == 0, "ours %s, hashlib %s", hex, line);
    }

    const char *missing = scratch_path("no-such-model.safetensors");
    EXPECT(sha256_file(missing, from_file) == -1, "hashed a missing file");
    expect_error(missing, "cannot open");
    EXPECT(sha256_file(scratch_dir(), from_file) == -1, "hashed a directory");
    expect_error(scratch_dir(), "cannot read");
    free(bytes);
    test_end();
}

// --- writing: cases Pillow must read ---------------------------------------------

typedef struct {
    const char *name;
    int width, height, channels;
    int n_text;
    const char *keys[4], *values[4], *chunks[4];
} write_case;

static const write_case write_cases[] = {
    {"1x1", 1, 1, 3, 1, {"parameters"}, {"a single pixel"}, {"tEXt"}},
    {"7x5",
     7,
     5,
     3,
     4,
     {"parameters", "Comment", "prompt", "empty"},
     {"a photo of sks dog, (best quality:1.2)\nNegative prompt: blurry, lowres\nSteps: 20, "
      "Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 7x5, Model hash: 6ce0161689, Model: "
      "v1-5-pruned-emaonly",
      "caf\xc3\xa9 \xc2\xa9 \xc3\xbf",  // Latin-1 characters: still tEXt
      "\xe7\x8c\xab \xf0\x9f\x90\xb1 \xf0\x9f\x8e\xa8 \xe6\x9d\xb1\xe4\xba\xac", ""},
     {"tEXt", "tEXt", "iTXt", "tEXt"}},
    {"512x512 gradient",
     512,
     512,
     3,
     1,
     {"parameters"},
     {"\xe5\xaf\x8c\xe5\xa3\xab\xe5\xb1\xb1, \xe6\xa1\x9c \xf0\x9f\x8c\xb8\nSteps: 30, Seed: 7"},
     {"iTXt"}},
    {"3x2 RGBA", 3, 2, 4, 0, {0}, {0}, {0}},
};

static image_u8 case_image(const write_case *wc) {
    image_u8 img = image_new(wc->width, wc->height, wc->channels);
    if (wc->width == 512) {
        for (int y = 0; y < 512; y++)
            for (int x = 0; x < 512; x++) {
                unsigned char *p = img.pixels + 3 * ((size_t)y * 512 + (size_t)x);
                p[0] = (unsigned char)(x / 2), p[1] = (unsigned char)(y / 2);
                p[2] = (unsigned char)((x + y) / 4);
            }
    } else {
        random_bytes(img.pixels, (size_t)wc->width * (size_t)wc->height * (size_t)wc->channels,
                     (uint64_t)wc->width * 100 + (uint64_t)wc->height);
    }
    return img;
}

static void test_pillow_reads_ours(void) {
    for (size_t i = 0; i < sizeof write_cases / sizeof write_cases[0]; i++) {
        const write_case *wc = &write_cases[i];
        test_begin("png: Pillow reads png_write's %s: size, every pixel, text chunks", wc->name);
        if (!have_pillow()) {
            test_end();
            continue;
        }
        image_u8 img = case_image(wc);
        const char *png = scratch_path("pillow.png"), *raw = scratch_path("pillow.raw"),
                   *json = scratch_path("pillow.json");
        EXPECT(png_write(png, &img, wc->n_text, wc->keys, wc->values) == 0, "%s", err_msg());
        write_whole(raw, img.pixels, (size_t)img.width * (size_t)img.height * (size_t)img.channels);
        cJSON *want = cJSON_CreateObject();
        cJSON_AddNumberToObject(want, "width", img.width);
        cJSON_AddNumberToObject(want, "height", img.height);
        cJSON_AddStringToObject(want, "mode", img.channels == 4 ? "RGBA" : "RGB");
        cJSON_AddStringToObject(want, "pixels", raw);
        cJSON *text = cJSON_AddObjectToObject(want, "text");
        cJSON *chunks = cJSON_AddObjectToObject(want, "chunks");
        for (int k = 0; k < wc->n_text; k++) {
            cJSON_AddStringToObject(text, wc->keys[k], wc->values[k]);
            cJSON_AddStringToObject(chunks, wc->keys[k], wc->chunks[k]);
        }
        char *json_text = cJSON_PrintUnformatted(want);
        write_whole(json, json_text, strlen(json_text));
        int status = run_python_script("tests/png_check.py", "verify '%s' '%s'", png, json);
        EXPECT(status == 0, "png_check.py verify exited with %d", status);
        free(json_text);
        cJSON_Delete(want);
        image_free(&img);
        test_end();
    }
}

static void test_round_trip(void) {
    test_begin("png: png_read gives back png_write's pixels (RGB; RGBA without alpha) and text");
    for (size_t i = 0; i < sizeof write_cases / sizeof write_cases[0]; i++) {
        const write_case *wc = &write_cases[i];
        image_u8 img = case_image(wc), back, rgb = rgb_of(&img);
        png_meta text;
        const char *path = scratch_path("round_trip.png");
        EXPECT(png_write(path, &img, wc->n_text, wc->keys, wc->values) == 0, "%s", err_msg());
        EXPECT(png_read(path, &back, &text) == 0, "%s: %s", wc->name, err_msg());
        EXPECT(same_pixels(&back, &rgb), "%s: pixels differ", wc->name);
        EXPECT(text.count == wc->n_text, "%s: %d text chunks, want %d", wc->name, text.count,
               wc->n_text);
        for (int k = 0; k < wc->n_text && k < text.count; k++) {
            EXPECT(strcmp(text.keys[k], wc->keys[k]) == 0, "%s: key %s", wc->name, text.keys[k]);
            EXPECT(strcmp(text.values[k], wc->values[k]) == 0, "%s: %s is \"%s\"", wc->name,
                   wc->keys[k], text.values[k]);
        }
        image_free(&back);
        EXPECT(png_read(path, &back, NULL) == 0 && same_pixels(&back, &rgb), "without text");
        image_free(&back);
        png_meta_free(&text);
        image_free(&rgb);
        image_free(&img);
    }
    test_end();
}

// --- reading: every kind of PNG and broken ones ----------------------------------

static void test_read_variants(void) {
    test_begin("png: png_read reads every color type, depth and text chunk kind as Pillow does");
    if (!have_pillow()) {
        test_end();
        return;
    }
    char dir[600];
    snprintf(dir, sizeof dir, "%s", scratch_path("variants"));
    CHECK(mkdir(dir, 0700) == 0, "mkdir %s", dir);
    int status = run_python_script("tests/png_check.py", "variants '%s'", dir);
    EXPECT(status == 0, "png_check.py variants exited with %d", status);
    char path[700];
    snprintf(path, sizeof path, "%s/variants.json", dir);
    size_t len;
    char *json_text = status == 0 ? (char *)read_whole(path, &len) : NULL;
    cJSON *listing = json_text ? cJSON_Parse(json_text) : NULL;
    int good = 0, bad = 0;
    cJSON *v;
    cJSON_ArrayForEach(v, listing) {
        const char *name = cJSON_GetObjectItem(v, "name")->valuestring;
        const cJSON *error = cJSON_GetObjectItem(v, "error");
        snprintf(path, sizeof path, "%s/%s.png", dir, name);
        image_u8 img;
        png_meta text;
        int rc = png_read(path, &img, &text);
        if (error) {
            bad++;
            EXPECT(rc == -1, "%s: read a broken file", name);
            expect_error(path, error->valuestring);
            EXPECT(!img.pixels && !text.count && !text.keys, "%s: left something behind", name);
            continue;
        }
        good++;
        EXPECT(rc == 0, "%s: %s", name, err_msg());
        char rgb_path[700];
        snprintf(rgb_path, sizeof rgb_path, "%s/%s.rgb", dir, name);
        unsigned char *want = read_whole(rgb_path, &len);
        EXPECT(rc == 0 && img.width == cJSON_GetObjectItem(v, "width")->valueint &&
                   img.height == cJSON_GetObjectItem(v, "height")->valueint && img.channels == 3,
               "%s: %dx%dx%d", name, img.width, img.height, img.channels);
        EXPECT(rc == 0 && len == (size_t)img.width * (size_t)img.height * 3 &&
                   memcmp(img.pixels, want, len) == 0,
               "%s: pixels differ", name);
        cJSON *kv;
        cJSON_ArrayForEach(kv, cJSON_GetObjectItem(v, "text")) {
            const char *got = png_meta_get(&text, kv->string);
            EXPECT(got && strcmp(got, kv->valuestring) == 0, "%s: %s is \"%s\", want \"%s\"", name,
                   kv->string, got ? got : "(missing)", kv->valuestring);
        }
        if (strcmp(name, "text_kinds") == 0) {
            // Comment, zipped, parameters twice (the last wins), and Title after the
            // image data; the iTXt chunk that is not UTF-8 is skipped.
            EXPECT(text.count == 5, "%d text chunks", text.count);
            EXPECT(!png_meta_get(&text, "broken"), "kept an iTXt chunk that is not UTF-8");
            EXPECT(text.count == 5 && strcmp(text.keys[4], "Title") == 0, "order");
        }
        free(want);
        image_free(&img);
        png_meta_free(&text);
    }
    EXPECT(good == 15 && bad == 5, "%d good and %d broken files, want 15 and 5", good, bad);
    cJSON_Delete(listing);
    free(json_text);
    test_end();
}

// A small PNG with text, written by png_write, in memory.
static unsigned char *small_png(size_t *len, image_u8 *img) {
    *img = image_new(7, 5, 3);
    random_bytes(img->pixels, 7 * 5 * 3, 3);
    const char *keys[] = {"parameters"}, *values[] = {"Steps: 20, Seed: 1"};
    const char *path = scratch_path("small.png");
    CHECK(png_write(path, img, 1, keys, values) == 0, "%s", err_msg());
    return read_whole(path, len);
}

static void test_truncated(void) {
    test_begin("png: every truncation of a PNG is refused as truncated");
    size_t len;
    image_u8 orig;
    unsigned char *bytes = small_png(&len, &orig);
    const char *path = scratch_path("truncated.png");
    for (size_t n = 0; n < len; n++) {
        write_whole(path, bytes, n);
        image_u8 img;
        png_meta text;
        EXPECT(png_read(path, &img, &text) == -1, "read a file cut at %zu of %zu bytes", n, len);
        expect_error(path, n == 0 ? "not a PNG file" : "truncated PNG");
        EXPECT(!img.pixels && !text.count, "cut at %zu: left something behind", n);
        if (!test_ok()) break;
    }
    image_free(&orig);
    free(bytes);
    test_end();
}

static void test_corrupt(void) {
    test_begin("png: corrupt PNGs give one-line errors; a byte flipped anywhere never misreads");
    size_t len;
    image_u8 orig;
    unsigned char *bytes = small_png(&len, &orig);
    const char *path = scratch_path("corrupt.png");
    image_u8 img;
    png_meta text;

    const char *missing = scratch_path("no-such.png");
    EXPECT(png_read(missing, &img, &text) == -1, "read a missing file");
    expect_error(missing, "cannot open");
    write_whole(path, "GIF89a, not a PNG", 17);
    EXPECT(png_read(path, &img, &text) == -1, "read a GIF");
    expect_error(path, "not a PNG file");

    // Offsets: 8-byte signature, IHDR's length and type, then its 13 data bytes.
    struct {
        size_t at;
        const char *want;
    } flips[] = {{1, "not a PNG file"}, {18, "corrupt PNG: IHDR: CRC error"}};
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        bytes[flips[i].at] ^= 0x20;
        write_whole(path, bytes, len);
        bytes[flips[i].at] ^= 0x20;
        EXPECT(png_read(path, &img, &text) == -1, "read with byte %zu flipped", flips[i].at);
        expect_error(path, flips[i].want);
    }
    // The CRC guards every chunk: a flip either fails the read (critical chunks), or
    // drops an ancillary chunk and leaves the pixels exact.
    int failed = 0;
    for (size_t at = 0; at < len; at++) {
        bytes[at] ^= 0x55;
        write_whole(path, bytes, len);
        bytes[at] ^= 0x55;
        int rc = png_read(path, &img, &text);
        if (rc == 0) {
            EXPECT(same_pixels(&img, &orig), "byte %zu flipped: read other pixels", at);
        } else {
            failed++;
            EXPECT(strncmp(err_msg(), path, strlen(path)) == 0 && !strchr(err_msg(), '\n'),
                   "byte %zu flipped: %s", at, err_msg());
        }
        image_free(&img);
        png_meta_free(&text);
    }
    EXPECT(failed > (int)len / 2, "only %d of %zu flips failed", failed, len);
    image_free(&orig);
    free(bytes);
    test_end();
}

// --- atomic writes ---------------------------------------------------------------

// How many names in the scratch directory contain ".tmp." (leftover temp files).
static int temp_files_left(void) {
    DIR *d = opendir(scratch_dir());
    CHECK(d, "cannot list %s", scratch_dir());
    int n = 0;
    for (struct dirent *de; (de = readdir(d));) n += strstr(de->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

// Expects path to hold the image written with the text "old".
static void expect_old_file(const char *path, const image_u8 *old, const char *after) {
    image_u8 img;
    png_meta text;
    EXPECT(png_read(path, &img, &text) == 0, "after %s: %s", after, err_msg());
    const char *v = png_meta_get(&text, "parameters");
    EXPECT(same_pixels(&img, old) && v && strcmp(v, "old") == 0, "after %s: the file changed",
           after);
    image_free(&img);
    png_meta_free(&text);
}

static void test_atomic(void) {
    test_begin("png: a failed png_write returns -1, keeps the old file, leaves no temp file");
    const char *keys[] = {"parameters"}, *old_values[] = {"old"}, *new_values[] = {"new"};
    image_u8 old = image_new(4, 3, 3), big = image_new(512, 512, 3);
    random_bytes(old.pixels, 4 * 3 * 3, 4);
    random_bytes(big.pixels, 512 * 512 * 3, 5);  // noise: compresses to well over 4 KB
    const char *path = scratch_path("keep.png");
    EXPECT(png_write(path, &old, 1, keys, old_values) == 0, "%s", err_msg());

    const char *nowhere = scratch_path("no/such/dir/x.png");
    EXPECT(png_write(nowhere, &old, 1, keys, old_values) == -1, "wrote into a missing directory");
    expect_error(nowhere, "cannot create");

    // The disk "fills up" half way: a file size limit makes write() fail with EFBIG.
    struct rlimit saved;
    getrlimit(RLIMIT_FSIZE, &saved);
    struct rlimit small = {4096, saved.rlim_max};
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0, "setrlimit");
    int rc = png_write(path, &big, 1, keys, new_values);
    CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0, "setrlimit");
    signal(SIGXFSZ, old_handler);
    EXPECT(rc == -1, "wrote past the file size limit");
    expect_error(path, "cannot write");
    expect_error(path, "File too large");
    expect_old_file(path, &old, "a full disk");

    // Our temp name is taken by a directory, so the temp file cannot be created.
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(mkdir(tmp, 0700) == 0, "mkdir %s", tmp);
    EXPECT(png_write(path, &big, 1, keys, new_values) == -1, "wrote over a directory");
    expect_error(path, "cannot create");
    rmdir(tmp);
    expect_old_file(path, &old, "a temp name taken");

    // A value that is not UTF-8 (a Latin-1 byte on its own) is bad input.
    const char *latin1[] = {"caf\xe9"};
    EXPECT(png_write(path, &big, 1, keys, latin1) == -1, "wrote a value that is not UTF-8");
    expect_error(path, "the value of text \"parameters\" is not UTF-8");
    expect_old_file(path, &old, "a bad value");

    // The destination is a directory: everything is written, then rename fails.
    const char *dir = scratch_path("a_directory.png");
    CHECK(mkdir(dir, 0700) == 0 && mkdir(scratch_path("a_directory.png/x"), 0700) == 0, "mkdir");
    EXPECT(png_write(dir, &old, 1, keys, old_values) == -1, "renamed over a directory");
    expect_error(dir, "cannot rename");

    EXPECT(temp_files_left() == 0, "temp files left behind");
    EXPECT(png_write(path, &big, 1, keys, new_values) == 0, "%s", err_msg());
    image_u8 img;
    png_meta text;
    EXPECT(png_read(path, &img, &text) == 0 && same_pixels(&img, &big) &&
               strcmp(png_meta_get(&text, "parameters"), "new") == 0,
           "the new file did not replace the old one");
    image_free(&img);
    png_meta_free(&text);
    image_free(&old);
    image_free(&big);
    test_end();
}

// --- grids -----------------------------------------------------------------------

// Expects grid to hold tiles[i] at its place for `cols` columns and `gap`, gray elsewhere.
static void expect_grid(const image_u8 *grid, image_u8 *const *tiles, int n, int cols, int gap,
                        unsigned char gray) {
    int w = tiles[0]->width, h = tiles[0]->height, ch = tiles[0]->channels;
    int rows = (n + cols - 1) / cols;
    EXPECT(grid->width == cols * w + (cols + 1) * gap && grid->height == rows * h + (rows + 1) * gap &&
               grid->channels == ch,
           "grid is %dx%dx%d", grid->width, grid->height, grid->channels);
    if (!test_ok()) return;
    for (int y = 0; y < grid->height; y++)
        for (int x = 0; x < grid->width; x++) {
            // Which tile, if any, covers (x, y), and where in it.
            int col = x / (w + gap), row = y / (h + gap);
            int tx = x - col * (w + gap) - gap, ty = y - row * (h + gap) - gap;
            int i = row * cols + col;
            bool inside = tx >= 0 && tx < w && ty >= 0 && ty < h && col < cols && i < n;
            for (int c = 0; c < ch; c++) {
                unsigned char got = grid->pixels[((size_t)y * grid->width + x) * ch + c];
                unsigned char want = inside ? tiles[i]->pixels[((size_t)ty * w + tx) * ch + c] : gray;
                EXPECT(got == want, "pixel (%d, %d) channel %d is %d, want %d", x, y, c, got, want);
                if (!test_ok()) return;
            }
        }
}

static void test_grid(void) {
    test_begin("png: image_grid tiles images row by row with gray gaps and empty cells");
    image_u8 tiles[5], tiles4[2];
    image_u8 *ptrs[5], *ptrs4[2];
    for (int i = 0; i < 5; i++) {
        tiles[i] = image_new(3, 2, 3);
        random_bytes(tiles[i].pixels, 3 * 2 * 3, 10 + (uint64_t)i);
        ptrs[i] = &tiles[i];
    }
    for (int i = 0; i < 2; i++) {
        tiles4[i] = image_new(2, 4, 4);
        random_bytes(tiles4[i].pixels, 2 * 4 * 4, 20 + (uint64_t)i);
        ptrs4[i] = &tiles4[i];
    }
    image_u8 g = image_grid((const image_u8 *const *)ptrs, 5, 2, 1, 77);  // 2x3, one cell empty
    expect_grid(&g, ptrs, 5, 2, 1, 77);
    EXPECT(g.width == 9 && g.height == 10, "%dx%d", g.width, g.height);
    image_free(&g);
    g = image_grid((const image_u8 *const *)ptrs, 3, 8, 0, 0);  // fewer images than columns
    expect_grid(&g, ptrs, 3, 3, 0, 0);
    image_free(&g);
    g = image_grid((const image_u8 *const *)ptrs, 4, 1, 5, 255);  // one column
    expect_grid(&g, ptrs, 4, 1, 5, 255);
    image_free(&g);
    g = image_grid((const image_u8 *const *)ptrs4, 2, 2, 2, 128);  // RGBA stays RGBA
    expect_grid(&g, ptrs4, 2, 2, 2, 128);
    image_free(&g);
    for (int i = 0; i < 5; i++) image_free(&tiles[i]);
    for (int i = 0; i < 2; i++) image_free(&tiles4[i]);
    test_end();
}

// --- the loss plot and captioned grids (cairo) ----------------------------------------

// Pixels of ink in [x0, x1) x [y0, y1): gray (the text's color, not a curve's) and
// darker than `below` in every channel. Thresholds are loose enough for the thin
// strokes of cairo's built-in font, which draws where no font is installed.
static int ink_in(const image_u8 *img, int x0, int y0, int x1, int y1, int below) {
    int count = 0;
    for (int y = y0 < 0 ? 0 : y0; y < y1 && y < img->height; y++)
        for (int x = x0 < 0 ? 0 : x0; x < x1 && x < img->width; x++) {
            const unsigned char *p = img->pixels + ((size_t)y * img->width + x) * img->channels;
            int lo = p[0] < p[1] ? p[0] : p[1], hi = p[0] > p[1] ? p[0] : p[1];
            lo = p[2] < lo ? p[2] : lo, hi = p[2] > hi ? p[2] : hi;
            count += hi < below && hi - lo < 40;
        }
    return count;
}

// Pixels of color rgb (within 40 per channel) in the rectangle.
static int color_in(const image_u8 *img, int x0, int y0, int x1, int y1, const unsigned char rgb[3]) {
    int count = 0;
    for (int y = y0; y < y1 && y < img->height; y++)
        for (int x = x0; x < x1 && x < img->width; x++) {
            const unsigned char *p = img->pixels + ((size_t)y * img->width + x) * img->channels;
            count += abs(p[0] - rgb[0]) < 40 && abs(p[1] - rgb[1]) < 40 && abs(p[2] - rgb[2]) < 40;
        }
    return count;
}

// The columns [x0, x1) that hold ink within rows [y0, y1): *first and *last (-1 if none).
static void ink_columns(const image_u8 *img, int y0, int y1, int *first, int *last) {
    *first = *last = -1;
    for (int x = 0; x < img->width; x++)
        if (ink_in(img, x, y0, x + 1, y1, 200)) {
            if (*first < 0) *first = x;
            *last = x;
        }
}

// plot_loss's layout at 900 x 450: the plot box spans x 80..(816 with a rate axis,
// 876 without) and y 44..394; the title sits above it, the step ticks and the word
// "step" below, the loss ticks and name left of it, the rate's right of it.
static void test_plot_loss(void) {
    test_begin("png: plot_loss draws a title, both axes' tick values and names, and the curves");
    enum { N = 300, W = 900, H = 450 };
    float loss[N];
    double lr[N];
    for (int i = 0; i < N; i++) {
        loss[i] = 0.15f + 0.1f * expf(-i / 40.0f) + 0.04f * sinf(1.7f * i);
        lr[i] = i < 30 ? 1e-4 * i / 30 : 1e-4 * (N - i) / (N - 30);
    }
    const char *title = "run: training loss, steps 1-300 of 300";
    image_u8 img = plot_loss(loss, lr, N, W, H, 0.9f, title);
    EXPECT(img.width == W && img.height == H && img.channels == 3, "%dx%dx%d", img.width, img.height, img.channels);
    // The title: ink centered over the image, as wide as the font says the text is.
    int first, last;
    ink_columns(&img, 0, 40, &first, &last);
    cairo_t *cr = draw_new(10, 10, 1, 1, 1);
    draw_font(cr, 15, true);
    double title_width = draw_text_width(cr, title);
    image_free((image_u8[]){draw_finish(cr, 3)});
    EXPECT(first >= 0 && fabs((last + 1 - first) - title_width) < 4 && abs(first + last + 1 - W) < 6,
           "title ink in columns %d-%d, want %.0f px centered", first, last, title_width);
    EXPECT(ink_in(&img, 0, 44, 76, 394, 200) > 100, "no loss tick values or name left of the box");
    EXPECT(ink_in(&img, 822, 44, W, 394, 200) > 100, "no rate tick values or name right of the box");
    EXPECT(ink_in(&img, 80, 400, 816, H, 200) > 100, "no step tick values or name under the box");
    // The curves inside the box, left of the legend (top right): the average (dark
    // blue), the rate (orange), the losses (light blue); the legend's text.
    static const unsigned char average[3] = {20, 61, 161}, rate[3] = {230, 128, 26}, raw[3] = {161, 191, 235};
    EXPECT(color_in(&img, 81, 45, 600, 393, average) > 500, "no moving average drawn");
    EXPECT(color_in(&img, 81, 45, 600, 393, rate) > 200, "no learning rate drawn");
    EXPECT(color_in(&img, 81, 45, 600, 393, raw) > 500, "no losses drawn");
    EXPECT(ink_in(&img, 600, 45, 815, 120, 200) > 50, "no legend text");
    image_free(&img);
    // Without a rate: no right axis.
    img = plot_loss(loss, NULL, N, W, H, 0.9f, title);
    EXPECT(ink_in(&img, 880, 0, W, 394, 200) == 0, "rate ticks without rates");
    EXPECT(color_in(&img, 0, 0, W, H, rate) == 0, "a rate curve without rates");
    image_free(&img);
    test_end();
}

// Degenerate inputs: every one must give ticks (no division by a zero range) and draw
// its finite values, where the scale puts them.
static void test_plot_loss_edges(void) {
    test_begin("png: plot_loss on one step, equal values, zeros, huge, tiny, negative and non-finite losses");
    enum { W = 900, H = 450 };
    static const unsigned char average[3] = {20, 61, 161};
    const float huge = 3e38f, tiny = 1e-44f;
    const struct {
        const char *what;
        int n;
        float loss[4];
        bool drawn;
    } cases[] = {
        {"one step", 1, {0.25f}, true},
        {"equal values", 3, {0.5f, 0.5f, 0.5f}, true},
        {"zeros", 2, {0, 0}, true},
        {"huge", 3, {huge, -huge, huge}, true},
        {"tiny", 3, {tiny, 2 * tiny, tiny}, true},
        {"tiny to one (log scale)", 4, {tiny, 1, 0.5f, tiny}, true},
        {"negative", 3, {-2, -1, -3}, true},
        {"NaN and inf among them", 4, {NAN, 0.3f, INFINITY, 0.2f}, true},
        {"nothing finite", 2, {NAN, -INFINITY}, false},
    };
    const double rates[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        image_u8 p = plot_loss(cases[i].loss, rates, cases[i].n, W, H, 0.9f, cases[i].what);
        EXPECT(ink_in(&p, 0, 44, 76, 394, 200) > 50, "%s: no loss ticks", cases[i].what);
        EXPECT(ink_in(&p, 822, 44, W, 394, 200) > 50, "%s: no rate ticks", cases[i].what);
        EXPECT(ink_in(&p, 80, 400, 816, H, 200) > 20, "%s: no step ticks", cases[i].what);
        int drawn = color_in(&p, 81, 45, 600, 393, average);
        EXPECT(cases[i].drawn ? drawn > 0 : drawn == 0, "%s: %d pixels of the average", cases[i].what, drawn);
        image_free(&p);
    }
    test_end();
}

static void test_draw_wrap(void) {
    test_begin("png: draw_wrap breaks captions at spaces, cuts long words and ends a cut text in an ellipsis");
    cairo_t *cr = draw_new(10, 10, 1, 1, 1);
    draw_font(cr, 10, false);
    char *lines[3];
    const double width = 60;
    int n;
    const char *text = "a photo of zwx cat sitting on a red velvet sofa in the sun";
    n = draw_wrap(cr, text, width, 2, lines);
    // Whole words on the first line, the second going on from there, cut with "…".
    size_t len0 = n > 0 ? strlen(lines[0]) : 0;
    EXPECT(n == 2 && len0 > 0 && strncmp(text, lines[0], len0) == 0 && text[len0] == ' ' &&
               strncmp(lines[1], text + len0 + 1, strlen(lines[1]) - strlen("…")) == 0 &&
               strcmp(lines[1] + strlen(lines[1]) - strlen("…"), "…") == 0,
           "%d lines: \"%s\" \"%s\"", n, n > 0 ? lines[0] : "", n > 1 ? lines[1] : "");
    for (int i = 0; i < n; i++) {
        EXPECT(draw_text_width(cr, lines[i]) <= width, "line \"%s\" is %.1f px wide", lines[i],
               draw_text_width(cr, lines[i]));
        free(lines[i]);
    }
    n = draw_wrap(cr, "cat  art", width, 2, lines);
    EXPECT(n == 1 && strcmp(lines[0], "cat  art") == 0, "short text: %d lines, \"%s\"", n, n ? lines[0] : "");
    for (int i = 0; i < n; i++) free(lines[i]);
    n = draw_wrap(cr, "supercalifragilisticexpialidocious cat", width, 3, lines);
    EXPECT(n >= 2 && strlen(lines[0]) > 0 && strncmp(lines[0], "supercalifragilistic", strlen(lines[0])) == 0 &&
               draw_text_width(cr, lines[0]) <= width,
           "long word: %d lines, first \"%s\"", n, n ? lines[0] : "");
    for (int i = 0; i < n; i++) free(lines[i]);
    EXPECT(draw_wrap(cr, "   ", width, 2, lines) == 0, "blank text gave lines");
    n = draw_wrap(cr, "bad \xff byte", width, 2, lines);
    EXPECT(n == 1 && strcmp(lines[0], "bad ? byte") == 0, "malformed UTF-8: \"%s\"", n ? lines[0] : "");
    for (int i = 0; i < n; i++) free(lines[i]);
    image_free((image_u8[]){draw_finish(cr, 3)});
    test_end();
}

static void test_grid_captioned(void) {
    test_begin("png: image_grid_captioned puts each tile's prompt and note in a band under it");
    enum { S = 64, GAP = 8 };
    image_u8 tiles[3];
    const image_u8 *ptrs[3];
    for (int i = 0; i < 3; i++) {
        tiles[i] = image_new(S, S, 3);
        random_bytes(tiles[i].pixels, S * S * 3, 30 + (uint64_t)i);
        ptrs[i] = &tiles[i];
    }
    const char *captions[3] = {"a photo of zwx cat sitting on a red velvet sofa", NULL, "cat art"};
    const char *notes[3] = {"seed 5", "seed 6", NULL};
    image_u8 g = image_grid_captioned(ptrs, captions, notes, 3, 2, GAP, 255);
    int cell = (g.height - 3 * GAP) / 2, band = cell - S;
    EXPECT(g.width == 2 * S + 3 * GAP && band >= 30 && g.height == 2 * cell + 3 * GAP, "%dx%d, band %d", g.width,
           g.height, band);
    for (int i = 0; i < 3 && test_ok(); i++) {
        int x0 = GAP + (i % 2) * (S + GAP), y0 = GAP + (i / 2) * (cell + GAP);
        // The tile as it was, then its band: caption lines (upper two thirds) and note
        // (lower third), in ink only where there is text, and never past the tile's width.
        for (int y = 0; y < S; y++)
            EXPECT(memcmp(g.pixels + ((size_t)(y0 + y) * g.width + x0) * 3, tiles[i].pixels + (size_t)y * S * 3,
                          S * 3) == 0,
                   "tile %d row %d changed", i, y);
        int caption_ink = ink_in(&g, x0, y0 + S, x0 + S, y0 + S + 2 * band / 3, 200);
        int note_ink = ink_in(&g, x0, y0 + S + 2 * band / 3, x0 + S, y0 + cell, 230);
        EXPECT(captions[i] ? caption_ink > 20 : caption_ink == 0, "tile %d: %d caption pixels", i, caption_ink);
        EXPECT(notes[i] ? note_ink > 10 : note_ink == 0, "tile %d: %d note pixels", i, note_ink);
    }
    // The gaps stay blank: no caption runs over its tile's edge.
    EXPECT(ink_in(&g, S + GAP, 0, S + 2 * GAP, g.height, 250) == 0, "ink in the gap between the columns");
    // Two lines of the long caption: ink on both.
    int line = (int)round(1.25 * 10);
    EXPECT(ink_in(&g, GAP, GAP + S + 4, GAP + S, GAP + S + 4 + line, 200) > 10 &&
               ink_in(&g, GAP, GAP + S + 4 + line, GAP + S, GAP + S + 4 + 2 * line, 200) > 10,
           "the long caption is not on two lines");
    image_free(&g);
    for (int i = 0; i < 3; i++) image_free(&tiles[i]);
    test_end();
}

// --- float to RGB8 ---------------------------------------------------------------

static void test_from_float_knowns(void) {
    test_begin("png: image_from_float at the ends, beyond them, at ties and on NaN");
    // 0, -0.49411765 and -0.48627451 map to the ties 127.5, 64.5 and 65.5 exactly,
    // which round to the even 128, 64 and 66 as numpy's round does (rounding half away
    // from zero would give 65 for 64.5).
    const float x[] = {-1.0f, 1.0f, 0.0f, -1.5f, 7.0f, -INFINITY, INFINITY, NAN, -0.0f,
                       -0.49411765f, -0.48627451f, 1.0f / 255.0f};
    const unsigned char want[] = {0, 255, 128, 0, 255, 0, 255, 0, 128, 64, 66, 128};
    image_u8 img = image_from_float(x, 2, 2);
    EXPECT(img.width == 2 && img.height == 2 && img.channels == 3, "%dx%dx%d", img.width,
           img.height, img.channels);
    for (int i = 0; i < 12; i++)
        EXPECT(img.pixels[i] == want[i], "x = %g gives %d, want %d", x[i], img.pixels[i], want[i]);
    image_free(&img);
    test_end();
}

static void test_from_float_numpy(void) {
    test_begin("png: image_from_float matches numpy's ((x/2+0.5).clip(0,1)*255).round() bit for bit");
    if (!have_pillow()) {
        test_end();
        return;
    }
    // Around every rounding boundary (k + 0.5) / 255 a few ulps each way, on every
    // level k / 255, at the ends and beyond, then uniform draws over [-1.25, 1.25].
    enum { RANDOM = 30000 };
    size_t cap = 256 * 9 + 256 + 8 + RANDOM + 3, n = 0;
    float *x = xmalloc(cap * sizeof *x);
    for (int k = 0; k < 256; k++) {
        float edge = ((float)k + 0.5f) / 255.0f * 2.0f - 1.0f;
        for (int d = -4; d <= 4; d++) {
            float v = edge;
            for (int s = 0; s < abs(d); s++) v = nextafterf(v, d < 0 ? -INFINITY : INFINITY);
            x[n++] = v;
        }
        x[n++] = (float)k / 255.0f * 2.0f - 1.0f;
    }
    const float ends[] = {-1.0f, 1.0f, nextafterf(-1.0f, 0.0f), nextafterf(1.0f, 0.0f), -1.01f,
                          1.01f, -INFINITY, INFINITY};
    for (int i = 0; i < 8; i++) x[n++] = ends[i];
    rng_stream s = {.seed = 6};
    rng_fill_uniform(&s, x + n, RANDOM);
    for (int i = 0; i < RANDOM; i++) x[n + i] = x[n + i] * 2.5f - 1.25f;
    n += RANDOM;
    while (n % 3) x[n++] = 0.0f;

    const char *in = scratch_path("postprocess.f32"), *out = scratch_path("postprocess.u8");
    write_whole(in, x, n * sizeof *x);
    int status = run_python_script("tests/png_check.py", "postprocess '%s' '%s'", in, out);
    EXPECT(status == 0, "png_check.py postprocess exited with %d", status);
    size_t len = 0;
    unsigned char *want = status == 0 ? read_whole(out, &len) : NULL;
    EXPECT(!want || len == n, "numpy wrote %zu values for %zu", len, n);
    image_u8 img = image_from_float(x, 1, (int)(n / 3));
    int mismatches = 0;
    for (size_t i = 0; want && len == n && i < n; i++)
        if (img.pixels[i] != want[i] && mismatches++ < 5)
            EXPECT(false, "x = %.9g (bits %08x): ours %d, numpy %d", x[i],
                   ((union { float f; uint32_t u; }){x[i]}).u, img.pixels[i], want[i]);
    EXPECT(mismatches == 0, "%d of %zu values differ", mismatches, n);
    image_free(&img);
    free(want);
    free(x);
    test_end();
}

void suite_png(void) {
    test_sha256_vectors();
    test_sha256_padding();
    test_sha256_file();
    test_pillow_reads_ours();
    test_round_trip();
    test_read_variants();
    test_truncated();
    test_corrupt();
    test_atomic();
    test_grid();
    test_plot_loss();
    test_plot_loss_edges();
    test_draw_wrap();
    test_grid_captioned();
    test_from_float_knowns();
    test_from_float_numpy();
}
