"""PyTorch reference for kernels/ops/attention.c (see tests/ops/attention.c).

q [B, Nq, H*D], k and v [B, Nk, H*D]; head h is channels [h*D, (h+1)*D), as diffusers
reshapes. torch 1.13 has no scaled_dot_product_attention, so it is written out.
"""
import math

import torch


def attention(ins, params):
    q, k, v = ins["q"], ins["k"], ins["v"]
    heads = int(params.get("heads", "1"))
    causal = int(params.get("causal", "0")) != 0
    B, Nq, C = q.shape
    Nk, D = k.shape[1], C // heads

    def split_heads(x):  # [B, N, H*D] -> [B, H, N, D]
        return x.reshape(B, x.shape[1], heads, D).transpose(1, 2)

    scores = split_heads(q) @ split_heads(k).transpose(-1, -2) / math.sqrt(D)
    if causal:
        masked = torch.ones(Nq, Nk, dtype=torch.bool).triu(1)  # key j > query i
        scores = scores.masked_fill(masked, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ split_heads(v)
    return [out.transpose(1, 2).reshape(B, Nq, C)]


REFS = {"attention": attention}
