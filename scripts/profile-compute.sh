#!/usr/bin/env bash
# Where the time of an attack or a training epoch goes: robarch's process (and the PyTorch
# reference's, in the same run) sampled with `perf`, split into libtorch's own code (its operators,
# dispatcher and autograd engine: libtorch_cpu, libc10, libgomp and the other torch/lib libraries,
# with the kernels oneDNN compiles at run time, which perf lists as [JIT]) and everything outside
# it: the process's own code (robarch's, or the Python interpreter and torch's Python binding),
# libc's allocator and copies, the kernel (page faults: memory mapped and zeroed for new
# allocations) and the rest.
# Usage: scripts/profile-compute.sh [--models densenet121,swin,resnet18,convnext]
#        [--workloads pgd,apgd-ce,pgd-at] [--threads 1] [--freq 999]
# PGD-20 and APGD-CE run through `scripts/bench-attacks.sh`'s benchmark on the trained models of
# scripts/bench_attacks.yaml (128 test points, 32 for the CIFAR presets), the PGD-AT epoch through
# `scripts/bench-train.sh`'s (3 batches of 128). Each cell is a share of the process's CPU samples
# (its start-up and model loading included; the reference's includes importing torch).
source "$(dirname "$0")/env.sh"
models=densenet121,swin,resnet18,convnext
workloads=pgd,apgd-ce,pgd-at
threads=1
freq=999
while [ $# -gt 0 ]; do
  case "$1" in
  --models) models=$2; shift 2 ;;
  --workloads) workloads=$2; shift 2 ;;
  --threads) threads=$2; shift 2 ;;
  --freq) freq=$2; shift 2 ;;
  *) echo "usage: scripts/profile-compute.sh [--models M1,M2] [--workloads pgd,apgd-ce,pgd-at] [--threads N] [--freq HZ]" >&2; exit 2 ;;
  esac
done
if ! command -v perf >/dev/null; then
  echo "error: perf is not installed (Debian/Ubuntu: apt-get install linux-perf, or linux-tools-\$(uname -r))" >&2
  exit 1
fi
source "$ROOT/scripts/bench-trained.sh"
# The benchmark executables cargo built (the paths it prints after "Executable").
exe() {
  cargo bench --locked -p robarch-worker --bench "$1" --no-run 2>&1 |
    sed -n "s|.*Executable .*benches/$1.rs (\(.*\))|\1|p"
}
attacks_bin=$(exe attacks)
train_bin=$(exe train)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
preset() { case "$1" in resnet18 | convnext) echo cifar ;; *) echo tiny ;; esac; }
echo "| model | workload | side | libtorch | own code | libc alloc | libc copy/fill | kernel | other | outside libtorch |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for m in ${models//,/ }; do
  for w in ${workloads//,/ }; do
    case "$w" in
    pgd | apgd-ce)
      n=128
      [ "$(preset "$m")" = cifar ] && n=32
      repeats=3
      [ "$w" = apgd-ce ] && repeats=1
      cmd=("$attacks_bin" --bench --models "$(bench_model "$m")" --data "$BENCH_DATA" --attacks "$w"
        --threads "$threads" --repeats "$repeats" --n "$n" --batch "$n") ;;
    pgd-at)
      cmd=("$train_bin" --bench --models "$m:$(preset "$m")@16" --methods pgd-at --threads "$threads"
        --device cpu) ;;
    *) echo "error: unknown workload $w (pgd, apgd-ce or pgd-at)" >&2; exit 2 ;;
    esac
    perf record -q -F "$freq" -o "$out/perf.data" -- "${cmd[@]}" >"$out/bench.out" 2>"$out/perf.err" ||
      { cat "$out/perf.err" >&2; exit 1; }
    perf report -i "$out/perf.data" --sort comm,dso,sym --stdio -q --percent-limit 0 2>/dev/null >"$out/report"
    "$ROOT/.venv/bin/python" - "$out/report" "$m" "$w" <<'PY'
import re, sys
from collections import defaultdict
report, model, workload = sys.argv[1:]
share = defaultdict(lambda: defaultdict(float))
for line in open(report):
    f = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(\S+)\s+\[(.)\]\s+(.*)", line)
    if not f:
        continue
    pct, comm, dso, _, sym = float(f[1]), f[2], f[3], f[4], f[5]
    side = "reference (Python)" if comm.startswith("python") else "robarch"
    if dso.startswith("[kernel") or dso == "[unknown]" and sym.startswith("0xffff"):
        cls = "kernel"
    elif (re.match(r"lib(torch_cpu|torch|c10|gomp|iomp|mkl|dnnl|sleef|torch_cuda|c10_cuda|cu)", dso)
          and not dso.startswith("libtorch_python")) or dso.startswith("[JIT]"):
        cls = "libtorch"
    elif dso.startswith("libc.so") or dso.startswith("libc-"):
        cls = "libc copy/fill" if re.search(r"mem(cpy|move|set)|__memcpy|__memset", sym) else "libc alloc" \
            if re.search(r"malloc|free|_int_|alloc|tcache|brk|mmap|munmap|madvise|unlink_chunk|consolidate", sym) else "other"
    elif side == "robarch" and (dso.startswith(("attacks-", "train-", "robarch"))):
        cls = "own code"
    elif side != "robarch" and re.match(r"(python|libpython|libtorch_python)", dso):
        cls = "own code"
    else:
        cls = "other"
    share[side][cls] += pct
for side, s in share.items():
    total = sum(s.values())
    if total < 1:
        continue
    p = {k: 100 * v / total for k, v in s.items()}
    cells = " | ".join(f"{p.get(c, 0):.1f}%" for c in ["libtorch", "own code", "libc alloc", "libc copy/fill", "kernel", "other"])
    print(f"| {model} | {workload} | {side} | {cells} | **{100 - p.get('libtorch', 0):.1f}%** |")
PY
  done
done
