"""A Vision Transformer sized for small images (Dosovitskiy et al. 2021, the CIFAR-scale recipe).

Pre-norm blocks (LayerNorm → attention → residual, LayerNorm → MLP → residual), a class token and
learned position embeddings; attention runs through ``scaled_dot_product_attention``, which picks
the fused kernel of the device (flash or memory-efficient on CUDA, a fused CPU kernel otherwise).
The size follows the image (:func:`size_for`): 2-pixel patches and width 64 for 8 × 8 digits,
4-pixel patches and width 128 for 28 × 28, and from 32 × 32 the common CIFAR model (4-pixel patches
on 32 × 32, an 8 × 8 token grid on larger images, width 384, about 6.3 M parameters), so a digits
ViT trains on two CPU cores in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from smu.core.errors import UsageError


@dataclass(frozen=True)
class ViTSize:
    patch: int
    dim: int
    depth: int
    heads: int
    mlp: int


def size_for(image_size: int) -> ViTSize:
    """The ViT for an image side: small for 8×8 digits and 28×28, the CIFAR recipe from 32×32 up."""
    if image_size <= 16:
        return ViTSize(patch=2, dim=64, depth=4, heads=4, mlp=128)
    if image_size < 32:
        return ViTSize(patch=4, dim=128, depth=6, heads=4, mlp=256)
    # The CIFAR-10 recipe (dim 384, depth 7, 12 heads, MLP 384: about 6.3 M parameters at 32×32),
    # with patches of 4 pixels on a 32×32 image and an 8×8 token grid on larger ones.
    return ViTSize(patch=max(4, image_size // 8), dim=384, depth=7, heads=12, mlp=384)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / √d_head) v, fused
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp)
        self.fc2 = nn.Linear(mlp, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    """Patch embedding (a conv with stride = kernel = patch), class token, blocks, LayerNorm, head."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, size: ViTSize):
        super().__init__()
        if image_size % size.patch:
            raise UsageError(
                f"a ViT with {size.patch}-pixel patches needs an image side divisible by {size.patch}, "
                f"got {image_size}",
                hint="resize the images (imagefolder resizes to its first image's size)",
            )
        tokens = (image_size // size.patch) ** 2
        self.patch_embed = nn.Conv2d(in_channels, size.dim, size.patch, stride=size.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, size.dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, size.dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(size.dim, size.heads, size.mlp) for _ in range(size.depth)))
        self.norm = nn.LayerNorm(size.dim)
        self.head = nn.Linear(size.dim, num_classes)
        for m in self.modules():  # the usual ViT initialisation: truncated normal linear weights, zero bias
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def vit(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """The ViT sized for ``image_size`` (see :func:`size_for`)."""
    return ViT(in_channels, image_size, num_classes, size_for(image_size))
