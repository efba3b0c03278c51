"""PyTorch reference for kernels/ops/embedding.c (see tests/ops/embedding.c)."""
import math

import numpy as np
import torch


def embedding(ins, params):
    return [ins["table"][ins["ids"]]]


def timestep_embedding(ins, params):
    """diffusers' get_timestep_embedding, in float64 throughout.

    diffusers computes the frequencies and arguments in float32; with t up to 1000 that
    is up to 5e-5 away from the exact value, which float64 gives and our kernel matches.
    Float parameters are rounded to float32 first, as the C op receives them.
    """
    t = ins["t"]
    dim = int(params.get("dim", "320"))
    flip = int(params.get("flip", "0")) != 0
    shift = float(np.float32(params.get("shift", "1")))
    scale = float(np.float32(params.get("scale", "1")))
    max_period = float(np.float32(params.get("max_period", "10000")))
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float64) / (half - shift)
    arg = scale * t[:, None] * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)
    if flip:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1, 0, 0))
    return [emb]


REFS = {"embedding": embedding, "timestep_embedding": timestep_embedding}
