// safetensors-info FILE: what a safetensors file holds. Prints the metadata, then
// one line per tensor in data order: name, dtype, shape and its byte range in the
// data section. A file that does not validate gets its one-line error on stderr
// and exit status 1.
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/check.h"
#include "core/safetensors.h"

// Names and metadata are free text from the file; escaping control characters
// keeps one item per line. Returns buf.
static const char *escaped(const char *s, char *buf, size_t size) {
    size_t used = 0;
    for (; *s && used + 5 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            used += (size_t)snprintf(buf + used, size - used, "\\x%02x", c);
        else
            buf[used++] = (char)c;
    }
    buf[used] = '\0';
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: safetensors-info FILE\n");
        return 2;
    }
    st_file *f = st_open(argv[1]);
    if (!f) {
        fprintf(stderr, "%s\n", err_msg());
        return 1;
    }
    printf("%s: %d tensors, %" PRIu64 "-byte header, %" PRIu64 "-byte data section\n", argv[1],
           st_count(f), st_header_size(f), st_data_size(f));
    char key[1024], value[4096], name[1024], shape[200];
    for (int i = 0; i < st_meta_count(f); i++) {
        const char *k = st_meta_key(f, i);
        printf("metadata %s = %s\n", escaped(k, key, sizeof key),
               escaped(st_meta(f, k), value, sizeof value));
    }
    int name_width = 0, shape_width = 0;
    for (int i = 0; i < st_count(f); i++) {
        const st_entry *e = st_entry_at(f, i);
        int n = (int)strlen(escaped(e->name, name, sizeof name));
        int s = (int)strlen(format_shape(shape, sizeof shape, e->ndim, e->shape));
        name_width = n > name_width ? n : name_width;
        shape_width = s > shape_width ? s : shape_width;
    }
    for (int i = 0; i < st_count(f); i++) {
        const st_entry *e = st_entry_at(f, i);
        printf("%-*s  %-11s  %-*s  [%" PRIu64 ", %" PRIu64 ")\n", name_width,
               escaped(e->name, name, sizeof name), e->dtype_str, shape_width,
               format_shape(shape, sizeof shape, e->ndim, e->shape), e->begin, e->end);
    }
    st_close(f);
    return 0;
}
