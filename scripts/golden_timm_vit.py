#!/usr/bin/env python3
"""timm's VisionTransformer rebuilt in PyTorch (timm itself is not installed here), to check that an
exported encoder opens in timm as the JSON beside it says, and computes what semaim computes.

  golden_timm_vit.py WEIGHTS.safetensors CONFIG.json IMAGES.f32 TOKENS.f32 [POOLED.f32]

Builds the model from CONFIG's `model_args` as timm.create_model(architecture, **model_args) would
(timm's structure and names: pre-norm blocks, fused qkv with bias, exact GELU, LayerNorm eps 1e-6,
[CLS] + learned pos_embed), loads WEIGHTS with load_state_dict(strict=True), runs forward_features
on IMAGES (float32 [B, in_chans, img, img], raw little-endian) and writes the tokens
[B, 1 + N, D] as raw float32. Written from timm's vision_transformer.py, not from semaim's code.
With POOLED, also writes [B, D]: the feature of MAE's and the SemAIM authors' models_vit.py with
global_pool=True (their k-NN and linear-probe `--global_pool`): the patch tokens after the last block,
*before* the final norm, averaged, through the fc_norm that models_vit adds and no pre-training
checkpoint holds (a fresh LayerNorm, eps 1e-6: weight 1, bias 0).
"""
import json
import math
import struct
import sys

import torch
import torch.nn as nn

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def load_safetensors(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).to(torch.float32)
    return out


class Attention(nn.Module):
    def __init__(self, dim, num_heads, qkv_bias):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, qkv_bias):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch_size, patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    def __init__(self, img_size, patch_size, in_chans=3, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0,
                 num_classes=0, global_pool="token", class_token=True, qkv_bias=True):
        super().__init__()
        assert num_classes == 0 and global_pool == "token" and class_token, "the encoder of an export"
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward_features(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x))

    def forward_global_pool(self, x):
        # models_vit.py (MAE, SemAIM) forward_features with global_pool: `del self.norm`, then
        # x = x[:, 1:, :].mean(dim=1); outcome = self.fc_norm(x), fc_norm = norm_layer(embed_dim)
        fc_norm = nn.LayerNorm(self.norm.normalized_shape[0], eps=1e-6)
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.blocks(x)
        return fc_norm(x[:, 1:, :].mean(dim=1))


def main():
    weights, config, images, out = sys.argv[1:5]
    pooled_out = sys.argv[5] if len(sys.argv) > 5 else None
    cfg = json.load(open(config))
    args = cfg["model_args"]
    model = VisionTransformer(**args).eval()
    model.load_state_dict(load_safetensors(weights), strict=True)
    size, chans = args["img_size"], args.get("in_chans", 3)
    raw = open(images, "rb").read()
    batch = len(raw) // (4 * chans * size * size)
    x = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(batch, chans, size, size)
    with torch.no_grad():
        tokens = model.forward_features(x)
    assert math.isfinite(tokens.abs().max().item())
    open(out, "wb").write(tokens.contiguous().numpy().astype("<f4").tobytes())
    if pooled_out:
        with torch.no_grad():
            pooled = model.forward_global_pool(x)
        open(pooled_out, "wb").write(pooled.contiguous().numpy().astype("<f4").tobytes())


if __name__ == "__main__":
    main()
