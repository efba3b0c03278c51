"""PyTorch references: silu, gelu (erf and tanh), quick_gelu, geglu."""
import torch
import torch.nn.functional as F


def silu(ins, params):
    return [F.silu(ins["x"])]


def gelu(ins, params):
    return [F.gelu(ins["x"], approximate="tanh" if params.get("tanh") == "1" else "none")]


def quick_gelu(ins, params):
    # CLIP's activation, as transformers' QuickGELUActivation.
    x = ins["x"]
    return [x * torch.sigmoid(1.702 * x)]


def geglu(ins, params):
    # diffusers' GEGLU after its projection: value and gate are the two halves.
    value, gate = ins["x"].chunk(2, dim=-1)
    return [value * F.gelu(gate)]


REFS = {"silu": silu, "gelu": gelu, "quick_gelu": quick_gelu, "geglu": geglu}
