// CLIP's text transformer (transformers' CLIPTextModel), the text encoder of SD1.x:
// token + position embeddings, pre-norm causal self-attention layers with an MLP,
// and a final layer norm. Parameters live under "text_encoder.text_model.".
#pragma once
#include "infer/config.h"
#include "infer/nn.h"

typedef struct {
    nn_norm layer_norm1, layer_norm2;
    nn_linear q_proj, k_proj, v_proj, out_proj;
    nn_linear fc1, fc2;
} clip_layer;

typedef struct {
    clip_config cfg;
    tensor *token_embedding;     // [vocab, D]
    tensor *position_embedding;  // [max_positions, D]
    clip_layer *layers;
    nn_norm final_layer_norm;
} clip_text_model;

// Registers the parameters in ps under "<prefix>text_model.".
void clip_init(clip_text_model *m, const clip_config *cfg, param_set *ps, const char *prefix);
void clip_free(clip_text_model *m);
// ids [B, T] (i32, T <= max_position_embeddings, on the parameters' device) ->
// [B, T, D]: final_layer_norm of the output of layer L - skip, where skip = 0 is
// the last layer. This is diffusers' clip_skip (A1111's "clip skip" is ours + 1).
tensor *clip_encode(const clip_text_model *m, tensor *ids, int skip);
