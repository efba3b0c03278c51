// Names in the original (CompVis/LDM) single-file layout that community
// checkpoints ship, against our canonical diffusers names.
//
// One direction is written out, canonical -> LDM (ldm_name_for); the other is the
// inverse of that function over every parameter the model registered
// (ldm_name_map), so the two can never disagree.
//   unet.*          <-> model.diffusion_model.*  (input_blocks, middle_block, output_blocks)
//   vae.*           <-> first_stage_model.*      (encoder.down.N.block.M, decoder.up reversed)
//   text_encoder.*  <-> cond_stage_model.transformer.*  (SD1's transformers CLIP)
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "infer/config.h"
#include "infer/params.h"

// Writes the LDM key of a canonical parameter name; false for a name the layout
// has no place for.
bool ldm_name_for(const char *canonical, const unet_config *unet, const vae_config *vae, char *out,
                  size_t out_len);
// Fills nm with LDM key -> canonical name for every parameter in ps (and the older
// CLIP spelling without "text_model.", which some checkpoints use).
void ldm_name_map(name_map *nm, const param_set *ps, const unet_config *unet, const vae_config *vae);
