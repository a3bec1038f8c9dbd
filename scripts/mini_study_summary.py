"""Summarises a study report (default: reports/mini-study) for docs/results.md: per architecture
kind, the mean over architectures (± their standard deviation) of each architecture's seed mean,
for clean accuracy, the robust generalization gaps and the drops under unseen attacks; the typical
seed spread within an architecture; PGD-ℓ1 against APGD-ℓ1; and the correlations whose bootstrap
interval excludes zero.

usage: mini_study_summary.py [REPORT_DIR]
"""
import csv
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


def main():
    d = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "reports/mini-study")
    acc = rows(d / "accuracy_by_attack.csv")
    gap = rows(d / "gap_by_attack.csv")
    drop = rows(d / "unseen_drop.csv")
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


if __name__ == "__main__":
    main()
