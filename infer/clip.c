#include "infer/clip.h"

#include <stdlib.h>

#include "core/check.h"

void clip_init(clip_text_model *m, const clip_config *cfg, param_set *ps, const char *prefix) {
    *m = (clip_text_model){.cfg = *cfg};
    int D = cfg->hidden_size, F = cfg->intermediate_size;
    m->layers = xcalloc((size_t)cfg->num_hidden_layers, sizeof *m->layers);
    params_push(ps, "%stext_model", prefix);
    params_push(ps, "embeddings");
    params_add(ps, &m->token_embedding, PARAM_PLAIN, "token_embedding.weight",
               SHAPE(cfg->vocab_size, D));
    params_add(ps, &m->position_embedding, PARAM_PLAIN, "position_embedding.weight",
               SHAPE(cfg->max_position_embeddings, D));
    params_pop(ps);
    for (int i = 0; i < cfg->num_hidden_layers; i++) {
        clip_layer *l = &m->layers[i];
        params_push(ps, "encoder.layers.%d", i);
        nn_layer_norm_init(&l->layer_norm1, ps, "layer_norm1", D, cfg->layer_norm_eps);
        nn_linear_init(&l->q_proj, ps, "self_attn.q_proj", D, D, true);
        nn_linear_init(&l->k_proj, ps, "self_attn.k_proj", D, D, true);
        nn_linear_init(&l->v_proj, ps, "self_attn.v_proj", D, D, true);
        nn_linear_init(&l->out_proj, ps, "self_attn.out_proj", D, D, true);
        nn_layer_norm_init(&l->layer_norm2, ps, "layer_norm2", D, cfg->layer_norm_eps);
        nn_linear_init(&l->fc1, ps, "mlp.fc1", D, F, true);
        nn_linear_init(&l->fc2, ps, "mlp.fc2", F, D, true);
        params_pop(ps);
    }
    nn_layer_norm_init(&m->final_layer_norm, ps, "final_layer_norm", D, cfg->layer_norm_eps);
    params_pop(ps);
}

void clip_free(clip_text_model *m) {
    free(m->layers);
    m->layers = NULL;
}

static tensor *activation(const clip_config *cfg, tensor *x) {
    switch (cfg->act) {
    case CLIP_QUICK_GELU: return op_quick_gelu(x);
    case CLIP_GELU: return op_gelu(x, false);
    case CLIP_GELU_TANH: return op_gelu(x, true);
    }
    DIE("unknown CLIP activation %d", (int)cfg->act);
}

// x + attn(ln1(x)), then + mlp(ln2(.)).
static tensor *layer_forward(const clip_text_model *m, const clip_layer *l, tensor *x) {
    tensor *h = nn_norm_forward(&l->layer_norm1, x);
    tensor *q = nn_linear_forward(&l->q_proj, h);
    tensor *k = nn_linear_forward(&l->k_proj, h);
    tensor *v = nn_linear_forward(&l->v_proj, h);
    tensor_free(h);
    h = nn_sdpa(q, k, v, m->cfg.num_attention_heads, true);
    tensor_free(q);
    tensor_free(k);
    tensor_free(v);
    h = nn_replace(h, nn_linear_forward(&l->out_proj, h));
    tensor *x1 = op_add(x, h);
    tensor_free(h);
    h = nn_norm_forward(&l->layer_norm2, x1);
    h = nn_replace(h, nn_linear_forward(&l->fc1, h));
    h = nn_replace(h, activation(&m->cfg, h));
    h = nn_replace(h, nn_linear_forward(&l->fc2, h));
    tensor *out = op_add(x1, h);
    tensor_free(h);
    tensor_free(x1);
    return out;
}

tensor *clip_encode(const clip_text_model *m, tensor *ids, int skip) {
    const clip_config *cfg = &m->cfg;
    CHECK(ids->ndim == 2 && ids->dtype == DT_I32, "clip_encode: ids must be i32 [B, T]");
    int64_t T = ids->shape[1];
    CHECK(T >= 1 && T <= cfg->max_position_embeddings, "clip_encode: %lld tokens, the model takes %d",
          (long long)T, cfg->max_position_embeddings);
    CHECK(skip >= 0 && skip < cfg->num_hidden_layers, "clip_encode: clip skip %d of %d layers", skip,
          cfg->num_hidden_layers);
    tensor *tok = op_embedding(ids, m->token_embedding);  // [B, T, D]
    tensor *pos = op_slice(m->position_embedding, 0, 0, T);
    tensor *x = op_add(tok, pos);
    tensor_free(pos);
    tensor_free(tok);
    for (int i = 0; i < cfg->num_hidden_layers - skip; i++)
        x = nn_replace(x, layer_forward(m, &m->layers[i], x));
    return nn_replace(x, nn_norm_forward(&m->final_layer_norm, x));
}
