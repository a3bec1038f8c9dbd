"""Runs the reference attack libraries on a robarch model loaded in PyTorch, for
tests/it/attacks_crosscheck.rs.

usage: crosscheck_attacks.py DIR
DIR holds model.json ({"arch", "family", "config", "io", "mean", "std", "num_parameters"}),
model.safetensors (robarch's weights), data.safetensors (`x` float32 [N,C,H,W] in [0,1], `y`
int64 [N]) and request.json:
  {"threads": 1, "batch_size": 500,
   "pgd": [{"name", "norm": "Linf"|"L2", "eps", "alpha", "steps"}],        # torchattacks, no random start
   "deepfool": [{"name", "steps", "overshoot"}],                           # torchattacks, ℓ2
   "aa":  [{"name", "norm", "eps", "version": "custom"|"standard", "attacks": [...], "seeds": [...],
            "square": {attribute: value}}]}                               # optional, set on AutoAttack's Square
Writes DIR/reference.safetensors (`pgd/<name>`, `deepfool/<name>`: adversarial images; `aa/<name>/seed<s>`: uint8
per-sample robust flags) and DIR/reference.json ({"clean_accuracy", "aa": {name: {"robust_accuracy":
[per seed], "seconds": [per seed]}}}).
"""
import json
import logging
import pathlib
import sys
import time

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import reference_models  # noqa: E402


class Normalized(torch.nn.Module):
    """[0,1] images in, logits out: robarch keeps the normalisation inside the model."""

    def __init__(self, body, mean, std):
        super().__init__()
        self.body = body
        self.register_buffer("mean", mean.view(1, -1, 1, 1))
        self.register_buffer("std", std.view(1, -1, 1, 1))

    def forward(self, x):
        return self.body((x - self.mean) / self.std)


def load_model(d):
    meta = json.loads((d / "model.json").read_text())
    sd = load_file(str(d / "model.safetensors"))
    mean, std = sd.pop("normalize.mean"), sd.pop("normalize.std")
    body = reference_models.build(meta["family"], meta["config"], meta["io"])
    body.load_state_dict(sd, strict=False)
    return Normalized(body, mean, std).eval(), meta["io"]["num_classes"]


def main():
    d = pathlib.Path(sys.argv[1])
    req = json.loads((d / "request.json").read_text())
    torch.set_num_threads(req.get("threads", 1))
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    model, classes = load_model(d)
    data = load_file(str(d / "data.safetensors"))
    x, y = data["x"], data["y"]
    bs = req.get("batch_size", 500)
    out, summary = {}, {"aa": {}}
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    summary["clean_accuracy"] = clean.float().mean().item()
    import torchattacks
    for p in req.get("pgd", []):
        cls = torchattacks.PGD if p["norm"] == "Linf" else torchattacks.PGDL2
        atk = cls(model, eps=p["eps"], alpha=p["alpha"], steps=p["steps"], random_start=False)
        out[f"pgd/{p['name']}"] = torch.cat([atk(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]).contiguous()
    for p in req.get("deepfool", []):
        atk = torchattacks.DeepFool(model, steps=p["steps"], overshoot=p["overshoot"])
        out[f"deepfool/{p['name']}"] = torch.cat([atk(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]).contiguous()
    from pyautoattack import AutoAttack
    for a in req.get("aa", []):
        accs, secs = [], []
        for s in a["seeds"]:
            kw = dict(norm=a["norm"], eps=a["eps"], version=a["version"], seed=s, device="cpu")
            if a["version"] == "custom":
                kw["attacks"] = a["attacks"]
            adversary = AutoAttack(model, **kw)
            if a["version"] == "custom":
                # What `standard` sets, for the members run alone.
                l1 = a["norm"] == "L1"
                adversary.apgd.n_restarts = 5 if l1 else 1
                adversary.apgd.use_largereps = l1
                adversary.apgd_targeted.use_largereps = l1
                adversary.apgd_targeted.n_restarts = 1
                adversary.apgd_targeted.n_target_classes = 5 if l1 else 9
            adversary.apgd_targeted.n_target_classes = min(adversary.apgd_targeted.n_target_classes, classes - 1)
            adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, classes - 1)
            # Square's own attributes, e.g. the standalone attack's default schedule (`resc_schedule=True`,
            # kept as `rescale_schedule`).
            for k, v in a.get("square", {}).items():
                assert hasattr(adversary.square, k), f"SquareAttack has no attribute {k}"
                setattr(adversary.square, k, v)
            t0 = time.time()
            x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=bs)
            secs.append(time.time() - t0)
            with torch.no_grad():
                robust = clean & (model(x_adv).argmax(1) == y)
            accs.append(robust.float().mean().item())
            out[f"aa/{a['name']}/seed{s}"] = robust.to(torch.uint8).contiguous()
        summary["aa"][a["name"]] = {"robust_accuracy": accs, "seconds": secs}
        print(f"{a['name']}: robust accuracy {accs} ({sum(secs):.1f} s)", flush=True)
    save_file(out, str(d / "reference.safetensors"))
    (d / "reference.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
