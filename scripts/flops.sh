#!/usr/bin/env bash
# Regenerates src/models/flops.json, the forward FLOPs per image that `robarch status` and
# `robarch run --dry-run` estimate compute from: every architecture at its `cifar` preset (32 px),
# its `imagenet` preset (224 px) and its `tiny` preset (32 px, 1 channel: the mini-study's digits),
# 10 classes. Other resolutions are scaled by pixel count. Run after changing a preset.
source "$(dirname "$0")/env.sh"
bash "$ROOT/scripts/build.sh" >/dev/null
BIN="$CARGO_TARGET_DIR/release/robarch"
specs=()
# Every registry architecture but the imported-TorchScript placeholder (no presets).
for arch in $("$BIN" ls models | awk 'NR > 1 && $3 != "external" {print $1}'); do
  specs+=("$arch:cifar:32:3:10" "$arch:imagenet:224:3:10" "$arch:tiny:32:1:10")
done
"$ROOT/.venv/bin/python" "$ROOT/scripts/flops.py" "$BIN" "${specs[@]}" > "$ROOT/src/models/flops.json.new"
mv "$ROOT/src/models/flops.json.new" "$ROOT/src/models/flops.json"
echo "wrote src/models/flops.json (${#specs[@]} entries)"
