"""Forward FLOPs per image of robarch's architectures at the presets its pipelines use, counted on
the reference PyTorch definitions (scripts/reference_models, whose logits the model cross-check
holds equal to robarch's) with torch's FlopCounterMode: 2 FLOPs per multiply-accumulate of every
matrix product and convolution (attention's QKᵀ and AV included; timm's fused attention is turned
off so its products are counted); normalisations, activations and softmax are not counted.

usage: flops.py ROBARCH ARCH:PRESET:SIZE:CHANNELS:CLASSES... > table.json
Reads each config from `ROBARCH model ARCH --preset PRESET ...`; prints the table robarch embeds
(src/models/flops.json) as JSON.
"""
import json
import os
import pathlib
import subprocess
import sys

os.environ["TIMM_FUSED_ATTN"] = "0"

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import reference_models  # noqa: E402


def families(robarch):
    out = subprocess.run([robarch, "ls", "models"], check=True, capture_output=True, text=True)
    rows = [l.split() for l in out.stdout.splitlines()[1:] if l.strip()]
    return {r[0]: r[1] for r in rows}


def config_of(robarch, arch, preset, io):
    out = subprocess.run(
        [robarch, "model", arch, "--preset", preset, "--image-size", str(io["image_size"]),
         "--channels", str(io["in_channels"]), "--classes", str(io["num_classes"])],
        check=True, capture_output=True, text=True,
    ).stdout
    line = next(l for l in out.splitlines() if l.startswith("config: "))
    return json.loads(line[len("config: "):])


def forward_flops(family, config, io):
    model = reference_models.build(family, config, io).eval()
    x = torch.rand(1, io["in_channels"], io["image_size"], io["image_size"])
    counter = FlopCounterMode(display=False)
    with counter:  # not under no_grad: its module tracker needs grad_fns (timm CaiT)
        model(x)
    return counter.get_total_flops()


def main():
    robarch, specs = sys.argv[1], sys.argv[2:]
    fam = families(robarch)
    table = []
    for s in specs:
        arch, preset, size, channels, classes = s.split(":")
        io = {"in_channels": int(channels), "image_size": int(size), "num_classes": int(classes)}
        config = config_of(robarch, arch, preset, io)
        flops = forward_flops(fam[arch], config, io)
        print(f"{arch:<16} {preset:<9} {size:>4}px {flops / 1e9:10.4f} GFLOPs", file=sys.stderr)
        table.append({"arch": arch, "preset": preset, "io": io, "config": config,
                      "forward_flops": flops})
    json.dump(table, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    torch.manual_seed(0)
    torch.set_num_threads(1)
    main()
