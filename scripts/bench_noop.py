"""The no-op benchmark of scripts/bench-noop.sh (see there for how to run it).

1. Generates a study pipeline of about 500 stages: five CIFAR-preset models (WRN-34-10,
   WRN-28-10, ResNet-50, ResNet-18, VGG-16-BN) with paper-size weights, three trainings each on a
   tiny synthetic 32x32 dataset, sixteen cheap attacks on both splits, sparsity, the correlation
   and the report.
2. Runs it once (the first run), then times robarch's no-op rerun (everything cached).
3. Writes the same DAG for Snakemake (a Snakefile, one rule per stage, the stage's files as its
   outputs) and for DVC (dvc.yaml, committed with `dvc commit`), and times `snakemake -n` and
   `dvc status` on it.
4. Times planning (`robarch run --dry-run` on an empty cache) at 100, 1,000 and 10,000 stages.

Every figure is the median of N runs of the whole process, taken in this one run; the ratios
printed compare figures from this run only.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS = ["wrn34_10", "wrn28_10", "resnet50", "resnet18", "vgg16_bn"]


def pipeline(models, trainings, attacks, preset="cifar", size=8):
    lines = [
        "name: bench",
        "seed: 0",
        "device: cpu",
        "datasets:",
        f"  tiny: {{source: synthetic, synthetic: {{train_size: {size}, test_size: {size}}}}}",
        "models:",
    ]
    lines += [f"  {m}: {{preset: {preset}}}" for m in models]
    lines.append("training:")
    for t in range(trainings):
        lines += [
            f"  fgsm{t}:",
            "    method: fast-at",
            f"    attack: {{norm: linf, eps: {t + 2}/255}}",
            "    epochs: 1",
            f"    batch_size: {size}",
            "    optimizer: {name: sgd, lr: 0.01}",
        ]
    lines += ["evaluation:", "  splits: [train, test]", "  attacks:"]
    # Distinct radii within the pixel range however many attacks.
    scale = max(255, 2 * attacks)
    lines += [f"    fgsm{a}: {{type: fgsm, eps: {a + 1}/{scale}}}" for a in range(attacks)]
    lines += ["analysis: [sparsity, correlation]", "report: {tables: [robust_accuracy]}"]
    return "\n".join(lines) + "\n"


def timed(cmd, runs, cwd=None, env=None):
    """Median, min and max wall time of `runs` runs of `cmd` (each must succeed), after one
    untimed warm-up run (page cache, each tool's own state)."""
    times = []
    for i in range(runs + 1):
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if i > 0:
            times.append(time.perf_counter() - t)
        if r.returncode != 0:
            sys.exit(f"{' '.join(map(str, cmd))} failed:\n{r.stderr.decode()[-2000:]}")
    return statistics.median(times), min(times), max(times)


def fmt(t):
    return f"{t[0]:.3f} s (min {t[1]:.3f}, max {t[2]:.3f})"


def stages(robarch, pipe, cache):
    out = subprocess.run(
        [robarch, "--cache", cache, "status", "--format", "json", pipe],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)["stages"]


def explain(robarch, pipe, cache, stage):
    out = subprocess.run(
        [robarch, "--cache", cache, "explain", "--format", "json", pipe, stage],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def mirror(robarch, pipe, cache, work):
    """The pipeline's DAG as files: per stage a directory holding hard links to its entry's
    files, and each stage's inputs as the stages it reads. Returns [(id, deps, outs)]."""
    dag = []
    for s in stages(robarch, pipe, cache):
        e = explain(robarch, pipe, cache, s["id"])
        entry = Path(e["entry"])
        outdir = work / "out" / s["id"]
        outdir.mkdir(parents=True, exist_ok=True)
        outs = []
        for f in sorted(p for p in entry.rglob("*") if p.is_file()):
            if f.name == "meta.json":
                continue
            dst = outdir / f.relative_to(entry)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                os.link(f, dst)
            outs.append(str(dst.relative_to(work)))
        deps = sorted({i["stage"] for i in e["inputs"]})
        dag.append((s["id"], deps, outs))
    return dag


def snakefile(dag):
    outs = {i: o for i, _, o in dag}
    rules = ["rule all:", f"    input: {sorted(f for _, _, o in dag for f in o)!r}", ""]
    for n, (i, deps, o) in enumerate(dag):
        rules += [
            f"rule s{n}:  # {i}",
            f"    input: {sorted(f for d in deps for f in outs[d])!r}",
            f"    output: {o!r}",
            "    shell: 'true'",
            "",
        ]
    return "\n".join(rules)


def dvc_yaml(dag):
    outs = {i: o for i, _, o in dag}
    doc = {"stages": {}}
    for n, (i, deps, o) in enumerate(dag):
        st = {"cmd": "true", "outs": [{f: {"cache": False}} for f in o]}
        d = sorted(f for dep in deps for f in outs[dep])
        if d:
            st["deps"] = d
        doc["stages"][f"s{n}"] = st
    return json.dumps(doc, indent=1)  # JSON is YAML


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--robarch", required=True)
    ap.add_argument("--baseline", help="an older robarch binary whose first run to compare")
    ap.add_argument("--venv", required=True, help="virtualenv with snakemake and dvc")
    ap.add_argument("--work", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--reuse", action="store_true",
                    help="keep the caches a previous run left in --work (skips the first runs)")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    pipe = work / "bench.yaml"
    pipe.write_text(pipeline(MODELS, 3, 16))
    n = len(stages(a.robarch, str(pipe), str(work / "plan-cache")))
    print(f"pipeline: {n} stages, models {', '.join(MODELS)} (cifar presets), 3 trainings, 16 attacks x 2 splits")

    firsts = {}
    for name, binary in [("robarch", a.robarch)] + ([("baseline", a.baseline)] if a.baseline else []):
        cache = work / f"cache-{name}"
        if a.reuse and cache.exists():
            continue
        shutil.rmtree(cache, ignore_errors=True)
        t = time.perf_counter()
        subprocess.run(
            [binary, "--cache", str(cache), "run", "-j", str(a.jobs), str(pipe), "--reports", str(work / f"reports-{name}")],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        firsts[name] = time.perf_counter() - t
        print(f"first run, {name}: {firsts[name]:.1f} s")
    if "baseline" in firsts:
        print(f"first run ratio robarch/baseline: {firsts['robarch'] / firsts['baseline']:.3f}")
    cache = str(work / "cache-robarch")
    size = sum(f.stat().st_size for f in Path(cache, "objects").rglob("*") if f.is_file())
    print(f"cache: {size / 1e6:.0f} MB")

    noop = timed([a.robarch, "--cache", cache, "run", str(pipe), "--reports", str(work / "reports-robarch")], a.runs)
    print(f"robarch run (no-op): {fmt(noop)}")
    status = timed([a.robarch, "--cache", cache, "status", str(pipe)], a.runs)
    print(f"robarch status: {fmt(status)}")
    version = timed([a.robarch, "--version"], a.runs)
    print(f"robarch --version: {fmt(version)}")
    root = Path(__file__).resolve().parent.parent
    qs = timed([a.robarch, "--cache", str(work / "qs-cache"), "status", str(root / "pipelines/quickstart.yaml")], a.runs)
    print(f"robarch status pipelines/quickstart.yaml: {fmt(qs)}")

    dag = mirror(a.robarch, str(pipe), cache, work)
    (work / "Snakefile").write_text(snakefile(dag))
    bin_ = Path(a.venv) / "bin"
    env = dict(os.environ, PATH=f"{bin_}:{os.environ['PATH']}")
    # The outputs are robarch's own files (hard links), committed in dependency order, so their
    # mtimes already say that nothing is out of date; touching them would touch robarch's cache.
    snake = timed([bin_ / "snakemake", "-n", "--cores", "1", "--quiet"], a.runs, cwd=work, env=env)
    print(f"snakemake -n: {fmt(snake)}")
    dvcdir = work
    if not (dvcdir / ".dvc").exists():
        subprocess.run([bin_ / "dvc", "init", "--no-scm", "-q"], cwd=dvcdir, env=env, check=True)
    (dvcdir / "dvc.yaml").write_text(dvc_yaml(dag))
    subprocess.run([bin_ / "dvc", "commit", "-f", "-q"], cwd=dvcdir, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([bin_ / "dvc", "status", "-q"], cwd=dvcdir, env=env, check=True)
    dvc = timed([bin_ / "dvc", "status", "-q"], a.runs, cwd=dvcdir, env=env)
    print(f"dvc status: {fmt(dvc)}")
    print(f"ratios: snakemake -n / robarch no-op = {snake[0] / noop[0]:.1f}x; "
          f"dvc status / robarch no-op = {dvc[0] / noop[0]:.1f}x")

    print("planning (robarch run --dry-run, empty cache):")
    for target in [100, 1000, 10000]:
        # models x trainings x (2 attacks-splits + 1) stages: grow the attacks.
        ms, tr = ["resnet18", "vgg16_bn"], 1
        per = max(1, round((target / (len(ms) * tr) - 3) / 2))
        p = work / f"plan-{target}.yaml"
        p.write_text(pipeline(ms, tr, per))
        c = work / f"plan-cache-{target}"
        k = len(stages(a.robarch, str(p), str(c)))
        t = timed([a.robarch, "--cache", str(c), "run", "--dry-run", str(p)], a.runs)
        print(f"  {k:>6} stages: {fmt(t)}")


if __name__ == "__main__":
    main()
