"""PyTorch reference for kernels/ops/loss.c (see tests/ops/loss.c)."""
import torch
import torch.nn.functional as F


def mse_loss(ins, params):
    """diffusers' Min-SNR loss: per-sample mean squared error, weighted, then averaged."""
    pred, target, weights = ins["pred"], ins["target"], ins["weights"]
    squared = F.mse_loss(pred, target, reduction="none")
    per_sample = squared.reshape(squared.shape[0], -1).mean(dim=1)
    if weights is not None:
        per_sample = per_sample * weights
    return [per_sample.mean().reshape(1)]


REFS = {"mse_loss": mse_loss}
