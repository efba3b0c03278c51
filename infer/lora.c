#include "infer/lora.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/check.h"
#include "core/files.h"
#include "core/half.h"
#include "kernels/ops.h"

#define UNET_PREFIX "unet."
#define TEXT_PREFIX "text_encoder."
#define PEFT_MODEL_PREFIX "base_model.model."  // PEFT's save_pretrained
#define METADATA_KEY "lora_adapter_metadata"  // newer diffusers' PEFT config in the file

// --- names --------------------------------------------------------------------------------------

typedef enum { COMP_UNET, COMP_TEXT, COMP_COUNT } component;
static const char *const comp_prefix[COMP_COUNT] = {UNET_PREFIX, TEXT_PREFIX};

// The component a canonical name belongs to, and the name inside it; -1 for others.
static int component_of(const char *name, const char **inner) {
    *inner = name;
    for (int c = 0; c < COMP_COUNT; c++) {
        size_t n = strlen(comp_prefix[c]);
        if (strncmp(name, comp_prefix[c], n) == 0) {
            *inner = name + n;
            return c;
        }
    }
    return -1;
}

static bool fits(int n, size_t len) { return n > 0 && (size_t)n < len; }

bool lora_kohya_name(const char *module, char *out, size_t out_len) {
    const char *inner;
    int c = component_of(module, &inner);
    if (c < 0 || !fits(snprintf(out, out_len, "%s%s", c == COMP_UNET ? "lora_unet_" : "lora_te_", inner),
                       out_len))
        return false;
    // kohya joins the module path with '_'; names with '_' of their own (to_q,
    // down_blocks) make that ambiguous, which is why loading inverts this function.
    for (char *p = out; *p; p++)
        if (*p == '.') *p = '_';
    return true;
}

bool lora_peft_name(const char *module, char *out, size_t out_len) {
    const char *inner;
    return component_of(module, &inner) >= 0 && fits(snprintf(out, out_len, "%s", module), out_len);
}

bool lora_conv_1x1(const sd_model *m, const char *module) {
    const char *inner;
    return component_of(module, &inner) == COMP_UNET && !m->unet_cfg.use_linear_projection &&
           (ends_with(inner, ".proj_in") || ends_with(inner, ".proj_out"));
}

// The older diffusers spellings of an attention projection: the UNet's attention
// processors (<attention>.processor.to_q, then "_lora.down.weight"; to_out.0 is
// "to_out") and the text encoder's (<layer>.self_attn.to_q for q_proj). Returns the
// short name and sets *parent_len to the length of the module name it follows.
static const char *old_attention_name(int comp, const char *module, size_t *parent_len) {
    static const char *const unet[][2] = {{".to_q", "to_q"}, {".to_k", "to_k"}, {".to_v", "to_v"},
                                          {".to_out.0", "to_out"}};
    static const char *const text[][2] = {{".self_attn.q_proj", "to_q"}, {".self_attn.k_proj", "to_k"},
                                          {".self_attn.v_proj", "to_v"}, {".self_attn.out_proj", "to_out"}};
    const char *const(*table)[2] = comp == COMP_UNET ? unet : text;
    for (int i = 0; i < 4; i++) {
        if (!ends_with(module, table[i][0])) continue;
        *parent_len = strlen(module) - strlen(table[i][0]) + (comp == COMP_TEXT ? strlen(".self_attn") : 0);
        return table[i][1];
    }
    return NULL;
}

// Every spelling of one module that the layouts use, to canonical parameter name.
static void add_spellings(name_map *nm, const char *module, const char *param_name) {
    char key[2 * PARAM_NAME_MAX];
    const char *inner;
    int comp = component_of(module, &inner);
    CHECK(comp >= 0, "%s is not a UNet or text encoder module", module);
    CHECK(lora_peft_name(module, key, sizeof key), "%s", module);
    name_map_add(nm, key, param_name);
    snprintf(key, sizeof key, PEFT_MODEL_PREFIX "%s", inner);
    name_map_add(nm, key, param_name);
    CHECK(lora_kohya_name(module, key, sizeof key), "%s", module);
    name_map_add(nm, key, param_name);
    if (comp == COMP_TEXT) {  // diffusers' convert_state_dict_to_kohya writes lora_te1_ for SD1
        char te1[sizeof key + 1];
        snprintf(te1, sizeof te1, "lora_te1_%s", key + strlen("lora_te_"));
        name_map_add(nm, te1, param_name);
    }
    size_t parent;
    const char *proj = old_attention_name(comp, module, &parent);
    if (proj && comp == COMP_UNET) {
        snprintf(key, sizeof key, "%.*s.processor.%s", (int)parent, module, proj);
        name_map_add(nm, key, param_name);
        name_map_add(nm, key + strlen(UNET_PREFIX), param_name);  // save_attn_procs: no prefix
    } else if (proj) {
        snprintf(key, sizeof key, "%.*s.%s", (int)parent, module, proj);
        name_map_add(nm, key, param_name);
    }
}

// Spellings of every UNet and text encoder layer a LoRA may name: the linear layers,
// and the convolutions (so a LoCon tensor is reported as such, not as unknown).
static void build_name_map(name_map *nm, const param_set *ps) {
    char module[PARAM_NAME_MAX];
    for (int i = 0; i < ps->count; i++) {
        const param *p = &ps->items[i];
        const char *inner;
        if (component_of(p->name, &inner) < 0 || !ends_with(p->name, ".weight") ||
            !(p->linear || p->kind == PARAM_CONV))
            continue;
        snprintf(module, sizeof module, "%.*s", (int)(strlen(p->name) - strlen(".weight")), p->name);
        add_spellings(nm, module, p->name);
    }
}

// --- reading the file ---------------------------------------------------------------------------

typedef enum { ROLE_DOWN, ROLE_UP, ROLE_ALPHA, ROLE_UNSUPPORTED } role;

#define DORA "DoRA (weight-decomposed LoRA)"

// What the end of a tensor name says it is. The module's spelling is what precedes it.
static const struct {
    const char *suffix;
    role role;
    const char *layout;       // the report's format; NULL: says nothing about the layout
    const char *unsupported;  // ROLE_UNSUPPORTED: what the tensor belongs to
} suffixes[] = {
    {".lora_A.weight", ROLE_DOWN, "peft", NULL},
    {".lora_B.weight", ROLE_UP, "peft", NULL},
    {".lora_down.weight", ROLE_DOWN, "kohya", NULL},
    {".lora_up.weight", ROLE_UP, "kohya", NULL},
    {".lora.down.weight", ROLE_DOWN, "diffusers-old", NULL},
    {".lora.up.weight", ROLE_UP, "diffusers-old", NULL},
    {"_lora.down.weight", ROLE_DOWN, "diffusers-old", NULL},  // to_q_lora
    {"_lora.up.weight", ROLE_UP, "diffusers-old", NULL},
    {".lora_linear_layer.down.weight", ROLE_DOWN, "diffusers-old", NULL},
    {".lora_linear_layer.up.weight", ROLE_UP, "diffusers-old", NULL},
    {".alpha", ROLE_ALPHA, NULL, NULL},
    {".dora_scale", ROLE_UNSUPPORTED, NULL, DORA},
    {".lora_magnitude_vector", ROLE_UNSUPPORTED, NULL, DORA},
    {".lora_magnitude_vector.weight", ROLE_UNSUPPORTED, NULL, DORA},
    {".lora_mid.weight", ROLE_UNSUPPORTED, NULL, "a Tucker-decomposed LoCon (lora_mid)"},
};

// One module's tensors as the file has them.
typedef struct {
    const st_entry *t[3];     // by role: down, up, alpha
    const char *unsupported;  // why the module cannot be applied, or NULL
    bool kohya;               // named the kohya way (alpha defaults to the rank)
    int rank;
    double alpha;  // the alpha tensor's value, when there is one
    float scale;
} pending;

// What a PEFT config says about one component's alphas.
typedef struct {
    bool has_alpha, rslora;
    double alpha;
    const cJSON *pattern;  // alpha_pattern: module name (or its tail) -> alpha
} alpha_rule;

typedef struct {
    const char *path;
    st_file *f;
    const param_set *ps;
    bool lenient;
    lora_report rep;
    pending *mods;  // by parameter index in ps
    cJSON *config;  // the PEFT config found, or NULL
    alpha_rule rules[COMP_COUNT];
} loader;

// A tensor or module that cannot be applied: in strict mode the error (-1), in
// lenient mode a skip, counted, whose first message is kept (0).
static int reject(loader *L, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int reject(loader *L, const char *fmt, ...) {
    char msg[2048];
    int n = snprintf(msg, sizeof msg, "%s: ", L->path);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof msg) vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    if (!L->lenient) {
        err_set("%s", msg);
        return -1;
    }
    // Kept cut to the report's size: it identifies the problem; strict mode has it whole.
    if (!L->rep.skipped++)
        snprintf(L->rep.first_skipped, sizeof L->rep.first_skipped, "%.*s",
                 (int)sizeof L->rep.first_skipped - 1, msg);
    return 0;
}

static void note_format(loader *L, const char *format) {
    if (!format) return;
    if (!L->rep.format) L->rep.format = format;
    else if (strcmp(L->rep.format, format) != 0) L->rep.format = "mixed";
}

// SDXL's second text encoder gives an SDXL file away; the rest of it would fail
// key by key, so it is refused as a whole.
static int refuse_sdxl(loader *L) {
    for (int i = 0; i < st_count(L->f); i++) {
        const char *k = st_entry_at(L->f, i)->name;
        if (strncmp(k, "lora_te2_", 9) == 0 || strncmp(k, "text_encoder_2.", 15) == 0) {
            err_set("%s: an SDXL LoRA (%s is for SDXL's second text encoder); this model is SD 1.x",
                    L->path, k);
            return -1;
        }
    }
    return 0;
}

// The unknown key's message, with a hint for kohya files in the original UNet's names.
static int reject_unknown(loader *L, const char *key) {
    bool ldm = strncmp(key, "lora_unet_", 10) == 0 &&
               (strstr(key, "input_blocks") || strstr(key, "middle_block") || strstr(key, "output_blocks"));
    return reject(L, "tensor %s matches no module of the model%s", key,
                  ldm ? " (original LDM block names are not supported; diffusers names are)" : "");
}

static int classify(loader *L, name_map *nm, const st_entry *e) {
    char module[2 * PARAM_NAME_MAX];
    for (size_t s = 0; s < sizeof suffixes / sizeof *suffixes; s++) {
        if (!ends_with(e->name, suffixes[s].suffix)) continue;
        size_t n = strlen(e->name) - strlen(suffixes[s].suffix);
        if (n >= sizeof module) break;
        snprintf(module, sizeof module, "%.*s", (int)n, e->name);
        const char *canonical = name_map_lookup(nm, module);
        if (!canonical) break;
        const param *p = params_find(L->ps, canonical);
        CHECK(p, "name map gives %s, which is not a parameter", canonical);
        pending *m = &L->mods[p - L->ps->items];
        if (suffixes[s].role == ROLE_UNSUPPORTED) {
            m->unsupported = suffixes[s].unsupported;
            return 0;
        }
        if (m->t[suffixes[s].role])
            return reject(L, "tensors %s and %s are the same weight of %s", m->t[suffixes[s].role]->name,
                          e->name, canonical);
        m->t[suffixes[s].role] = e;
        // Only kohya's spellings start so; its files default alpha to the rank.
        if (suffixes[s].role == ROLE_DOWN) m->kohya = strncmp(e->name, "lora_", 5) == 0;
        note_format(L, suffixes[s].layout);
        return 0;
    }
    return reject_unknown(L, e->name);
}

// --- the PEFT config: alpha, alpha_pattern, use_rslora ------------------------------------------

// root[prefix + name], or NULL.
static const cJSON *config_item(const cJSON *root, const char *prefix, const char *name) {
    char key[64];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    return cJSON_GetObjectItemCaseSensitive(root, key);
}

// Alphas and scales are multiplied into float weights: a value that is not a finite
// float would make every output NaN or inf.
static bool finite_float(double v) { return isfinite(v) && fabs(v) <= FLT_MAX; }

// Reads one component's rule (prefix "unet." or "text_encoder." in diffusers' metadata,
// "" in adapter_config.json). where names the source in messages.
static int read_alpha_rule(const cJSON *root, const char *prefix, const char *where, alpha_rule *r) {
    *r = (alpha_rule){0};
    const cJSON *alpha = config_item(root, prefix, "lora_alpha");
    const cJSON *pattern = config_item(root, prefix, "alpha_pattern");
    const cJSON *rslora = config_item(root, prefix, "use_rslora");
    const cJSON *dora = config_item(root, prefix, "use_dora");
    if (alpha && !cJSON_IsNumber(alpha)) {
        err_set("%s: %slora_alpha is not a number", where, prefix);
        return -1;
    }
    if (alpha && !finite_float(alpha->valuedouble)) {
        err_set("%s: %slora_alpha %g is not a finite float", where, prefix, alpha->valuedouble);
        return -1;
    }
    if (pattern && !cJSON_IsNull(pattern)) {
        bool ok = cJSON_IsObject(pattern);
        for (const cJSON *it = ok ? pattern->child : NULL; it; it = it->next) ok = ok && cJSON_IsNumber(it);
        if (!ok) {
            err_set("%s: %salpha_pattern is not an object of numbers", where, prefix);
            return -1;
        }
        for (const cJSON *it = pattern->child; it; it = it->next)
            if (!finite_float(it->valuedouble)) {
                err_set("%s: %salpha_pattern[\"%s\"] %g is not a finite float", where, prefix, it->string,
                        it->valuedouble);
                return -1;
            }
        r->pattern = pattern;
    }
    if (cJSON_IsTrue(dora)) {
        err_set("%s: %suse_dora is true; " DORA " is not supported", where, prefix);
        return -1;
    }
    r->has_alpha = alpha != NULL;
    r->alpha = alpha ? alpha->valuedouble : 0;
    r->rslora = cJSON_IsTrue(rslora);
    return 0;
}

// The PEFT config, if the file has one: diffusers' metadata (keys per component) or
// the adapter_config.json that PEFT's save_pretrained puts beside a base_model.model
// file (one component, unprefixed keys).
static int read_config(loader *L) {
    const char *meta = st_meta(L->f, METADATA_KEY);
    char where[1100];
    if (meta) {
        snprintf(where, sizeof where, "%s: metadata %s", L->path, METADATA_KEY);
        L->config = cJSON_Parse(meta);
        if (!cJSON_IsObject(L->config)) {
            err_set("%s is not a JSON object", where);
            return -1;
        }
        for (int c = 0; c < COMP_COUNT; c++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "%s", comp_prefix[c]);
            // A model's own save_lora_adapter writes the keys without a prefix.
            if (!config_item(L->config, prefix, "r") && !config_item(L->config, prefix, "lora_alpha"))
                prefix[0] = 0;
            if (read_alpha_rule(L->config, prefix, where, &L->rules[c])) return -1;
        }
        return 0;
    }
    bool peft_model = false;
    for (int i = 0; i < st_count(L->f) && !peft_model; i++)
        peft_model = strncmp(st_entry_at(L->f, i)->name, PEFT_MODEL_PREFIX, strlen(PEFT_MODEL_PREFIX)) == 0;
    if (!peft_model) return 0;
    const char *slash = strrchr(L->path, '/');
    snprintf(where, sizeof where, "%.*sadapter_config.json", slash ? (int)(slash - L->path + 1) : 0, L->path);
    int rc = read_json_object(where, &L->config);
    if (rc) return rc < 0 ? -1 : 0;  // none beside the file: the defaults apply
    for (int c = 0; c < COMP_COUNT; c++)
        if (read_alpha_rule(L->config, "", where, &L->rules[c])) return -1;
    return 0;
}

// The pattern's alpha for a module (name inside its component): PEFT matches a key
// against the whole name or a tail after a '.'; the first match counts.
static const cJSON *pattern_alpha(const cJSON *pattern, const char *inner) {
    for (const cJSON *it = pattern ? pattern->child : NULL; it; it = it->next) {
        size_t n = strlen(inner), k = strlen(it->string);
        bool tail = n > k && inner[n - k - 1] == '.' && ends_with(inner, it->string);
        if (tail || strcmp(inner, it->string) == 0) return it;
    }
    return NULL;
}

// --- checking and scaling each module -----------------------------------------------------------

static void shape_text(char *buf, size_t len, const st_entry *e) {
    size_t at = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < e->ndim && at < len; d++)
        at += (size_t)snprintf(buf + at, len - at, d ? ", %lld" : "%lld", (long long)e->shape[d]);
    if (at < len) snprintf(buf + at, len - at, "]");
}

// A down or up matrix [rows, cols], or the same as a 1x1 convolution [rows, cols, 1, 1].
static bool matrix_shape(const st_entry *e, int64_t *rows, int64_t *cols) {
    if (e->ndim != 2 && !(e->ndim == 4 && e->shape[2] == 1 && e->shape[3] == 1)) return false;
    *rows = e->shape[0];
    *cols = e->shape[1];
    return true;
}

static bool float_entry(const st_entry *e) { return e->dtype >= 0 && dtype_is_float((dtype)e->dtype); }

// The value of a one-element tensor of any numeric dtype (kohya writes alphas as F32
// or F16, converters F64 or integers; diffusers and ComfyUI read any with .item());
// false for a dtype that holds no plain number (BOOL, F8, complex). Safetensors data
// is little-endian, as the host is (st_tensor maps it as is).
static bool scalar_value(const st_file *f, const st_entry *e, double *v) {
    const unsigned char *p = st_data(f, e);
    const char *d = e->dtype_str;
    union {
        double f64;
        float f32;
        uint16_t u16;
        int64_t i64;
        uint64_t u64;
        int32_t i32;
        uint32_t u32;
        int16_t i16;
        int8_t i8;
        uint8_t u8;
    } x;
    memcpy(&x, p, e->end - e->begin < sizeof x ? e->end - e->begin : sizeof x);
    if (strcmp(d, "F64") == 0) *v = x.f64;
    else if (strcmp(d, "F32") == 0) *v = x.f32;
    else if (strcmp(d, "F16") == 0) *v = f16_to_f32(x.u16);
    else if (strcmp(d, "BF16") == 0) *v = bf16_to_f32(x.u16);
    else if (strcmp(d, "I64") == 0) *v = (double)x.i64;
    else if (strcmp(d, "U64") == 0) *v = (double)x.u64;
    else if (strcmp(d, "I32") == 0) *v = x.i32;
    else if (strcmp(d, "U32") == 0) *v = x.u32;
    else if (strcmp(d, "I16") == 0) *v = x.i16;
    else if (strcmp(d, "U16") == 0) *v = x.u16;
    else if (strcmp(d, "I8") == 0) *v = x.i8;
    else if (strcmp(d, "U8") == 0) *v = x.u8;
    else return false;
    return true;
}

// Checks one module's tensors against its layer: 1 when it will be applied, 0 when
// skipped (lenient), -1 on an error (strict).
static int check_module(loader *L, const param *p, pending *m) {
    const st_entry *down = m->t[ROLE_DOWN], *up = m->t[ROLE_UP], *alpha = m->t[ROLE_ALPHA];
    const st_entry *any = down ? down : up ? up : alpha;
    char got[96];
    if (!any) return reject(L, "%s for %s is not supported", m->unsupported, p->name);
    if (m->unsupported) return reject(L, "%s: %s is not supported", any->name, m->unsupported);
    if (!down || !up)
        return reject(L, "%s has no matching %s tensor", any->name, down ? "up (lora_B)" : "down (lora_A)");
    if (!p->linear) {
        shape_text(got, sizeof got, down);
        return reject(L, "%s: a LoRA on the convolution %s (LoCon, down %s) is not supported", down->name,
                      p->name, got);
    }
    for (int i = ROLE_DOWN; i <= ROLE_UP; i++)
        if (!float_entry(m->t[i]))
            return reject(L, "tensor %s is %s, not a float tensor", m->t[i]->name, m->t[i]->dtype_str);
    int64_t r, in, out, r_up;
    int64_t need_out = p->shape[0], need_in = p->shape[1];
    if (!matrix_shape(down, &r, &in) || in != need_in || r < 1) {
        shape_text(got, sizeof got, down);
        return reject(L, "tensor %s has shape %s; %s [%lld, %lld] needs [rank, %lld]", down->name, got, p->name,
                      (long long)need_out, (long long)need_in, (long long)need_in);
    }
    if (!matrix_shape(up, &out, &r_up) || out != need_out || r_up != r) {
        shape_text(got, sizeof got, up);
        return reject(L, "tensor %s has shape %s; %s [%lld, %lld] with rank %lld needs [%lld, %lld]", up->name,
                      got, p->name, (long long)need_out, (long long)need_in, (long long)r, (long long)need_out,
                      (long long)r);
    }
    int64_t numel = 1;
    for (int d = 0; alpha && d < alpha->ndim; d++) numel *= alpha->shape[d];
    if (alpha && numel != 1) {
        shape_text(got, sizeof got, alpha);
        return reject(L, "tensor %s has shape %s; an alpha is one number", alpha->name, got);
    }
    if (alpha && !scalar_value(L->f, alpha, &m->alpha))
        return reject(L, "tensor %s is %s; an alpha is a number", alpha->name, alpha->dtype_str);
    if (alpha && !finite_float(m->alpha))
        return reject(L, "tensor %s: alpha %g is not a finite float", alpha->name, m->alpha);
    m->rank = (int)r;
    return 1;
}

// The rank most modules of a component have (diffusers' lora_alpha for files
// without one); ties go to the smaller rank.
static int most_common_rank(const loader *L, int comp) {
    int best = 0, best_count = 0;
    for (int i = 0; i < L->ps->count; i++) {
        const char *inner;
        int r = L->mods[i].rank, count = 0;
        if (!r || component_of(L->ps->items[i].name, &inner) != comp) continue;
        for (int j = 0; j < L->ps->count; j++)
            count += L->mods[j].rank == r && component_of(L->ps->items[j].name, &inner) == comp;
        if (count > best_count || (count == best_count && r < best)) best = r, best_count = count;
    }
    return best;
}

// Each module's multiplier * alpha / rank; one that overflows a float is refused
// (strict: -1) or its module skipped (lenient).
static int set_scales(loader *L, float multiplier) {
    int common[COMP_COUNT];
    for (int c = 0; c < COMP_COUNT; c++) common[c] = most_common_rank(L, c);
    char module[PARAM_NAME_MAX];
    for (int i = 0; i < L->ps->count; i++) {
        pending *m = &L->mods[i];
        if (!m->rank) continue;
        const char *name = L->ps->items[i].name, *inner;
        int comp = component_of(name, &inner);
        const alpha_rule *rule = &L->rules[comp];
        snprintf(module, sizeof module, "%.*s", (int)(strlen(inner) - strlen(".weight")), inner);
        const cJSON *pat = pattern_alpha(rule->pattern, module);
        double alpha = m->t[ROLE_ALPHA] ? m->alpha
                       : pat            ? pat->valuedouble
                       : rule->has_alpha ? rule->alpha
                       : m->kohya       ? m->rank
                                        : common[comp];
        double per_rank = rule->rslora ? sqrt((double)m->rank) : m->rank;
        double scale = multiplier * alpha / per_rank;
        if (!finite_float(scale)) {
            int rc = reject(L, "tensor %s: scale %g (multiplier %g x alpha %g / rank %d) is not a finite float",
                            m->t[ROLE_DOWN]->name, scale, multiplier, alpha, m->rank);
            m->rank = 0;  // not applied
            if (rc) return -1;
            continue;
        }
        m->scale = (float)scale;
    }
    return 0;
}

// --- applying -----------------------------------------------------------------------------------

// The entry as a [rows, cols] matrix in the parameter set's dtype, on its device.
static tensor *load_matrix(loader *L, const st_entry *e) {
    tensor *t = st_load(L->f, e->name, L->ps->dt, L->ps->dev);
    CHECK(t, "%s", err_msg());  // dtype and shape were checked
    tensor *mat = op_reshape(t, SHAPE(e->shape[0], e->shape[1]));
    tensor_free(t);
    return mat;
}

// W += scale * up @ down, computed in W's dtype on W's device.
static void merge(const param *p, tensor *down, tensor *up, float scale) {
    tensor *w = *p->slot;
    CHECK(w, "%s is not loaded", p->name);
    int64_t out = up->shape[0], r = up->shape[1], in = down->shape[1];
    tensor *u = op_reshape(up, SHAPE(1, out, r)), *d = op_reshape(down, SHAPE(1, r, in));
    tensor *delta = op_matmul(u, d);
    delta = nn_replace(delta, op_reshape(delta, SHAPE(out, in)));
    delta = nn_replace(delta, op_scale(delta, scale));
    tensor *merged = op_add(w, delta);
    if (merged->dtype != w->dtype) merged = nn_replace(merged, op_cast(merged, w->dtype));
    tensor_free(u), tensor_free(d), tensor_free(delta);
    tensor_free(w);
    *p->slot = merged;
}

void lora_attach(lora_set *set, nn_linear *target, tensor *down, tensor *up, float scale) {
    nn_lora *a = xcalloc(1, sizeof *a);
    *a = (nn_lora){.down = down, .up = up, .scale = scale};
    nn_lora **end = &target->lora;
    while (*end) end = &(*end)->next;
    *end = a;
    if (set->count == set->cap) {
        set->cap = set->cap ? 2 * set->cap : 64;
        set->items = realloc(set->items, (size_t)set->cap * sizeof *set->items);
        CHECK(set->items, "out of memory");
    }
    set->items[set->count++] = (lora_attachment){.target = target, .lora = a};
}

static void apply(loader *L, lora_set *set, lora_mode mode) {
    autograd_no_grad_begin();  // a merge is not part of any training step
    for (int i = 0; i < L->ps->count; i++) {
        const pending *m = &L->mods[i];
        if (!m->rank) continue;
        const param *p = &L->ps->items[i];
        tensor *down = load_matrix(L, m->t[ROLE_DOWN]), *up = load_matrix(L, m->t[ROLE_UP]);
        if (mode == LORA_MERGE) {
            merge(p, down, up, m->scale);
            tensor_free(down), tensor_free(up);
        } else {
            lora_attach(set, p->linear, down, up, m->scale);
        }
        L->rep.applied++;
    }
    autograd_no_grad_end();
}

// --- the whole load -----------------------------------------------------------------------------

static int read_and_check(loader *L, float scale) {
    if (refuse_sdxl(L) || read_config(L)) return -1;
    name_map nm = {0};
    build_name_map(&nm, L->ps);
    int rc = 0;
    for (int i = 0; i < st_count(L->f) && rc == 0; i++) rc = classify(L, &nm, st_entry_at(L->f, i));
    name_map_free(&nm);
    for (int i = 0; i < L->ps->count && rc == 0; i++) {
        pending *m = &L->mods[i];
        if (!m->t[ROLE_DOWN] && !m->t[ROLE_UP] && !m->t[ROLE_ALPHA] && !m->unsupported) continue;
        int ok = check_module(L, &L->ps->items[i], m);
        if (ok < 0) rc = -1;
        if (ok <= 0) m->rank = 0;  // not applied
    }
    return rc ? rc : set_scales(L, scale);
}

int lora_load(lora_set *set, sd_model *m, const char *path, float scale, lora_mode mode, bool lenient,
              lora_report *rep) {
    loader L = {.path = path, .ps = &m->params, .lenient = lenient};
    if (!finite_float(scale)) {
        err_set("%s: LoRA multiplier %g is not a finite number", path, scale);
        return -1;
    }
    L.f = st_open(path);
    if (!L.f) return -1;
    L.mods = xcalloc((size_t)m->params.count, sizeof *L.mods);
    // Everything is read and checked before the model changes, so a refused file
    // leaves it as it was.
    int rc = read_and_check(&L, scale);
    if (rc == 0) apply(&L, set, mode);
    free(L.mods);
    cJSON_Delete(L.config);
    st_close(L.f);
    if (!L.rep.format) L.rep.format = "none";
    if (rep) *rep = L.rep;
    return rc;
}

void lora_set_free(lora_set *set) {
    for (int i = set->count - 1; i >= 0; i--) {
        lora_attachment *a = &set->items[i];
        nn_lora **link = &a->target->lora;
        while (*link && *link != a->lora) link = &(*link)->next;
        CHECK(*link, "adapter not attached to its layer any more");
        *link = a->lora->next;
        tensor_free(a->lora->down);
        tensor_free(a->lora->up);
        free(a->lora);
    }
    free(set->items);
    *set = (lora_set){0};
}
