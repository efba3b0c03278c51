#!/usr/bin/env python3
"""Writes PyTorch's answers for every op-harness case to a safetensors fixture.

usage: ops.py CASES_JSON OUT.safetensors
CASES_JSON comes from `build/run_tests --list-op-cases` (make golden runs both).

For each case the inputs are drawn here, the reference op (tools/golden/ref_*.py,
plain torch in float64, our channels-last layout) runs forward, random upstream
gradients are drawn for its outputs and autograd gives the input gradients.
Stored per case, under "<case>/": in/<name> (in the kind's dtype), out/<k>,
gout/<k> and grad/<name> (float32; gout values exactly representable in the
output's dtype). The metadata holds format_version, the torch version and the
case list, so tests/test_golden.c can tell a stale fixture.
"""
import importlib
import json
import pathlib
import sys
import zlib

import torch
from safetensors.torch import save_file

FORMAT_VERSION = "1"
HERE = pathlib.Path(__file__).resolve().parent
STORAGE_DTYPE = {"h": torch.float16, "b": torch.bfloat16}


def load_refs():
    refs = {}
    for path in sorted(HERE.glob("ref_*.py")):
        module = importlib.import_module(path.stem)
        for name, fn in module.REFS.items():
            assert name not in refs, f"{name} defined twice"
            refs[name] = fn
    return refs


def draw_input(kind, shape, gen):
    """Returns the stored tensor for an input of the given kind (see tests/harness.h)."""
    if kind[0] in "fhbc":
        x = torch.randn(shape, generator=gen, dtype=torch.float32)
        return x.to(STORAGE_DTYPE.get(kind[0], torch.float32))
    u = torch.rand(shape, generator=gen, dtype=torch.float32)
    if kind[0] == "p":
        return 0.5 + u
    if kind[0] == "t":
        return 1000.0 * u
    if kind[0] == "i":
        return torch.randint(0, int(kind[1:]), shape, generator=gen, dtype=torch.int32)
    raise ValueError(f"unknown input kind {kind}")


class Inputs(dict):
    """The case's inputs by name; an optional input the case leaves out reads as None."""

    def __missing__(self, key):
        return None


def differentiable(kind):
    return kind[0] in "fhbt"


def run_case(case, refs, tensors):
    gen = torch.Generator().manual_seed(zlib.crc32(case["case"].encode()))
    ins = Inputs()
    for spec in case["inputs"]:
        stored = draw_input(spec["kind"], spec["shape"], gen)
        tensors[f"{case['case']}/in/{spec['name']}"] = stored
        if stored.dtype == torch.int32:
            ins[spec["name"]] = stored.to(torch.int64)
        else:
            ins[spec["name"]] = stored.to(torch.float64).requires_grad_(differentiable(spec["kind"]))
    outs = refs[case["op"]](ins, case["params"])
    gouts = []
    for k, out in enumerate(outs):
        # Upstream gradients representable in the output's own dtype.
        out_dtype = out.dtype if out.dtype in (torch.float16, torch.bfloat16) else torch.float32
        g = torch.randn(out.shape, generator=gen, dtype=torch.float32).to(out_dtype)
        gouts.append(g.to(out.dtype))
        tensors[f"{case['case']}/out/{k}"] = out.detach().to(torch.float32).contiguous()
        tensors[f"{case['case']}/gout/{k}"] = g.to(torch.float32).contiguous()
    wanting = [t for t in ins.values() if t is not None and t.requires_grad]
    if wanting:
        grads = torch.autograd.grad(outs, wanting, gouts, allow_unused=True)
        by_id = {id(t): g for t, g in zip(wanting, grads)}
        for name, t in ins.items():
            if id(t) in by_id:
                g = by_id[id(t)]
                g = torch.zeros_like(t) if g is None else g
                tensors[f"{case['case']}/grad/{name}"] = g.detach().to(torch.float32).contiguous()
    case["n_outputs"] = len(outs)


def main():
    cases_path, out_path = sys.argv[1], sys.argv[2]
    sys.path.insert(0, str(HERE))
    refs = load_refs()
    cases = json.loads(pathlib.Path(cases_path).read_text())
    missing = sorted({c["op"] for c in cases} - refs.keys())
    if missing:
        sys.exit(f"ops.py: no reference for {', '.join(missing)}")
    # Cases marked golden=0 exist to stress a backend's tiling at sizes too large to
    # commit; the CPU is checked against PyTorch on the other cases of the op.
    cases = [c for c in cases if c["params"].get("golden") != "0"]
    tensors = {}
    for case in cases:
        run_case(case, refs, tensors)
    metadata = {
        "format_version": FORMAT_VERSION,
        "generator": "tools/golden/ops.py",
        "torch_version": torch.__version__,
        "cases": json.dumps(cases),
    }
    tmp = out_path + ".tmp"
    save_file(tensors, tmp, metadata=metadata)
    pathlib.Path(tmp).replace(out_path)
    print(f"ops.py: {len(cases)} cases, {len(tensors)} tensors -> {out_path}")


if __name__ == "__main__":
    main()
