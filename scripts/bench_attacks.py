"""Reference side of benches/attacks.rs: times torchattacks PGD and fra31 AutoAttack's APGD
(`pyautoattack`) on the robarch model in DIR (same files as crosscheck_attacks.py) and prints one
JSON line: {attack: {"rates": [images/s per repeat], "robust": robust accuracy of the last repeat}}
for attack in pgd, apgd-ce, apgd-t, aa ("aa": AutoAttack `standard`, all four members).

usage: bench_attacks.py DIR   (DIR/request.json: {"threads", "batch_size", "eps", "alpha", "steps",
"apgd_steps", "repeats", "attacks", "device", "amp", "channels_last"})
`device`: cpu or cuda; `amp`: forward passes under torch.autocast(bfloat16), logits in float32;
`channels_last`: model and inputs in channels-last memory format (as robarch's side runs them).
"""
import json
import logging
import pathlib
import sys
import time

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from crosscheck_attacks import load_model  # noqa: E402


def rates(n, f, repeats, sync):
    """Images/s of each of `repeats` calls of f (`sync` waits for the device)."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        sync()
        out.append(n / (time.perf_counter() - t0))
    return out


class Precision(torch.nn.Module):
    """`model` with its forward under bf16 autocast (logits in float32) and/or channels-last."""

    def __init__(self, model, dev, amp, channels_last):
        super().__init__()
        self.model, self.dev, self.amp = model, dev, amp
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.fmt)

    def forward(self, x):
        with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.amp):
            return self.model(x.contiguous(memory_format=self.fmt)).float()


def main():
    d = pathlib.Path(sys.argv[1])
    r = json.loads((d / "request.json").read_text())
    torch.set_num_threads(r["threads"])
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    dev = torch.device("cuda" if r.get("device") == "cuda" else "cpu")
    model, classes = load_model(d)
    model = model.to(dev)
    if r.get("amp") or r.get("channels_last"):
        model = Precision(model, dev, bool(r.get("amp")), bool(r.get("channels_last"))).eval()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    data = load_file(str(d / "data.safetensors"))
    x, y, bs, n = data["x"].to(dev), data["y"].to(dev), r["batch_size"], len(data["y"])
    import torchattacks
    from pyautoattack import AutoAttack
    out = {}

    def run(key, attack):
        """Times `attack` (returns the adversarial images of all points) `repeats` times."""
        adv = []
        out[key] = {"rates": rates(n, lambda: adv.append(attack()), r["repeats"], sync)}
        with torch.no_grad():
            out[key]["robust"] = (model(adv[-1]).argmax(1) == y).float().mean().item()

    if "pgd" in r["attacks"]:
        pgd = torchattacks.PGD(model, eps=r["eps"], alpha=r["alpha"], steps=r["steps"], random_start=True)
        pgd(x[:bs], y[:bs])  # warm-up
        run("pgd", lambda: torch.cat([pgd(x[i:i + bs], y[i:i + bs]) for i in range(0, n, bs)]))
    for name in ["apgd-ce", "apgd-t"]:
        if name not in r["attacks"]:
            continue
        aa = AutoAttack(model, norm="Linf", eps=r["eps"], version="custom", attacks=[name], seed=0, device=dev)
        aa.apgd.n_restarts = 1
        aa.apgd.n_iter = aa.apgd_targeted.n_iter = r["apgd_steps"]
        aa.apgd_targeted.n_target_classes = min(9, classes - 1)
        run(name, lambda: aa.run_standard_evaluation(x, y, batch_size=bs)[0])
    if "aa" in r["attacks"]:
        aa = AutoAttack(model, norm="Linf", eps=r["eps"], version="standard", seed=0, device=dev)
        aa.apgd_targeted.n_target_classes = min(9, classes - 1)
        aa.fab.n_target_classes = min(9, classes - 1)
        run("aa", lambda: aa.run_standard_evaluation(x, y, batch_size=bs)[0])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
