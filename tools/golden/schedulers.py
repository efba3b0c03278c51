#!/usr/bin/env python3
"""Writes the noise schedule and sampler fixture from diffusers' schedulers.

usage: schedulers.py OUT_DIR      (make golden: OUT_DIR = tests/fixtures/schedulers)

Each sampler is the diffusers class a user switches to, made with from_config from
a model's scheduler config (so options the config leaves out take that class's own
defaults, and `_use_default_values` is honoured):

  ddpm             DDPMScheduler
  ddim             DDIMScheduler (step with eta 0)
  pndm             PNDMScheduler (PLMS with skip_prk_steps, else Runge-Kutta warm-up)
  euler            EulerDiscreteScheduler (use_karras_sigmas False)
  euler_a          EulerAncestralDiscreteScheduler
  dpmpp_2m         DPMSolverMultistepScheduler, dpmsolver++, order 2, midpoint
  dpmpp_2m_karras  the same with use_karras_sigmas True

The sampler's name fixes use_karras_sigmas, algorithm_type, solver_order and
solver_type; everything else comes from the config.

OUT_DIR gets the configs as JSON files (<config>.json, read by the C test through
noise_schedule_load) and schedulers.safetensors:

  x_init [2,4,8,8], eps_bank [E,512], noise_bank [E,512]   shared inputs (f32)
  <case>.timesteps [n], .input_scale [n] (scale_model_input's divisor),
  <case>.sigmas [n+1] (Euler, Euler a, DPM++), <case>.init_noise_sigma [1],
  <case>.x [n, 512]      x after each of the n steps, from x_0 = x_init *
                         init_noise_sigma; step i's model output is
                         0.5 * scale_model_input(x_i) + eps_bank[i] and the ancestral
                         samplers' fresh noise is noise_bank[i]
  <config>.betas, .alphas_cumprod   DDPMScheduler's (f32, as diffusers keeps them)
  <config>.noisy, .velocity [P,2,4,8,8]   add_noise / get_velocity of x_init with
                         noise eps_bank[0] at the timestep pairs FORWARD_T (the
                         FORWARD_CONFIGS only)
  <config>.<sampler>.table_timesteps, .table_sigmas, .table_lengths
                         set_timesteps for every count in TABLE_STEPS, concatenated

Every value is float32 in diffusers (timesteps are integers or float32), so f32
holds them exactly. The metadata has format_version and the case list as JSON
(name, config, sampler, steps, and "refused" with diffusers' message where diffusers
refuses the combination). The output is the same bytes on every run.
"""
import json
import pathlib
import sys

import numpy as np
import torch

import diffusers
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,
                       EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, PNDMScheduler)
from diffusers.schedulers import scheduling_ddpm, scheduling_euler_ancestral_discrete, scheduling_euler_discrete

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from models import save_sorted  # noqa: E402

FORMAT_VERSION = "1"
SEED = 20250101
SHAPE = (2, 4, 8, 8)
ROOT = pathlib.Path(__file__).resolve().parents[2]

SAMPLERS = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {"use_karras_sigmas": False}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                               "solver_type": "midpoint", "use_karras_sigmas": False}),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                      "solver_type": "midpoint", "use_karras_sigmas": True}),
}

# The configs: SD1.5's own file; an SD2-like v-prediction model with trailing
# spacing, zero terminal SNR and a final sigma of sigma_min (so DPM++ takes a
# second-order last step at 20 steps); linspace spacing with linear betas, clipping,
# set_alpha_to_one and PNDM's Runge-Kutta warm-up (no skip_prk_steps); and a cosine
# schedule predicting the sample, over 800 training steps, with leading spacing for
# every class, no clip_sample (DDPM and DDIM then clip) and a `_use_default_values`
# entry.
CONFIGS = {
    "sd15": json.loads((ROOT / "tools/sd15_configs/scheduler.json").read_text()),
    "v_trailing": {
        "_class_name": "DDIMScheduler", "_diffusers_version": "0.30.3", "beta_start": 0.00085,
        "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
        "prediction_type": "v_prediction", "timestep_spacing": "trailing", "rescale_betas_zero_snr": True,
        "steps_offset": 1, "clip_sample": False, "set_alpha_to_one": False, "skip_prk_steps": True,
        "final_sigmas_type": "sigma_min", "trained_betas": None,
    },
    "linspace": {
        "_class_name": "DDPMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "linear",
        "num_train_timesteps": 1000, "timestep_spacing": "linspace", "set_alpha_to_one": True,
        "clip_sample": True, "clip_sample_range": 1.5, "variance_type": "fixed_large",
        "final_sigmas_type": "sigma_min", "lower_order_final": False,
    },
    "cosine_sample": {
        "_class_name": "DPMSolverMultistepScheduler", "beta_schedule": "squaredcos_cap_v2",
        "num_train_timesteps": 800, "prediction_type": "sample", "timestep_spacing": "leading",
        "steps_offset": 1, "variance_type": "fixed_small_log",
        "euler_at_final": True, "set_alpha_to_one": False, "use_karras_sigmas": True,
        "_use_default_values": ["set_alpha_to_one"],
    },
}

# (config, samplers, steps): full 20-step runs for the two main configs, short runs
# for the rest (the fixture stays under 1 MB), and DPM++ at 7 steps for
# lower_order_final.
ALL = list(SAMPLERS)
RUNS = [
    ("sd15", ALL, 20),
    ("v_trailing", ALL, 20),
    ("linspace", ALL, 7),
    # Not DPM++ Karras: its first two timesteps are equal here (799, 799), and
    # diffusers' index_for_timestep then starts at the second and steps off the end.
    ("cosine_sample", ALL[:-1], 7),
    ("sd15", ["dpmpp_2m", "dpmpp_2m_karras"], 7),
    ("linspace", ["pndm"], 3),  # Runge-Kutta warm-up needs 4 steps: refused
]
TABLE_STEPS = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 31, 50]
FORWARD_CONFIGS = ["sd15", "v_trailing"]
FORWARD_T = [(799, 0), (500, 1), (37, 761)]  # within every config's num_train_timesteps

EULER_CLASSES = (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler)
SIGMA_CLASSES = EULER_CLASSES + (DPMSolverMultistepScheduler,)


def make(config, sampler):
    cls, overrides = SAMPLERS[sampler]
    return cls.from_config(dict(config), **overrides)


class NoiseFeed:
    """Stands in for randn_tensor in the scheduler modules: hands out the noise the
    current step should use (the C test passes the same values to sampler_step)."""

    def __init__(self):
        self.noise = None

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        assert tuple(shape) == self.noise.shape, (shape, self.noise.shape)
        return self.noise.clone()


FEED = NoiseFeed()
# DDPM and Euler ancestral use the noise; Euler draws it at every step and ignores it
# (s_churn 0).
for module in (scheduling_ddpm, scheduling_euler_discrete, scheduling_euler_ancestral_discrete):
    module.randn_tensor = FEED


def f32(x):
    return torch.as_tensor(np.asarray(x, dtype=np.float64)).to(torch.float32).reshape(-1)


def run_case(config, sampler, steps, x_init, eps_bank, noise_bank):
    """The trajectory and schedule of one sampler, as StableDiffusionPipeline's loop runs it."""
    s = make(config, sampler)
    s.set_timesteps(steps)
    x = x_init * s.init_noise_sigma
    xs, divisors = [], []
    for i, t in enumerate(s.timesteps):
        x_in = s.scale_model_input(x, t)
        # What scale_model_input divides by (Euler's, in float32), or 1.
        divisors.append(float((s.sigmas[i] ** 2 + 1) ** 0.5) if isinstance(s, EULER_CLASSES) else 1.0)
        model_output = 0.5 * x_in + eps_bank[i].reshape(SHAPE)
        FEED.noise = noise_bank[i].reshape(SHAPE)
        x = s.step(model_output, t, x).prev_sample
        assert x.dtype == torch.float32
        xs.append(x)
    out = {
        "timesteps": f32(s.timesteps.numpy()),
        "input_scale": f32(divisors),
        "init_noise_sigma": f32(float(s.init_noise_sigma)),
        "x": torch.stack(xs).reshape(len(xs), -1).contiguous(),
    }
    if isinstance(s, SIGMA_CLASSES):
        out["sigmas"] = f32(s.sigmas.numpy())
    return out


def tables(config, sampler):
    """set_timesteps' timesteps and sigmas for each count of TABLE_STEPS."""
    ts, sig, lengths = [], [], []
    for n in TABLE_STEPS:
        s = make(config, sampler)
        try:
            s.set_timesteps(n)
        except ValueError:  # PNDM's Runge-Kutta warm-up below 4 steps
            lengths.append(-1)
            continue
        lengths.append(len(s.timesteps))
        ts.append(s.timesteps.numpy().astype(np.float64))
        if isinstance(s, SIGMA_CLASSES):
            sig.append(s.sigmas.numpy().astype(np.float64))
    out = {"table_timesteps": f32(np.concatenate(ts)),
           "table_lengths": torch.tensor(lengths, dtype=torch.int32)}
    if sig:
        out["table_sigmas"] = f32(np.concatenate(sig))
    return out


def forward_process(config, x_init, noise):
    """DDPMScheduler's training-side helpers at the FORWARD_T timestep pairs."""
    s = DDPMScheduler.from_config(dict(config))
    noisy, velocity = [], []
    for pair in FORWARD_T:
        t = torch.tensor(pair, dtype=torch.int64)
        noisy.append(s.add_noise(x_init, noise, t))
        velocity.append(s.get_velocity(x_init, noise, t))
    return {"betas": s.betas.clone(), "alphas_cumprod": s.alphas_cumprod.clone(),
            "noisy": torch.stack(noisy), "velocity": torch.stack(velocity)}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = pathlib.Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, config in CONFIGS.items():
        (out_dir / f"{name}.json").write_text(json.dumps(config, indent=2) + "\n")

    gen = torch.Generator().manual_seed(SEED)
    n = int(np.prod(SHAPE))
    bank_rows = 21  # the most evaluations of any run (PNDM's 20 steps: 21)
    x_init = torch.randn(SHAPE, generator=gen)
    eps_bank = torch.randn((bank_rows, n), generator=gen)
    noise_bank = torch.randn((bank_rows, n), generator=gen)
    tensors = {"x_init": x_init, "eps_bank": eps_bank, "noise_bank": noise_bank}

    cases = []
    for config_name, samplers, steps in RUNS:
        config = CONFIGS[config_name]
        for sampler in samplers:
            name = f"{config_name}.{sampler}.{steps}"
            case = {"name": name, "config": config_name, "sampler": sampler, "steps": steps}
            try:
                result = run_case(config, sampler, steps, x_init, eps_bank, noise_bank)
            except (ValueError, NotImplementedError) as e:
                case["refused"] = str(e).splitlines()[0]
                cases.append(case)
                continue
            assert len(result["timesteps"]) <= bank_rows
            for key, value in result.items():
                tensors[f"{name}.{key}"] = value
            cases.append(case)
    for config_name, config in CONFIGS.items():
        for key, value in forward_process(config, x_init, eps_bank[0].reshape(SHAPE)).items():
            if key in ("betas", "alphas_cumprod") or config_name in FORWARD_CONFIGS:
                tensors[f"{config_name}.{key}"] = value
        for sampler in SAMPLERS:
            try:
                result = tables(config, sampler)
            except (ValueError, NotImplementedError):
                continue  # refused at any step count (prediction_type sample)
            for key, value in result.items():
                tensors[f"{config_name}.{sampler}.{key}"] = value

    metadata = {
        "format_version": FORMAT_VERSION,
        "cases": json.dumps(cases),
        "table_steps": json.dumps(TABLE_STEPS),
        "forward_t": json.dumps(FORWARD_T),
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
    }
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_sorted(tensors, out_dir / "schedulers.safetensors", metadata)
    size = (out_dir / "schedulers.safetensors").stat().st_size
    print(f"schedulers.py: wrote {out_dir} ({len(cases)} cases, {size / 1024:.0f} KiB)")
    for case in cases:
        if "refused" in case:
            print(f"  {case['name']}: refused by diffusers: {case['refused']}")


if __name__ == "__main__":
    main()
