#!/usr/bin/env python3
"""Where ComfyUI's LoRA loader puts each tensor of our trainer's files, and what it adds.

usage: comfy_lora.py COMFYUI_DIR MODELS_DIR LORA_DIR
  (make golden: .venv-golden/comfyui tests/fixtures/models tests/fixtures/lora)

ComfyUI is not a dependency of the project: COMFYUI_DIR holds its comfy/lora.py and
comfy/utils.py at the commits pinned below (a checkout of those commits, or the two
files; never committed here). The committed fixtures were made with lora.py whole and
utils.py from its start through unet_to_diffusers (what lora.py calls of it; the rest of
the file, image, tiling and progress-bar helpers, is never reached), copied from
ComfyUI's repository at those commits into .venv-golden/comfyui/comfy/. This script imports them and runs, for the tiny SD1 model
of MODELS_DIR/tiny-sd, what ComfyUI's load_lora_for_models does with a LoRA file:

  key_map = model_lora_keys_unet(model) + model_lora_keys_clip(clip)
  patches = load_lora(file's tensors, key_map)

with the model's state dict in ComfyUI's own names: the UNet's original (LDM) names under
"diffusion_model." as comfy.utils.unet_to_diffusers maps diffusers' names to them, and the
text encoder's under "clip_l.transformer.". Each patch's weight ComfyUI then changes by
comfy.lora.calculate_weight (strength 1, float64, on a zero weight: the delta alone).

For LORA_DIR/trained.safetensors (PEFT layout) and trained_kohya.safetensors (kohya layout),
written by our trainer (make golden: tests/fixtures/lora/trained.yaml), it writes
LORA_DIR/comfy-keys.json:
  {"<file>": {"applied": {"<file key>": ["<our module>", "<ComfyUI weight>", [shape]]},
              "unused": ["<file key>", ...]}, "comfyui": {...pins...}}
where <our module> is the canonical name of the layer ComfyUI's weight is (diffusers'
name under unet. / text_encoder.), and LORA_DIR/comfy-deltas.safetensors: for each
file, the delta ComfyUI adds to the weight of the first module of each kind it applied
(to_q ... fc2: every kind once, to keep the fixture small), "<file>:<our module>",
float32, in the weight's torch shape.

What is not ComfyUI's own code here, and why: comfy/lora.py imports comfy.model_management
(device and memory management, which pulls in the whole of ComfyUI) and comfy.model_base
(the model classes); comfy/utils.py imports comfy.checkpoint_pickle (for .ckpt files).
They are replaced by the stubs marked STUB below: cast_to_device is torch's .to(), the
model classes are empty (the SD1 model is none of SD3, AuraFlow, HunyuanDiT or Flux, which
is all lora.py asks of them), the pickle module is empty (never reached for .safetensors).
"""
import contextlib
import json
import logging
import pathlib
import sys
import types

import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel
from diffusers import UNet2DConditionModel

# The ComfyUI sources this was written against (github.com/comfyanonymous/ComfyUI).
COMFYUI_PINS = {
    "comfy/lora.py": "41444b5236c613ee5ff7d09aa620f94b702f30eb",
    "comfy/utils.py": "2ba5cc8b867bc1aabe59fdaf0a8489e65012d603",
}
FILES = ("trained.safetensors", "trained_kohya.safetensors")
# The layer kinds trained.yaml targets, by the end of their names.
KINDS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out",
         "q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def import_comfy(comfy_dir):
    """comfy.lora and comfy.utils from comfy_dir, with the three STUB modules."""
    # STUB comfy.model_management: only cast_to_device is used (by calculate_weight).
    mm = types.ModuleType("comfy.model_management")
    mm.cast_to_device = lambda t, device, dtype, copy=False: t.to(device=device, dtype=dtype, copy=copy)
    # STUB comfy.model_base: the classes lora.py tests the model against.
    mb = types.ModuleType("comfy.model_base")
    for name in ("SD3", "AuraFlow", "HunyuanDiT", "Flux"):
        setattr(mb, name, type(name, (), {}))
    # STUB comfy.checkpoint_pickle: the pickle module for .ckpt files.
    cp = types.ModuleType("comfy.checkpoint_pickle")
    for rel in COMFYUI_PINS:
        if not (comfy_dir / rel).is_file():
            sys.exit(f"comfy_lora.py: {comfy_dir / rel} is missing; check out ComfyUI at {COMFYUI_PINS[rel]}")
    sys.path.insert(0, str(comfy_dir))
    import comfy
    for name, module in (("model_management", mm), ("model_base", mb), ("checkpoint_pickle", cp)):
        sys.modules["comfy." + name] = module
        setattr(comfy, name, module)
    import comfy.lora
    import comfy.utils
    return comfy.lora, comfy.utils


def comfy_unet_config(unet):
    """The UNet's shape the way ComfyUI's model detection describes it, which is what
    unet_to_diffusers reads: per down block its res blocks, and transformer depths per
    res block (down blocks in order; up blocks popped from the end)."""
    c = unet.config
    n = len(c.block_out_channels)
    layers = c.layers_per_block
    down = [1 if t.startswith("CrossAttn") else 0 for t in c.down_block_types]
    up = [1 if t.startswith("CrossAttn") else 0 for t in c.up_block_types]
    depth_output = [d for d in up for _ in range(layers + 1)]
    return {"num_res_blocks": [layers] * n, "channel_mult": [1] * n,
            "transformer_depth": [d for d in down for _ in range(layers)],
            "transformer_depth_output": list(reversed(depth_output)), "transformer_depth_middle": 1}


class ComfyModel:
    """What lora.py reads of a ComfyUI model: state_dict() and model_config.unet_config."""

    def __init__(self, state, unet_config=None):
        self.state = state
        self.model_config = types.SimpleNamespace(unet_config=unet_config or {})

    def state_dict(self):
        return self.state


def comfy_models(utils, models_dir):
    """The UNet and text encoder in ComfyUI's names, and {ComfyUI weight: our module}."""
    root = models_dir / "tiny-sd"
    unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet")
    te = CLIPTextModel.from_pretrained(root, subfolder="text_encoder")
    config = comfy_unet_config(unet)
    to_ldm = utils.unet_to_diffusers(config)
    unet_state, clip_state, ours = {}, {}, {}
    for name, w in unet.state_dict().items():
        if name not in to_ldm:
            sys.exit(f"comfy_lora.py: unet_to_diffusers has no name for the UNet's {name}")
        key = "diffusion_model." + to_ldm[name]
        unet_state[key] = w
        ours[key] = "unet." + name[:-len(".weight")] if name.endswith(".weight") else None
    for name, w in te.state_dict().items():
        key = "clip_l.transformer." + name
        clip_state[key] = w
        ours[key] = "text_encoder." + name[:-len(".weight")] if name.endswith(".weight") else None
    return ComfyModel(unet_state, config), ComfyModel(clip_state), ours


@contextlib.contextmanager
def warnings_caught(out):
    """Collects the messages lora.py logs (its "lora key not loaded: <key>")."""
    class Catch(logging.Handler):
        def emit(self, record):
            out.append(record.getMessage())
    handler = Catch(logging.WARNING)
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)


def apply(lora, utils, unet, clip, ours, path):
    state = load_file(path)
    key_map = {}
    lora.model_lora_keys_unet(unet, key_map)
    lora.model_lora_keys_clip(clip, key_map)
    messages = []
    with warnings_caught(messages):
        patches = lora.load_lora(state, key_map)
    prefix = "lora key not loaded: "
    unused = sorted(m[len(prefix):] for m in messages if m.startswith(prefix))
    weights = {**unet.state_dict(), **clip.state_dict()}
    applied, deltas, kinds_seen = {}, {}, set()
    for target, (kind, v) in patches.items():
        if kind != "lora" or target not in ours or ours[target] is None:
            sys.exit(f"comfy_lora.py: {path.name}: a {kind} patch on {target}")
        module = ours[target]
        up, down, alpha = v[0], v[1], v[2]
        for key, t in state.items():
            if t is up or t is down or (key.endswith(".alpha") and key[:-len(".alpha")] + ".lora_up.weight" in state
                                        and state[key[:-len(".alpha")] + ".lora_up.weight"] is up):
                applied[key] = [module, target, list(t.shape)]
        layer_kind = next(k for k in KINDS if module.endswith("." + k))
        if layer_kind in kinds_seen:
            continue
        kinds_seen.add(layer_kind)
        zero = torch.zeros_like(weights[target], dtype=torch.float64)
        delta = lora.calculate_weight([(1.0, (kind, v), 1.0, None, None)], zero, target,
                                      intermediate_dtype=torch.float64)
        deltas[f"{path.name}:{module}"] = delta.float().contiguous()
    left = sorted(set(state) - set(applied) - set(unused))
    if left:
        sys.exit(f"comfy_lora.py: {path.name}: neither applied nor reported unused: {left[:5]}")
    return {"applied": dict(sorted(applied.items())), "unused": unused}, deltas


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: comfy_lora.py COMFYUI_DIR MODELS_DIR LORA_DIR")
    comfy_dir, models_dir, lora_dir = (pathlib.Path(a) for a in sys.argv[1:])
    torch.set_num_threads(1)
    lora, utils = import_comfy(comfy_dir)
    unet, clip, ours = comfy_models(utils, models_dir)
    result = {"comfyui": {"source": "https://github.com/comfyanonymous/ComfyUI", "pins": COMFYUI_PINS,
                          "generator": "tools/golden/comfy_lora.py", "torch_version": torch.__version__}}
    deltas = {}
    for name in FILES:
        result[name], d = apply(lora, utils, unet, clip, ours, lora_dir / name)
        deltas.update(d)
        print(f"comfy_lora.py: {name}: {len(result[name]['applied'])} tensors applied, "
              f"{len(result[name]['unused'])} left unused by ComfyUI")
    (lora_dir / "comfy-keys.json").write_text(json.dumps(result, indent=0, sort_keys=True) + "\n")
    save_file(dict(sorted(deltas.items())), lora_dir / "comfy-deltas.safetensors",
              metadata={"format_version": "1", "generator": "tools/golden/comfy_lora.py"})


if __name__ == "__main__":
    main()
