"""ViT: timm's VisionTransformer."""
from timm.models.vision_transformer import VisionTransformer


def kwargs(c, io):
    return dict(
        img_size=io["image_size"], patch_size=c["patch_size"], in_chans=io["in_channels"],
        num_classes=io["num_classes"], embed_dim=c["dim"], depth=c["depth"], num_heads=c["heads"],
        mlp_ratio=c["mlp_ratio"], qkv_bias=True, drop_rate=c["dropout"], pos_drop_rate=c["dropout"],
        proj_drop_rate=c["dropout"], drop_path_rate=c["drop_path_rate"],
    )


def build(c, io):
    return VisionTransformer(**kwargs(c, io))
