#!/usr/bin/env python3
"""Writes SD1.5's tensor manifest: what tools/write_random_sd15.py needs to write a
random-weight SD1.5 folder where there is no torch (a lent GPU machine, see
tools/device_check.sh).

usage: sd15_manifest.py OUT.json          (tools/device_check.sh prepare)

The models are built from tools/sd15_configs on torch's meta device (shapes, no
weights, a few seconds) exactly as tools/make_random_sd15.py builds them, and every
parameter's distribution is the one tools/golden/models.py's init_rule gives, so the
checkpoint has make_random_sd15's names, shapes and scales (its values come from
another random stream). The JSON holds:

  model_index    make_random_sd15's model_index.json
  configs        {path in the folder: text} of the config files, byte for byte
  parts          {part: {"file": weights file name (fp16 variant),
                         "tensors": [[name, shape, "normal", offset, std] or
                                     [name, shape, "arange"] (an int64 index buffer)]}}
"""
import json
import pathlib
import sys

import torch

import make_random_sd15 as sd15  # noqa: E402  (puts tools/golden on sys.path)
import models  # noqa: E402  (tools/golden/models.py: init_rule)


def part_rows(model):
    rule = {name: (offset, std) for name, offset, std in models.init_rule(model)}
    rows = []
    for name, t in model.state_dict().items():
        shape = list(t.shape)
        if name in rule:
            rows.append([name, shape, "normal", *rule[name]])
        elif name.endswith("position_ids"):
            rows.append([name, shape, "arange"])
        else:
            sys.exit(f"sd15_manifest: {name}: a buffer this script does not know how to fill")
    return rows


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    sd15.diffusers.utils.logging.set_verbosity_error()
    sd15.transformers.logging.set_verbosity_error()
    with torch.device("meta"):
        te, unet, vae = sd15.models_from_configs()
    parts = {}
    for part, model in (("text_encoder", te), ("unet", unet), ("vae", vae)):
        parts[part] = {"file": f"{sd15.WEIGHT_STEMS[part]}.fp16.safetensors", "tensors": part_rows(model)}
    configs = {f"{part}/config.json": (sd15.CONFIGS / f"{part}.json").read_text() for part in parts}
    configs["scheduler/scheduler_config.json"] = (sd15.CONFIGS / "scheduler.json").read_text()
    manifest = {"model_index": sd15.MODEL_INDEX, "configs": configs, "parts": parts}
    pathlib.Path(sys.argv[1]).write_text(json.dumps(manifest, separators=(",", ":")) + "\n")
    counts = {part: sum(1 for _ in p["tensors"]) for part, p in parts.items()}
    print(f"sd15_manifest: {sys.argv[1]}: tensors per part {counts}")


if __name__ == "__main__":
    main()
