#include "data/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/check.h"
#include "core/files.h"
#include "core/image.h"
#include "core/rng.h"
#include "core/utf8.h"
#include "data/image_io.h"

// --- names -----------------------------------------------------------------------

typedef enum { KIND_IMAGE, KIND_CAPTION, KIND_UNSUPPORTED_IMAGE, KIND_OTHER } file_kind;

static const char *extension(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot ? dot + 1 : "";
}

static bool extension_in(const char *name, const char *const *list) {
    for (; *list; list++)
        if (strcasecmp(extension(name), *list) == 0) return true;
    return false;
}

static file_kind kind_of(const char *name) {
    static const char *const images[] = {"jpg", "jpeg", "jpe", "jfif", "png", NULL};
    static const char *const unsupported[] = {"webp", "gif",  "bmp",  "tif", "tiff",
                                              "heic", "heif", "avif", "jxl", NULL};
    static const char *const captions[] = {"txt", NULL};
    return extension_in(name, images)        ? KIND_IMAGE
           : extension_in(name, captions)    ? KIND_CAPTION
           : extension_in(name, unsupported) ? KIND_UNSUPPORTED_IMAGE
                                             : KIND_OTHER;
}

// Whether a and b are the same name up to their extensions ("00.jpg" and "00.txt").
static bool same_stem(const char *a, const char *b) {
    size_t na = strlen(a) - strlen(extension(a)), nb = strlen(b) - strlen(extension(b));
    return na == nb && strncmp(a, b, na) == 0;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// The folder's entries, less those starting with '.', sorted by name into *names.
// Their count, or -1 with err_msg.
static int list_folder(const char *dir, char ***names) {
    *names = NULL;
    DIR *d = opendir(dir);
    if (!d) {
        err_set("%s: cannot open the folder: %s", dir, strerror(errno));
        return -1;
    }
    int n = 0, cap = 0;
    errno = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            *names = realloc(*names, (size_t)cap * sizeof **names);
            CHECK(*names, "out of memory listing %s", dir);
        }
        (*names)[n++] = strdup(de->d_name);
    }
    int failed = errno;
    closedir(d);
    if (failed) {
        for (int i = 0; i < n; i++) free((*names)[i]);
        free(*names);
        *names = NULL;
        err_set("%s: cannot list the folder: %s", dir, strerror(failed));
        return -1;
    }
    if (n > 1) qsort(*names, (size_t)n, sizeof **names, compare_names);  // an empty list is NULL
    return n;
}

// --- notes -----------------------------------------------------------------------

static void note(dataset_report *report, note_level level, const char *fmt, ...) PRINTF_LIKE(3, 4);
static void note(dataset_report *report, note_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *message;
    CHECK(vasprintf(&message, fmt, ap) >= 0, "out of memory");
    va_end(ap);
    report->notes = realloc(report->notes, (size_t)(report->n_notes + 1) * sizeof *report->notes);
    CHECK(report->notes, "out of memory");
    report->notes[report->n_notes++] = (dataset_note){level, message};
}

// The scan's state: what is being built and how unusable images are reported.
typedef struct {
    const char *dir;
    bool strict;
    dataset_report *report;
    int images;                // image files seen, usable or not
    int unusable;              // images that cannot be used
    char first_unusable[512];  // the first one's message
} scan;

// An image that cannot be used: an error in strict mode, else skipped with a warning.
static void unusable(scan *s, const char *why) {
    if (s->unusable++ == 0) snprintf(s->first_unusable, sizeof s->first_unusable, "%s", why);
    if (s->strict)
        note(s->report, NOTE_ERROR, "%s", why);
    else
        note(s->report, NOTE_WARNING, "%s; skipping the image", why);
}

// --- captions --------------------------------------------------------------------

// A caption file's text made one line: without a UTF-8 byte order mark, surrounding
// whitespace dropped, each line break with the blanks around it one space. In place;
// returns text.
static char *clean_caption(char *text) {
    static const char blanks[] = " \t\r\n\v\f", bom[] = "\xef\xbb\xbf";
    char *start = strncmp(text, bom, 3) == 0 ? text + 3 : text;
    start += strspn(start, blanks);
    char *out = text;
    for (const char *p = start; *p;) {
        if (*p == '\r' || *p == '\n') {
            while (out > text && (out[-1] == ' ' || out[-1] == '\t')) out--;
            p += strspn(p, blanks);
            *out++ = ' ';
        } else {
            *out++ = *p++;
        }
    }
    while (out > text && strchr(blanks, out[-1])) out--;
    *out = '\0';
    return text;
}

// The caption of image `name`: its caption file among names, else the default.
// NULL (with a note) when there is neither or the file cannot be read.
static char *caption_for(scan *s, const char *name, char *const *names, int n, const char *default_caption) {
    for (int i = 0; i < n; i++) {
        if (kind_of(names[i]) != KIND_CAPTION || !same_stem(names[i], name)) continue;
        char path[PATH_MAX], *text;
        snprintf(path, sizeof path, "%s/%s", s->dir, names[i]);
        if (read_text_file(path, &text, NULL) != 0) {
            unusable(s, err_msg());
            return NULL;
        }
        size_t bad;
        if (!utf8_valid(text, &bad)) {
            char why[PATH_MAX + 96];
            snprintf(why, sizeof why, "%s: the caption is not UTF-8 text (byte %zu); save it as UTF-8", path, bad);
            unusable(s, why);
            free(text);
            return NULL;
        }
        if (!*clean_caption(text))
            note(s->report, NOTE_WARNING, "%s: empty caption; the image trains with an empty prompt", path);
        return text;
    }
    if (default_caption) return strdup(default_caption);
    char why[PATH_MAX + 128];
    snprintf(why, sizeof why, "%s/%s: no caption: no %.*s.txt beside it and no default prompt", s->dir, name,
             (int)(strlen(name) - strlen(extension(name)) - 1), name);
    unusable(s, why);
    return NULL;
}

// --- the scan --------------------------------------------------------------------

// Looks at one entry; adds it to ds when it is a usable image.
static void scan_entry(scan *s, dataset *ds, char *const *names, int n, int i, const char *default_caption) {
    const char *name = names[i];
    char path[PATH_MAX], why[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/%s", s->dir, name);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        note(s->report, NOTE_WARNING, "%s: a folder; sub-folders are not scanned", path);
        return;
    }
    switch (kind_of(name)) {
        case KIND_CAPTION:
            for (int j = 0; j < n; j++)
                if (kind_of(names[j]) == KIND_IMAGE && same_stem(names[j], name)) return;
            note(s->report, NOTE_WARNING, "%s: a caption without an image of the same name; ignored", path);
            return;
        case KIND_OTHER:
            note(s->report, NOTE_WARNING,
                 "%s: neither an image (.jpg, .jpeg, .png) nor a caption (.txt); ignored", path);
            return;
        case KIND_UNSUPPORTED_IMAGE:
            s->images++;
            snprintf(why, sizeof why, "%s: .%s images are not supported: convert it to PNG or JPEG", path,
                     extension(name));
            unusable(s, why);
            return;
        case KIND_IMAGE:
            break;
    }
    s->images++;
    image_u8 img;
    if (image_load(path, &img) != 0) {
        unusable(s, err_msg());
        return;
    }
    char *caption = caption_for(s, name, names, n, default_caption);
    if (caption) {
        ds->images = realloc(ds->images, (size_t)(ds->n_images + 1) * sizeof *ds->images);
        CHECK(ds->images, "out of memory");
        ds->images[ds->n_images++] = (dataset_image){strdup(path), caption, img.width, img.height};
    }
    image_free(&img);
}

int dataset_open(dataset *ds, const char *dir, const char *default_caption, int repeats, bool strict,
                 dataset_report *report) {
    CHECK(repeats >= 1, "repeats %d", repeats);
    *ds = (dataset){0};
    *report = (dataset_report){0};
    char **names;
    int n = list_folder(dir, &names);
    if (n < 0) return -1;
    scan s = {.dir = dir, .strict = strict, .report = report};
    for (int i = 0; i < n; i++) scan_entry(&s, ds, names, n, i, default_caption);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);

    ds->dir = strdup(dir);
    ds->repeats = repeats;
    if (strict && s.unusable == 1) {
        err_set("%s", s.first_unusable);
    } else if (strict && s.unusable > 1) {
        err_set("%s: %d unusable images (strict mode); the first: %s", dir, s.unusable, s.first_unusable);
    } else if (ds->n_images == 0) {
        if (s.images == 0)
            err_set("%s: no images (.jpg, .jpeg, .png) in the folder", dir);
        else
            err_set("%s: none of its %d images can be used", dir, s.images);
    } else if ((long long)ds->n_images * repeats > INT_MAX) {
        err_set("%s: %d images repeated %d times make too many samples per epoch", dir, ds->n_images,
                repeats);
    } else {
        ds->n_items = ds->n_images * repeats;
        return 0;
    }
    dataset_free(ds);
    return -1;
}

void dataset_free(dataset *ds) {
    for (int i = 0; i < ds->n_images; i++) {
        free(ds->images[i].path);
        free(ds->images[i].caption);
    }
    free(ds->images);
    free(ds->dir);
    *ds = (dataset){0};
}

void dataset_report_free(dataset_report *report) {
    for (int i = 0; i < report->n_notes; i++) free(report->notes[i].message);
    free(report->notes);
    *report = (dataset_report){0};
}

void dataset_epoch_order(const dataset *ds, uint64_t seed, uint32_t epoch, int *out) {
    for (int i = 0; i < ds->n_items; i++) out[i] = i % ds->n_images;
    rng_stream s = {.seed = seed, .offset = (uint64_t)epoch << 32};
    for (int i = ds->n_items - 1; i > 0; i--) {
        int j = (int)rng_below(&s, (uint32_t)i + 1);
        int t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}
