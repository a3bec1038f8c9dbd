"""Reference side of benches/attacks.rs: times torchattacks PGD and fra31 AutoAttack's APGD
(`pyautoattack`) on the robarch model in DIR (same files as crosscheck_attacks.py), driven line by
line on standard input so that the benchmark can alternate the two sides run by run. Prints
{"ready": true} once loaded, then answers each command with one JSON line:
  warm KEY   one batch of attack KEY, untimed: {}
  run KEY    attack KEY on all points: {"rate": images/s, "robust": robust accuracy}
  quit       {} and exit
KEY is pgd, apgd-ce, apgd-t or aa ("aa": AutoAttack `standard`, all four members).

usage: bench_attacks.py DIR   (DIR/request.json: {"threads", "batch_size", "eps", "alpha", "steps",
"apgd_steps", "repeats", "attacks", "device", "amp", "channels_last"})
`device`: cpu or cuda; `amp`: forward passes under torch.autocast(bfloat16), logits in float32;
`channels_last`: model and inputs in channels-last memory format (as robarch's side runs them).
"""
import json
import logging
import os
import pathlib
import sys
import time

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from crosscheck_attacks import load_model  # noqa: E402


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

    def make(key):
        """(attack on a batch, attack on all points) for KEY."""
        if key == "pgd":
            pgd = torchattacks.PGD(model, eps=r["eps"], alpha=r["alpha"], steps=r["steps"], random_start=True)
            return pgd, lambda: torch.cat([pgd(x[i:i + bs], y[i:i + bs]) for i in range(0, n, bs)])
        if key in ("apgd-ce", "apgd-t"):
            aa = AutoAttack(model, norm="Linf", eps=r["eps"], version="custom", attacks=[key], seed=0, device=dev)
            aa.apgd.n_restarts = 1
            aa.apgd.n_iter = aa.apgd_targeted.n_iter = r["apgd_steps"]
            aa.apgd_targeted.n_target_classes = min(9, classes - 1)
        else:
            aa = AutoAttack(model, norm="Linf", eps=r["eps"], version="standard", seed=0, device=dev)
            aa.apgd_targeted.n_target_classes = min(9, classes - 1)
            aa.fab.n_target_classes = min(9, classes - 1)
        return (lambda xb, yb: aa.run_standard_evaluation(xb, yb, batch_size=bs)[0]), \
            (lambda: aa.run_standard_evaluation(x, y, batch_size=bs)[0])

    # The protocol owns standard output; anything the libraries print goes to standard error.
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def answer(obj):
        print(json.dumps(obj), file=proto, flush=True)

    attacks = {}
    answer({"ready": True})
    for line in sys.stdin:
        cmd, _, key = line.strip().partition(" ")
        if cmd == "quit":
            answer({})
            return
        if key not in attacks:
            attacks[key] = make(key)
        on_batch, on_all = attacks[key]
        if cmd == "warm":
            on_batch(x[:bs], y[:bs])
            sync()
            answer({})
        elif cmd == "run":
            t0 = time.perf_counter()
            adv = on_all()
            sync()
            rate = n / (time.perf_counter() - t0)
            with torch.no_grad():
                robust = (model(adv).argmax(1) == y).float().mean().item()
            answer({"rate": rate, "robust": robust})
        else:
            raise SystemExit(f"unknown command {line!r}")


if __name__ == "__main__":
    main()
