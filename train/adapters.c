#include "train/adapters.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "kernels/ops.h"
#include "kernels/tensor_file.h"

static bool ends_with_target(const char *module, const cfg_strings *targets) {
    size_t n = strlen(module);
    for (int i = 0; targets && i < targets->count; i++) {
        size_t k = strlen(targets->items[i]);
        if (n > k && module[n - k - 1] == '.' && strcmp(module + n - k, targets->items[i]) == 0) return true;
    }
    return false;
}

// A leaf [rows, cols] in f32 on dev with values from fill (NULL: zeros).
static tensor *leaf(device dev, int64_t rows, int64_t cols, const float *fill) {
    tensor *t = fill ? tensor_from_f32(DT_F32, dev, SHAPE(rows, cols), fill)
                     : tensor_zeros(DT_F32, dev, SHAPE(rows, cols));
    tensor_set_requires_grad(t, true);
    return t;
}

static int count_matches(const sd_model *m, const cfg_strings *targets, const char *component, int *per_target) {
    int n = 0;
    for (int t = 0; targets && t < targets->count; t++) per_target[t] = 0;
    for (int i = 0; i < m->params.count; i++) {
        const param *p = &m->params.items[i];
        if (!p->linear || strncmp(p->name, component, strlen(component)) != 0) continue;
        char module[PARAM_NAME_MAX];
        snprintf(module, sizeof module, "%.*s", (int)(strlen(p->name) - strlen(".weight")), p->name);
        for (int t = 0; targets && t < targets->count; t++) {
            cfg_strings one = {&targets->items[t], 1};
            if (ends_with_target(module, &one)) per_target[t]++, n++;
        }
    }
    return n;
}

static int check_targets(const sd_model *m, const cfg_strings *targets, const char *component) {
    int per[64] = {0};
    CHECK(!targets || targets->count <= 64, "too many targets");
    count_matches(m, targets, component, per);
    for (int t = 0; targets && t < targets->count; t++)
        if (!per[t]) {
            err_set("lora target \"%s\" matches no linear layer of the %s", targets->items[t],
                    strcmp(component, "unet.") == 0 ? "UNet" : "text encoder");
            return -1;
        }
    return 0;
}

// "to_q,to_k,..." ("" for none), allocated.
static char *joined(const cfg_strings *targets) {
    size_t len = 1;
    for (int i = 0; targets && i < targets->count; i++) len += strlen(targets->items[i]) + 1;
    char *s = xcalloc(len, 1);
    for (int i = 0; targets && i < targets->count; i++) {
        if (i) strcat(s, ",");
        strcat(s, targets->items[i]);
    }
    return s;
}

int train_adapters_init(train_adapters *ta, sd_model *m, const cfg_strings *unet_targets,
                        const cfg_strings *te_targets, int rank, float alpha, rng_stream *rng) {
    *ta = (train_adapters){.rank = rank, .alpha = alpha};
    if (check_targets(m, unet_targets, "unet.") || check_targets(m, te_targets, "text_encoder.")) return -1;
    ta->items = xcalloc((size_t)m->params.count, sizeof *ta->items);
    ta->unet_targets = joined(unet_targets);
    ta->te_targets = joined(te_targets);
    const device dev = m->params.dev;
    for (int i = 0; i < m->params.count; i++) {
        const param *p = &m->params.items[i];
        if (!p->linear) continue;
        bool te = strncmp(p->name, "text_encoder.", 13) == 0;
        if (!te && strncmp(p->name, "unet.", 5) != 0) continue;  // never the VAE
        char module[PARAM_NAME_MAX];
        snprintf(module, sizeof module, "%.*s", (int)(strlen(p->name) - strlen(".weight")), p->name);
        if (!ends_with_target(module, te ? te_targets : unet_targets)) continue;
        int64_t out = p->shape[0], in = p->shape[1];
        float *a = xmalloc((size_t)(rank * in) * sizeof *a);
        rng_fill_normal(rng, a, (size_t)(rank * in));
        for (int64_t k = 0; k < rank * in; k++) a[k] /= (float)rank;
        tensor *down = leaf(dev, rank, in, a), *up = leaf(dev, out, rank, NULL);
        free(a);
        lora_attach(&ta->attached, p->linear, down, up, alpha / (float)rank);
        ta->items[ta->count++] = (train_adapter){.module = strdup(module),
                                                 .lora = ta->attached.items[ta->attached.count - 1].lora,
                                                 .text_encoder = te,
                                                 .conv_1x1 = lora_conv_1x1(m, module)};
    }
    return 0;
}

void train_adapters_free(train_adapters *ta) {
    for (int i = 0; i < ta->count; i++) free(ta->items[i].module);
    free(ta->items);
    free(ta->unet_targets);
    free(ta->te_targets);
    lora_set_free(&ta->attached);
    *ta = (train_adapters){0};
}

void train_adapters_set_dropout(train_adapters *ta, float p, uint64_t seed, uint64_t draw) {
    for (int i = 0; i < ta->count; i++) {
        nn_lora *a = ta->items[i].lora;
        a->dropout = p;
        a->dropout_seed = seed;
        a->dropout_offset = (draw * (uint64_t)ta->count + (uint64_t)i) << 32;
    }
}

int train_adapters_tensors(const train_adapters *ta, tensor **out, bool *is_text_encoder) {
    for (int i = 0; i < ta->count; i++) {
        out[2 * i] = ta->items[i].lora->down;
        out[2 * i + 1] = ta->items[i].lora->up;
        if (is_text_encoder) is_text_encoder[2 * i] = is_text_encoder[2 * i + 1] = ta->items[i].text_encoder;
    }
    return 2 * ta->count;
}

// Adds t under name, as [rows, cols, 1, 1] for a 1x1 convolution's adapter.
static void add_matrix(st_writer *w, const char *name, tensor *t, bool conv_1x1) {
    tensor *saved = conv_1x1 ? op_reshape(t, SHAPE(t->shape[0], t->shape[1], 1, 1)) : tensor_retain(t);
    st_writer_add(w, name, saved);
    tensor_free(saved);  // the writer holds its own reference
}

static void add_meta(st_writer *w, const train_adapters *ta, int n_meta, const char *const *keys,
                     const char *const *values) {
    st_writer_meta(w, "sdft_targets", ta->unet_targets);
    st_writer_meta(w, "sdft_text_encoder_targets", ta->te_targets);
    for (int i = 0; i < n_meta; i++) st_writer_meta(w, keys[i], values[i]);
}

int train_adapters_save_peft(const train_adapters *ta, const char *path, int n_meta,
                             const char *const *keys, const char *const *values) {
    st_writer *w = st_writer_new();
    add_meta(w, ta, n_meta, keys, values);
    float fold = ta->alpha / (float)ta->rank;
    autograd_no_grad_begin();
    for (int i = 0; i < ta->count; i++) {
        char name[PARAM_NAME_MAX], key[PARAM_NAME_MAX + 32];
        CHECK(lora_peft_name(ta->items[i].module, name, sizeof name), "%s", ta->items[i].module);
        const train_adapter *a = &ta->items[i];
        snprintf(key, sizeof key, "%s%s", name, LORA_PEFT_DOWN);
        add_matrix(w, key, a->lora->down, a->conv_1x1);
        snprintf(key, sizeof key, "%s%s", name, LORA_PEFT_UP);
        tensor *up = fold == 1.0f ? tensor_retain(a->lora->up) : op_scale(a->lora->up, fold);
        add_matrix(w, key, up, a->conv_1x1);
        tensor_free(up);
    }
    autograd_no_grad_end();
    int rc = st_writer_save(w, path);
    st_writer_free(w);
    return rc;
}

int train_adapters_save_kohya(const train_adapters *ta, const char *path, int n_meta,
                              const char *const *keys, const char *const *values) {
    st_writer *w = st_writer_new();
    char text[64];
    snprintf(text, sizeof text, "%d", ta->rank);
    st_writer_meta(w, "ss_network_dim", text);
    snprintf(text, sizeof text, "%g", ta->alpha);
    st_writer_meta(w, "ss_network_alpha", text);
    st_writer_meta(w, "ss_network_module", "networks.lora");
    add_meta(w, ta, n_meta, keys, values);
    autograd_no_grad_begin();
    for (int i = 0; i < ta->count; i++) {
        char name[PARAM_NAME_MAX], key[PARAM_NAME_MAX + 32];
        CHECK(lora_kohya_name(ta->items[i].module, name, sizeof name), "%s", ta->items[i].module);
        snprintf(key, sizeof key, "%s%s", name, LORA_KOHYA_DOWN);
        add_matrix(w, key, ta->items[i].lora->down, ta->items[i].conv_1x1);
        snprintf(key, sizeof key, "%s%s", name, LORA_KOHYA_UP);
        add_matrix(w, key, ta->items[i].lora->up, ta->items[i].conv_1x1);
        snprintf(key, sizeof key, "%s%s", name, LORA_KOHYA_ALPHA);
        tensor *alpha = tensor_from_f32(DT_F32, DEV_CPU, 0, NULL, &ta->alpha);
        st_writer_add(w, key, alpha);
        tensor_free(alpha);
    }
    autograd_no_grad_end();
    int rc = st_writer_save(w, path);
    st_writer_free(w);
    return rc;
}
