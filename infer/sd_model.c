#include "infer/sd_model.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/check.h"
#include "core/files.h"
#include "infer/ldm_names.h"

static const char *component_names[3] = {"text_encoder", "unet", "vae"};

static bool is_file(const char *path) {
    struct stat s;
    return stat(path, &s) == 0 && S_ISREG(s.st_mode);
}

// PyTorch's .ckpt/.pt/.bin files are pickles (zip archives since torch 1.6): loading
// them means running arbitrary code, so they are refused with a way out.
static bool looks_like_pickle(const char *path) {
    unsigned char head[9] = {0};
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(head, 1, sizeof head, f) : 0;
    if (f) fclose(f);
    // A safetensors file: 8 bytes of header length, then the JSON header.
    if (got == sizeof head && head[8] == '{') return false;
    bool zip = head[0] == 'P' && head[1] == 'K', pickle = head[0] == 0x80 && head[1] <= 5;
    return zip || pickle || ends_with(path, ".ckpt") || ends_with(path, ".pt") ||
           ends_with(path, ".bin") || ends_with(path, ".pth");
}

static void pickle_error(const char *path) {
    err_set("%s: a PyTorch pickle checkpoint, which we do not load (it can run code); convert it "
            "to .safetensors first, e.g. python -c \"import torch, safetensors.torch as s; "
            "d = torch.load('%s', map_location='cpu', weights_only=True); "
            "s.save_file({k: v.contiguous() for k, v in d.get('state_dict', d).items() "
            "if isinstance(v, torch.Tensor)}, 'model.safetensors')\"",
            path, path);
}

static void build(sd_model *m, const sd_load_options *opt) {
    params_init(&m->params, opt->dt, opt->dev);
    clip_init(&m->text_encoder, &m->clip_cfg, &m->params, "text_encoder.");
    unet_init(&m->unet, &m->unet_cfg, &m->params, "");
    vae_init(&m->vae, &m->vae_cfg, &m->params, "");
}

static int load_configs(sd_model *m, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/text_encoder/config.json", dir);
    if (clip_config_load(&m->clip_cfg, path)) return -1;
    snprintf(path, sizeof path, "%s/unet/config.json", dir);
    if (unet_config_load(&m->unet_cfg, path)) return -1;
    snprintf(path, sizeof path, "%s/vae/config.json", dir);
    return vae_config_load(&m->vae_cfg, path);
}

// model_index.json names each component's library and class: check that the folder
// is a pipeline whose three parts we implement.
static int check_model_index(const char *dir) {
    static const char *expected[3][2] = {{"transformers", "CLIPTextModel"},
                                         {"diffusers", "UNet2DConditionModel"},
                                         {"diffusers", "AutoencoderKL"}};
    char path[4096];
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    cJSON *root;
    int rc = read_json_object(path, &root);
    if (rc == 1) err_set("%s: missing; not a diffusers pipeline folder", path);
    if (rc) return -1;

    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    if (cJSON_GetObjectItemCaseSensitive(root, "text_encoder_2")) {
        err_set("%s: %s has a second text encoder (SDXL), which is not supported yet", path,
                cJSON_IsString(cls) ? cls->valuestring : "the pipeline");
        rc = -1;
    }
    for (int c = 0; c < 3 && rc == 0; c++) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, component_names[c]);
        const cJSON *lib = cJSON_GetArrayItem(e, 0), *name = cJSON_GetArrayItem(e, 1);
        if (!cJSON_IsArray(e) || !cJSON_IsString(lib) || !cJSON_IsString(name)) {
            err_set("%s: key \"%s\" must be [library, class]", path, component_names[c]);
            rc = -1;
        } else if (strcmp(name->valuestring, expected[c][1]) != 0 &&
                   !(c == 0 && strcmp(name->valuestring, "CLIPTextModelWithProjection") == 0)) {
            err_set("%s: %s is %s.%s; supported: %s.%s", path, component_names[c], lib->valuestring,
                    name->valuestring, expected[c][0], expected[c][1]);
            rc = -1;
        }
    }
    cJSON_Delete(root);
    return rc;
}

// Adds a component's weights: "<base>[.variant].safetensors", or the shards its
// ".safetensors.index.json" lists.
static int add_component_files(weight_index *wi, const char *dir, const char *component,
                               const char *base, const char *variant) {
    char path[4096], prefix[64];
    snprintf(prefix, sizeof prefix, "%s.", component);
    const char *tries[2] = {variant, variant ? NULL : "fp16"};
    for (int t = 0; t < 2; t++) {
        const char *v = tries[t];
        if (t == 1 && !v) break;
        snprintf(path, sizeof path, "%s/%s/%s%s%s.safetensors", dir, component, base, v ? "." : "",
                 v ? v : "");
        if (is_file(path)) return weight_index_add_file(wi, path, prefix);
        snprintf(path, sizeof path, "%s/%s/%s%s%s.safetensors.index.json", dir, component, base,
                 v ? "." : "", v ? v : "");
        if (!is_file(path)) continue;
        cJSON *root;
        if (read_json_object(path, &root)) return -1;
        const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
        if (!cJSON_IsObject(map)) {
            cJSON_Delete(root);
            err_set("%s: no \"weight_map\" object", path);
            return -1;
        }
        // Each shard once, in the order the map first names it.
        const cJSON *e;
        int rc = 0, n_seen = 0;
        const char *seen[256];
        cJSON_ArrayForEach(e, map) {
            if (!cJSON_IsString(e)) continue;
            bool dup = false;
            for (int s = 0; s < n_seen && !dup; s++) dup = strcmp(seen[s], e->valuestring) == 0;
            if (dup) continue;
            if (n_seen == 256) {
                err_set("%s: more than 256 shards", path);
                rc = -1;
                break;
            }
            seen[n_seen++] = e->valuestring;
            char shard[4096];
            snprintf(shard, sizeof shard, "%s/%s/%s", dir, component, e->valuestring);
            if ((rc = weight_index_add_file(wi, shard, prefix))) break;
        }
        cJSON_Delete(root);
        return rc;
    }
    snprintf(path, sizeof path, "%s/%s/%s.bin", dir, component, base);
    if (is_file(path)) {
        pickle_error(path);
        return -1;
    }
    err_set("%s/%s: no %s%s%s.safetensors", dir, component, base, variant ? "." : "",
            variant ? variant : "");
    return -1;
}

static int load_weights(sd_model *m, weight_index *wi) {
    for (int c = 0; c < 3; c++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "%s.", component_names[c]);
        if (params_load(&m->params, wi, prefix, &m->report[c])) return -1;
    }
    return 0;
}

static int load_folder(sd_model *m, const char *dir, const sd_load_options *opt) {
    if (check_model_index(dir) || load_configs(m, dir)) return -1;
    build(m, opt);
    weight_index wi;
    weight_index_init(&wi);
    int rc = add_component_files(&wi, dir, "text_encoder", "model", opt->variant);
    if (!rc) rc = add_component_files(&wi, dir, "unet", "diffusion_pytorch_model", opt->variant);
    if (!rc) rc = add_component_files(&wi, dir, "vae", "diffusion_pytorch_model", opt->variant);
    if (!rc) rc = load_weights(m, &wi);
    weight_index_free(&wi);
    return rc;
}

// Which family a single file belongs to, from keys only that family has.
static int check_single_file_family(st_file *f, const char *path) {
    bool unet = false, sd1_clip = false;
    for (int i = 0; i < st_count(f); i++) {
        const char *k = st_entry_at(f, i)->name;
        if (strncmp(k, "conditioner.embedders.", 22) == 0) {
            err_set("%s: an SDXL checkpoint (conditioner.embedders.*), which is not supported yet", path);
            return -1;
        }
        if (strncmp(k, "cond_stage_model.model.", 23) == 0) {
            err_set("%s: an SD2.x checkpoint (OpenCLIP text encoder, cond_stage_model.model.*); "
                    "load it as a diffusers folder",
                    path);
            return -1;
        }
        unet |= strncmp(k, "model.diffusion_model.", 22) == 0;
        sd1_clip |= strncmp(k, "cond_stage_model.transformer.", 29) == 0;
    }
    if (!unet || !sd1_clip) {
        err_set("%s: not a Stable Diffusion 1.x checkpoint (no %s keys)", path,
                unet ? "cond_stage_model.transformer.*" : "model.diffusion_model.*");
        return -1;
    }
    return 0;
}

static int load_single_file(sd_model *m, const char *path, const sd_load_options *opt) {
    if (looks_like_pickle(path)) {
        pickle_error(path);
        return -1;
    }
    st_file *f = st_open(path);
    if (!f) return -1;
    if (check_single_file_family(f, path)) {
        st_close(f);
        return -1;
    }
    if (opt->config_dir) {
        if (load_configs(m, opt->config_dir)) {
            st_close(f);
            return -1;
        }
    } else {
        clip_config_sd15(&m->clip_cfg);
        unet_config_sd15(&m->unet_cfg);
        vae_config_sd15(&m->vae_cfg);
    }
    build(m, opt);
    name_map nm = {0};
    ldm_name_map(&nm, &m->params, &m->unet_cfg, &m->vae_cfg);
    weight_index wi;
    weight_index_init(&wi);
    weight_index_add_mapped(&wi, f, path, &nm);
    int rc = load_weights(m, &wi);
    // Left over: keys the map did not know (EMA copies, scheduler buffers, ...).
    m->report[0].unexpected += wi.n_unmapped;
    if (wi.n_unmapped && !m->report[0].first_unexpected[0])
        snprintf(m->report[0].first_unexpected, sizeof m->report[0].first_unexpected, "%s",
                 wi.unmapped[0]);
    weight_index_free(&wi);
    name_map_free(&nm);
    return rc;
}

int sd_model_load(sd_model *m, const char *path, const sd_load_options *opt) {
    *m = (sd_model){0};
    int rc;
    if (is_dir(path)) rc = load_folder(m, path, opt);
    else if (is_file(path)) rc = load_single_file(m, path, opt);
    else {
        err_set("%s: no such file or folder", path);
        return -1;
    }
    if (rc) sd_model_free(m);
    return rc;
}

void sd_model_free(sd_model *m) {
    params_free(&m->params);
    clip_free(&m->text_encoder);
    unet_free(&m->unet);
    vae_free(&m->vae);
    *m = (sd_model){0};
}

void sd_model_print_report(const sd_model *m) {
    for (int c = 0; c < 3; c++) load_report_print(&m->report[c], component_names[c]);
}
