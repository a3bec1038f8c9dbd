"""RegNetX: timm's RegNet (timm.models.regnet) built from a RegNetCfg with the config's design-space
parameters (w0, wa, wm, depth, group_size, bottle_ratio), so the per-stage widths, depths and group
sizes come from timm's own generate_regnet / adjust_widths_groups_comp. robarch's extra knobs for
small images are applied to the built model: the stem stride (the stem conv's stride) and the
stride of each stage's first block (stages rebuilt through timm's RegStage)."""
from timm.models.regnet import Bottleneck, RegNet, RegNetCfg, RegStage


def build(c, io):
    cfg = RegNetCfg(
        depth=c["depth"], w0=c["w0"], wa=c["wa"], wm=c["wm"], group_size=c["group_size"],
        bottle_ratio=c["bottle_ratio"], stem_width=c["stem_width"],
    )
    m = RegNet(cfg, in_chans=io["in_channels"], num_classes=io["num_classes"],
               drop_path_rate=c["drop_path_rate"])
    m.stem.conv.stride = (c["stem_stride"], c["stem_stride"])
    strides = list(c["strides"])
    if strides != [2, 2, 2, 2]:
        per_stage, common = m._get_stage_args(cfg, drop_path_rate=c["drop_path_rate"])
        prev = cfg.stem_width
        for i, (args, s) in enumerate(zip(per_stage, strides)):
            args = dict(args, stride=s)
            setattr(m, f"s{i + 1}", RegStage(in_chs=prev, block_fn=Bottleneck, **args, **common))
            prev = args["out_chs"]
    return m
