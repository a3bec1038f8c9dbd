"""Summarises a study report (default: reports/mini-study) for docs/results.md: per architecture
kind, the mean over architectures (± their standard deviation) of each architecture's seed mean,
for clean accuracy, the robust generalization gaps and the drops under unseen attacks; the typical
seed spread within an architecture; PGD-ℓ1 against APGD-ℓ1; and the correlations whose bootstrap
interval excludes zero; the per-architecture table.

With CACHE (the pipeline's cache directory), also AutoAttack against PGD on the same points: each
AutoAttack evaluation's points (the first n of the test split) against the PGD evaluation of the
same norm, model and seed on those points, from `per_sample.safetensors` (docs/formats.md).

usage: mini_study_summary.py [REPORT_DIR [CACHE [PIPELINE_NAME]]]
"""
import csv
import json
import pathlib
import sys

import numpy as np
from scipy import stats

KINDS = ["cnn", "transformer", "hybrid", "mlp"]


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def num(v):
    return float(v) if v not in ("", None) else float("nan")


def fmt(v, d=2):
    return "–" if np.isnan(v) else f"{v:.{d}f}"


def by_kind(table, columns, label):
    print(f"\n{label}: mean over the architectures of each kind (± sd across them), n architectures")
    print("| kind | n | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for k in KINDS:
        rs = [r for r in table if r["kind"] == k]
        if not rs:
            continue
        cells = []
        for c in columns:
            v = np.array([num(r.get(c)) for r in rs])
            v = v[~np.isnan(v)]
            cells.append(f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else fmt(v.mean() if len(v) else float("nan")))
        print(f"| {k} | {len(rs)} | " + " | ".join(cells) + " |")
    # Transformers and hybrids (attention) against CNNs: Mann–Whitney U on the architecture means.
    for c in columns:
        a = [num(r.get(c)) for r in table if r["kind"] in ("transformer", "hybrid")]
        b = [num(r.get(c)) for r in table if r["kind"] == "cnn"]
        a = [x for x in a if not np.isnan(x)]
        b = [x for x in b if not np.isnan(x)]
        if len(a) > 1 and len(b) > 1:
            u = stats.mannwhitneyu(a, b, alternative="two-sided")
            print(f"- {c}: attention models {np.mean(a):.2f} vs CNNs {np.mean(b):.2f} (Mann–Whitney p = {u.pvalue:.3f}, {len(a)} vs {len(b)})")


def seed_spread(table, columns):
    print("\nSeed spread: median over architectures of the standard deviation between seeds")
    for c in columns:
        v = np.array([num(r.get(c + "_std")) for r in table])
        v = v[~np.isnan(v)]
        if len(v):
            print(f"- {c}: median sd {np.median(v):.2f}, largest {v.max():.2f}")


def per_model(acc, gap, drop):
    """The per-architecture table of docs/results.md: seed mean ± sd of each column."""
    cols = [("clean", acc, "clean/test"), ("PGD-ℓ∞", acc, "pgd-linf/test"), ("AA-ℓ∞", acc, "aa-linf/test"),
            ("gap PGD-ℓ∞", gap, "pgd-linf"), ("gap PGD-ℓ1", gap, "pgd-l1"), ("gap APGD-ℓ1", gap, "apgd-l1"),
            ("unseen drop", drop, "mean/unseen")]
    print("\nPer architecture (seed mean ± sd)")
    print("| model | kind | " + " | ".join(c[0] for c in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for r in acc:
        cells = []
        for _, table, c in cols:
            row = next(x for x in table if x["model"] == r["model"] and x["training"] == r["training"])
            cells.append(f"{num(row[c]):.1f} ± {num(row[c + '_std']):.1f}")
        print(f"| {r['model']} | {r['kind']} | " + " | ".join(cells) + " |")


def same_points(cache, name):
    """AutoAttack vs the PGD attack of its norm, on the AutoAttack evaluation's points."""
    from safetensors.numpy import load_file

    stages = json.load(open(cache / "runs" / f"{name}.json"))["stages"]

    def robust(stage):
        key = stages[stage]["key"]
        return load_file(str(cache / "objects" / key[:2] / key / "per_sample.safetensors"))["robust_correct"].astype(bool)

    print("\nAutoAttack against PGD on the same points (test split): robust accuracy (%), summed over models and seeds")
    for aa, pgd in [("aa-linf", "pgd-linf"), ("aa-l2", "pgd-l2")]:
        ids = sorted(s for s in stages if s.endswith(f"/{aa}/test"))
        a_total = p_total = n_total = weaker = 0
        for s in ids:
            a = robust(s)
            p = robust(s[: -len(f"{aa}/test")] + f"{pgd}/test")[: len(a)]
            a_total, p_total, n_total = a_total + a.sum(), p_total + p.sum(), n_total + len(a)
            weaker += int((a & ~p).any())  # a point PGD broke and AutoAttack did not
        print(f"- {aa} vs {pgd}: {100 * a_total / n_total:.1f} vs {100 * p_total / n_total:.1f} over {len(ids)} evaluations of {n_total // max(len(ids), 1)} points; "
              f"evaluations where PGD broke a point AutoAttack left robust: {weaker}")


def main():
    d = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "reports/mini-study")
    acc = rows(d / "accuracy_by_attack.csv")
    gap = rows(d / "gap_by_attack.csv")
    drop = rows(d / "unseen_drop.csv")
    per_model(acc, gap, drop)
    by_kind(acc, ["clean/test", "pgd-linf/test", "aa-linf/test", "pgd-l2/test", "pgd-l1/test", "apgd-l1/test", "aa-l2/test"], "Test accuracy (%)")
    by_kind(gap, ["clean", "fgsm", "pgd-linf", "mim", "pgd-l2", "pgd-l1", "apgd-l1"], "Train − test gap (points)")
    by_kind(drop, ["mean/seen", "mean/unseen", "unseen/pgd-l2", "unseen/pgd-l1", "unseen/apgd-l1", "unseen/aa-l2"], "Test clean − robust drop (points)")
    seed_spread(gap, ["pgd-linf", "pgd-l1", "apgd-l1"])
    seed_spread(acc, ["clean/test", "pgd-linf/test", "aa-linf/test"])
    # PGD-ℓ1 (the paper's) against APGD-ℓ1 at the same radius.
    p = np.array([num(r["pgd-l1/test"]) for r in acc])
    a = np.array([num(r["apgd-l1/test"]) for r in acc])
    tau = stats.kendalltau(p, a)
    print(f"\nℓ1: APGD-ℓ1 − PGD-ℓ1 test robust accuracy: mean {np.mean(a - p):.2f} points, range {np.min(a - p):.2f} to {np.max(a - p):.2f}; architectures ranked alike (Kendall τ {tau.statistic:.2f})")
    worst = sorted(zip(a - p, [r["model"] for r in acc]))[:5]
    print("  largest drops: " + ", ".join(f"{m} {v:.1f}" for v, m in worst))
    corr = rows(d / "correlation.csv")
    print("\nCorrelations whose interval excludes 0 (measure, gap, n, τ [lo, hi], ρ [lo, hi]):")
    for r in corr:
        lo, hi = num(r["tau_lo"]), num(r["tau_hi"])
        if lo > 0 or hi < 0:
            print(f"- {r['measure']} vs {r['gap']}: n {r['n']}, τ {num(r['kendall_tau']):.2f} [{lo:.2f}, {hi:.2f}], ρ {num(r['spearman_rho']):.2f} [{num(r['rho_lo']):.2f}, {num(r['rho_hi']):.2f}]")
    print("\nSparsity (Hoyer) and the ℓ1 attacks:")
    for r in corr:
        if r["measure"] == "hoyer":
            print(f"- hoyer vs {r['gap']}: τ {num(r['kendall_tau']):.2f} [{num(r['tau_lo']):.2f}, {num(r['tau_hi']):.2f}]")
    if len(sys.argv) > 2:
        same_points(pathlib.Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else d.name)


if __name__ == "__main__":
    main()
