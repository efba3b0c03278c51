"""PyTorch reference for kernels/ops/optim.c (see tests/ops/optim.c)."""
import torch


def adamw_step(ins, params):
    """torch.optim.AdamW itself, on float64 copies, with its state set to the case's m
    and v as they stand after step - 1 steps; returns the stepped param, m and v."""
    param = ins["param"].detach().clone().requires_grad_(True)
    param.grad = ins["grad"].detach().clone()
    opt = torch.optim.AdamW(
        [param],
        lr=float(params.get("lr", "1e-3")),
        betas=(float(params.get("beta1", "0.9")), float(params.get("beta2", "0.999"))),
        eps=float(params.get("eps", "1e-8")),
        weight_decay=float(params.get("weight_decay", "1e-2")),
        foreach=False,
    )
    # torch 1.13 keeps the step count as a float tensor that step() increments first.
    opt.state[param] = {
        "step": torch.tensor(float(int(params.get("step", "1")) - 1)),
        "exp_avg": ins["m"].detach().clone(),
        "exp_avg_sq": ins["v"].detach().clone(),
    }
    opt.step()
    state = opt.state[param]
    return [param.detach(), state["exp_avg"], state["exp_avg_sq"]]


def global_norm(ins, params):
    """The total norm that torch.nn.utils.clip_grad_norm_ computes, over the present inputs."""
    present = [ins[name].detach().reshape(-1) for name in "abcd" if ins[name] is not None]
    return [torch.linalg.vector_norm(torch.cat(present)).reshape(1)]


REFS = {"adamw_step": adamw_step, "global_norm": global_norm}
