"""Reference outputs of torchvision's AutoAugment operations for robarch's cross-check test.

Usage: python scripts/crosscheck_autoaugment.py IN.safetensors OUT.safetensors
IN holds uint8 image batches `rgb` [N,3,H,W] and `gray` [N,1,H,W]. For every operation and
magnitude bin (both signs where the op is signed), OUT holds torchvision's result as
`<batch>/<op>/<bin>/<sign>` and the magnitude it used as `mag/<op>/<bin>/<sign>` (float64 [1]).
Uses torchvision's own `_augmentation_space` and `_apply_op`, i.e. exactly what
`transforms.AutoAugment` runs (nearest interpolation, no fill).
"""
import sys

import torch
from safetensors.torch import load_file, save_file
from torchvision.transforms import InterpolationMode
from torchvision.transforms import autoaugment as aa

OPS = ["ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
       "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert"]


def main(src, dst):
    batches = load_file(src)
    out = {}
    space_of = aa.AutoAugment()
    for name, imgs in batches.items():
        h, w = imgs.shape[-2:]
        space = space_of._augmentation_space(10, (h, w))  # as AutoAugment.forward: (height, width)
        for op in OPS:
            mags, signed = space[op]
            bins = range(10) if mags.ndim > 0 else [0]
            for b in bins:
                for sign in ([1, -1] if signed else [1]):
                    m = float(mags[b].item()) if mags.ndim > 0 else 0.0
                    m *= sign
                    res = aa._apply_op(imgs.clone(), op, m, InterpolationMode.NEAREST, None)
                    key = f"{op}/{b}/{'+' if sign > 0 else '-'}"
                    out[f"{name}/{key}"] = res.contiguous()
                    out[f"mag/{name}/{key}"] = torch.tensor([m], dtype=torch.float64)
    save_file(out, dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
