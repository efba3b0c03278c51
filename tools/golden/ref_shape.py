"""PyTorch references: cast, contiguous, reshape, permute, slice, concat, split."""
import torch

CAST_DTYPES = {0: torch.float32, 1: torch.float16, 2: torch.bfloat16}


def ints(params, key):
    return [int(v) for v in params[key].split(",")]


def cast(ins, params):
    return [ins["x"].to(CAST_DTYPES[int(params.get("dtype", "0"))])]


def contiguous(ins, params):
    return [ins["x"].permute(0, 2, 1).contiguous()]


def reshape(ins, params):
    return [ins["x"].reshape(ints(params, "shape"))]


def permute(ins, params):
    return [ins["x"].permute(ints(params, "perm"))]


def slice_(ins, params):
    axis, start, end = (int(params[k]) for k in ("axis", "start", "end"))
    return [ins["x"].narrow(axis, start, end - start)]


def concat(ins, params):
    parts = [ins[k] for k in ("a", "b", "c") if ins.get(k) is not None]
    return [torch.cat(parts, dim=int(params.get("axis", "-1")))]


def split(ins, params):
    return list(torch.split(ins["x"], ints(params, "sizes"), dim=int(params.get("axis", "-1"))))


REFS = {"cast": cast, "contiguous": contiguous, "reshape": reshape, "permute": permute,
        "slice": slice_, "concat": concat, "split": split}
