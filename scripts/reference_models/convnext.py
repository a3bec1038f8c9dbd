"""ConvNeXt: timm's ConvNeXt (four stages). A stem patch other than 4 is a plain patchify conv of
that size in robarch, so the reference swaps timm's stem conv rather than using timm's
`patch_size=2` (which moves a stride into stage 0)."""
import torch.nn as nn
from timm.models.convnext import ConvNeXt


def build(c, io):
    assert len(c["depths"]) == 4, "timm's ConvNeXt has four stages"
    m = ConvNeXt(
        in_chans=io["in_channels"], num_classes=io["num_classes"], depths=tuple(c["depths"]),
        dims=tuple(c["dims"]), patch_size=4, drop_path_rate=c["drop_path_rate"],
        ls_init_value=c["layer_scale_init"],
    )
    p = c["stem_patch"]
    m.stem[0] = nn.Conv2d(io["in_channels"], c["dims"][0], p, p)
    return m
