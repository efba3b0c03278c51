// The trainer's LoRA adapters: created on the target linear layers of the UNet and
// (optionally) the text encoder, trained as leaves of the autograd tape, and saved in
// the diffusers/PEFT layout and in kohya's, which diffusers, ComfyUI, A1111 and
// stable-diffusion.cpp load.
#pragma once
#include "core/config.h"
#include "core/rng.h"
#include "infer/lora.h"
#include "infer/sd_model.h"

typedef struct {
    char *module;  // canonical module name, "unet.down_blocks.0.attentions.0...attn1.to_q"
    nn_lora *lora;  // attached; lora->down [rank, in] and lora->up [out, rank] train
    bool text_encoder;
    bool conv_1x1;  // saved 4-D (lora_conv_1x1)
} train_adapter;

typedef struct {
    train_adapter *items;
    int count;
    int rank;
    float alpha;
    // The targets asked for, comma-separated ("" for none), saved as the files'
    // sdft_targets and sdft_text_encoder_targets metadata.
    char *unet_targets, *te_targets;
    lora_set attached;  // owns the nn_lora records and their tensors
} train_adapters;

// Attaches a rank-`rank` adapter (scale alpha / rank) to every linear layer of the
// UNet whose module name ends with ".<target>" for one of unet_targets ("to_q",
// "to_out.0", "ff.net.2", "proj_in", ...), and of the text encoder for te_targets
// (NULL or empty: none). Initialised as peft's "gaussian" init, the diffusers
// DreamBooth scripts' choice: down ~ N(0, 1/rank^2) from rng, up = 0; f32 on the
// model's device, with gradients. 0, or -1 with err_msg() when a target matches no
// layer.
int train_adapters_init(train_adapters *ta, sd_model *m, const cfg_strings *unet_targets,
                        const cfg_strings *te_targets, int rank, float alpha, rng_stream *rng);
// Detaches and frees them (before sd_model_free).
void train_adapters_free(train_adapters *ta);
// Dropout p (0: off) on every adapter's input for the next forward and its backward.
// Adapter i's mask is drawn at offset (draw * count + i) * 2^32 of seed's stream, so
// each (draw, adapter) has its own mask and a recompute repeats it.
void train_adapters_set_dropout(train_adapters *ta, float p, uint64_t seed, uint64_t draw);
// Every trainable tensor, down then up per adapter: 2 * count entries in *out.
int train_adapters_tensors(const train_adapters *ta, tensor **out, bool *is_text_encoder);

// The diffusers/PEFT layout (save_lora_weights: "unet.<module>.lora_A.weight",
// "lora_B.weight"; the text encoder under "text_encoder."). Loaders of that layout
// take alpha = rank, so alpha / rank is folded into lora_B when it is not 1.
// The kohya layout: "lora_unet_<module>.lora_down.weight", ".lora_up.weight",
// ".alpha", with kohya's ss_* metadata. Both record the targets (sdft_targets,
// sdft_text_encoder_targets). In both, the adapters of 1x1 convolutions
// (SD1's proj_in/proj_out) are 4-D, [rank, in, 1, 1] and [out, rank, 1, 1], as the
// loaders of those layouts need. Both carry the n_meta metadata pairs given, and are
// written atomically. 0, or -1 with err_msg().
int train_adapters_save_peft(const train_adapters *ta, const char *path, int n_meta,
                             const char *const *keys, const char *const *values);
int train_adapters_save_kohya(const train_adapters *ta, const char *path, int n_meta,
                              const char *const *keys, const char *const *values);
