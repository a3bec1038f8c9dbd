"""CaiT: timm's Cait; one `mlp_ratio` sets both kinds of block (timm's mlp_ratio and
mlp_ratio_token_only)."""
from timm.models.cait import Cait


def build(c, io):
    return Cait(
        img_size=io["image_size"], patch_size=c["patch_size"], in_chans=io["in_channels"],
        num_classes=io["num_classes"], embed_dim=c["dim"], depth=c["depth"], num_heads=c["heads"],
        mlp_ratio=c["mlp_ratio"], mlp_ratio_token_only=c["mlp_ratio"], qkv_bias=True,
        depth_token_only=c["depth_token_only"], init_values=c["layer_scale_init"],
        drop_path_rate=c["drop_path_rate"],
    )
