#!/usr/bin/env python3
"""Writes LoRA adapter files in the layouts users have, and diffusers' outputs with them.

usage: lora.py MODELS_DIR OUT_DIR TRAINED_DIR
  (make golden: tests/fixtures/models tests/fixtures/lora build/lora-trained/out)

Adapters for the tiny SD model of MODELS_DIR/tiny-sd (tools/golden/models.py), with
random down/up matrices (up is never zero, so every adapter changes the outputs):

  peft.safetensors        what diffusers 0.30's save_lora_weights writes for adapters
                          injected with peft: unet.<module>.lora_A.weight / lora_B.weight
                          and text_encoder.<module>...; no alpha. Ranks 4, and 2 on a few
                          modules (diffusers then scales those by 4/2, see below).
                          UNet to_q/to_k/to_v/to_out.0, text encoder q/k/v/out_proj.
  kohya.safetensors       kohya-ss sd-scripts' layout, float16 as it usually ships:
                          lora_unet_<module, . -> _>.lora_down.weight / .lora_up.weight /
                          .alpha and lora_te_<...>; alphas differ from the ranks and between
                          modules; ranks 4 and 8. Every linear layer kohya trains: the
                          attention projections, proj_in/proj_out (1x1 convs in SD1:
                          4-D [r, Cin, 1, 1] / [Cout, r, 1, 1]), ff.net.0.proj, ff.net.2,
                          and the text encoder's q/k/v/out_proj, fc1, fc2.
  old.safetensors         older diffusers layouts in one file: unet.<attn>.processor.
                          to_q_lora.down.weight, unet.<module>.lora.down.weight (what the
                          diffusers 0.2x-0.30 training scripts save), text_encoder.<layer>.
                          self_attn.to_q_lora.down.weight and <module>.lora_linear_layer.
                          down.weight.
  attn-procs.safetensors  the oldest: UNet.save_attn_procs, no "unet." prefix.
  peft-unet/              PEFT's own save_pretrained of a LoRA'd UNet: adapter_model.
                          safetensors (base_model.model.<module>.lora_A.weight) and
                          adapter_config.json (lora_alpha 6 with r 4, one alpha_pattern
                          entry, 1x1-conv proj_in/proj_out).
  trained.safetensors, trained_kohya.safetensors
                          copies of the two files our trainer wrote in TRAINED_DIR (make
                          golden runs tests/fixtures/lora/trained.yaml first): the check
                          that diffusers loads what we save, every module with its
                          alpha (kohya) or alpha/rank folded into lora_B (PEFT layout).
                          trained.yaml targets every kind of layer our trainer offers
                          (attention, feed-forward, the 1x1-conv proj_in/proj_out, the
                          text encoder's attention and MLP); the script stops if one is
                          missing from the files.
  lora-outputs.safetensors  the inputs and, for each case, the UNet output and the text
                          encoder's last_hidden_state with the adapters applied, computed
                          in float64 (models.py's tricks: exact timestep embedding, no
                          attention upcast, float64 causal mask), stored as float32.

Cases (the multiplier goes through pipe.set_adapters(names, weights), which sets every
adapted layer's scaling to weight * lora_alpha / r in the UNet and the text encoder):
  peft 0.8, kohya 0.7, old 1.3, attn_procs 0.6 (UNet only), stacked = peft 0.8 +
  kohya 0.5, peft_unet 0.9 (loaded with peft.PeftModel.from_pretrained; UNet only),
  trained_peft 1, trained_kohya 1 (our trainer's files, which must change the outputs
  by at least 1%, or the comparison would not show that they were applied).

How diffusers 0.30 scales what it loads (checked here for every module, or the script
stops): a file without alphas gets lora_alpha = the most common rank of its component
(UNet, text encoder), so a module of another rank r is scaled by r_common / r, not 1.
Kohya alphas give alpha / rank per module (diffusers: the most common alpha plus an
alpha_pattern). Every adapted module's A and B must equal the file's tensors and no
other module may carry an adapter, since diffusers only warns about keys it drops.
The output is the same bytes on every run.
"""
import copy
import json
import pathlib
import shutil
import sys

import torch

import diffusers
import peft
import transformers
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import models  # noqa: E402

FORMAT_VERSION = "1"
SEED = 4321
UP_GAIN = 0.5  # up ~ N(0, UP_GAIN^2 / r), down ~ N(0, 1 / in): the update is about half of W

# The per-case multipliers.
CASES = {
    "peft": [("peft", 0.8)],
    "kohya": [("kohya", 0.7)],
    "old": [("old", 1.3)],
    "attn_procs": [("attn_procs", 0.6)],
    "stacked": [("peft", 0.8), ("kohya", 0.5)],
    "trained_peft": [("trained_peft", 1.0)],
    "trained_kohya": [("trained_kohya", 1.0)],
}
TRAINED_MIN_CHANGE = 0.01
PEFT_UNET_MULTIPLIER = 0.9


# --- which modules, with what ranks and alphas ----------------------------------------------

def unet_modules(unet):
    """The UNet's LoRA targets by kind: {"attn": [...], "proj": [...], "ff": [...]}."""
    attn, proj, ff = [], [], []
    for name, mod in unet.named_modules():
        if isinstance(mod, diffusers.models.attention_processor.Attention):
            attn += [f"{name}.{p}" for p in ("to_q", "to_k", "to_v", "to_out.0")]
        elif isinstance(mod, diffusers.models.transformers.transformer_2d.Transformer2DModel):
            proj += [f"{name}.proj_in", f"{name}.proj_out"]
        elif isinstance(mod, diffusers.models.attention.FeedForward):
            ff += [f"{name}.net.0.proj", f"{name}.net.2"]
    return {"attn": attn, "proj": proj, "ff": ff}


def te_modules(te):
    attn, mlp = [], []
    for i in range(te.config.num_hidden_layers):
        layer = f"text_model.encoder.layers.{i}"
        attn += [f"{layer}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "out_proj")]
        mlp += [f"{layer}.mlp.fc1", f"{layer}.mlp.fc2"]
    return {"attn": attn, "mlp": mlp}


def draw(model, names, ranks, gen, half=False):
    """{name: (down, up)} for each module: down [r, in(, 1, 1)], up [out, r(, 1, 1)]."""
    out = {}
    for name in names:
        w = model.get_submodule(name).weight
        r, o, i = ranks[name], w.shape[0], w.shape[1]
        down = torch.randn(r, i, generator=gen) / i ** 0.5
        up = torch.randn(o, r, generator=gen) * (UP_GAIN / r ** 0.5)
        if w.dim() == 4:
            down, up = down[:, :, None, None], up[:, :, None, None]
        if half:  # exact in float16, so the file holds the drawn values
            down, up = down.half(), up.half()
        out[name] = (down.contiguous(), up.contiguous())
    return out


def most_common(values):
    """diffusers' choice (collections.Counter.most_common): the first of the most frequent."""
    values = list(values)
    return max(values, key=values.count) if values else None


# --- writing the files -------------------------------------------------------------------------

def write_peft(path, unet, te, gen):
    """injects adapters with peft, redraws them, and saves with diffusers' save_lora_weights."""
    mods_u = unet_modules(unet)["attn"]
    mods_t = te_modules(te)["attn"]
    low_u = [m for m in mods_u if m.startswith("down_blocks.1.") and ".attn2." in m]
    low_t = [m for m in mods_t if ".layers.4." in m]
    written = {}
    for comp, model, mods, low in (("unet", unet, mods_u, low_u), ("text_encoder", te, mods_t, low_t)):
        ranks = {m: 2 if m in low else 4 for m in mods}
        # lora_alpha = the main rank, as diffusers' training scripts configure it.
        config = LoraConfig(r=4, lora_alpha=4, target_modules=mods, rank_pattern={m: 2 for m in low})
        model.add_adapter(config)
        tensors = draw(model, mods, ranks, gen)
        with torch.no_grad():
            for m, (down, up) in tensors.items():
                layer = model.get_submodule(m)
                layer.lora_A["default"].weight.copy_(down)
                layer.lora_B["default"].weight.copy_(up)
        written[comp] = {m: (down, up, None) for m, (down, up) in tensors.items()}
    StableDiffusionPipeline.save_lora_weights(
        path.parent, unet_lora_layers=get_peft_model_state_dict(unet),
        text_encoder_lora_layers=get_peft_model_state_dict(te, save_embedding_layers=False), weight_name=path.name)
    return written


def kohya_key(comp, module):
    return ("lora_unet_" if comp == "unet" else "lora_te_") + module.replace(".", "_")


def write_kohya(path, unet, te, gen):
    """kohya-ss' layout, float16, alphas != rank and varying.

    Text encoder: every self_attn projection has alpha 2 (diffusers 0.30 cannot apply
    per-module alphas there: its alpha_pattern keys stop at "self_attn" and match no
    module, so those layers would get the most common alpha); the MLPs have others.
    """
    mu, mt = unet_modules(unet), te_modules(te)
    unet_names = mu["attn"] + mu["proj"] + mu["ff"]
    te_names = mt["attn"] + mt["mlp"]
    ranks = {m: 8 if (".ff." in m or m.endswith("to_v")) else 4 for m in unet_names + te_names}
    alphas = {}
    for k, m in enumerate(unet_names):
        alphas[m] = (1.0, 2.0, 3.0, 8.0)[k % 4]
    for k, m in enumerate(te_names):
        alphas[m] = 2.0 if ".self_attn." in m else (1.0, 6.0)[k % 2]
    state, written = {}, {}
    for comp, model, names in (("unet", unet, unet_names), ("text_encoder", te, te_names)):
        tensors = draw(model, names, ranks, gen, half=True)
        written[comp] = {}
        for m, (down, up) in tensors.items():
            key = kohya_key(comp, m)
            state[f"{key}.lora_down.weight"] = down
            state[f"{key}.lora_up.weight"] = up
            state[f"{key}.alpha"] = torch.tensor(alphas[m], dtype=torch.float16)
            written[comp][m] = (down, up, alphas[m])
    save_file(state, path, metadata={"ss_network_module": "networks.lora"})
    return written


def old_unet_key(module, part, prefix="unet."):
    """Attention processors (to_q_lora) or LoRACompatibleLinear (to_q.lora) spellings."""
    attn, proj = module.rsplit(".", 1) if not module.endswith("to_out.0") else (module[:-9], "to_out")
    return f"{prefix}{attn}.processor.{proj}_lora.{part}.weight"


def write_old(path, unet, te, gen):
    mods_u = unet_modules(unet)["attn"]
    mt = te_modules(te)
    mods_t = mt["attn"] + mt["mlp"]
    ranks = {m: 4 for m in mods_u + mods_t}
    state, written = {}, {}
    for comp, model, mods in (("unet", unet, mods_u), ("text_encoder", te, mods_t)):
        tensors = draw(model, mods, ranks, gen)
        written[comp] = {m: (d, u, None) for m, (d, u) in tensors.items()}
        for k, (m, (down, up)) in enumerate(tensors.items()):
            for part, t in (("down", down), ("up", up)):
                if comp == "unet" and (k // 4) % 2 == 0:
                    key = old_unet_key(m, part)
                elif comp == "unet":
                    key = f"unet.{m}.lora.{part}.weight"
                elif ".self_attn." in m and (".layers.0." in m or ".layers.1." in m):
                    short = {"q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "out_proj": "to_out"}
                    layer, proj = m.rsplit(".", 1)
                    key = f"text_encoder.{layer}.{short.get(proj, proj)}_lora.{part}.weight"
                else:
                    key = f"text_encoder.{m}.lora_linear_layer.{part}.weight"
                state[key] = t
    save_file(state, path)
    return written


def write_attn_procs(path, unet, gen):
    mods = unet_modules(unet)["attn"]
    tensors = draw(unet, mods, {m: 4 for m in mods}, gen)
    state = {}
    for m, (down, up) in tensors.items():
        state[old_unet_key(m, "down", prefix="")] = down
        state[old_unet_key(m, "up", prefix="")] = up
    save_file(state, path)
    return {"unet": {m: (d, u, None) for m, (d, u) in tensors.items()}}


def write_peft_unet(folder, unet, gen):
    """PEFT's save_pretrained: base_model.model.* keys and adapter_config.json."""
    mu = unet_modules(unet)
    mods = [m for m in mu["attn"] if m.endswith(("to_q", "to_v"))] + mu["proj"]
    special = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
    config = LoraConfig(r=4, lora_alpha=6, target_modules=["to_q", "to_v", "proj_in", "proj_out"],
                        alpha_pattern={special: 2})
    model = get_peft_model(unet, config)
    tensors = draw(unet, mods, {m: 4 for m in mods}, gen)
    with torch.no_grad():
        for m, (down, up) in tensors.items():
            layer = unet.get_submodule(m)
            layer.lora_A["default"].weight.copy_(down)
            layer.lora_B["default"].weight.copy_(up)
    # The two files of model.save_pretrained, without the model card it also writes
    # (which needs Jinja2). PEFT writes target_modules from a set, in hash order:
    # sorted here for stable bytes.
    folder.mkdir(exist_ok=True)
    save_file(get_peft_model_state_dict(model), folder / "adapter_model.safetensors", metadata={"format": "pt"})
    cfg = config.to_dict()
    cfg["target_modules"] = sorted(cfg["target_modules"])
    (folder / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return {"unet": {m: (d, u, 2.0 if m == special else 6.0) for m, (d, u) in tensors.items()}}


def read_trained(trained_dir, out):
    """Copies our trainer's two files into out and returns {case: {component: {module:
    (down, up, alpha)}}} from them; the kohya file must hold down, up and alpha for
    exactly the PEFT file's modules."""
    peft_file, kohya_file = out / "trained.safetensors", out / "trained_kohya.safetensors"
    shutil.copyfile(trained_dir / "lora.safetensors", peft_file)
    shutil.copyfile(trained_dir / "lora_kohya.safetensors", kohya_file)
    peft_state, kohya_state = load_file(peft_file), load_file(kohya_file)
    from_peft, from_kohya, expected_keys = {}, {}, set()
    for key in peft_state:
        if not key.endswith(".lora_A.weight"):
            continue
        comp, module = key[:-len(".lora_A.weight")].split(".", 1)
        down, up = peft_state[key], peft_state[key.replace("lora_A", "lora_B")]
        from_peft.setdefault(comp, {})[module] = (down, up, None)
        k = kohya_key(comp, module)
        expected_keys |= {f"{k}.lora_down.weight", f"{k}.lora_up.weight", f"{k}.alpha"}
        from_kohya.setdefault(comp, {})[module] = (kohya_state[f"{k}.lora_down.weight"],
                                                   kohya_state[f"{k}.lora_up.weight"],
                                                   float(kohya_state[f"{k}.alpha"]))
    if set(kohya_state) != expected_keys:
        sys.exit(f"lora.py: {kohya_file}: keys differ from the PEFT file's modules: "
                 f"{sorted(set(kohya_state) ^ expected_keys)[:10]}")
    kinds = {"unet": ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out"),
             "text_encoder": ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")}
    missing = [f"{comp} {kind}" for comp, names in kinds.items() for kind in names
               if not any(m.endswith("." + kind) for m in from_peft.get(comp, {}))]
    if missing:
        sys.exit(f"lora.py: {peft_file}: no adapter on {', '.join(missing)}; tests/fixtures/lora/trained.yaml "
                 "must train every kind of target")
    return {"trained_peft": from_peft, "trained_kohya": from_kohya}, {"trained_peft": peft_file,
                                                                         "trained_kohya": kohya_file}


# --- diffusers with the adapters, in float64 -------------------------------------------------

def load_models(models_dir):
    root = models_dir / "tiny-sd"
    te = CLIPTextModel.from_pretrained(root, subfolder="text_encoder")
    unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(root, subfolder="vae")
    return te, unet, vae


def f64_pipeline(te, unet, vae):
    return StableDiffusionPipeline(
        vae=vae, text_encoder=models.as_float64(te), tokenizer=None, unet=models.as_float64(unet),
        scheduler=PNDMScheduler(**models.SCHEDULER_CONFIG), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)


def expected_scalings(written, multiplier):
    """{component: {module: scaling}} by the rules in the module docstring."""
    out = {}
    for comp, mods in written.items():
        common = most_common(d.shape[0] for d, _, _ in mods.values())
        out[comp] = {m: multiplier * (alpha if alpha is not None else common) / d.shape[0]
                     for m, (d, _, alpha) in mods.items()}
    return out


def check_adapter(model, adapter, written, scalings, what):
    """Every module of the file adapted with the file's tensors and our scaling; no other."""
    adapted = {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer) and adapter in m.lora_A}
    problems = sorted(set(adapted) ^ set(written))
    for name in sorted(set(adapted) & set(written)):
        layer, (down, up, _) = adapted[name], written[name]
        a, b = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
        if a.dtype != torch.float64 or not torch.equal(a, down.double()) or not torch.equal(b, up.double()):
            problems.append(f"{name}: weights differ from the file (or not float64)")
        if abs(layer.scaling[adapter] - scalings[name]) > 1e-12 * abs(scalings[name]):
            problems.append(f"{name}: scaling {layer.scaling[adapter]} != {scalings[name]}")
    if problems:
        sys.exit(f"lora.py: {what}: diffusers did not load the adapter as expected:\n  "
                 + "\n  ".join(problems[:20]))


def run_unet(unet, inputs):
    embedding = diffusers.models.embeddings.get_timestep_embedding
    diffusers.models.embeddings.get_timestep_embedding = models.timestep_embedding_f64
    try:
        with torch.no_grad():
            return unet(inputs["unet.sample"].double(), inputs["unet.timestep"],
                        encoder_hidden_states=inputs["unet.encoder_hidden_states"].double()).sample
    finally:
        diffusers.models.embeddings.get_timestep_embedding = embedding


def run_te(te, inputs):
    # transformers' causal mask needs the float64 default dtype (see models.py).
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.no_grad():
            return te(inputs["te.input_ids"].long()).last_hidden_state
    finally:
        torch.set_default_dtype(default_dtype)


def rel(a, b):
    return float((a - b).norm() / b.norm())


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: lora.py MODELS_DIR OUT_DIR TRAINED_DIR")
    models_dir, out, trained_dir = (pathlib.Path(a) for a in sys.argv[1:])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    torch.manual_seed(SEED)  # peft draws default initial values before ours replace them

    te, unet, vae = load_models(models_dir)
    gen = models.generator(SEED, 0)
    files = {
        "peft": out / "peft.safetensors", "kohya": out / "kohya.safetensors",
        "old": out / "old.safetensors", "attn_procs": out / "attn-procs.safetensors",
    }
    written = {
        "peft": write_peft(files["peft"], copy.deepcopy(unet), copy.deepcopy(te), gen),
        "kohya": write_kohya(files["kohya"], unet, te, gen),
        "old": write_old(files["old"], unet, te, gen),
        "attn_procs": write_attn_procs(files["attn_procs"], unet, gen),
    }
    peft_unet_written = write_peft_unet(out / "peft-unet", copy.deepcopy(unet), gen)
    trained_written, trained_files = read_trained(trained_dir, out)
    written.update(trained_written)
    files.update(trained_files)

    reference = load_file(models_dir / "tiny-sd-outputs.safetensors")
    names = ("te.input_ids", "unet.sample", "unet.timestep", "unet.encoder_hidden_states")
    inputs = {k: reference[k] for k in names}
    results = {f"inputs.{k}": v for k, v in inputs.items()}
    base = f64_pipeline(te, unet, vae)
    base_out = {"unet": run_unet(base.unet, inputs), "te": run_te(base.text_encoder, inputs)}

    for case, adapters in CASES.items():
        pipe = f64_pipeline(te, unet, vae)
        for name, _ in adapters:
            pipe.load_lora_weights(str(files[name]), adapter_name=name)
        pipe.set_adapters([n for n, _ in adapters], [w for _, w in adapters])
        for name, weight in adapters:
            scalings = expected_scalings(written[name], weight)
            for comp, model in (("unet", pipe.unet), ("text_encoder", pipe.text_encoder)):
                check_adapter(model, name, written[name].get(comp, {}), scalings.get(comp, {}),
                              f"{case}/{name}/{comp}")
        results[f"{case}.unet"] = models.f32(run_unet(pipe.unet, inputs))
        if any("text_encoder" in written[n] for n, _ in adapters):
            results[f"{case}.te"] = models.f32(run_te(pipe.text_encoder, inputs))

    unet64 = models.as_float64(unet)
    PeftModel.from_pretrained(unet64, out / "peft-unet", adapter_name="default")
    for layer in unet64.modules():
        if isinstance(layer, LoraLayer):
            layer.scale_layer(PEFT_UNET_MULTIPLIER)
    check_adapter(unet64, "default", peft_unet_written["unet"],
                  {m: PEFT_UNET_MULTIPLIER * a / d.shape[0]
                   for m, (d, _, a) in peft_unet_written["unet"].items()}, "peft_unet")
    results["peft_unet.unet"] = models.f32(run_unet(unet64, inputs))

    metadata = {
        "format_version": FORMAT_VERSION, "generator": "tools/golden/lora.py", "seed": str(SEED),
        "torch_version": torch.__version__, "diffusers_version": diffusers.__version__,
        "transformers_version": transformers.__version__, "peft_version": peft.__version__,
        "cases": json.dumps({**{c: a for c, a in CASES.items()},
                             "peft_unet": [["peft-unet", PEFT_UNET_MULTIPLIER]]}, sort_keys=True),
    }
    models.save_sorted(results, out / "lora-outputs.safetensors", metadata)

    for k in sorted(results):
        if k.startswith("inputs."):
            continue
        part = "unet" if k.endswith(".unet") else "te"
        change = rel(results[k].double(), base_out[part])
        print(f"lora.py: {k} {list(results[k].shape)} RMS {models.rms(results[k]):.4f}, "
              f"differs from the base model by {change:.3f} (relative L2)")
        if k.startswith("trained_") and change < TRAINED_MIN_CHANGE:
            sys.exit(f"lora.py: {k}: the trained adapter changes the output by only {change:.4f}")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"lora.py: wrote {out} ({size} bytes)")


if __name__ == "__main__":
    main()
