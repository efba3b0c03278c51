// Mean squared error with optional per-sample weights (diffusers' Min-SNR loss:
// F.mse_loss(reduction="none").mean(dim=[1..]) * weights, then .mean()).
#include "kernels/ops/common.h"

enum { LOSS_PRED, LOSS_TARGET, LOSS_WEIGHTS };

static void mse_loss_backward(node *n, const tensor *d_loss) {
    const tensor *pred = n->saved[LOSS_PRED], *target = n->saved[LOSS_TARGET];
    const tensor *weights = n->n_saved > LOSS_WEIGHTS ? n->saved[LOSS_WEIGHTS] : NULL;
    int64_t N = pred->shape[0];
    tensor *d_pred = node_needs_grad(n, 0) ? tensor_new_like(pred) : NULL;
    tensor *d_target = node_needs_grad(n, 1) ? tensor_new_like(target) : NULL;
    be_of(pred)->mse_loss_backward(d_pred, d_target, d_loss, pred, target, weights, N,
                                   tensor_numel(pred) / N);
    if (d_pred) node_accumulate(n, 0, d_pred), tensor_free(d_pred);
    if (d_target) node_accumulate(n, 1, d_target), tensor_free(d_target);
}

tensor *op_mse_loss(tensor *pred_in, tensor *target_in, tensor *weights_in) {
    tensor *pred = op_input(pred_in), *target = op_input_like(target_in, pred);
    tensor *weights = op_input_like(weights_in, pred);
    CHECK_SHAPE(pred->ndim >= 1 && tensor_numel(pred) > 0, "mse_loss", pred,
                "pred must be a non-empty [N, ...]");
    CHECK_SHAPE(tensor_same_shape(target, pred), "mse_loss", target,
                "target must be shaped as pred");
    int64_t N = pred->shape[0];
    CHECK_SHAPE(!weights || (weights->ndim == 1 && weights->shape[0] == N), "mse_loss", weights,
                "weights must be [%lld]", (long long)N);
    tensor *loss = tensor_new(pred->dtype, pred->dev, SHAPE(1));
    be_of(pred)->mse_loss_forward(loss, pred, target, weights, N, tensor_numel(pred) / N);
    // Weights are constants (Min-SNR weights come from the timesteps), so they are no
    // input of the node and never receive a gradient.
    node *n = autograd_record("mse_loss", mse_loss_backward, loss, 2, (tensor *[]){pred, target});
    if (n) {
        node_save(n, pred), node_save(n, target);
        if (weights) node_save(n, weights);
    }
    tensor_free(pred), tensor_free(target), tensor_free(weights);
    return loss;
}
