"""robarch's `script` stage: builds a timm model (no pretrained download) and scripts it.

usage: python timm_script.py '{"model", "kwargs", "num_classes", "in_chans", "image_size",
                               "seed", "timm", "out"}'
Exit status 3: timm's version is not the pinned one; 4: timm has no such model; 5: the model
cannot be scripted. The message is on stderr.
"""
import json
import sys

import torch
import timm

r = json.loads(sys.argv[1])
if timm.__version__ != r["timm"]:
    print(f"timm {timm.__version__} is installed, robarch pins {r['timm']}: run scripts/env.sh",
          file=sys.stderr)
    sys.exit(3)
if not timm.is_model(r["model"]):
    close = timm.list_models(f"*{r['model'].split('_')[0]}*")[:8]
    print(f"timm has no model `{r['model']}`" + (f"; similar: {', '.join(close)}" if close else ""),
          file=sys.stderr)
    sys.exit(4)
torch.manual_seed(r["seed"])
model = timm.create_model(r["model"], pretrained=False, num_classes=r["num_classes"],
                          in_chans=r["in_chans"], **r["kwargs"]).eval()
try:
    scripted = torch.jit.script(model)
except Exception as e:  # timm's or TorchScript's message, whatever its type
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(5)
scripted.save(r["out"])
print(json.dumps({"parameters": sum(p.numel() for p in model.parameters())}))
