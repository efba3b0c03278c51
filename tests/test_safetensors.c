// The safetensors reader and writer: round trips, every kind of malformed file,
// atomic saves, zero-copy tensors, and files exchanged with the reference Python
// package (committed fixtures one way, tests/safetensors_interop.py the other).
#include <cjson/cJSON.h>
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "core/half.h"
#include "kernels/backend.h"
#include "kernels/tensor_file.h"
#include "tests/test.h"

// --- helpers ---------------------------------------------------------------------

// A file image: an 8-byte length, the header text, then zero-filled data.
typedef struct {
    unsigned char *bytes;
    size_t len;
} image;

static void set_header_length(image *im, uint64_t n) {
    for (int i = 0; i < 8; i++) im->bytes[i] = (unsigned char)(n >> (8 * i));
}

static image make_image(const char *header, size_t data_len) {
    size_t n = strlen(header);
    image im = {xcalloc(8 + n + data_len, 1), 8 + n + data_len};
    set_header_length(&im, n);
    memcpy(im.bytes + 8, header, n);
    return im;
}

#define LABEL "case.safetensors"

// Expects st_parse to refuse the image with a message that starts with the label
// and contains want; frees the image.
static void expect_rejected_image(image im, const char *want) {
    err_set("%s", "");
    st_file *f = st_parse(im.bytes, im.len, LABEL);
    EXPECT(!f, "accepted a file that should fail with \"%s\"", want);
    st_close(f);
    EXPECT(strncmp(err_msg(), LABEL ": ", strlen(LABEL) + 2) == 0,
           "message does not start with the label: %s", err_msg());
    EXPECT(strstr(err_msg(), want), "message \"%s\" lacks \"%s\"", err_msg(), want);
    EXPECT(!strchr(err_msg(), '\n'), "message spans lines: %s", err_msg());
    free(im.bytes);
}

static void expect_rejected(const char *header, size_t data_len, const char *want) {
    expect_rejected_image(make_image(header, data_len), want);
}

// Expects the image to parse; returns the file (the image must outlive it).
static st_file *expect_parsed(image im) {
    st_file *f = st_parse(im.bytes, im.len, LABEL);
    EXPECT(f, "rejected a valid file: %s", err_msg());
    return f;
}

static const char *scratch_file(const char *name) {
    static char buf[4][512];
    static int next;
    char *out = buf[next++ % 4];
    snprintf(out, sizeof buf[0], "%s/%s", scratch_dir(), name);
    return out;
}

// How many names in the scratch directory contain ".tmp." (leftover temp files).
static int temp_files_left(void) {
    DIR *d = opendir(scratch_dir());
    CHECK(d, "cannot list %s", scratch_dir());
    int n = 0;
    for (struct dirent *de; (de = readdir(d));) n += strstr(de->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static tensor *f32_tensor(int ndim, const int64_t *shape, float start, float step) {
    tensor *t = tensor_new(DT_F32, DEV_CPU, ndim, shape);
    float *v = tensor_data(t);
    for (int64_t i = 0; i < tensor_numel(t); i++) v[i] = start + step * (float)i;
    return t;
}

static size_t entry_bytes(const st_entry *e) { return (size_t)(e->end - e->begin); }

static bool same_shape(const st_entry *e, int ndim, const int64_t *shape) {
    if (e->ndim != ndim) return false;
    for (int i = 0; i < ndim; i++)
        if (e->shape[i] != shape[i]) return false;
    return true;
}

// --- round trip ------------------------------------------------------------------

static void test_round_trip(void) {
    test_begin("safetensors: writer and reader round trip every dtype, strides and metadata");
    tensor *f32 = f32_tensor(SHAPE(2, 3), -1.0f, 0.5f);
    tensor *f16 = tensor_new(DT_F16, DEV_CPU, SHAPE(5));
    tensor *bf16 = tensor_new(DT_BF16, DEV_CPU, SHAPE(3, 1));
    tensor *i32 = tensor_new(DT_I32, DEV_CPU, SHAPE(4));
    tensor *i64 = tensor_new(DT_I64, DEV_CPU, SHAPE(2));
    tensor *scalar = f32_tensor(0, NULL, 42.5f, 0.0f);
    tensor *empty = tensor_new(DT_F16, DEV_CPU, SHAPE(0, 4));
    for (int i = 0; i < 5; i++)
        ((uint16_t *)tensor_data(f16))[i] = f32_to_f16(0.1f * (float)i - 0.2f);
    for (int i = 0; i < 3; i++) ((uint16_t *)tensor_data(bf16))[i] = f32_to_bf16(3.3f * (float)i);
    int32_t i32_values[4] = {INT32_MIN, -1, 7, INT32_MAX};
    int64_t i64_values[2] = {INT64_MIN, INT64_MAX};
    memcpy(tensor_data(i32), i32_values, sizeof i32_values);
    memcpy(tensor_data(i64), i64_values, sizeof i64_values);
    // The [2, 3] f32 tensor seen transposed: a strided view the writer must gather.
    tensor *transposed = tensor_view(f32, SHAPE(3, 2), (const int64_t[]){1, 3}, 0);
    float transposed_rows[6] = {-1.0f, 0.5f, -0.5f, 1.0f, 0.0f, 1.5f};

    st_writer *w = st_writer_new();
    st_writer_meta(w, "format", "pt");
    st_writer_meta(w, "note", "first value, replaced by the next call");
    st_writer_meta(w, "note", "quote \" backslash \\ newline \n unicode \xc3\xa9");
    st_writer_add(w, "w.f32", f32);
    st_writer_add(w, "w.f16", f16);
    st_writer_add(w, "w.bf16", bf16);
    st_writer_add(w, "ids.i32", i32);
    st_writer_add(w, "ids.i64", i64);
    st_writer_add(w, "scalar", scalar);
    st_writer_add(w, "empty", empty);
    st_writer_add(w, "transposed", transposed);
    const char *path = scratch_file("round_trip.safetensors");
    EXPECT(st_writer_save(w, path) == 0, "save failed: %s", err_msg());

    st_file *f = st_open(path);
    EXPECT(f, "cannot read back: %s", err_msg());
    if (f) {
        // Widest dtype first, then by name, as the Python package orders them.
        const char *order[] = {"ids.i64", "scalar", "transposed", "w.f32",
                               "ids.i32", "w.bf16", "empty",      "w.f16"};
        EXPECT(st_count(f) == 8, "%d tensors", st_count(f));
        for (int i = 0; i < st_count(f) && i < 8; i++) {
            const st_entry *e = st_entry_at(f, i);
            EXPECT(strcmp(e->name, order[i]) == 0, "entry %d is %s, expected %s", i, e->name,
                   order[i]);
            size_t elem = dtype_size((dtype)e->dtype);
            EXPECT((8 + st_header_size(f) + e->begin) % elem == 0, "%s is not aligned", e->name);
        }
        EXPECT(st_header_size(f) % 8 == 0, "header of %" PRIu64 " bytes", st_header_size(f));

        struct {
            const char *name;
            const tensor *t;
            const char *dtype_str;
            const void *bytes;
        } want[] = {
            {"w.f32", f32, "F32", tensor_data(f32)},
            {"w.f16", f16, "F16", tensor_data(f16)},
            {"w.bf16", bf16, "BF16", tensor_data(bf16)},
            {"ids.i32", i32, "I32", i32_values},
            {"ids.i64", i64, "I64", i64_values},
            {"scalar", scalar, "F32", tensor_data(scalar)},
            {"empty", empty, "F16", tensor_data(empty)},
            {"transposed", transposed, "F32", transposed_rows},
        };
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
            const st_entry *e = st_find(f, want[i].name);
            EXPECT(e, "%s missing", want[i].name);
            if (!e) continue;
            EXPECT(
                e->dtype == (int)want[i].t->dtype && strcmp(e->dtype_str, want[i].dtype_str) == 0,
                "%s: dtype %s", e->name, e->dtype_str);
            EXPECT(same_shape(e, want[i].t->ndim, want[i].t->shape), "%s: shape", e->name);
            size_t n = (size_t)tensor_numel(want[i].t) * dtype_size(want[i].t->dtype);
            EXPECT(entry_bytes(e) == n && memcmp(st_data(f, e), want[i].bytes, n) == 0,
                   "%s: bytes differ", e->name);
        }
        EXPECT(!st_find(f, "nope") && !st_find(f, "w.f3") && !st_find(f, ""),
               "found an absent name");
        EXPECT(st_meta_count(f) == 2, "%d metadata entries", st_meta_count(f));
        if (st_meta_count(f) == 2) {
            EXPECT(
                strcmp(st_meta_key(f, 0), "format") == 0 && strcmp(st_meta_key(f, 1), "note") == 0,
                "metadata keys %s, %s", st_meta_key(f, 0), st_meta_key(f, 1));
        }
        EXPECT(st_meta(f, "format") && strcmp(st_meta(f, "format"), "pt") == 0, "format");
        EXPECT(
            st_meta(f, "note") && strcmp(st_meta(f, "note"),
                                         "quote \" backslash \\ newline \n unicode \xc3\xa9") == 0,
            "note: %s", st_meta(f, "note"));
        EXPECT(!st_meta(f, "absent"), "absent metadata key found");
    }
    st_close(f);
    st_writer_free(w);
    tensor *all[] = {f32, f16, bf16, i32, i64, scalar, empty, transposed};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tensor_free(all[i]);
    test_end();
}

static void test_header_text(void) {
    test_begin("safetensors: writer header text is the Python package's");
    st_writer *w = st_writer_new();
    st_writer_meta(w, "k", "tab\there \x01");
    tensor *half = tensor_zeros(DT_F16, DEV_CPU, SHAPE(1));
    tensor *one = tensor_zeros(DT_F32, DEV_CPU, 0, NULL);
    st_writer_add(w, "b", half);
    st_writer_add(w, "a\"q", one);
    const char *path = scratch_file("header.safetensors");
    EXPECT(st_writer_save(w, path) == 0, "save failed: %s", err_msg());
    size_t len;
    unsigned char *bytes = read_whole(path, &len);
    const char *want =
        "{\"__metadata__\":{\"k\":\"tab\\there \\u0001\"},"
        "\"a\\\"q\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
        "\"b\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[4,6]}}";
    size_t n = strlen(want), padded = (n + 7) / 8 * 8;
    EXPECT(len == 8 + padded + 6, "file is %zu bytes", len);
    if (len == 8 + padded + 6) {
        uint64_t stored = 0;
        for (int i = 7; i >= 0; i--) stored = stored << 8 | bytes[i];
        EXPECT(stored == padded, "header length field %" PRIu64, stored);
        EXPECT(memcmp(bytes + 8, want, n) == 0, "header %.*s", (int)padded,
               (const char *)bytes + 8);
        for (size_t i = n; i < padded; i++) EXPECT(bytes[8 + i] == ' ', "padding byte %zu", i);
    }
    free(bytes);
    st_writer_free(w);
    tensor_free(half);
    tensor_free(one);
    test_end();
}

static void test_empty_writer(void) {
    test_begin("safetensors: an empty writer saves '{}', and '{}' with no data reads back");
    st_writer *w = st_writer_new();
    const char *path = scratch_file("empty.safetensors");
    EXPECT(st_writer_save(w, path) == 0, "save failed: %s", err_msg());
    size_t len;
    unsigned char *bytes = read_whole(path, &len);
    EXPECT(len == 16 && memcmp(bytes, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0, "%zu bytes", len);
    free(bytes);
    st_file *f = st_open(path);
    EXPECT(f && st_count(f) == 0 && st_meta_count(f) == 0, "empty file: %s", err_msg());
    st_close(f);
    st_writer_free(w);
    test_end();
}

// --- loading with conversion -----------------------------------------------------

// Every 16-bit pattern as an f16 and as a bf16 tensor.
static void test_load_converts(void) {
    test_begin("safetensors: st_load widens every f16 and bf16 pattern to f32 exactly");
    tensor *h = tensor_new(DT_F16, DEV_CPU, SHAPE(65536));
    tensor *b = tensor_new(DT_BF16, DEV_CPU, SHAPE(65536));
    tensor *f = f32_tensor(SHAPE(1000), -3.0f, 0.01234f);
    for (int i = 0; i < 65536; i++) {
        ((uint16_t *)tensor_data(h))[i] = (uint16_t)i;
        ((uint16_t *)tensor_data(b))[i] = (uint16_t)i;
    }
    st_writer *w = st_writer_new();
    st_writer_add(w, "h", h);
    st_writer_add(w, "b", b);
    st_writer_add(w, "f", f);
    const char *path = scratch_file("convert.safetensors");
    EXPECT(st_writer_save(w, path) == 0, "save failed: %s", err_msg());
    st_file *file = st_open(path);
    EXPECT(file, "%s", err_msg());
    if (file) {
        tensor *h32 = st_load(file, "h", DT_F32, DEV_CPU);
        tensor *b32 = st_load(file, "b", DT_F32, DEV_CPU);
        tensor *f16 = st_load(file, "f", DT_F16, DEV_CPU);
        tensor *fb16 = st_load(file, "f", DT_BF16, DEV_CPU);
        EXPECT(h32 && b32 && f16 && fb16, "load failed: %s", err_msg());
        if (h32 && b32 && f16 && fb16) {
            EXPECT(h32->dtype == DT_F32 && h32->ndim == 1 && h32->shape[0] == 65536, "h32 shape");
            int bad_h = 0, bad_b = 0, bad_f = 0;
            const float *hv = tensor_data(h32), *bv = tensor_data(b32), *fv = tensor_data(f);
            for (int i = 0; i < 65536; i++) {
                bad_h += f32_bits(hv[i]) != f32_bits(f16_to_f32((uint16_t)i));
                bad_b += f32_bits(bv[i]) != f32_bits(bf16_to_f32((uint16_t)i));
            }
            for (int i = 0; i < 1000; i++) {
                bad_f += ((const uint16_t *)tensor_data(f16))[i] != f32_to_f16(fv[i]);
                bad_f += ((const uint16_t *)tensor_data(fb16))[i] != f32_to_bf16(fv[i]);
            }
            EXPECT(bad_h == 0 && bad_b == 0 && bad_f == 0,
                   "%d f16, %d bf16, %d narrowing mismatches", bad_h, bad_b, bad_f);
        }
        tensor_free(h32);
        tensor_free(b32);
        tensor_free(f16);
        tensor_free(fb16);
    }
    st_close(file);
    st_writer_free(w);
    tensor_free(h);
    tensor_free(b);
    tensor_free(f);
    test_end();
}

static void test_load_refuses(void) {
    test_begin("safetensors: st_load and st_tensor refuse absent names, int<->float, other dtypes");
    image im = make_image(
        "{\"ints\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"bytes\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[8,16]}}",
        16);
    st_file *f = expect_parsed(im);
    if (f) {
        EXPECT(
            !st_load(f, "nope", DT_F32, DEV_CPU) && strstr(err_msg(), LABEL ": no tensor 'nope'"),
            "absent: %s", err_msg());
        EXPECT(!st_load(f, "ints", DT_F32, DEV_CPU) &&
                   strstr(err_msg(), "tensor 'ints' is I32 and cannot load as f32"),
               "int to float: %s", err_msg());
        EXPECT(!st_load(f, "ints", DT_I64, DEV_CPU) &&
                   strstr(err_msg(), "tensor 'ints' is I32 and cannot load as i64"),
               "int widening: %s", err_msg());
        tensor *same = st_load(f, "ints", DT_I32, DEV_CPU);
        EXPECT(same && same->dtype == DT_I32, "I32 as I32: %s", err_msg());
        tensor_free(same);
        const st_entry *e = st_find(f, "bytes");
        EXPECT(e && e->dtype == -1 && strcmp(e->dtype_str, "U8") == 0, "U8 entry");
        EXPECT(
            e && !st_tensor(f, e) && strstr(err_msg(), "tensor 'bytes' has dtype U8, which sdft"),
            "st_tensor U8: %s", err_msg());
        EXPECT(!st_load(f, "bytes", DT_F32, DEV_CPU) && strstr(err_msg(), "has dtype U8"),
               "st_load U8: %s", err_msg());
    }
    st_close(f);
    free(im.bytes);
    test_end();
}

// --- malformed files, one test per rule --------------------------------------------

#define T(name, dtype, shape, b, e) \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static void test_too_short(void) {
    test_begin("safetensors: reject a file shorter than 8 bytes");
    expect_rejected_image((image){xcalloc(1, 1), 0}, "file is 0 bytes, too short");
    expect_rejected_image((image){xcalloc(7, 1), 7},
                          "file is 7 bytes, too short for the 8-byte header length");
    const char *path = scratch_file("zero.safetensors");
    write_whole(path, "", 0);
    EXPECT(!st_open(path), "opened an empty file");
    EXPECT(strncmp(err_msg(), path, strlen(path)) == 0 && strstr(err_msg(), "file is 0 bytes"),
           "%s", err_msg());
    EXPECT(!st_open(scratch_file("absent.safetensors")) &&
               strstr(err_msg(), "absent.safetensors: cannot open"),
           "%s", err_msg());
    EXPECT(!st_open(scratch_dir()) && strstr(err_msg(), "not a regular file"), "%s", err_msg());
    test_end();
}

static void test_header_length(void) {
    test_begin("safetensors: reject a header length past the file or over the cap");
    image im = make_image("{}", 0);
    set_header_length(&im, 3);
    expect_rejected_image(im, "header length 3 runs past the end of the 10-byte file");
    im = make_image("{}", 0);
    set_header_length(&im, 1ull << 40);
    expect_rejected_image(im, "not a safetensors file (header length 1099511627776 is over the 100000000-byte limit)");
    im = make_image("{}", 0);
    set_header_length(&im, UINT64_MAX);
    expect_rejected_image(im, "is over the 100000000-byte limit");
    test_end();
}

static void test_bad_json(void) {
    test_begin("safetensors: reject a header that is not one JSON object");
    expect_rejected("{\"a\":", 0, "header is not valid JSON");
    expect_rejected("{\"a\" 1}", 0, "header is not valid JSON (error near byte 5)");
    expect_rejected("[1]     ", 0, "header does not start with '{'");
    expect_rejected(" {}", 0, "header does not start with '{'");
    expect_rejected("", 0, "header does not start with '{'");
    expect_rejected("{} x", 0, "header has bytes after the JSON object (at byte 3)");
    expect_rejected("{}{}", 0, "header has bytes after the JSON object");
    image im = make_image("{}  #", 0);
    im.bytes[8 + 3] = '\0';  // a NUL inside the header
    expect_rejected_image(im, "bytes after the JSON object (at byte 3)");
    expect_rejected("{\"\xff\":1}", 0, "header is not valid UTF-8 (byte 2)");
    expect_rejected("{\"\xc0\xaf\":1}", 0, "not valid UTF-8");      // overlong '/'
    expect_rejected("{\"\xed\xa0\x80\":1}", 0, "not valid UTF-8");  // a surrogate
    // Trailing spaces (the format's padding) and other JSON whitespace are fine.
    im = make_image("{}\t\n\r     ", 0);
    st_file *f = expect_parsed(im);
    st_close(f);
    free(im.bytes);
    test_end();
}

static void test_bad_metadata(void) {
    test_begin("safetensors: reject __metadata__ that is not an object of strings");
    expect_rejected("{\"__metadata__\":[]}", 0, "__metadata__ is not an object");
    expect_rejected("{\"__metadata__\":\"x\"}", 0, "__metadata__ is not an object");
    expect_rejected("{\"__metadata__\":{\"a\":\"x\",\"n\":1}}", 0,
                    "__metadata__ value of 'n' is not a string");
    expect_rejected("{\"__metadata__\":{\"a\":null}}", 0,
                    "__metadata__ value of 'a' is not a string");
    expect_rejected("{\"__metadata__\":{\"a\":\"x\",\"a\":\"y\"}}", 0,
                    "__metadata__ has the key 'a' twice");
    expect_rejected("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ appears twice");
    test_end();
}

static void test_bad_entry(void) {
    test_begin("safetensors: reject a tensor entry with missing or ill-typed fields");
    expect_rejected("{\"t\":5}", 0, "tensor 't': entry is not an object");
    // Names from the file cannot break the message into lines or make it huge.
    expect_rejected("{\"a\\nb\":5}", 0, "tensor 'a\\x0ab': entry is not an object");
    char header[400];
    snprintf(header, sizeof header, "{\"%0300d\":5}", 0);
    expect_rejected(header, 0, "tensor '000000");
    EXPECT(strlen(err_msg()) < 200 && strstr(err_msg(), "0...': entry is not"), "%s", err_msg());
    expect_rejected("{\"t\":[]}", 0, "tensor 't': entry is not an object");
    expect_rejected("{\"t\":{\"shape\":[],\"data_offsets\":[0,4]}}", 4,
                    "tensor 't': missing \"dtype\"");
    expect_rejected("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
                    "tensor 't': missing \"shape\"");
    expect_rejected("{\"t\":{\"dtype\":\"F32\",\"shape\":[]}}", 4,
                    "tensor 't': missing \"data_offsets\"");
    expect_rejected(
        "{" T("t", "F32", "[]", 0, 4) ",\"u\":{\"dtype\":32,\"shape\":[],\"data_offsets\":[4,8]}}",
        8, "tensor 'u': \"dtype\" is not a string");
    expect_rejected("{" T("t", "F32", "{}", 0, 4) "}", 4, "tensor 't': \"shape\" is not an array");
    expect_rejected("{" T("t", "F32", "[1,1,1,1,1,1,1]", 0, 4) "}", 4,
                    "tensor 't': shape has 7 dims, more than 6");
    expect_rejected("{" T("t", "F32", "[2,-1]", 0, 4) "}", 4,
                    "tensor 't': shape[1] is not a non-negative integer");
    expect_rejected("{" T("t", "F32", "[1.5]", 0, 4) "}", 4,
                    "tensor 't': shape[0] is not a non-negative integer");
    expect_rejected("{" T("t", "F32", "[\"1\"]", 0, 4) "}", 4,
                    "shape[0] is not a non-negative integer");
    expect_rejected("{" T("t", "F32", "[1e400]", 0, 4) "}", 4,
                    "shape[0] is not a non-negative integer");
    // Integral values spelled as something other than a plain integer.
    expect_rejected("{" T("t", "F32", "[1.0]", 0, 4) "}", 4,
                    "header number \"1.0\" is not a plain");
    expect_rejected("{" T("t", "F32", "[1e0]", 0, 4) "}", 4,
                    "header number \"1e0\" is not a plain");
    expect_rejected("{" T("t", "F32", "[01]", 0, 4) "}", 4, "header number \"01\" is not a plain");
    expect_rejected("{" T("t", "F32", "[-0]", 0, 0) "}", 0, "header number \"-0\" is not a plain");
    expect_rejected("{\"t\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":4}}", 4,
                    "tensor 't': \"data_offsets\" is not an array of 2 integers");
    expect_rejected("{\"t\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4,4]}}", 4,
                    "\"data_offsets\" is not an array of 2 integers");
    expect_rejected("{\"t\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,-4]}}", 4,
                    "tensor 't': data_offsets are not non-negative integers");
    expect_rejected("{\"t\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,\"4\"]}}", 4,
                    "data_offsets are not non-negative integers");
    expect_rejected(
        "{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
        "tensor 't': key \"dtype\" appears twice");
    test_end();
}

static void test_unknown_dtype(void) {
    test_begin("safetensors: reject unknown dtypes, accept valid ones we do not compute with");
    expect_rejected("{" T("t", "F31", "[1]", 0, 4) "}", 4, "tensor 't': unknown dtype \"F31\"");
    expect_rejected("{" T("t", "f32", "[1]", 0, 4) "}", 4, "unknown dtype \"f32\"");
    // Byte sizes of the others still follow their element size (F4: 2 per byte).
    // clang-format off
    image im = make_image("{" T("d", "F64", "[2]", 0, 16) ","
                              T("c", "C64", "[1]", 16, 24) ","
                              T("u", "U16", "[3]", 24, 30) ","
                              T("b", "BOOL", "[2]", 30, 32) ","
                              T("e", "F8_E5M2FNUZ", "[1]", 32, 33) ","
                              T("q", "F4", "[2,3]", 33, 36) ","
                              T("s", "F6_E3M2", "[4]", 36, 39) "}",
                          39);
    // clang-format on
    st_file *f = expect_parsed(im);
    const char *names[] = {"d", "c", "u", "b", "e", "q", "s"};
    for (int i = 0; f && i < 7; i++) {
        const st_entry *e = st_entry_at(f, i);
        EXPECT(strcmp(e->name, names[i]) == 0 && e->dtype == -1, "entry %d: %s %d", i, e->name,
               e->dtype);
    }
    st_close(f);
    free(im.bytes);
    expect_rejected("{" T("q", "F4", "[3]", 0, 2) "}", 2,
                    "tensor 'q': shape [3] of F4 does not fill whole bytes");
    test_end();
}

static void test_offsets_out_of_range(void) {
    test_begin("safetensors: reject data_offsets that run backwards or past the data");
    expect_rejected("{" T("t", "F32", "[1]", 8, 4) "}", 8,
                    "tensor 't': data_offsets [8, 4] end before they begin");
    expect_rejected("{" T("t", "F32", "[4]", 0, 16) "}", 8,
                    "tensor 't': data_offsets end 16 is past the 8-byte data section");
    expect_rejected("{" T("t", "F32", "[4]", 0, 9007199254740992) "}", 8,
                    "data_offsets end 9007199254740992");
    test_end();
}

static void test_size_mismatch(void) {
    test_begin("safetensors: reject a shape whose byte size is not the data_offsets span");
    expect_rejected("{" T("t", "F32", "[2,3]", 0, 20) "}", 20,
                    "tensor 't': shape [2, 3] of F32 is 24 bytes but data_offsets span 20");
    expect_rejected("{" T("t", "I64", "[]", 0, 4) "}", 4,
                    "shape [] of I64 is 8 bytes but data_offsets span 4");
    expect_rejected("{" T("t", "F32", "[0]", 0, 4) "}", 4, "shape [0] of F32 is 0 bytes");
    expect_rejected("{" T("t", "F32", "[4294967296,4294967296]", 0, 4) "}", 4,
                    "tensor 't': shape [4294967296, 4294967296] is too large");
    expect_rejected("{" T("t", "F64", "[9007199254740992,9007199254740992]", 0, 4) "}", 4,
                    "is too large");
    // No elements, but the tensor code would still multiply the other dims.
    expect_rejected("{" T("t", "F32", "[0,9007199254740992,1024]", 0, 0) "}", 0,
                    "shape [0, 9007199254740992, 1024] is too large");
    test_end();
}

static void test_overlap(void) {
    test_begin("safetensors: reject overlapping tensors");
    expect_rejected("{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 4, 12) "}", 12,
                    "tensors 'a' [0, 8) and 'b' [4, 12) overlap");
    expect_rejected("{" T("b", "F32", "[2]", 0, 8) "," T("a", "F32", "[2]", 0, 8) "}", 8,
                    "tensors 'a' [0, 8) and 'b' [0, 8) overlap");
    expect_rejected("{" T("a", "F32", "[4]", 0, 16) "," T("z", "F32", "[0]", 8, 8) "}", 16,
                    "tensors 'a' [0, 16) and 'z' [8, 8) overlap");
    test_end();
}

static void test_coverage(void) {
    test_begin("safetensors: reject gaps and bytes after the last tensor");
    expect_rejected("{" T("a", "F32", "[1]", 0, 4) "," T("b", "F32", "[1]", 8, 12) "}", 12,
                    "bytes [4, 8) of the data section belong to no tensor");
    expect_rejected("{" T("a", "F32", "[1]", 4, 8) "}", 8,
                    "bytes [0, 4) of the data section belong to no tensor");
    expect_rejected("{" T("a", "F32", "[1]", 0, 4) "}", 8,
                    "bytes [4, 8) after the last tensor belong to no tensor");
    expect_rejected("{}", 3, "bytes [0, 3) after the last tensor belong to no tensor");
    // Zero-size tensors may share an offset with each other and with a neighbour.
    // clang-format off
    image im = make_image("{" T("c", "F32", "[1]", 0, 4) ","
                              T("b", "F32", "[0,5]", 0, 0) ","
                              T("a", "I64", "[0]", 0, 0) ","
                              T("d", "F16", "[0]", 4, 4) "}",
                          4);
    // clang-format on
    st_file *f = expect_parsed(im);
    const char *order[] = {"a", "b", "c", "d"};
    for (int i = 0; f && i < 4; i++)
        EXPECT(strcmp(st_entry_at(f, i)->name, order[i]) == 0, "entry %d: %s", i,
               st_entry_at(f, i)->name);
    st_close(f);
    free(im.bytes);
    test_end();
}

static void test_duplicate_names(void) {
    test_begin("safetensors: reject duplicate tensor names");
    expect_rejected("{" T("a", "F32", "[1]", 0, 4) "," T("a", "F32", "[1]", 4, 8) "}", 8,
                    "duplicate tensor name 'a'");
    // clang-format off
    expect_rejected("{" T("x", "F32", "[1]", 0, 4) ","
                        T("a", "F32", "[1]", 4, 8) ","
                        T("a", "F32", "[1]", 8, 12) "}",
                    12, "duplicate tensor name 'a'");
    // clang-format on
    test_end();
}

// --- atomic saves ----------------------------------------------------------------

static st_writer *writer_with(const char *name, float value, int64_t n) {
    st_writer *w = st_writer_new();
    tensor *t = f32_tensor(SHAPE(n), value, 0.0f);
    st_writer_add(w, name, t);
    tensor_free(t);  // the writer holds its own reference
    return w;
}

static void test_atomic_replace(void) {
    test_begin("safetensors: saving over a file replaces it and leaves no temp file");
    const char *path = scratch_file("replace.safetensors");
    st_writer *first = writer_with("first", 1.0f, 4), *second = writer_with("second", 2.0f, 2);
    EXPECT(st_writer_save(first, path) == 0, "%s", err_msg());
    EXPECT(st_writer_save(second, path) == 0, "%s", err_msg());
    st_file *f = st_open(path);
    EXPECT(f && st_count(f) == 1 && st_find(f, "second") && !st_find(f, "first"),
           "not replaced: %s", err_msg());
    st_close(f);
    EXPECT(temp_files_left() == 0, "temp files left behind");
    st_writer_free(first);
    st_writer_free(second);
    test_end();
}

// Saves over an existing file in a way that fails; the old bytes must survive.
static void expect_failed_save_keeps(const char *path, st_writer *w, const char *want) {
    size_t before_len, after_len;
    unsigned char *before = read_whole(path, &before_len);
    err_set("%s", "");
    EXPECT(st_writer_save(w, path) == -1, "save succeeded");
    EXPECT(strncmp(err_msg(), path, strlen(path)) == 0 && strstr(err_msg(), want),
           "message \"%s\" lacks \"%s\"", err_msg(), want);
    unsigned char *after = read_whole(path, &after_len);
    EXPECT(before_len == after_len && memcmp(before, after, before_len) == 0,
           "existing file changed");
    free(before);
    free(after);
}

static void test_atomic_failures(void) {
    test_begin("safetensors: a failed save returns -1, keeps the old file, removes its temp file");
    st_writer *old = writer_with("old", 1.0f, 4), *big = writer_with("big", 3.0f, 1 << 16);
    const char *path = scratch_file("keep.safetensors");
    EXPECT(st_writer_save(old, path) == 0, "%s", err_msg());

    const char *nowhere = scratch_file("no/such/dir/x.safetensors");
    EXPECT(st_writer_save(old, nowhere) == -1, "saved into a missing directory");
    EXPECT(strncmp(err_msg(), nowhere, strlen(nowhere)) == 0 && strstr(err_msg(), "cannot create"),
           "%s", err_msg());

    // The disk "fills up" half way: a file size limit makes write() fail with EFBIG.
    struct rlimit saved;
    getrlimit(RLIMIT_FSIZE, &saved);
    struct rlimit small = {4096, saved.rlim_max};
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0, "setrlimit");
    expect_failed_save_keeps(path, big, "cannot write");
    CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0, "setrlimit");
    signal(SIGXFSZ, old_handler);

    // Our temp name is taken by a directory, so the temp file cannot be created.
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(mkdir(tmp, 0700) == 0, "mkdir %s", tmp);
    expect_failed_save_keeps(path, big, "cannot create");
    rmdir(tmp);

    // The destination is a directory: everything is written, then rename fails.
    const char *dir = scratch_file("a_directory.safetensors");
    CHECK(mkdir(dir, 0700) == 0 && mkdir(scratch_file("a_directory.safetensors/x"), 0700) == 0,
          "mkdir");
    EXPECT(st_writer_save(old, dir) == -1 && strstr(err_msg(), "cannot rename"), "%s", err_msg());

    EXPECT(temp_files_left() == 0, "temp files left behind");
    st_writer_free(old);
    st_writer_free(big);
    test_end();
}

// --- zero copy -------------------------------------------------------------------

static void test_zero_copy(void) {
    test_begin("safetensors: st_tensor maps aligned data without copying and outlives st_close");
    st_writer *w = writer_with("w", 0.0f, 16);
    tensor *ramp = f32_tensor(SHAPE(4, 4), 1.0f, 1.0f);
    st_writer_add(w, "ramp", ramp);
    const char *path = scratch_file("zero_copy.safetensors");
    EXPECT(st_writer_save(w, path) == 0, "%s", err_msg());
    st_file *f = st_open(path);
    EXPECT(f, "%s", err_msg());
    if (f) {
        const st_entry *e = st_find(f, "ramp");
        tensor *t = st_tensor(f, e);
        EXPECT(t && tensor_data(t) == st_data(f, e), "not a view of the mapping");
        EXPECT(t->dtype == DT_F32 && t->ndim == 2 && t->shape[0] == 4 && t->shape[1] == 4, "shape");
        st_close(f);  // the tensor keeps the mapping alive
        float sum = 0;
        for (int i = 0; i < 16; i++) sum += ((const float *)tensor_data(t))[i];
        EXPECT(sum == 136.0f, "sum %g after st_close", sum);
        tensor *copy = tensor_new_like(t);
        backend_for(DEV_CPU)->copy(copy, t);
        EXPECT(((const float *)tensor_data(copy))[15] == 16.0f, "copy of the mapped tensor");
        tensor_free(copy);
        tensor_free(t);
    }
    st_writer_free(w);
    tensor_free(ramp);
    test_end();
}

static void test_misaligned_copy(void) {
    test_begin("safetensors: st_tensor copies data that is not aligned to its element size");
    const char *json = "{" T("v", "F32", "[2]", 0, 8) "}";
    size_t n = strlen(json);
    // Space padding puts the data one byte past a multiple of 4 in an aligned buffer.
    size_t pad = (4 - (8 + n) % 4) % 4 + 1;
    image shifted = {xcalloc(8 + n + pad + 8, 1), 8 + n + pad + 8};
    set_header_length(&shifted, n + pad);
    memcpy(shifted.bytes + 8, json, n);
    memset(shifted.bytes + 8 + n, ' ', pad);
    float values[2] = {1.25f, -7.5f};
    memcpy(shifted.bytes + 8 + n + pad, values, 8);
    st_file *f = expect_parsed(shifted);
    if (f) {
        const st_entry *e = st_find(f, "v");
        EXPECT((uintptr_t)st_data(f, e) % 4 != 0, "test setup: data is aligned");
        tensor *t = st_tensor(f, e);
        EXPECT(t && tensor_data(t) != st_data(f, e), "misaligned data was not copied");
        EXPECT(t && memcmp(tensor_data(t), values, 8) == 0, "copied values differ");
        tensor_free(t);
    }
    st_close(f);
    free(shifted.bytes);
    test_end();
}

// --- tensors on another device ------------------------------------------------------

// The writer takes raw host bytes (core/); kernels/tensor_file.c gathers a device
// tensor, and a strided one, into them, and st_load uploads.
static void test_device_tensors(void) {
    test_begin("safetensors: st_writer_add writes cuda-emu tensors (contiguous, strided, bf16) "
               "as their values, and st_load uploads them back");
#ifndef SDFT_HAVE_EMU
    test_skip("SKIPPED: built without the CUDA emulator");
#else
    const float values[6] = {-1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f};  // exact in bf16
    const float transposed[6] = {-1.0f, 0.5f, -0.5f, 1.0f, 0.0f, 1.5f};
    tensor *dev = tensor_from_f32(DT_F32, DEV_CUDA_EMU, SHAPE(2, 3), values);
    tensor *dev_t = tensor_view(dev, SHAPE(3, 2), (const int64_t[]){1, 3}, 0);
    tensor *dev_bf16 = tensor_from_f32(DT_BF16, DEV_CUDA_EMU, SHAPE(6), values);
    st_writer *w = st_writer_new();
    st_writer_add(w, "dev", dev);
    st_writer_add(w, "dev_t", dev_t);
    st_writer_add(w, "dev_bf16", dev_bf16);
    const char *path = scratch_file("device.safetensors");
    EXPECT(st_writer_save(w, path) == 0, "%s", err_msg());
    st_writer_free(w);
    st_file *f = st_open(path);
    EXPECT(f, "%s", err_msg());
    if (f) {
        const st_entry *e = st_find(f, "dev");
        EXPECT(e && same_shape(e, SHAPE(2, 3)) && entry_bytes(e) == sizeof values &&
                   memcmp(st_data(f, e), values, sizeof values) == 0,
               "dev: not the tensor's values");
        e = st_find(f, "dev_t");
        EXPECT(e && same_shape(e, SHAPE(3, 2)) && entry_bytes(e) == sizeof transposed &&
                   memcmp(st_data(f, e), transposed, sizeof transposed) == 0,
               "dev_t: not the view's values in row-major order");
        tensor *back = st_load(f, "dev_bf16", DT_F32, DEV_CUDA_EMU);
        EXPECT(back && back->dev == DEV_CUDA_EMU, "st_load to cuda-emu: %s", err_msg());
        if (back) {
            float got[6];
            tensor_copy_to_f32(back, got, 6);
            EXPECT(memcmp(got, values, sizeof got) == 0, "dev_bf16: values changed on the way");
        }
        tensor_free(back);
        st_close(f);
    }
    tensor_free(dev_bf16);
    tensor_free(dev_t);
    tensor_free(dev);
#endif
    test_end();
}

// --- the reference Python package --------------------------------------------------

static size_t hex_decode(const char *hex, unsigned char *out, size_t cap) {
    size_t n = strlen(hex) / 2;
    CHECK(n <= cap, "hex string too long");
    for (size_t i = 0; i < n; i++) {
        unsigned byte;
        int parsed = sscanf(hex + 2 * i, "%2x", &byte);
        CHECK(parsed == 1, "bad hex %s", hex);
        out[i] = (unsigned char)byte;
    }
    return n;
}

static int our_dtype(const char *s) {
    const char *names[DT_COUNT] = {"F32", "F16", "BF16", "I32", "I64"};
    for (int i = 0; i < DT_COUNT; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

// One fixture file against its description in expected.json.
static void check_fixture(const char *file, const cJSON *want) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/safetensors/%s", file);
    st_file *f = st_open(repo_path(rel));
    EXPECT(f, "%s", err_msg());
    if (!f) return;
    const cJSON *meta = cJSON_GetObjectItem(want, "metadata");
    EXPECT(st_meta_count(f) == cJSON_GetArraySize(meta), "%s: %d metadata entries", file,
           st_meta_count(f));
    for (const cJSON *m = meta->child; m; m = m->next)
        EXPECT(st_meta(f, m->string) && strcmp(st_meta(f, m->string), m->valuestring) == 0,
               "%s: metadata %s", file, m->string);
    const cJSON *order = cJSON_GetObjectItem(want, "order");
    EXPECT(st_count(f) == cJSON_GetArraySize(order), "%s: %d tensors", file, st_count(f));
    int i = 0;
    for (const cJSON *o = order->child; o && i < st_count(f); o = o->next, i++)
        EXPECT(strcmp(st_entry_at(f, i)->name, o->valuestring) == 0,
               "%s: entry %d is %s, expected %s", file, i, st_entry_at(f, i)->name, o->valuestring);

    static unsigned char bytes[4096];
    for (const cJSON *t = cJSON_GetObjectItem(want, "tensors")->child; t; t = t->next) {
        const st_entry *e = st_find(f, t->string);
        EXPECT(e, "%s: no tensor %s", file, t->string);
        if (!e) continue;
        const char *dtype_str = cJSON_GetObjectItem(t, "dtype")->valuestring;
        EXPECT(strcmp(e->dtype_str, dtype_str) == 0 && e->dtype == our_dtype(dtype_str),
               "%s: %s has dtype %s (%d)", file, e->name, e->dtype_str, e->dtype);
        const cJSON *shape = cJSON_GetObjectItem(t, "shape");
        bool shape_ok = e->ndim == cJSON_GetArraySize(shape);
        int d = 0;
        for (const cJSON *s = shape->child; s && shape_ok; s = s->next)
            shape_ok = e->shape[d++] == (int64_t)s->valuedouble;
        EXPECT(shape_ok, "%s: %s shape", file, e->name);
        size_t n = hex_decode(cJSON_GetObjectItem(t, "hex")->valuestring, bytes, sizeof bytes);
        EXPECT(entry_bytes(e) == n && memcmp(st_data(f, e), bytes, n) == 0, "%s: %s bytes", file,
               e->name);

        tensor *mine = st_tensor(f, e);
        EXPECT((mine != NULL) == (e->dtype >= 0), "%s: st_tensor of %s", file, e->name);
        if (mine)
            EXPECT(memcmp(tensor_data(mine), bytes, n) == 0, "%s: %s tensor bytes", file, e->name);
        tensor_free(mine);

        const cJSON *bits = cJSON_GetObjectItem(t, "f32_bits");
        if (!bits) continue;
        tensor *wide = st_load(f, e->name, DT_F32, DEV_CPU);
        EXPECT(wide, "%s", err_msg());
        if (!wide) continue;
        int k = 0, bad = 0;
        for (const cJSON *b = bits->child; b; b = b->next, k++)
            bad += f32_bits(((const float *)tensor_data(wide))[k]) != (uint32_t)b->valuedouble;
        EXPECT(k == tensor_numel(wide) && bad == 0, "%s: %s: %d of %d f32 values differ", file,
               e->name, bad, k);
        tensor_free(wide);
    }
    st_close(f);
}

static void test_python_fixtures(void) {
    test_begin("safetensors: read the fixtures the Python package wrote, exactly");
    size_t len;
    unsigned char *text = read_whole(repo_path("tests/fixtures/safetensors/expected.json"), &len);
    cJSON *expected = cJSON_Parse((const char *)text);
    EXPECT(expected && cJSON_GetArraySize(expected) == 3, "expected.json does not parse");
    for (const cJSON *file = expected ? expected->child : NULL; file; file = file->next)
        check_fixture(file->string, file);
    cJSON_Delete(expected);
    free(text);
    test_end();
}

// Adds a tensor to the writer and its expectation (values as the script wants them).
static void expect_tensor(st_writer *w, cJSON *tensors, const char *name, tensor *t) {
    st_writer_add(w, name, t);
    cJSON *e = cJSON_AddObjectToObject(tensors, name);
    const char *dtypes[DT_COUNT] = {"F32", "F16", "BF16", "I32", "I64"};
    cJSON_AddStringToObject(e, "dtype", dtypes[t->dtype]);
    cJSON *shape = cJSON_AddArrayToObject(e, "shape");
    for (int d = 0; d < t->ndim; d++)
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
    int64_t n = tensor_numel(t);
    cJSON *values = cJSON_AddArrayToObject(e, dtype_is_float(t->dtype) ? "f32_bits" : "values");
    float *wide = xmalloc((size_t)n * sizeof(float) + 1);
    if (dtype_is_float(t->dtype)) tensor_copy_to_f32(t, wide, (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        char text[32];
        if (t->dtype == DT_I32)
            snprintf(text, sizeof text, "%" PRId32, ((const int32_t *)tensor_data(t))[i]);
        if (t->dtype == DT_I64)
            snprintf(text, sizeof text, "%" PRId64, ((const int64_t *)tensor_data(t))[i]);
        cJSON_AddItemToArray(values, dtype_is_float(t->dtype)
                                         ? cJSON_CreateNumber(f32_bits(wide[i]))
                                         : cJSON_CreateString(text));
    }
    free(wide);
    tensor_free(t);
}

static void test_python_reads_ours(void) {
    test_begin("safetensors: the Python package reads our files and lays them out the same");
    const char *python = getenv("PYTHON") ? getenv("PYTHON") : "python3";
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s -c 'import safetensors, numpy' >/dev/null 2>&1", python);
    if (system(cmd) != 0) {
        test_skip(
            "%s cannot import safetensors and numpy (python3 -m pip install -r "
            "tools/requirements-test.txt)",
            python);
        test_end();
        return;
    }
    st_writer *w = st_writer_new();
    cJSON *expected = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(expected, "metadata");
    cJSON *tensors = cJSON_AddObjectToObject(expected, "tensors");
    const char *keys[] = {"format", "ss_note"};
    const char *values[] = {
        "pt", "quote \" backslash \\ newline \n tab \t control \x01 unicode \xe2\x9c\x93"};
    for (int i = 0; i < 2; i++) {
        st_writer_meta(w, keys[i], values[i]);
        cJSON_AddStringToObject(meta, keys[i], values[i]);
    }
    float specials[8] = {0.0f, -0.0f, 1.0f / 3.0f, 1e-40f, 3.4e38f, -INFINITY, 65504.0f, 1e-7f};
    expect_tensor(w, tensors, "f32", tensor_from_f32(DT_F32, DEV_CPU, SHAPE(2, 4), specials));
    expect_tensor(w, tensors, "f16", tensor_from_f32(DT_F16, DEV_CPU, SHAPE(8), specials));
    expect_tensor(w, tensors, "unet.bf16",
                  tensor_from_f32(DT_BF16, DEV_CPU, SHAPE(4, 2), specials));
    tensor *i32 = tensor_new(DT_I32, DEV_CPU, SHAPE(3));
    tensor *i64 = tensor_new(DT_I64, DEV_CPU, SHAPE(3, 1));
    memcpy(tensor_data(i32), (int32_t[]){INT32_MIN, 0, INT32_MAX}, 12);
    memcpy(tensor_data(i64), (int64_t[]){INT64_MIN, (1ll << 53) + 1, INT64_MAX}, 24);
    expect_tensor(w, tensors, "i32", i32);
    expect_tensor(w, tensors, "i64", i64);
    expect_tensor(w, tensors, "scalar", tensor_from_f32(DT_F32, DEV_CPU, 0, NULL, (float[]){2.5f}));
    expect_tensor(w, tensors, "empty.bf16", tensor_new(DT_BF16, DEV_CPU, SHAPE(0, 3)));
    expect_tensor(w, tensors, "empty.i64", tensor_new(DT_I64, DEV_CPU, SHAPE(2, 0)));
    expect_tensor(w, tensors, "t\xc3\xb6k.odd_f16",
                  tensor_from_f32(DT_F16, DEV_CPU, SHAPE(3), specials));

    const char *path = scratch_file("ours.safetensors"), *json = scratch_file("ours.json");
    EXPECT(st_writer_save(w, path) == 0, "%s", err_msg());
    char *text = cJSON_PrintUnformatted(expected);
    write_whole(json, text, strlen(text));
    snprintf(cmd, sizeof cmd, "%s '%s' '%s' '%s'", python,
             repo_path("tests/safetensors_interop.py"), path, json);
    fflush(stdout);
    int status = system(cmd);
    EXPECT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "%s failed with status %d", cmd, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    free(text);
    cJSON_Delete(expected);
    st_writer_free(w);
    test_end();
}

void suite_safetensors(void) {
    test_round_trip();
    test_header_text();
    test_empty_writer();
    test_load_converts();
    test_load_refuses();
    test_too_short();
    test_header_length();
    test_bad_json();
    test_bad_metadata();
    test_bad_entry();
    test_unknown_dtype();
    test_offsets_out_of_range();
    test_size_mismatch();
    test_overlap();
    test_coverage();
    test_duplicate_names();
    test_atomic_replace();
    test_atomic_failures();
    test_zero_copy();
    test_misaligned_copy();
    test_device_tensors();
    test_python_fixtures();
    test_python_reads_ours();
}
