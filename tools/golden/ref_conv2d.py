"""PyTorch reference for kernels/ops/conv2d.c (see tests/ops/conv2d.c).

Our layout is channels-last: x [N, H, W, Cin], w [Cout, KH, KW, Cin], output
[N, Ho, Wo, Cout]; torch wants NCHW and [Cout, Cin, KH, KW], so permute around it.
"""
import torch.nn.functional as F


def conv2d(ins, params):
    x, w, b = ins["x"], ins["w"], ins["b"]
    stride = int(params.get("stride", "1"))
    pad = int(params.get("pad", "0"))
    y = F.conv2d(x.permute(0, 3, 1, 2), w.permute(0, 3, 1, 2), b, stride=stride, padding=pad)
    return [y.permute(0, 2, 3, 1)]


REFS = {"conv2d": conv2d}
