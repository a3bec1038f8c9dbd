"""Loads models exported by `robarch export` with their own `load.py`, as a user would (nothing of
robarch's on the path), and checks their logits against robarch's.

usage: check_exports.py DIR...
Each DIR is an export (load.py, model.json, export.json, the weights) plus `check.safetensors`
written by the test: inputs `x` in [0,1] and robarch's eval-mode logits `y` of the same weights.
Prints one line per export; exits 1 on any mismatch.
"""
import importlib.util
import json
import pathlib
import sys

import torch
from safetensors.torch import load_file

# The same tolerance as scripts/crosscheck_models.py (float32 op order, MKL code paths).
TOL = 1e-5


def load_export(d):
    """The model of export `d`, from its own load.py (imported under a name of its own)."""
    name = "export_" + "".join(c if c.isalnum() else "_" for c in d.name)
    spec = importlib.util.spec_from_file_location(name, d / "load.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.load(d)


def check(d):
    meta = json.loads((d / "export.json").read_text())
    if meta["library"] != "torchscript":
        names = set(load_file(str(d / "model.safetensors")))
        extra = [k for k in names if k.startswith("normalize.")]
        if extra:
            return False, f"robarch's buffers left in the weights: {extra}"
    model = load_export(d)
    io = load_file(str(d / "check.safetensors"))
    with torch.no_grad():
        y = model(io["x"])
    err = (y - io["y"]).abs().max().item()
    scale = io["y"].abs().max().item()
    ok = y.shape == io["y"].shape and err <= TOL * max(1.0, scale)
    return ok, (f"{meta['library']} {meta['class']}: max |Δlogit| {err:.2e} "
                f"(|logit| ≤ {scale:.2f}), {meta['origin']['checkpoint']} weights")


def main():
    torch.set_num_threads(1)
    failed = 0
    for arg in sys.argv[1:]:
        d = pathlib.Path(arg)
        try:
            ok, msg = check(d)
        except Exception as e:  # an export that cannot be loaded is a failure, not a crash
            ok, msg = False, f"{type(e).__name__}: {e}"
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {d.name}: {msg}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
