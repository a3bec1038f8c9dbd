"""CoAtNet: timm's MaxxVit (timm.models.maxxvit) with a MaxxVitCfg derived from timm's
`coatnet_0` model cfg (dataclasses.replace of widths, depths, block types, stem width, head hidden
size, MBConv expansion / SE ratio, transformer head dim / MLP ratio), built for the configured image
size (the relative-position bias of a transformer stage covers its whole feature map). A stem
stride of 1 (the CIFAR variant) is made by building timm's model for twice the image size, which
gives every stage the feature size it has with an unstrided stem, and then un-striding the stem's
first conv."""
from dataclasses import replace

from timm.models.maxxvit import MaxxVit, model_cfgs


def model_cfg(c):
    base = model_cfgs["coatnet_0"]
    return replace(
        base,
        embed_dim=tuple(c["embed_dims"]),
        depths=tuple(c["depths"]),
        block_type=tuple(c["block_types"]),
        stem_width=c["stem_width"],
        head_hidden_size=c["head_hidden_size"] or None,
        conv_cfg=replace(base.conv_cfg, expand_ratio=c["mbconv_expand_ratio"], attn_ratio=c["se_ratio"]),
        transformer_cfg=replace(base.transformer_cfg, dim_head=c["dim_head"],
                                expand_ratio=c["mlp_ratio"]),
    )


def build(c, io):
    s = c["stem_stride"]
    m = MaxxVit(model_cfg(c), img_size=io["image_size"] * 2 // s, in_chans=io["in_channels"],
                num_classes=io["num_classes"], drop_path_rate=c["drop_path_rate"])
    m.stem.conv1.stride = (s, s)
    return m
