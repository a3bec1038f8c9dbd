"""Swin Transformer: timm's SwinTransformer, built for the configured image size (windows clipped
to each stage's resolution and shifts disabled where the window covers it, as timm does)."""
from timm.models.swin_transformer import SwinTransformer


def build(c, io):
    return SwinTransformer(
        img_size=io["image_size"], patch_size=c["patch_size"], in_chans=io["in_channels"],
        num_classes=io["num_classes"], embed_dim=c["embed_dim"], depths=tuple(c["depths"]),
        num_heads=tuple(c["heads"]), window_size=c["window_size"], mlp_ratio=c["mlp_ratio"],
        qkv_bias=True, drop_path_rate=c["drop_path_rate"],
    )
