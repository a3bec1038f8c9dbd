"""Loads weights robarch saved into the reference PyTorch implementation of each architecture and
checks the logits match robarch's.

usage: crosscheck_models.py DIR
DIR holds, per model, NAME.json ({"arch", "family", "config", "io", "mean", "std"}),
NAME.safetensors (robarch's weights, PyTorch-style names) and NAME.io.safetensors (inputs `x` in
[0,1], robarch's eval-mode logits `y`, a weight `w` and robarch's input gradient `g` of
Σ w ⊙ logits). Prints one line per model; exits 1 on any mismatch.
"""
import json
import pathlib
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import reference_models  # noqa: E402

# Logits: the two implementations run the same libtorch kernels in a different op order and thread
# count; across MKL code paths (default, MKL_CBWR=AVX2, MKL_CBWR=COMPATIBLE) and 1 vs 2 threads
# their float32 logits moved by at most ~1e-6 at |logit| ≤ 2, so 1e-5 (relative to the largest
# logit, at least 1) leaves a factor of ten over what any CPU's arithmetic explains.
TOL = 1e-5
# Input gradients: see `check` (ReLU switches at rounding ties move single entries).
TOL_GRAD = 1e-3


def check(meta_path):
    meta = json.loads(meta_path.read_text())
    stem = meta_path.with_suffix("")
    sd = load_file(str(stem) + ".safetensors")
    io = load_file(str(stem) + ".io.safetensors")
    mean = sd.pop("normalize.mean")
    std = sd.pop("normalize.std")
    model = reference_models.build(meta["family"], meta["config"], meta["io"])
    ref = model.state_dict()
    problems = []
    for k in sorted(set(ref) - set(sd)):
        if not k.endswith("num_batches_tracked"):
            problems.append(f"missing in robarch: {k} {tuple(ref[k].shape)}")
    for k in sorted(set(sd) - set(ref)):
        problems.append(f"not in reference: {k} {tuple(sd[k].shape)}")
    for k in sorted(set(sd) & set(ref)):
        if sd[k].shape != ref[k].shape:
            problems.append(f"shape {k}: robarch {tuple(sd[k].shape)} reference {tuple(ref[k].shape)}")
    n_ref = sum(p.numel() for p in model.parameters())
    if n_ref != meta["num_parameters"]:
        problems.append(f"parameters: robarch {meta['num_parameters']} reference {n_ref}")
    if problems:
        return False, "; ".join(problems[:12])
    model.load_state_dict(sd, strict=False)
    model.eval()
    x = io["x"].clone().requires_grad_(True)
    y = model((x - mean) / std)
    (y * io["w"]).sum().backward()
    y = y.detach()
    err = (y - io["y"]).abs().max().item()
    scale = io["y"].abs().max().item()
    # Relative ℓ2 error of the input gradient: a ReLU whose pre-activation sits within float
    # rounding of 0 may switch between the two implementations and move single entries.
    # When the two float32 gradients differ beyond TOL_GRAD, the float64 gradient decides: robarch's
    # must be within twice the reference's own float32 error of it.
    rel = lambda a, b: ((a - b).norm() / b.norm().clamp_min(1e-12)).item()  # noqa: E731
    gerr = rel(io["g"], x.grad)
    grad_ok, note = gerr <= TOL_GRAD, ""
    if not grad_ok:
        m64 = model.double()
        x64 = io["x"].double().requires_grad_(True)
        (m64((x64 - mean.double()) / std.double()) * io["w"].double()).sum().backward()
        ours, theirs = rel(io["g"].double(), x64.grad), rel(x.grad.double(), x64.grad)
        note = f" (vs float64: robarch {ours:.1e}, reference {theirs:.1e})"
        grad_ok = ours <= max(TOL_GRAD, 2 * theirs)
    ok = err <= TOL * max(1.0, scale) and grad_ok
    return ok, (f"max |Δlogit| {err:.2e} (|logit| ≤ {scale:.2f}), ‖Δ∂/∂x‖/‖∂/∂x‖ {gerr:.1e}{note}, "
                f"{n_ref} parameters")


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    failed = 0
    for meta_path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
        try:
            ok, msg = check(meta_path)
        except Exception as e:  # a reference that cannot be built is a failure, not a crash
            ok, msg = False, f"{type(e).__name__}: {e}"
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {meta_path.stem}: {msg}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
