"""CvT: a transcription of the authors' PyTorch code (microsoft/CvT, lib/models/cls_cvt.py, built
as `get_cls_model` builds it: QuickGELU MLPs, LayerNorm eps 1e-5, 'dw_bn' convolutional
projections, stride-1 queries, trunc-normal init), without einops. Parameter names are the
authors' (`stage0.patch_embed.proj`, `stage2.blocks.0.attn.conv_proj_q.conv`, `.attn.proj_q`,
`stage2.cls_token`, `norm`, `head`). As in every published CvT config, only the last stage has a
class token and only the last stage has stochastic depth (DROP_PATH_RATE [0, 0, r]). The head
takes `cls[:, 0]` where the authors' `torch.squeeze` would also drop a batch dimension of 1.
Attention scores are scaled by dim**-0.5 (the whole width, not the head width), as the authors'
code does."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features, drop):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = QuickGELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class ConvProj(nn.Module):
    """'dw_bn': depthwise conv → BatchNorm → flatten to tokens."""

    def __init__(self, dim, kernel_size, padding, stride):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel_size, padding=padding, stride=stride, bias=False,
                              groups=dim)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x):
        return self.bn(self.conv(x)).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim_in, dim_out, num_heads, qkv_bias, attn_drop, proj_drop, kernel_size,
                 stride_kv, stride_q, padding_kv, padding_q, with_cls_token):
        super().__init__()
        self.num_heads = num_heads
        self.scale = dim_out ** -0.5
        self.with_cls_token = with_cls_token
        self.conv_proj_q = ConvProj(dim_in, kernel_size, padding_q, stride_q)
        self.conv_proj_k = ConvProj(dim_in, kernel_size, padding_kv, stride_kv)
        self.conv_proj_v = ConvProj(dim_in, kernel_size, padding_kv, stride_kv)
        self.proj_q = nn.Linear(dim_in, dim_out, bias=qkv_bias)
        self.proj_k = nn.Linear(dim_in, dim_out, bias=qkv_bias)
        self.proj_v = nn.Linear(dim_in, dim_out, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim_out, dim_out)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x, h, w):
        if self.with_cls_token:
            cls_token, x = torch.split(x, [1, h * w], 1)
        x = x.transpose(1, 2).reshape(x.shape[0], -1, h, w)
        q, k, v = self.conv_proj_q(x), self.conv_proj_k(x), self.conv_proj_v(x)
        if self.with_cls_token:
            q = torch.cat((cls_token, q), dim=1)
            k = torch.cat((cls_token, k), dim=1)
            v = torch.cat((cls_token, v), dim=1)

        def heads(t):
            b, n, _ = t.shape
            return t.reshape(b, n, self.num_heads, -1).transpose(1, 2)

        q, k, v = heads(self.proj_q(q)), heads(self.proj_k(k)), heads(self.proj_v(v))
        attn = F.softmax(torch.einsum('bhlk,bhtk->bhlt', [q, k]) * self.scale, dim=-1)
        attn = self.attn_drop(attn)
        x = torch.einsum('bhlt,bhtv->bhlv', [attn, v])
        b, _, n, _ = x.shape
        x = x.transpose(1, 2).reshape(b, n, -1)
        return self.proj_drop(self.proj(x))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, qkv_bias, drop, attn_drop, drop_path, **kwargs):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = Attention(dim, dim, num_heads, qkv_bias, attn_drop, drop, **kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x, h, w):
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ConvEmbed(nn.Module):
    def __init__(self, patch_size, in_chans, embed_dim, stride, padding):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=stride,
                              padding=padding)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-5)

    def forward(self, x):
        x = self.proj(x)
        B, C, H, W = x.shape
        x = self.norm(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).reshape(B, C, H, W)


class VisionTransformer(nn.Module):
    """One CvT stage."""

    def __init__(self, patch_size, patch_stride, patch_padding, in_chans, embed_dim, depth,
                 num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, drop_path_rate,
                 with_cls_token, **kwargs):
        super().__init__()
        self.patch_embed = ConvEmbed(patch_size, in_chans, embed_dim, patch_stride, patch_padding)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if with_cls_token else None
        self.pos_drop = nn.Dropout(p=drop_rate)
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, depth)]
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, dpr[j],
                  with_cls_token=with_cls_token, **kwargs)
            for j in range(depth)
        ])
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.patch_embed(x)
        B, C, H, W = x.size()
        x = x.flatten(2).transpose(1, 2)
        cls_tokens = None
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = self.pos_drop(x)
        for blk in self.blocks:
            x = blk(x, H, W)
        if self.cls_token is not None:
            cls_tokens, x = torch.split(x, [1, H * W], 1)
        return x.transpose(1, 2).reshape(B, C, H, W), cls_tokens


class ConvolutionalVisionTransformer(nn.Module):
    def __init__(self, c, io):
        super().__init__()
        n = len(c["depths"])
        self.num_stages = n
        in_chans = io["in_channels"]
        k = c["kernel_qkv"]
        for i in range(n):
            last = i == n - 1
            stage = VisionTransformer(
                patch_size=c["patch_sizes"][i], patch_stride=c["patch_strides"][i],
                patch_padding=c["patch_paddings"][i], in_chans=in_chans, embed_dim=c["dims"][i],
                depth=c["depths"][i], num_heads=c["heads"][i], mlp_ratio=c["mlp_ratio"],
                qkv_bias=c["qkv_bias"], drop_rate=c["dropout"],
                attn_drop_rate=c["attention_dropout"],
                drop_path_rate=c["drop_path_rate"] if last else 0.0,
                with_cls_token=c["cls_token"] and last, kernel_size=k, padding_q=k // 2,
                padding_kv=k // 2, stride_kv=c["stride_kv"], stride_q=1,
            )
            setattr(self, f"stage{i}", stage)
            in_chans = c["dims"][i]
        self.norm = nn.LayerNorm(c["dims"][-1], eps=1e-5)
        self.cls_token = c["cls_token"]
        self.head = nn.Linear(c["dims"][-1], io["num_classes"])
        trunc_normal_(self.head.weight, std=0.02)

    def forward(self, x):
        for i in range(self.num_stages):
            x, cls_tokens = getattr(self, f"stage{i}")(x)
        if self.cls_token:
            x = self.norm(cls_tokens)[:, 0]
        else:
            x = self.norm(x.flatten(2).transpose(1, 2)).mean(dim=1)
        return self.head(x)


def build(c, io):
    return ConvolutionalVisionTransformer(c, io)
