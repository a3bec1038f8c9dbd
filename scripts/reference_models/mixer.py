"""MLP-Mixer: timm's MlpMixer (mixer_s16_224 is patch 16, 8 blocks, width 512). Like timm, every
block gets the same drop-path rate."""
from timm.models.mlp_mixer import MlpMixer


def build(c, io):
    return MlpMixer(
        num_classes=io["num_classes"], img_size=io["image_size"], in_chans=io["in_channels"],
        patch_size=c["patch_size"], num_blocks=c["depth"], embed_dim=c["dim"],
        mlp_ratio=(c["tokens_mlp_ratio"], c["channels_mlp_ratio"]), drop_rate=c["dropout"],
        proj_drop_rate=c["dropout"], drop_path_rate=c["drop_path_rate"],
    )
