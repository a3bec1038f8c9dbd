"""DeiT (distilled): timm's VisionTransformerDistilled."""
from timm.models.deit import VisionTransformerDistilled

from .vit import kwargs


def build(c, io):
    return VisionTransformerDistilled(**kwargs(c, io))
