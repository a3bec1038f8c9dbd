"""Reference PyTorch definitions of robarch's architectures, for cross-checks.

`build(family, config, io)` returns an nn.Module whose state_dict names and shapes equal robarch's
for the same config: timm's own classes where timm has the architecture (configured through their
constructor arguments), torchvision's otherwise, and a transcription of the original authors' code
for the rest. `config` is robarch's canonical model config, `io` holds in_channels, image_size and
num_classes.
"""
import importlib


def build(family, config, io):
    mod = importlib.import_module(f"{__name__}.{family}")
    return mod.build(config, io)
