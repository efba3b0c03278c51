"""PyTorch references for kernels/ops/norm.c (see tests/ops/norm.c).

group_norm takes channels-last x [N, ..., C]; torch's group_norm wants [N, C, ...],
so the channel dim moves to the front and back. eps is rounded to float32 first, as
the C op receives it.
"""
import numpy as np
import torch.nn.functional as F


def eps_param(params):
    return float(np.float32(params.get("eps", "1e-5")))


def group_norm(ins, params):
    x = ins["x"]
    groups = int(params.get("groups", "32"))
    channels_first = x.movedim(-1, 1)
    y = F.group_norm(channels_first, groups, ins["gamma"], ins["beta"], eps_param(params))
    return [y.movedim(1, -1)]


def group_norm_silu(ins, params):
    return [F.silu(y) for y in group_norm(ins, params)]


def layer_norm(ins, params):
    x = ins["x"]
    return [F.layer_norm(x, x.shape[-1:], ins["gamma"], ins["beta"], eps_param(params))]


REFS = {"group_norm": group_norm, "group_norm_silu": group_norm_silu, "layer_norm": layer_norm}
