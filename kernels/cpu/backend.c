#include "kernels/cpu/cpu.h"

#include "core/check.h"

float *cpu_f32(const tensor *t) {
    if (!t) return NULL;
    CHECK(t->dtype == DT_F32, "cpu kernel wants f32, got %s", dtype_name(t->dtype));
    return (float *)tensor_data(t);
}

const backend cpu_backend = {
    .name = "cpu",
    .native_floats = 1u << DT_F32,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .copy = cpu_copy,
    .fill = cpu_fill,
    .fill_normal = cpu_fill_normal,
    .fill_dropout_mask = cpu_fill_dropout_mask,
    .binary = cpu_binary,
    .sum_reduce = cpu_sum_reduce,
    .unary_forward = cpu_unary_forward,
    .unary_backward = cpu_unary_backward,
    .geglu_forward = cpu_geglu_forward,
    .geglu_backward = cpu_geglu_backward,
    .gemm = cpu_gemm,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward = cpu_conv2d_backward,
    .layer_norm_forward = cpu_layer_norm_forward,
    .layer_norm_backward = cpu_layer_norm_backward,
    .group_norm_forward = cpu_group_norm_forward,
    .group_norm_backward = cpu_group_norm_backward,
    .softmax_forward = cpu_softmax_forward,
    .softmax_backward = cpu_softmax_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .upsample2x_forward = cpu_upsample2x_forward,
    .upsample2x_backward = cpu_upsample2x_backward,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .timestep_embedding_forward = cpu_timestep_embedding_forward,
    .timestep_embedding_backward = cpu_timestep_embedding_backward,
    .mse_loss_forward = cpu_mse_loss_forward,
    .mse_loss_backward = cpu_mse_loss_backward,
    .adamw_update = cpu_adamw_update,
    .sum_squares = cpu_sum_squares,
};
