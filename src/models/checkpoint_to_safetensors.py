"""robarch's `load` stage: a pickled PyTorch checkpoint, read weights-only, as safetensors.

usage: python checkpoint_to_safetensors.py <checkpoint> <out.safetensors>
`torch.load(..., weights_only=True)` builds tensors and plain containers only: it refuses to run
code or to build other objects, so a checkpoint cannot act when it is read. Wrappers such as
{"state_dict": ...} or {"model": ...} are taken off. Exit status 3: weights-only loading refused the
file (or it is not a checkpoint); 4: it holds no tensors. The message is on stderr.
"""
import sys

import torch
from safetensors.torch import save_file

WRAPPERS = ("state_dict", "model", "model_state_dict", "net", "state", "module", "ema")

src, dst = sys.argv[1], sys.argv[2]
try:
    obj = torch.load(src, map_location="cpu", weights_only=True)
except Exception as e:  # the unpickler's refusal, or not a checkpoint at all
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    print(f"weights-only loading refused it: {first}", file=sys.stderr)
    sys.exit(3)
for _ in range(4):
    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
if not isinstance(obj, dict):
    print(f"it holds a {type(obj).__name__}, not a state dict", file=sys.stderr)
    sys.exit(4)
tensors = {k: v.detach().clone().contiguous() for k, v in obj.items() if isinstance(v, torch.Tensor)}
if not tensors:
    print("it holds no tensors under any of " + ", ".join(WRAPPERS), file=sys.stderr)
    sys.exit(4)
save_file(tensors, dst)
