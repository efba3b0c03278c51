// Scaled dot-product attention over heads packed in the channel dim, as diffusers
// reshapes [B, N, H*D] to [B, H, N, D].
#include <math.h>

#include "kernels/ops/common.h"

enum { ATT_Q, ATT_K, ATT_V, ATT_OUT, ATT_LSE };

static void attention_backward(node *n, const tensor *d_out) {
    const tensor *q = n->saved[ATT_Q], *k = n->saved[ATT_K], *v = n->saved[ATT_V];
    int64_t B = q->shape[0], Nq = q->shape[1], Nk = k->shape[1], H = n->iparam[0];
    int64_t D = q->shape[2] / H;
    tensor *d_q = node_needs_grad(n, 0) ? tensor_new_like(q) : NULL;
    tensor *d_k = node_needs_grad(n, 1) ? tensor_new_like(k) : NULL;
    tensor *d_v = node_needs_grad(n, 2) ? tensor_new_like(v) : NULL;
    be_of(q)->attention_backward(d_q, d_k, d_v, d_out, q, k, v, n->saved[ATT_OUT],
                                 n->saved[ATT_LSE], B, Nq, Nk, H, D, n->fparam[0],
                                 n->iparam[1] != 0);
    tensor *grads[3] = {d_q, d_k, d_v};
    for (int i = 0; i < 3; i++) {
        if (!grads[i]) continue;
        node_accumulate(n, i, grads[i]);
        tensor_free(grads[i]);
    }
}

tensor *op_attention(tensor *q_in, tensor *k_in, tensor *v_in, int heads, bool causal) {
    tensor *q = op_input(q_in), *k = op_input_like(k_in, q), *v = op_input_like(v_in, q);
    CHECK_SHAPE(q->ndim == 3, "attention", q, "q must be [B, Nq, H*D]");
    int64_t B = q->shape[0], Nq = q->shape[1], C = q->shape[2];
    CHECK_SHAPE(heads > 0 && C % heads == 0, "attention", q, "channels must split into %d heads",
                heads);
    CHECK_SHAPE(k->ndim == 3 && k->shape[0] == B && k->shape[1] > 0 && k->shape[2] == C,
                "attention", k, "k must be [%lld, Nk > 0, %lld]", (long long)B, (long long)C);
    CHECK_SHAPE(tensor_same_shape(v, k), "attention", v, "v must be shaped as k");
    int64_t Nk = k->shape[1], D = C / heads;
    CHECK_SHAPE(D <= ATTENTION_MAX_HEAD_DIM, "attention", q, "head dim %lld is above %d",
                (long long)D, ATTENTION_MAX_HEAD_DIM);
    CHECK_SHAPE(!causal || Nk == Nq, "attention", k, "causal attention needs Nk == Nq = %lld",
                (long long)Nq);
    CHECK(q->dev == k->dev && q->dev == v->dev, "attention: operands on different devices");

    float scale = 1.0f / sqrtf((float)D);
    tensor *out = tensor_new_like(q);
    // f32 whatever the compute dtype: the log-sum-exp of a row needs the range.
    tensor *lse = tensor_new(DT_F32, q->dev, SHAPE(B, heads, Nq));
    be_of(q)->attention_forward(out, lse, q, k, v, B, Nq, Nk, heads, D, scale, causal);

    node *n = autograd_record("attention", attention_backward, out, 3, (tensor *[]){q, k, v});
    if (n) {
        n->iparam[0] = heads;
        n->iparam[1] = causal;
        n->fparam[0] = scale;
        // Saved in the order of the ATT_* indices.
        node_save(n, q), node_save(n, k), node_save(n, v), node_save(n, out), node_save(n, lse);
    }
    tensor_free(lse);
    tensor_free(q), tensor_free(k), tensor_free(v);
    return out;
}
