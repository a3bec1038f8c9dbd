"""MobileViT (v1): timm's ByobNet (timm.models.byobnet) with a ByoModelCfg written the way timm's
`mobilevit_*` model_cfgs are (timm.models.mobilevit: `_inverted_residual_block` stages, then an
inverted residual + `MobileVitBlock` pair for stages with a transformer). The stem stride (1 for the
CIFAR variant) is applied by setting the stem conv's stride on the built model."""
from timm.models.byobnet import ByobNet, ByoModelCfg
# Importing timm.models.mobilevit also registers its 'mobilevit' block type with ByobNet.
from timm.models.mobilevit import _inverted_residual_block, _mobilevit_block


def model_cfg(c):
    blocks = []
    for ch, d, s, td, tdepth in zip(c["channels"], c["depths"], c["strides"],
                                    c["transformer_dims"], c["transformer_depths"]):
        if td > 0:
            ir, mv = _mobilevit_block(d=d, c=ch, s=s, transformer_dim=td, transformer_depth=tdepth,
                                      patch_size=c["patch_size"], br=c["expansion"])
            mv.block_kwargs.update(num_heads=c["heads"], mlp_ratio=c["mlp_ratio"])
            blocks.append((ir, mv))
        else:
            blocks.append(_inverted_residual_block(d=d, c=ch, s=s, br=c["expansion"]))
    return ByoModelCfg(
        blocks=tuple(blocks), stem_chs=c["stem_chs"], stem_type="3x3", stem_pool="",
        downsample="", act_layer="silu", num_features=c["num_features"],
    )


def build(c, io):
    m = ByobNet(model_cfg(c), num_classes=io["num_classes"], in_chans=io["in_channels"],
                drop_path_rate=c["drop_path_rate"])
    m.stem.conv.stride = (c["stem_stride"], c["stem_stride"])
    return m
