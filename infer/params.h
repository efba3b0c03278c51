// A model's parameters by canonical name, and loading them from checkpoint files.
//
// Model code registers each parameter as it builds its modules (params_push/pop
// give the nesting, as torch's module names do): the canonical namespace is
// diffusers' module names under the component's name, "unet.down_blocks.0.
// resnets.0.conv1.weight". A weight_index maps those names to tensors in opened
// safetensors files, either directly (a diffusers folder) or through a name map
// (an original single-file checkpoint). params_load then fills every registered
// parameter, converting dtype and layout once, and reports what it used, what was
// missing and what was left over.
#pragma once
#include <stdbool.h>

#include "core/check.h"
#include "kernels/tensor.h"
#include "kernels/tensor_file.h"

typedef enum {
    PARAM_PLAIN,   // stored as the checkpoint stores it
    PARAM_LINEAR,  // [out, in]; a 1x1 conv's [out, in, 1, 1] in the file is accepted
    PARAM_CONV,    // file [Cout, Cin, KH, KW] -> ours [Cout, KH, KW, Cin]
} param_kind;

struct nn_linear;

typedef struct {
    char *name;     // canonical full name
    tensor **slot;  // where the loaded tensor goes (owned by the param_set once filled)
    param_kind kind;
    struct nn_linear *linear;  // the linear layer this is the weight of (adapters attach there)
    int ndim;
    int64_t shape[4];  // as the checkpoint stores it (torch layout)
} param;

#define PARAM_NAME_MAX 256
#define PARAM_DEPTH_MAX 16

typedef struct {
    param *items;
    int count, cap;
    dtype dt;    // float parameters are converted to this dtype at load
    device dev;  // and placed on this device
    char prefix[PARAM_NAME_MAX];
    int depth;
    int prefix_len[PARAM_DEPTH_MAX];
} param_set;

void params_init(param_set *ps, dtype dt, device dev);
// Frees the registry and every loaded parameter tensor; call it before freeing the
// model structs that hold the slots.
void params_free(param_set *ps);
// Enters a submodule: later names get "<name>." in front until the matching pop.
void params_push(param_set *ps, const char *fmt, ...) PRINTF_LIKE(2, 3);
void params_pop(param_set *ps);
// Registers the parameter "<prefix><name>" of the given checkpoint shape.
param *params_add(param_set *ps, tensor **slot, param_kind kind, const char *name, int ndim,
                  const int64_t *shape);
const param *params_find(const param_set *ps, const char *name);
int64_t params_numel(const param_set *ps);

// --- where weights come from -------------------------------------------------------------

typedef struct {
    char *name;  // canonical full name
    st_file *file;
    const st_entry *entry;
    const char *file_path;
    bool used;
} weight_ref;

typedef struct {
    weight_ref *refs;
    int count, cap;
    bool sorted;
    // Keys of the files that no name map knew (single files only).
    char **unmapped;
    int n_unmapped;
    st_file **files;  // one reference each
    char **paths;
    char **prefixes;  // the prefix each file's tensors are indexed under ("" for a mapped file)
    int n_files;
} weight_index;

void weight_index_init(weight_index *wi);
void weight_index_free(weight_index *wi);
// Opens path and indexes every tensor as "<prefix><key>". 0, or -1 with err_msg().
int weight_index_add_file(weight_index *wi, const char *path, const char *prefix);
// A map from a file's key names to canonical names (an original single-file
// checkpoint's, say), sorted by file key for lookup.
typedef struct {
    char *file_key, *canonical;
} name_pair;
typedef struct {
    name_pair *pairs;
    int count, cap;
    bool sorted;
} name_map;
void name_map_add(name_map *nm, const char *file_key, const char *canonical);
const char *name_map_lookup(name_map *nm, const char *file_key);  // NULL when unknown
void name_map_free(name_map *nm);

// Takes a file reference and indexes the keys the map knows under their canonical
// names; other keys are kept as unmapped (reported as unexpected).
void weight_index_add_mapped(weight_index *wi, st_file *f, const char *path, name_map *nm);
const weight_ref *weight_index_find(weight_index *wi, const char *name);

typedef struct {
    int used;        // parameters filled
    int missing;     // registered but absent from every file
    int unexpected;  // tensors in the files that no parameter took
    char first_missing[PARAM_NAME_MAX];
    char first_unexpected[PARAM_NAME_MAX];
} load_report;

// Fills every parameter under `prefix` (all when "") from the index. Unexpected
// tensors are counted among the index's names under the same prefix plus the
// unmapped keys. 0, or -1 with err_msg() on a missing tensor, a shape that does not
// fit or a dtype that does not convert (the message names the tensor and its file: for
// a missing one, the file indexed under the component's prefix that lacks it).
int params_load(param_set *ps, weight_index *wi, const char *prefix, load_report *rep);
// One line: "unet: 686 tensors used, 0 missing, 1 unexpected (first: ...)".
void load_report_print(const load_report *rep, const char *what);
