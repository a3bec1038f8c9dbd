# Sourced by the other scripts: makes the project-local .venv with the `torch` wheel that tch
# expects (idempotent) and exports what cargo needs to build and link against it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TORCH_VERSION="2.13.0"   # tch 0.26 is built for exactly this libtorch
# Reference implementations the tests cross-check against (torchvision: AutoAugment ops and
# CNNs; timm: the model zoo's parameter names, counts and logits).
PY_EXTRAS=(numpy safetensors pillow "torchvision==0.28.0" "timm==1.0.31" scipy)
# Reference attacks (fra31 AutoAttack's code as `pyautoattack`; torchattacks), installed without
# their dependency pins: torchattacks pins requests~=2.25.1 and needs only torch, numpy, scipy.
PY_NODEPS=("pyautoattack==0.2.0" "torchattacks==3.5.1")
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/robarch-target}"

venv_ok() {
  [ -x "$ROOT/.venv/bin/python" ] &&
    "$ROOT/.venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null
}
if ! venv_ok; then
  echo "==> installing torch==$TORCH_VERSION into $ROOT/.venv (one time, ~2 min, ~5 GB)" >&2
  python3 -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check --retries 5 "torch==$TORCH_VERSION" "${PY_EXTRAS[@]}"
  venv_ok || { echo "error: torch==$TORCH_VERSION did not install into $ROOT/.venv" >&2; exit 1; }
fi
"$ROOT/.venv/bin/python" -c "import numpy, safetensors, PIL, torchvision, timm, scipy" 2>/dev/null ||
  "$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check --retries 5 "${PY_EXTRAS[@]}"
"$ROOT/.venv/bin/python" -c "import pyautoattack, torchattacks" 2>/dev/null ||
  "$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check --retries 5 --no-deps "${PY_NODEPS[@]}"

# Build through a stable path: torch-sys caches the libtorch location it found in the shared
# CARGO_TARGET_DIR and never re-checks it, so every clone points this link at its own .venv
# and all builds (and the rpath we embed) see the same path.
STABLE_VENV="$HOME/.cache/robarch/venv-$TORCH_VERSION"
mkdir -p "$(dirname "$STABLE_VENV")"
ln -sfn "$ROOT/.venv" "$STABLE_VENV"
export VIRTUAL_ENV="$STABLE_VENV"
export PATH="$STABLE_VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export ROBARCH_TORCH_LIB="$STABLE_VENV/lib/python3.$("$ROOT/.venv/bin/python" -c 'import sys; print(sys.version_info.minor)')/site-packages/torch/lib"
ROBARCH_BIN="$CARGO_TARGET_DIR/release/robarch"
cd "$ROOT"
