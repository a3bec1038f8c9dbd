"""Sharding's overhead, measured in one run: the same evaluation (PGD, 20 steps, 2,000 CIFAR-size points of
a small trained model) computed as one stage and as 4 shards plus their merge, alternately,
`--runs` times each (which goes first alternates), one stage at a time (-j 1) so the figures are total work, not parallel wall
time. Prints the medians of the stages' own seconds (what the run reports per stage) and of the
whole `robarch run` process, the ratios sharded/unsharded, and the merge stage's seconds for
10,000 points (a clean evaluation in 4 shards of 2,500)."""
import argparse, json, pathlib, statistics, subprocess, time

PIPELINE = """name: shards
seed: 1
device: cpu
datasets:
  synth: {{source: synthetic, synthetic: {{train_size: 256, test_size: 10000}}}}
models:
  resnet18: {{preset: tiny}}
training:
  at:
    attack: {{norm: linf, eps: 8/255, steps: 1}}
    epochs: 1
    batch_size: 128
    optimizer: {{name: adamw, lr: 2e-3}}
evaluation:
  splits: [test]
  limit: {limit}
  batch_size: 250
{shard}  attacks:
    {attack}
"""

def run(robarch, work, args):
    start = time.perf_counter()
    out = subprocess.run([robarch, *args], cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"robarch {' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout), wall

def stage_seconds(doc, prefix):
    return sum(s.get("seconds", 0.0) for s in doc["stages"] if s["id"].startswith(prefix) and s["outcome"] == "ran")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--robarch", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    work = pathlib.Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    pgd = "pgd: {eps: 8/255, steps: 20}"
    variants = {
        "unsharded": PIPELINE.format(limit=2000, shard="", attack=pgd),
        "4 shards": PIPELINE.format(limit=2000, shard="  shard: 500\n", attack=pgd),
    }
    for name, text in variants.items():
        (work / f"{name.replace(' ', '-')}.yaml").write_text(text)
    # Train once (both pipelines share the model's key).
    run(a.robarch, work, ["run", "-q", "--format", "json", "unsharded.yaml"])
    seconds = {n: [] for n in variants}
    walls = {n: [] for n in variants}
    for r in range(a.runs):
        # Alternate which goes first, so neither always runs on a warmer machine.
        for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
            f = f"{name.replace(' ', '-')}.yaml"
            doc, wall = run(a.robarch, work, ["run", "-j", "1", "--format", "json", "--force", "eval/**", f])
            seconds[name].append(stage_seconds(doc, "eval/"))
            walls[name].append(wall)
    med = {n: (statistics.median(seconds[n]), statistics.median(walls[n])) for n in variants}
    for n, (s, w) in med.items():
        print(f"{n:<10} evaluation stages {s:7.2f} s   whole run {w:7.2f} s   (medians of {a.runs})")
    (s0, w0), (s1, w1) = med["unsharded"], med["4 shards"]
    print(f"4 shards / unsharded: stages {s1 / s0:.4f} ({100 * (s1 / s0 - 1):+.2f}%), whole run {w1 / w0:.4f} ({100 * (w1 / w0 - 1):+.2f}%)")
    # The merge of 10,000 points.
    (work / "merge.yaml").write_text(PIPELINE.format(limit=10000, shard="  shard: 2500\n", attack="clean: {}"))
    merges = []
    for _ in range(a.runs):
        doc, _ = run(a.robarch, work, ["run", "--format", "json", "--force", "eval/**", "merge.yaml"])
        merges += [s["seconds"] for s in doc["stages"] if s["id"] == "eval/synth/resnet18/at/clean/test" and s["outcome"] == "ran"]
    print(f"merge stage, 10,000 points in 4 shards: median {1000 * statistics.median(merges):.2f} ms (max {1000 * max(merges):.2f} ms) of {len(merges)} runs")

if __name__ == "__main__":
    main()
