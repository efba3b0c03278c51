"""PyTorch references for kernels/ops/linear.c (see tests/ops/linear.c)."""
import torch.nn.functional as F


def linear(ins, params):
    """x [..., in], w [out, in], b [out] or None -> [..., out]."""
    return [F.linear(ins["x"], ins["w"], ins["b"])]


def matmul(ins, params):
    """a [B, M, K] times b [B, K, N], or a shared b [K, N] -> [B, M, N]."""
    return [ins["a"] @ ins["b"]]


REFS = {"linear": linear, "matmul": matmul}
