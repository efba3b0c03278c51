#!/usr/bin/env python3
"""Writes a random-weight SD1.5 diffusers folder (fp16 files) from the manifest that
tools/sd15_manifest.py makes, with numpy and safetensors only (no torch): for a lent
GPU machine (tools/device_check.sh, stage sd15).

usage: write_random_sd15.py MANIFEST OUT_DIR [--tokenizer DIR] [--seed N]

Each tensor is drawn as the manifest says (offset + std * N(0, 1), the rule of
tools/golden/models.py), in float32, then stored as float16. About 2 GB on disk, 30 s
on 2 cores; peak memory about twice one part's float16 weights (3.4 GB, the UNet's).
"""
import argparse
import json
import pathlib
import shutil
import time

import numpy as np
from safetensors.numpy import save_file


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest", type=pathlib.Path)
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--tokenizer", type=pathlib.Path, help="a tokenizer folder to copy in as tokenizer/")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    manifest = json.loads(args.manifest.read_text())
    t0 = time.time()
    rng = np.random.default_rng(args.seed)
    for path, text in manifest["configs"].items():
        (args.out / path).parent.mkdir(parents=True, exist_ok=True)
        (args.out / path).write_text(text)
    for part, spec in manifest["parts"].items():
        tensors = {}
        for row in spec["tensors"]:
            name, shape, kind = row[:3]
            if kind == "arange":
                tensors[name] = np.arange(shape[-1], dtype=np.int64).reshape(shape)
            elif kind == "normal":
                offset, std = row[3:5]
                v = rng.standard_normal(shape, dtype=np.float32)
                v *= np.float32(std)
                if offset:
                    v += np.float32(offset)
                tensors[name] = v.astype(np.float16)
            else:
                raise SystemExit(f"write_random_sd15: {name}: unknown kind {kind!r}")
        # diffusers and transformers both mark their files format "pt".
        save_file(tensors, str(args.out / part / spec["file"]), metadata={"format": "pt"})
        del tensors
    index = dict(manifest["model_index"])
    if args.tokenizer:
        shutil.copytree(args.tokenizer, args.out / "tokenizer", dirs_exist_ok=True)
    else:
        index["tokenizer"] = [None, None]
    (args.out / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    print(f"write_random_sd15: {args.out} in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
