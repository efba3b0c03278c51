// Embedding lookup (token and position tables) and the sinusoidal timestep embedding.
#include "kernels/ops/common.h"

// ids are not differentiable; the table's gradient scatter-adds the rows back.
static void embedding_backward(node *n, const tensor *d_out) {
    const tensor *ids = n->saved[0];
    tensor *d_table = node_zeros_for_input(n, 1);
    be_of(d_out)->embedding_backward(d_table, d_out, ids, tensor_numel(ids), d_table->shape[1]);
    node_accumulate(n, 1, d_table);
    tensor_free(d_table);
}

tensor *op_embedding(tensor *ids_in, tensor *table_in) {
    CHECK_SHAPE(ids_in->dtype == DT_I32 && ids_in->ndim < TENSOR_MAX_DIMS, "embedding", ids_in,
                "ids must be i32 with at most %d dims", TENSOR_MAX_DIMS - 1);
    tensor *ids = op_input(ids_in), *table = op_input(table_in);
    CHECK_SHAPE(table->ndim == 2, "embedding", table, "table must be [V, D]");
    CHECK(ids->dev == table->dev, "embedding: ids and table on different devices");
    int64_t D = table->shape[1], shape[TENSOR_MAX_DIMS];
    for (int d = 0; d < ids->ndim; d++) shape[d] = ids->shape[d];
    shape[ids->ndim] = D;
    tensor *out = tensor_new(table->dtype, table->dev, ids->ndim + 1, shape);
    // The kernel aborts on an id outside [0, V), naming it.
    be_of(table)->embedding_forward(out, ids, table, tensor_numel(ids), D);
    node *n = autograd_record("embedding", embedding_backward, out, 2, (tensor *[]){ids, table});
    if (n) node_save(n, ids);
    tensor_free(ids);
    tensor_free(table);
    return out;
}

static void timestep_embedding_backward(node *n, const tensor *d_out) {
    const tensor *t = n->saved[0];
    tensor *d_t = tensor_new_like(t);
    be_of(t)->timestep_embedding_backward(d_t, d_out, t, t->shape[0], n->iparam[0],
                                          n->iparam[1] != 0, n->fparam[0], n->fparam[1],
                                          n->fparam[2]);
    node_accumulate(n, 0, d_t);
    tensor_free(d_t);
}

tensor *op_timestep_embedding(tensor *t_in, int dim, bool flip_sin_to_cos,
                              float downscale_freq_shift, float scale, float max_period) {
    // Timesteps are float, as the gradient w.r.t. t needs (diffusers also takes int64).
    CHECK_SHAPE(dtype_is_float(t_in->dtype) && t_in->ndim == 1, "timestep_embedding", t_in,
                "t must be float [B]");
    tensor *t = op_input(t_in);
    CHECK(dim > 0, "timestep_embedding: dim %d", dim);
    // The frequencies' exponents divide by dim/2 - downscale_freq_shift.
    CHECK(dim / 2 != downscale_freq_shift,
          "timestep_embedding: dim %d with downscale_freq_shift %g", dim, downscale_freq_shift);
    int64_t B = t->shape[0];
    tensor *out = tensor_new(t->dtype, t->dev, SHAPE(B, dim));
    be_of(t)->timestep_embedding_forward(out, t, B, dim, flip_sin_to_cos, downscale_freq_shift,
                                         scale, max_period);
    node *n = autograd_record("timestep_embedding", timestep_embedding_backward, out, 1, &t);
    if (n) {
        n->iparam[0] = dim;
        n->iparam[1] = flip_sin_to_cos;
        n->fparam[0] = downscale_freq_shift;
        n->fparam[1] = scale;
        n->fparam[2] = max_period;
        node_save(n, t);
    }
    tensor_free(t);
    return out;
}
