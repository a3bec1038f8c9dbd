"""CCT: a transcription of the authors' PyTorch code (SHI-Labs/Compact-Transformers, src/cct.py,
src/utils/tokenizer.py and src/utils/transformers.py at cd11f09), image classification only:
convolutional tokenizer (conv → ReLU → max-pool, repeated), learnable position embedding,
transformer encoder layers as the authors wrote them (pre-norm attention, then `norm1` applied to the
residual stream before the MLP), final LayerNorm, sequence pooling, linear classifier. Parameter
names are the authors' (`tokenizer.conv_layers.0.0.weight`, `classifier.blocks.0.self_attn.qkv`,
`classifier.attention_pool`, …). The sinusoidal position embedding (a frozen parameter) is left out."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Tokenizer(nn.Module):
    def __init__(self, kernel_size, stride, padding, pooling_kernel_size=3, pooling_stride=2,
                 pooling_padding=1, n_conv_layers=1, n_input_channels=3, n_output_channels=64,
                 in_planes=64):
        super().__init__()
        n_filter_list = [n_input_channels] + [in_planes] * (n_conv_layers - 1) + [n_output_channels]
        self.conv_layers = nn.Sequential(*[
            nn.Sequential(
                nn.Conv2d(n_filter_list[i], n_filter_list[i + 1], kernel_size=kernel_size,
                          stride=stride, padding=padding, bias=False),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=pooling_kernel_size, stride=pooling_stride,
                             padding=pooling_padding),
            )
            for i in range(n_conv_layers)
        ])
        self.flattener = nn.Flatten(2, 3)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def sequence_length(self, n_channels, height, width):
        return self.forward(torch.zeros((1, n_channels, height, width))).shape[1]

    def forward(self, x):
        return self.flattener(self.conv_layers(x)).transpose(-2, -1)


class Attention(nn.Module):
    def __init__(self, dim, num_heads, attention_dropout, projection_dropout):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.attn_drop = nn.Dropout(attention_dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(projection_dropout)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        attn = self.attn_drop(attn)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


def drop_path(x, p, training):
    if p == 0. or not training:
        return x
    keep = 1 - p
    mask = (keep + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)).floor_()
    return x.div(keep) * mask


class DropPath(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        return drop_path(x, self.p, self.training)


class TransformerEncoderLayer(nn.Module):
    def __init__(self, d_model, nhead, dim_feedforward, dropout, attention_dropout, drop_path_rate):
        super().__init__()
        self.pre_norm = nn.LayerNorm(d_model)
        self.self_attn = Attention(d_model, nhead, attention_dropout, dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout2 = nn.Dropout(dropout)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, src):
        src = src + self.drop_path(self.self_attn(self.pre_norm(src)))
        src = self.norm1(src)
        src2 = self.linear2(self.dropout1(F.gelu(self.linear1(src))))
        return src + self.drop_path(self.dropout2(src2))


class TransformerClassifier(nn.Module):
    def __init__(self, embedding_dim, num_layers, num_heads, mlp_ratio, num_classes, dropout,
                 attention_dropout, stochastic_depth, positional_embedding, sequence_length):
        super().__init__()
        dim_feedforward = int(embedding_dim * mlp_ratio)
        self.attention_pool = nn.Linear(embedding_dim, 1)
        if positional_embedding == "learnable":
            self.positional_emb = nn.Parameter(torch.zeros(1, sequence_length, embedding_dim))
            nn.init.trunc_normal_(self.positional_emb, std=0.2)
        else:
            self.positional_emb = None
        self.dropout = nn.Dropout(p=dropout)
        dpr = [x.item() for x in torch.linspace(0, stochastic_depth, num_layers)]
        self.blocks = nn.ModuleList([
            TransformerEncoderLayer(embedding_dim, num_heads, dim_feedforward, dropout,
                                    attention_dropout, dpr[i])
            for i in range(num_layers)
        ])
        self.norm = nn.LayerNorm(embedding_dim)
        self.fc = nn.Linear(embedding_dim, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def forward(self, x):
        if self.positional_emb is not None:
            x = x + self.positional_emb
        x = self.dropout(x)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        x = torch.matmul(F.softmax(self.attention_pool(x), dim=1).transpose(-1, -2), x).squeeze(-2)
        return self.fc(x)


class CCT(nn.Module):
    def __init__(self, img_size, embedding_dim, n_input_channels, n_conv_layers, kernel_size, stride,
                 padding, pooling_kernel_size, pooling_stride, pooling_padding, in_planes, dropout,
                 attention_dropout, stochastic_depth, num_layers, num_heads, mlp_ratio, num_classes,
                 positional_embedding):
        super().__init__()
        self.tokenizer = Tokenizer(kernel_size, stride, padding, pooling_kernel_size, pooling_stride,
                                   pooling_padding, n_conv_layers, n_input_channels, embedding_dim,
                                   in_planes)
        self.classifier = TransformerClassifier(
            embedding_dim, num_layers, num_heads, mlp_ratio, num_classes, dropout, attention_dropout,
            stochastic_depth, positional_embedding,
            self.tokenizer.sequence_length(n_input_channels, img_size, img_size))

    def forward(self, x):
        return self.classifier(self.tokenizer(x))


def build(c, io):
    return CCT(
        img_size=io["image_size"], embedding_dim=c["dim"], n_input_channels=io["in_channels"],
        n_conv_layers=c["conv_layers"], kernel_size=c["conv_kernel"], stride=c["conv_stride"],
        padding=c["conv_padding"], pooling_kernel_size=c["pool_kernel"],
        pooling_stride=c["pool_stride"], pooling_padding=c["pool_padding"],
        in_planes=c["conv_channels"], dropout=c["dropout"], attention_dropout=c["attention_dropout"],
        stochastic_depth=c["drop_path_rate"], num_layers=c["depth"], num_heads=c["heads"],
        mlp_ratio=c["mlp_ratio"], num_classes=io["num_classes"],
        positional_embedding=c["positional_embedding"],
    )
