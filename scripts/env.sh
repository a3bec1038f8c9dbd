# Sourced by the other scripts: makes the project-local .venv with the `torch` wheel that tch
# expects (idempotent) and exports what cargo needs to build and link against it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TORCH_VERSION="2.13.0"   # tch 0.26 is built for exactly this libtorch
NEXTEST_VERSION="0.9.143" # the test runner scripts/test.sh installs where it is missing
# Reference implementations the tests cross-check against (torchvision: AutoAugment ops and
# CNNs; timm: the model zoo's parameter names, counts and logits; numpy/scipy: norms, SVDs, rank
# correlations), pinned exactly; their dependencies are pinned by scripts/python-constraints.txt.
PY_EXTRAS=("numpy==2.4.6" "safetensors==0.8.0" "pillow==13.0.0" "torchvision==0.28.0"
  "timm==1.0.31" "scipy==1.17.1")
# Reference attacks (fra31 AutoAttack's code as `pyautoattack`; torchattacks), installed without
# their dependency pins: torchattacks pins requests~=2.25.1 and needs only torch, numpy, scipy.
PY_NODEPS=("pyautoattack==0.2.0" "torchattacks==3.5.1")
PIP=(-m pip install -q --disable-pip-version-check --retries 5 -c "$ROOT/scripts/python-constraints.txt")
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/robarch-target}"

# True when every `name==version` argument is installed at exactly that version (a local
# version suffix such as +cu130 is ignored), so an older .venv is brought up to the pins.
pinned() {
  "$ROOT/.venv/bin/python" - "$@" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    if version(name).split("+")[0] != want:
        sys.exit(1)
PY
}
venv_ok() {
  [ -x "$ROOT/.venv/bin/python" ] &&
    "$ROOT/.venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null
}
if ! venv_ok; then
  echo "==> installing torch==$TORCH_VERSION into $ROOT/.venv (one time, ~2 min, ~5 GB)" >&2
  python3 -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/python" "${PIP[@]}" "torch==$TORCH_VERSION" "${PY_EXTRAS[@]}"
  venv_ok || { echo "error: torch==$TORCH_VERSION did not install into $ROOT/.venv" >&2; exit 1; }
fi
pinned "${PY_EXTRAS[@]}" || "$ROOT/.venv/bin/python" "${PIP[@]}" "${PY_EXTRAS[@]}"
pinned "${PY_NODEPS[@]}" || "$ROOT/.venv/bin/python" "${PIP[@]}" --no-deps "${PY_NODEPS[@]}"
pinned "${PY_EXTRAS[@]}" "${PY_NODEPS[@]}" ||
  { echo "error: the reference packages in $ROOT/.venv do not match scripts/env.sh's pins" >&2; exit 1; }

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
