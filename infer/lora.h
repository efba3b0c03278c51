// LoRA adapters from the files users have, merged into the weights or attached at
// run time.
//
// A LoRA adds scale * up @ down to a linear layer's weight W [out, in], with down
// [r, in] and up [out, r]. Files name the layer in one of several layouts; each
// layout's name for a canonical module is written out once (lora_kohya_name,
// lora_peft_name and the older diffusers spellings) and loading inverts that over
// the model's registered linear parameters, so names with '_' inside them map
// back without guessing. Read (docs/models.md, "LoRA adapters"):
//   peft           unet.<module>.lora_A.weight / lora_B.weight, text_encoder.<module>...
//                  (diffusers' save_lora_weights), base_model.model.<module>... (PEFT's
//                  save_pretrained, with adapter_config.json beside it)
//   diffusers-old  unet.<module>.lora.down.weight / lora.up.weight, [unet.]<attention>.
//                  processor.to_q_lora.down.weight, text_encoder.<layer>.self_attn.
//                  to_q_lora..., text_encoder.<module>.lora_linear_layer.down.weight
//   kohya          lora_unet_<module, '.' -> '_'>.lora_down.weight / lora_up.weight /
//                  alpha, lora_te_<text model module>... (lora_te1_ too: diffusers writes
//                  SD1 text encoders so); SDXL files (lora_te2_, text_encoder_2.) are
//                  refused
//
// The scale of a module is multiplier * alpha / rank, where alpha is, first found:
// the file's <module>.alpha tensor (one number, any numeric dtype); the PEFT config (safetensors metadata
// "lora_adapter_metadata" as newer diffusers writes it, or adapter_config.json beside
// a base_model.model file): alpha_pattern, then lora_alpha (with use_rslora, alpha /
// sqrt(rank)); for kohya files, the rank (kohya's default); otherwise the most common
// rank among the component's modules in the file (what diffusers does for its own
// files, which carry no alpha: scale = multiplier for a file of one rank).
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "infer/sd_model.h"

typedef enum {
    LORA_MERGE,    // W += scale * up @ down, in W's dtype and device; the base weights change
    LORA_RUNTIME,  // an nn_lora attached to each target nn_linear; the base stays untouched
} lora_mode;

typedef struct {
    int applied;  // modules adapted
    int skipped;  // modules (or stray tensors) left out; lenient loads only
    // The first skip's reason, the one-line message a strict load would have given
    // (it names the file and the tensor); "" when none was skipped.
    char first_skipped[256];
    const char *format;  // "peft", "diffusers-old", "kohya", "mixed", or "none" (no LoRA tensor)
} lora_report;

typedef struct {
    struct nn_linear *target;
    nn_lora *lora;  // owned; linked into target's chain
} lora_attachment;

// Everything lora_load attached at run time, so several adapters stack (each with
// its own multiplier) and come off together. Start from `lora_set s = {0}`.
typedef struct {
    lora_attachment *items;
    int count, cap;
} lora_set;

// Loads the adapter file at path onto m's text encoder and UNet with multiplier
// scale. Strict (lenient false): a tensor that matches no module, a shape that does
// not fit its module, a LoRA on a convolution (LoCon), DoRA, a down without its up,
// an alpha tensor or a module's scale that is not a finite float, or a malformed
// file is an error: -1 with a one-line err_msg() naming the file and the tensor, and
// the model is left as it was. Lenient: such tensors and modules are skipped and
// counted in rep (which may be NULL). An SDXL file, an unreadable file, a PEFT config
// that cannot be read or holds an alpha that is not a finite float, or a multiplier
// that is not finite is an error in both modes. In RUNTIME mode the adapters go into
// set; MERGE leaves set as it is.
int lora_load(lora_set *set, sd_model *m, const char *path, float scale, lora_mode mode,
              bool lenient, lora_report *rep);
// Attaches down [rank, in] and up [out, rank] (references taken over) to target's
// chain with the given scale, recorded in set. The trainer attaches its trainable
// adapters this way.
void lora_attach(lora_set *set, struct nn_linear *target, tensor *down, tensor *up, float scale);
// Detaches every run-time adapter of the set from its layer and frees it. Call it
// before sd_model_free.
void lora_set_free(lora_set *set);

// The names a saved adapter uses for the canonical module ("unet.down_blocks.0.
// attentions.0.transformer_blocks.0.attn1.to_q", a parameter name without
// ".weight"); false for a module outside the UNet and the text encoder or a name
// that does not fit out.
//   kohya: "lora_unet_down_blocks_0_..._attn1_to_q"; the file's keys add
//          LORA_KOHYA_DOWN, LORA_KOHYA_UP and LORA_KOHYA_ALPHA
//   peft:  "unet.down_blocks.0....attn1.to_q" (diffusers' save_lora_weights); keys add
//          LORA_PEFT_DOWN and LORA_PEFT_UP
bool lora_kohya_name(const char *module, char *out, size_t out_len);
bool lora_peft_name(const char *module, char *out, size_t out_len);
// Whether the module is a 1x1 convolution in the torch model though a linear layer
// here: SD1's transformer proj_in/proj_out (use_linear_projection false). Its saved
// down is [rank, in, 1, 1] and its up [out, rank, 1, 1], the shapes diffusers, PEFT,
// kohya and ComfyUI give a LoRA on a Conv2d; loading takes either form.
bool lora_conv_1x1(const sd_model *m, const char *module);
#define LORA_KOHYA_DOWN ".lora_down.weight"
#define LORA_KOHYA_UP ".lora_up.weight"
#define LORA_KOHYA_ALPHA ".alpha"
#define LORA_PEFT_DOWN ".lora_A.weight"
#define LORA_PEFT_UP ".lora_B.weight"
