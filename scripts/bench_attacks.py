"""Reference side of benches/attacks.rs: times torchattacks PGD and fra31 AutoAttack's APGD
(`pyautoattack`) on the robarch model in DIR (same files as crosscheck_attacks.py) and prints one
JSON line: {"pgd": images/s, "apgd-ce": images/s, "apgd-t": images/s, "aa": images/s,
"aa_robust": robust accuracy} ("aa": AutoAttack `standard`, all four members).

usage: bench_attacks.py DIR   (DIR/request.json: {"threads", "batch_size", "eps", "alpha", "steps",
"apgd_steps", "repeats"})
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


def best(f, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    d = pathlib.Path(sys.argv[1])
    r = json.loads((d / "request.json").read_text())
    torch.set_num_threads(r["threads"])
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    model, classes = load_model(d)
    data = load_file(str(d / "data.safetensors"))
    x, y, bs, n = data["x"], data["y"], r["batch_size"], len(data["y"])
    import torchattacks
    from pyautoattack import AutoAttack
    pgd = torchattacks.PGD(model, eps=r["eps"], alpha=r["alpha"], steps=r["steps"], random_start=True)
    pgd(x[:bs], y[:bs])  # warm-up
    out = {"pgd": n / best(lambda: [pgd(x[i:i + bs], y[i:i + bs]) for i in range(0, n, bs)], r["repeats"])}
    for name in ["apgd-ce", "apgd-t"]:
        aa = AutoAttack(model, norm="Linf", eps=r["eps"], version="custom", attacks=[name], seed=0, device="cpu")
        aa.apgd.n_restarts = 1
        aa.apgd.n_iter = aa.apgd_targeted.n_iter = r["apgd_steps"]
        aa.apgd_targeted.n_target_classes = min(9, classes - 1)
        out[name] = n / best(lambda: aa.run_standard_evaluation(x, y, batch_size=bs), r["repeats"])
    aa = AutoAttack(model, norm="Linf", eps=r["eps"], version="standard", seed=0, device="cpu")
    aa.apgd_targeted.n_target_classes = min(9, classes - 1)
    aa.fab.n_target_classes = min(9, classes - 1)
    adv = []
    out["aa"] = n / best(lambda: adv.append(aa.run_standard_evaluation(x, y, batch_size=bs)[0]), r["repeats"])
    with torch.no_grad():
        out["aa_robust"] = (model(adv[-1]).argmax(1) == y).float().mean().item()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
