// The CUDA backend's table, compiled twice: as cuda_backend by nvcc and as
// emu_backend against the emulator (see common.cuh).
#include <stdlib.h>

#include <atomic>

#include "kernels/cuda/kernels.cuh"

namespace {
std::atomic<int> sync_state{-1};  // -1: SDFT_CUDA_SYNC not read yet
}

extern "C" void BACKEND_SYNC_FN(sync_launches_from_env)(void) {
    const char *v = getenv("SDFT_CUDA_SYNC");
    sync_state = v && *v && strcmp(v, "0") != 0;
}

extern "C" bool BACKEND_SYNC_FN(sync_launches)(void) {
    if (sync_state < 0) BACKEND_SYNC_FN(sync_launches_from_env)();
    return sync_state > 0;
}

extern "C" const backend CUDA_FN(backend) = {
    .name = CUDA_BACKEND_NAME,
    // bf16 is the fast path; f32 is kept for exact comparison and for users who want it.
    .native_floats = (1u << DT_F32) | (1u << DT_BF16),
    .alloc = CUDA_FN(alloc),
    .free = CUDA_FN(free),
    .upload = CUDA_FN(upload),
    .download = CUDA_FN(download),
    .copy = CUDA_FN(copy),
    .fill = CUDA_FN(fill),
    .fill_normal = CUDA_FN(fill_normal),
    .fill_dropout_mask = CUDA_FN(fill_dropout_mask),
    .binary = CUDA_FN(binary),
    .sum_reduce = CUDA_FN(sum_reduce),
    .unary_forward = CUDA_FN(unary_forward),
    .unary_backward = CUDA_FN(unary_backward),
    .geglu_forward = CUDA_FN(geglu_forward),
    .geglu_backward = CUDA_FN(geglu_backward),
    .gemm = CUDA_FN(gemm),
    .conv2d_forward = CUDA_FN(conv2d_forward),
    .conv2d_backward = CUDA_FN(conv2d_backward),
    .layer_norm_forward = CUDA_FN(layer_norm_forward),
    .layer_norm_backward = CUDA_FN(layer_norm_backward),
    .group_norm_forward = CUDA_FN(group_norm_forward),
    .group_norm_backward = CUDA_FN(group_norm_backward),
    .softmax_forward = CUDA_FN(softmax_forward),
    .softmax_backward = CUDA_FN(softmax_backward),
    .attention_forward = CUDA_FN(attention_forward),
    .attention_backward = CUDA_FN(attention_backward),
    .upsample2x_forward = CUDA_FN(upsample2x_forward),
    .upsample2x_backward = CUDA_FN(upsample2x_backward),
    .embedding_forward = CUDA_FN(embedding_forward),
    .embedding_backward = CUDA_FN(embedding_backward),
    .timestep_embedding_forward = CUDA_FN(timestep_embedding_forward),
    .timestep_embedding_backward = CUDA_FN(timestep_embedding_backward),
    .mse_loss_forward = CUDA_FN(mse_loss_forward),
    .mse_loss_backward = CUDA_FN(mse_loss_backward),
    .adamw_update = CUDA_FN(adamw_update),
    .sum_squares = CUDA_FN(sum_squares),
};
