"""PyTorch reference for kernels/ops/softmax.c (see tests/ops/softmax.c)."""
import torch


def softmax(ins, params):
    return [torch.softmax(ins["x"], dim=-1)]


REFS = {"softmax": softmax}
