"""Recomputes robarch's `flatness` analysis (robust flatness: Stutz, Hein & Schiele, ICCV 2021,
"Relating Adversarially Robust Generalization to Flat Minima") with plain PyTorch on the same
weights and points, for tests/it/flatness.rs.

usage: crosscheck_flatness.py EXPORT_DIR PREPARED_DIR REQUEST_JSON
EXPORT_DIR is a `robarch export` of the trained model (load.py, model.json, model.safetensors),
loaded with its own load.py as scripts/check_exports.py does; its tensor names are robarch's (the
export only drops the `normalize.*` buffers). PREPARED_DIR is a prepare stage's cache entry
(data.safetensors: uint8 NCHW `train_x`, int64 `train_y`). REQUEST_JSON is
  {"points", "batch_size", "attack_steps", "seed",
   "threat": {"norm": "linf"|"l2"|"l1", "eps"} or null,
   "average": {"radius", "samples"}, "worst": {"radius", "steps"}}
Prints one JSON object laid out as robarch's flatness.json, plus `clean_loss` (no attack) and
`perturbed_names` (the perturbed tensors, in order).
"""
import json
import pathlib
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from check_exports import load_export  # noqa: E402

MASK = (1 << 64) - 1


def derive(seed, parts):
    """src/rng.rs `derive`: SplitMix64 mixing of a seed and a position, in 64-bit arithmetic."""
    z = (seed ^ 0x9E3779B97F4A7C15) & MASK
    for p in parts:
        z = (z + p * 0xBF58476D1CE4E5B9 + 0x9E3779B97F4A7C15) & MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
    return z


def perturbed(net):
    """The tensors flatness perturbs, sorted by name: trainable ones of dim >= 2 and the biases
    beside them (Stutz et al. leave normalisation layers out)."""
    params = dict(net.named_parameters())
    kept = []
    for name in sorted(params, key=str.encode):
        if not params[name].requires_grad:
            continue
        weight = params.get(name[: -len("bias")] + "weight") if name.endswith(".bias") else None
        if params[name].dim() >= 2 or (weight is not None and weight.requires_grad and weight.dim() >= 2):
            kept.append(name)
    return kept


def per_sample_norm(t, norm):
    flat = t.flatten(1)
    if norm == "linf":
        return flat.abs().amax(1)
    if norm == "l2":
        return flat.square().sum(1).sqrt()
    return flat.abs().sum(1)


def col(v, like):
    return v.view(-1, *([1] * (like.dim() - 1)))


def step(x, adv, g, norm, eps, alpha):
    """One PGD step, projected: src/attacks/pgd.rs `step` (ℓ1: the dense step)."""
    if norm == "linf":
        return torch.clamp(torch.min(torch.max(adv + g.sign() * alpha, x - eps), x + eps), 0.0, 1.0)
    if norm == "l2":
        adv = adv + g / (col(per_sample_norm(g, "l2"), g) + 1e-10) * alpha
        delta = adv - x
        factor = (eps / (col(per_sample_norm(delta, "l2"), x) + 1e-12)).clamp_max(1.0)
        return (x + delta * factor).clamp(0.0, 1.0)
    if norm == "l1":
        d = adv - x + g / (col(per_sample_norm(g, "l1"), g) + 1e-12) * alpha
        delta = d * (eps / (col(per_sample_norm(d, "l1"), x) + 1e-12)).clamp_max(1.0)
        return (x + delta).clamp(0.0, 1.0)
    raise ValueError(f"unknown norm {norm}")


def pgd(model, x, y, threat, steps):
    """PGD from the clean point (no random start), step 2.5·ε/steps, on the mean cross-entropy;
    the gradient is taken with respect to the input only."""
    if threat is None or threat["eps"] == 0:
        return x
    norm, eps = threat["norm"], threat["eps"]
    alpha = 2.5 * eps / steps
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(adv), y), adv)
        adv = step(x, adv.detach(), g, norm, eps, alpha)
    return adv.detach()


def batches(n, size):
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


def robust_loss(model, x, y, req, threat):
    """Σ_i CE(f(x_i + δ_i), y_i) / n at PGD's final iterate."""
    total = 0.0
    for lo, hi in batches(len(x), req["batch_size"]):
        adv = pgd(model, x[lo:hi], y[lo:hi], threat, req["attack_steps"])
        with torch.no_grad():
            total += F.cross_entropy(model(adv), y[lo:hi], reduction="sum").item()
    return total / len(x)


def main():
    export, prepared, req = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), json.loads(sys.argv[3])
    torch.set_num_threads(1)
    model = load_export(export).eval()
    net = model.net  # load.py's Normalized wraps the bare network, whose names are robarch's
    data = load_file(str(prepared / "data.safetensors"))
    n = req["points"]
    x = data["train_x"][:n].to(torch.float32) / 255.0
    y = data["train_y"][:n]
    threat = req["threat"]

    params = dict(net.named_parameters())
    names = perturbed(net)
    stored = set(load_file(str(export / "model.safetensors")))
    missing = [k for k in names if k not in stored]
    assert not missing, f"perturbed tensors not in the exported weights: {missing}"
    live = [params[k] for k in names]
    w = [p.detach().clone() for p in live]
    w_norm = [float(t.norm()) for t in w]

    def set_weights(nus):
        with torch.no_grad():
            for p, w0, nu in zip(live, w, nus):
                p.copy_(w0 if nu is None else w0 + nu)

    L = lambda: robust_loss(model, x, y, req, threat)  # noqa: E731
    base = L()
    clean = robust_loss(model, x, y, req, None)

    # Average case: Gaussian directions, each tensor's scaled to radius·‖w_l‖.
    avg = req["average"]
    losses = []
    for k in range(avg["samples"]):
        torch.manual_seed(derive(req["seed"], [k]) & ((1 << 63) - 1))
        nus = []
        for t, wn in zip(w, w_norm):
            g = torch.randn(t.shape, dtype=torch.float32)
            nus.append(g * (avg["radius"] * wn / float(g.norm())))
        set_weights(nus)
        losses.append(L())
    set_weights([None] * len(w))

    # Worst case: normalised per-tensor gradient ascent on the robust loss, projected onto
    # ‖ν_l‖ ≤ radius·‖w_l‖.
    wc = req["worst"]
    r, steps = wc["radius"], wc["steps"]
    nus = [torch.zeros_like(t) for t in w]
    for _ in range(steps):
        set_weights(nus)
        grads = [torch.zeros_like(t) for t in w]
        for lo, hi in batches(n, req["batch_size"]):
            adv = pgd(model, x[lo:hi], y[lo:hi], threat, req["attack_steps"])
            loss = F.cross_entropy(model(adv), y[lo:hi], reduction="sum") / n
            for acc, g in zip(grads, torch.autograd.grad(loss, live)):
                acc += g
        for i, (g, wn) in enumerate(zip(grads, w_norm)):
            nu = nus[i] + g * (2.5 * r * wn / steps / (float(g.norm()) + 1e-12))
            nn_ = float(nu.norm())
            if nn_ > r * wn:
                nu = nu * (r * wn / nn_)
            nus[i] = nu
    set_weights(nus)
    worst = L()
    set_weights([None] * len(w))

    mean = sum(losses) / len(losses)
    print(json.dumps({
        "points": n,
        "threat": threat,
        "perturbed": len(names),
        "perturbed_names": names,
        "clean_loss": clean,
        "robust_loss": base,
        "average": {"radius": avg["radius"], "samples": avg["samples"], "losses": losses,
                    "flatness": mean - base},
        "worst": {"radius": r, "steps": steps, "loss": worst, "flatness": worst - base},
    }))


if __name__ == "__main__":
    main()
