"""PVT v2: timm's PyramidVisionTransformerV2. timm's constructor fixes the first patch embedding at
7x7 stride 4; another `stem_patch`/`stem_stride` swaps that convolution for one with padding
stem_patch // 2, as timm's OverlapPatchEmbed pads."""
import torch.nn as nn
from timm.models.pvt_v2 import PyramidVisionTransformerV2


def build(c, io):
    m = PyramidVisionTransformerV2(
        in_chans=io["in_channels"], num_classes=io["num_classes"], depths=tuple(c["depths"]),
        embed_dims=tuple(c["embed_dims"]), num_heads=tuple(c["heads"]),
        sr_ratios=tuple(c["sr_ratios"]), mlp_ratios=tuple(c["mlp_ratios"]), qkv_bias=True,
        linear=False, drop_path_rate=c["drop_path_rate"],
    )
    k, s = c["stem_patch"], c["stem_stride"]
    if (k, s) != (7, 4):
        m.patch_embed.proj = nn.Conv2d(io["in_channels"], c["embed_dims"][0], k, s, k // 2)
    return m
