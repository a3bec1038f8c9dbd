"""fra31's APGDAttack (norm='L1') on the models scripts/l1-strength.sh exported, with the seeds
robarch's evaluations used, and the table of both sides.

usage: l1_strength.py WORK DATA SEED...
WORK holds s0.yaml (the pipeline: its `evaluation.limit` and `apgd` attacks, read here so both
sides run the same settings), export/<model>-<training>/ (robarch exports), and
reports/l1-strength-s<seed>/robust_accuracy.csv (robarch's robust accuracy per attack). DATA is the
prepared data.safetensors (test_x uint8, test_y).
"""
import csv
import json
import logging
import pathlib
import statistics
import sys
import time

import torch
import yaml
from safetensors.torch import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from check_exports import load_export  # noqa: E402


def fra31(model, x, y, a, seed):
    from pyautoattack.autopgd_base import APGDAttack
    atk = APGDAttack(model, norm="L1", eps=float(a["eps"]), n_iter=a.get("steps", 100),
                     n_restarts=a.get("restarts", 1), loss="ce", rho=a.get("rho", 0.75),
                     seed=seed, device="cpu", use_largereps=a.get("large_eps", False))
    adv = atk.perturb(x, y)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
        robust = clean & (model(adv).argmax(1) == y)
        n1 = (adv - x).abs().flatten(1).sum(1).max().item()
    assert n1 <= float(a["eps"]) * (1 + 1e-3), f"fra31 left the ℓ1 ball: {n1}"
    return 100.0 * robust.float().mean().item()


def spread(v):
    return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"


def main():
    work, data, seeds = pathlib.Path(sys.argv[1]), sys.argv[2], [int(s) for s in sys.argv[3:]]
    torch.set_num_threads(2)
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    spec = yaml.safe_load((work / "s0.yaml").read_text())
    n = spec["evaluation"]["limit"]
    attacks = {k: v for k, v in spec["evaluation"]["attacks"].items() if v.get("type") == "apgd"}
    d = load_file(data)
    x, y = d["test_x"][:n].float() / 255.0, d["test_y"][:n]
    ours = {}
    for s in seeds:
        with open(work / "reports" / f"l1-strength-s{s}" / "robust_accuracy.csv") as f:
            for row in csv.DictReader(f):
                for a in attacks:
                    ours.setdefault((row["model"], row["training"], a), []).append(float(row[a]))
    # fra31's results by (model key, attack, seed, points): rerunning after a change on robarch's
    # side recomputes only robarch's.
    memo_file = work / "fra31.json"
    memo = json.loads(memo_file.read_text()) if memo_file.exists() else {}
    rows, deltas = [], {}
    for e in sorted((work / "export").iterdir()):
        model = load_export(e)
        origin = json.loads((e / "export.json").read_text())["origin"]
        name, training = origin["stage"].split("/")[2:4]
        for a, cfg in attacks.items():
            t0 = time.time()
            theirs = []
            for s in seeds:
                k = f"{origin['key']}|{json.dumps(cfg, sort_keys=True)}|{s}|{n}"
                if k not in memo:
                    memo[k] = fra31(model, x, y, cfg, s)
                    memo_file.write_text(json.dumps(memo, indent=0))
                theirs.append(memo[k])
            mine = ours[(name, training, a)]
            delta = statistics.mean(mine) - statistics.mean(theirs)
            deltas.setdefault(a, []).append(delta)
            rows.append(f"| {name} | {training} | {a} | {spread(mine)} | {spread(theirs)} | {delta:+.2f} |")
            print(f"{name} {training} {a}: robarch {mine} fra31 {theirs} ({time.time() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
    print(f"Robust accuracy (%) on the first {n} test points, seeds {seeds} per side "
          "(mean ± sample std); Δ = robarch − fra31, negative = robarch stronger.\n")
    print("| model | training | attack | robarch | fra31 | Δ |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    for a, v in deltas.items():
        cfg = attacks[a]
        print(f"- {a} (ε = {cfg['eps']}, {cfg.get('restarts', 1)} restart(s)"
              f"{', 3ε → 2ε → ε' if cfg.get('large_eps') else ''}): mean Δ {statistics.mean(v):+.2f} "
              f"over {len(v)} models, range {min(v):+.2f} … {max(v):+.2f}")


if __name__ == "__main__":
    main()
