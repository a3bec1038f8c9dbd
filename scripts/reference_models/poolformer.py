"""PoolFormer: timm's MetaFormer with poolformer_s12's arguments (GroupNorm with one group, pooling
token mixer, GELU MLP with bias, layer scale, no res scale, linear head). timm's stem is a fixed
7×7/4 conv with padding 2; other stems (the CIFAR preset) are swapped in as a plain conv."""
import torch.nn as nn
from timm.layers import GroupNorm1
from timm.models.metaformer import MetaFormer, Pooling


def build(c, io):
    m = MetaFormer(
        in_chans=io["in_channels"], num_classes=io["num_classes"], depths=tuple(c["depths"]),
        dims=tuple(c["dims"]), token_mixers=Pooling, pool_size=c["pool_size"],
        mlp_act=nn.GELU, mlp_bias=True, norm_layers=GroupNorm1, downsample_norm=None,
        layer_scale_init_values=c["layer_scale_init"], res_scale_init_values=None,
        use_mlp_head=False, drop_path_rate=c["drop_path_rate"], proj_drop_rate=c["dropout"],
        drop_rate=c["dropout"],
    )
    k, s, p = c["stem_kernel"], c["stem_stride"], c["stem_padding"]
    if (k, s, p) != (7, 4, 2):
        m.stem.conv = nn.Conv2d(io["in_channels"], c["dims"][0], k, s, p)
    return m
