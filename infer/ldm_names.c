#include "infer/ldm_names.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/check.h"

#define UNET_LDM "model.diffusion_model."
#define VAE_LDM "first_stage_model."
#define CLIP_LDM "cond_stage_model.transformer."

// If s starts with prefix, returns the rest; else NULL.
static const char *after(const char *s, const char *prefix) {
    size_t n = strlen(prefix);
    return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

// Parses "<int>.<rest>" at s: returns rest and sets *v, or NULL.
static const char *index_then(const char *s, int *v) {
    int n = 0;
    if (sscanf(s, "%d.%n", v, &n) != 1 || n == 0) return NULL;
    return s + n;
}

static bool emit(char *out, size_t len, const char *fmt, ...) PRINTF_LIKE(3, 4);
static bool emit(char *out, size_t len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, len, fmt, ap);
    va_end(ap);
    return n > 0 && (size_t)n < len;
}

// A ResNet block's inner names: diffusers' -> LDM's UNet ResBlock (in_layers,
// emb_layers, out_layers, skip_connection) or VAE ResnetBlock (same names but the
// shortcut, nin_shortcut).
static bool unet_resnet_rest(const char *rest, char *out, size_t len) {
    static const char *map[][2] = {{"norm1.", "in_layers.0."},          {"conv1.", "in_layers.2."},
                                   {"time_emb_proj.", "emb_layers.1."}, {"norm2.", "out_layers.0."},
                                   {"conv2.", "out_layers.3."},         {"conv_shortcut.", "skip_connection."}};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        const char *tail = after(rest, map[i][0]);
        if (tail) return emit(out, len, "%s%s", map[i][1], tail);
    }
    return false;
}

static bool vae_resnet_rest(const char *rest, char *out, size_t len) {
    const char *tail = after(rest, "conv_shortcut.");
    if (tail) return emit(out, len, "nin_shortcut.%s", tail);
    return emit(out, len, "%s", rest);
}

static bool unet_name(const char *name, const unet_config *c, char *out, size_t len) {
    const int per_down = c->layers_per_block + 1, per_up = c->layers_per_block + 1;
    char inner[PARAM_NAME_MAX];
    const char *r;
    int i, j;
    if ((r = after(name, "conv_in."))) return emit(out, len, UNET_LDM "input_blocks.0.0.%s", r);
    if ((r = after(name, "time_embedding.linear_1."))) return emit(out, len, UNET_LDM "time_embed.0.%s", r);
    if ((r = after(name, "time_embedding.linear_2."))) return emit(out, len, UNET_LDM "time_embed.2.%s", r);
    if ((r = after(name, "conv_norm_out."))) return emit(out, len, UNET_LDM "out.0.%s", r);
    if ((r = after(name, "conv_out."))) return emit(out, len, UNET_LDM "out.2.%s", r);
    if ((r = after(name, "down_blocks.")) && (r = index_then(r, &i))) {
        const char *t;
        if ((t = after(r, "resnets.")) && (t = index_then(t, &j)) && unet_resnet_rest(t, inner, sizeof inner))
            return emit(out, len, UNET_LDM "input_blocks.%d.0.%s", 1 + i * per_down + j, inner);
        if ((t = after(r, "attentions.")) && (t = index_then(t, &j)))
            return emit(out, len, UNET_LDM "input_blocks.%d.1.%s", 1 + i * per_down + j, t);
        if ((t = after(r, "downsamplers.0.conv.")))
            return emit(out, len, UNET_LDM "input_blocks.%d.0.op.%s", (i + 1) * per_down, t);
        return false;
    }
    if ((r = after(name, "mid_block."))) {
        const char *t;
        if ((t = after(r, "resnets.")) && (t = index_then(t, &j)) && j < 2 &&
            unet_resnet_rest(t, inner, sizeof inner))
            return emit(out, len, UNET_LDM "middle_block.%d.%s", 2 * j, inner);
        if ((t = after(r, "attentions.0."))) return emit(out, len, UNET_LDM "middle_block.1.%s", t);
        return false;
    }
    if ((r = after(name, "up_blocks.")) && (r = index_then(r, &i)) && i < c->n_blocks) {
        const char *t;
        if ((t = after(r, "resnets.")) && (t = index_then(t, &j)) && unet_resnet_rest(t, inner, sizeof inner))
            return emit(out, len, UNET_LDM "output_blocks.%d.0.%s", i * per_up + j, inner);
        if ((t = after(r, "attentions.")) && (t = index_then(t, &j)))
            return emit(out, len, UNET_LDM "output_blocks.%d.1.%s", i * per_up + j, t);
        // The upsampler follows the block's last ResNet, and its attention if any.
        if ((t = after(r, "upsamplers.0.conv.")))
            return emit(out, len, UNET_LDM "output_blocks.%d.%d.conv.%s", i * per_up + per_up - 1,
                        c->up[i] == BLOCK_CROSS_ATTN ? 2 : 1, t);
    }
    return false;
}

static bool vae_mid_name(const char *r, const char *part, char *out, size_t len) {
    static const char *attn[][2] = {{"group_norm.", "norm."}, {"to_q.", "q."}, {"to_k.", "k."},
                                    {"to_v.", "v."}, {"to_out.0.", "proj_out."}};
    const char *t;
    int j;
    char inner[PARAM_NAME_MAX];
    if ((t = after(r, "resnets.")) && (t = index_then(t, &j)) && j < 2 &&
        vae_resnet_rest(t, inner, sizeof inner))
        return emit(out, len, VAE_LDM "%s.mid.block_%d.%s", part, j + 1, inner);
    if ((t = after(r, "attentions.0.")))
        for (size_t k = 0; k < sizeof attn / sizeof *attn; k++) {
            const char *tail = after(t, attn[k][0]);
            if (tail) return emit(out, len, VAE_LDM "%s.mid.attn_1.%s%s", part, attn[k][1], tail);
        }
    return false;
}

static bool vae_name(const char *name, const vae_config *c, char *out, size_t len) {
    char inner[PARAM_NAME_MAX];
    const char *r, *t;
    int i, j;
    if ((r = after(name, "quant_conv.")) || (r = after(name, "post_quant_conv.")))
        return emit(out, len, VAE_LDM "%s", name);
    const char *part = after(name, "encoder.") ? "encoder" : after(name, "decoder.") ? "decoder" : NULL;
    if (!part) return false;
    r = name + strlen(part) + 1;
    if ((t = after(r, "conv_in.")) || (t = after(r, "conv_out.")))
        return emit(out, len, VAE_LDM "%s.%s", part, r);
    if ((t = after(r, "conv_norm_out."))) return emit(out, len, VAE_LDM "%s.norm_out.%s", part, t);
    if ((t = after(r, "mid_block."))) return vae_mid_name(t, part, out, len);
    // The original numbers the decoder's up blocks from the bottom (up.0 is the last
    // to run); diffusers numbers them in running order.
    bool enc = part[0] == 'e';
    if ((t = after(r, enc ? "down_blocks." : "up_blocks.")) && (t = index_then(t, &i)) && i < c->n_blocks) {
        int level = enc ? i : c->n_blocks - 1 - i;
        const char *u;
        if ((u = after(t, "resnets.")) && (u = index_then(u, &j)) && vae_resnet_rest(u, inner, sizeof inner))
            return emit(out, len, VAE_LDM "%s.%s.%d.block.%d.%s", part, enc ? "down" : "up", level, j, inner);
        if ((u = after(t, enc ? "downsamplers.0.conv." : "upsamplers.0.conv.")))
            return emit(out, len, VAE_LDM "%s.%s.%d.%s.conv.%s", part, enc ? "down" : "up", level,
                        enc ? "downsample" : "upsample", u);
    }
    return false;
}

bool ldm_name_for(const char *canonical, const unet_config *unet, const vae_config *vae, char *out,
                  size_t out_len) {
    const char *r;
    if ((r = after(canonical, "unet."))) return unet_name(r, unet, out, out_len);
    if ((r = after(canonical, "vae."))) return vae_name(r, vae, out, out_len);
    if ((r = after(canonical, "text_encoder."))) return emit(out, out_len, CLIP_LDM "%s", r);
    return false;
}

void ldm_name_map(name_map *nm, const param_set *ps, const unet_config *unet, const vae_config *vae) {
    char key[PARAM_NAME_MAX];
    for (int i = 0; i < ps->count; i++) {
        const char *name = ps->items[i].name;
        CHECK(ldm_name_for(name, unet, vae, key, sizeof key), "no LDM name for parameter %s", name);
        name_map_add(nm, key, name);
        const char *r = after(name, "text_encoder.text_model.");
        if (r && emit(key, sizeof key, CLIP_LDM "%s", r)) name_map_add(nm, key, name);
    }
}
