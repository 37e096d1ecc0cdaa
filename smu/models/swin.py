"""Swin-T as the paper's code builds it for CIFAR: windows of 4, downscaling (2, 2, 2, 1); 26.6M.

The research code (Jia, Liu et al. 2023, github.com/OPTML-Group/Unlearn-Sparse, ``models/swin.py``)
ships a compact Swin Transformer (Liu et al. 2021): hidden width 96 doubling per stage, (2, 2, 6, 2)
blocks, (3, 6, 12, 24) heads of 32 dimensions, pre-norm residual blocks that alternate plain and
cyclically shifted window attention, a relative position bias shared by a block's heads, patch merging
as a linear map of each k×k patch, mean pooling and a LayerNorm + Linear head. This is a fresh
implementation with the same state-dict keys, shapes and order (``stage1.patch_partition.linear.weight``,
``stage1.layers.0.0.attention_block.fn.fn.to_qkv.weight``, ``mlp_head.1.weight``, ...), and it draws the
same random numbers in the same order, so ``torch.manual_seed(s)`` gives the research code's initial
weights.

Two things differ from a research checkpoint, and `from_original` bridges both:

- The shift masks (``...attention_block.fn.fn.upper_lower_mask`` / ``left_right_mask``) were frozen
  ``nn.Parameter``s holding -inf. Here they are non-persistent buffers, computed from the window size:
  not in the state dict, since smu refuses files with non-finite weights. `from_original` drops them
  after checking each equals the computed mask.
- The research code attaches a ``normalize`` module with the dataset's mean and std, but its Swin
  ``forward`` never calls it (only its ResNets and VGGs do): a research Swin's logits are those of the
  raw [0, 1] image. smu's `Classifier` always normalises, so an imported Swin must carry the identity
  normalisation (mean 0, std 1) to give the same logits. `from_original` therefore replaces
  ``normalize.mean`` / ``normalize.std`` with zeros / ones when the checkpoint has them; when it has
  none, the importer's default is already the identity.

The image side must be a multiple of window × (product of the downscaling factors), 32 for swin_t, so
that every stage's map splits into whole windows; smaller images are resized by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from smu.core.errors import ArtifactError, UsageError, shown

__all__ = ["SwinTransformer", "from_original", "shift_masks", "swin_t"]

MASKS = ("upper_lower_mask", "left_right_mask")
"""The names the research code gives its shift masks (parameters there, buffers here)."""


def shift_masks(window: int) -> tuple[Tensor, Tensor]:
    """(upper_lower, left_right): additive (window², window²) masks for the windows on the bottom row and
    right column after a cyclic shift by window // 2, -inf between tokens the shift brought together
    from opposite edges of the image and 0 elsewhere. Tokens are numbered row by row within a window."""
    # Built on the CPU whatever the default device: on `meta` (the importer's), arange and masked_fill
    # load torch's reference kernels, seconds of start-up for a table of 256 numbers.
    wrapped = torch.arange(window, device="cpu") >= window - window // 2  # came round from the far edge
    rows = wrapped.repeat_interleave(window)  # token t = r * window + c lies in row r ...
    cols = wrapped.repeat(window)  # ... and column c
    zeros, apart = torch.zeros(window**2, window**2, device="cpu"), float("-inf")
    upper_lower = zeros.masked_fill(rows[:, None] != rows[None, :], apart)
    left_right = zeros.masked_fill(cols[:, None] != cols[None, :], apart)
    return upper_lower, left_right


def relative_index(window: int) -> Tensor:
    """(window², window²) indices into the flattened (2·window − 1)² bias table: entry (q, k) picks the
    offset of key k's position from query q's."""
    steps = torch.arange(window, device="cpu")  # on the CPU, as in shift_masks
    r, c = torch.meshgrid(steps, steps, indexing="ij")
    dr = r.flatten()[None, :] - r.flatten()[:, None] + window - 1
    dc = c.flatten()[None, :] - c.flatten()[:, None] + window - 1
    return dr * (2 * window - 1) + dc


class WindowAttention(nn.Module):
    """Multi-head self-attention within each window of a (B, H, W, C) map, optionally cyclically shifted."""

    upper_lower_mask: Tensor
    left_right_mask: Tensor
    relative_index: Tensor

    def __init__(self, dim: int, heads: int, head_dim: int, window: int, shifted: bool):
        super().__init__()
        self.heads, self.head_dim, self.window, self.shifted = heads, head_dim, window, shifted
        # Created in the research code's order, so a seed gives its weights: to_qkv, the table, to_out.
        self.to_qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.pos_embedding = nn.Parameter(torch.empty(2 * window - 1, 2 * window - 1))
        here = torch.get_default_device()
        if here.type != "meta":  # N(0, 1) as torch.randn draws it; on `meta` it would load torch's
            nn.init.normal_(self.pos_embedding)  # reference kernels (seconds) to draw nothing
        self.to_out = nn.Linear(heads * head_dim, dim)
        self.register_buffer("relative_index", relative_index(window).to(here), persistent=False)
        if shifted:
            upper_lower, left_right = shift_masks(window)
            self.register_buffer("upper_lower_mask", upper_lower.to(here), persistent=False)
            self.register_buffer("left_right_mask", left_right.to(here), persistent=False)

    def bias(self, rows: int, cols: int) -> Tensor:
        """(rows · cols, window², window²): the position bias plus, when shifted, the masks of the
        windows on the bottom row and the right column (a single window gets both)."""
        table = self.pos_embedding.flatten()[self.relative_index]
        if not self.shifted:
            return table.expand(rows * cols, -1, -1)
        n = self.window**2
        masks = table.new_zeros(rows, cols, n, n)
        masks[-1] += self.upper_lower_mask
        masks[:, -1] += self.left_right_mask
        # Adding a mask of 0s and -infs is exact, so the sum's order cannot change a logit.
        return (table + masks).flatten(0, 1)

    def forward(self, x: Tensor) -> Tensor:
        shift = self.window // 2 if self.shifted else 0
        if shift:
            x = torch.roll(x, (-shift, -shift), dims=(1, 2))
        b, height, width, _ = x.shape
        w, rows, cols = self.window, height // self.window, width // self.window
        # (B, H, W, 3·heads·d) -> 3 × (B, heads, windows, w², d): windows row by row, tokens likewise.
        qkv = self.to_qkv(x).view(b, rows, w, cols, w, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(5, 0, 6, 1, 3, 2, 4, 7).reshape(3, b, self.heads, rows * cols, w * w, -1)
        # Plain matmuls, not F.scaled_dot_product_attention: with the float mask the bias needs, SDPA is
        # no faster on a CPU (swin_t's 12 attentions, forward + backward, batch 64, one thread: 0.19 s
        # this way, 0.22 s by SDPA; the whole step, about 3 s, the same within noise), and it sums in
        # another order (logits 1e-6 apart) where these products are the research code's, bit for bit.
        scores = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5 + self.bias(rows, cols)
        out = scores.softmax(dim=-1) @ v
        out = out.view(b, self.heads, rows, cols, w, w, -1).permute(0, 2, 4, 3, 5, 1, 6)
        out = self.to_out(out.reshape(b, height, width, -1))
        return torch.roll(out, (shift, shift), dims=(1, 2)) if shift else out


class PreNorm(nn.Module):
    """``fn(LayerNorm(x))``."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(self.norm(x))


class Residual(nn.Module):
    """``x + fn(x)``."""

    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fn(x)


class FeedForward(nn.Module):
    """Linear, GELU, Linear (keys ``net.0`` and ``net.2``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SwinBlock(nn.Module):
    """Pre-norm window attention then a pre-norm 4×-wide MLP, each with a residual connection."""

    def __init__(self, dim: int, heads: int, head_dim: int, window: int, shifted: bool):
        super().__init__()
        self.attention_block = Residual(PreNorm(dim, WindowAttention(dim, heads, head_dim, window, shifted)))
        self.mlp_block = Residual(PreNorm(dim, FeedForward(dim, 4 * dim)))

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp_block(self.attention_block(x))


class PatchMerging(nn.Module):
    """(B, H, W, C) -> (B, H/k, W/k, out): each k×k patch, flattened channel-major as ``nn.Unfold`` does,
    through one Linear."""

    def __init__(self, in_channels: int, out_channels: int, factor: int):
        super().__init__()
        self.factor = factor
        self.linear = nn.Linear(in_channels * factor**2, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        b, height, width, c = x.shape
        k = self.factor
        rows, cols = height // k, width // k
        # Copied into (B, C·k·k, rows, cols) as nn.Unfold lays it out (even for k = 1, where reshape alone
        # would be a view), then viewed channels-last: the Linear reads memory in the research code's
        # order, and its logits come out bit for bit.
        patches = x.view(b, rows, k, cols, k, c).permute(0, 5, 2, 4, 1, 3).reshape(b, c * k * k, rows, cols)
        return self.linear(patches.contiguous().permute(0, 2, 3, 1))


class StageModule(nn.Module):
    """Patch merging, then ``layers`` Swin blocks in (plain, shifted) pairs (keys ``layers.i.0/1``)."""

    def __init__(
        self, in_channels: int, dim: int, layers: int, factor: int, heads: int, head_dim: int, window: int
    ):
        super().__init__()
        self.patch_partition = PatchMerging(in_channels, dim, factor)
        self.layers = nn.ModuleList(
            nn.ModuleList(SwinBlock(dim, heads, head_dim, window, shifted) for shifted in (False, True))
            for _ in range(layers // 2)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_partition(x)
        for plain, shifted in self.layers:
            x = shifted(plain(x))
        return x


def check_image_size(image_size: int, window_size: int, downscaling_factors: Sequence[int]) -> None:
    """Raise UsageError unless every stage's map of an image_size² input splits into whole windows."""
    side = window_size * math.prod(downscaling_factors)
    if image_size % side:
        factors = ", ".join(map(str, downscaling_factors))
        fit = -(-image_size // side) * side
        raise UsageError(
            f"this Swin needs an image side that is a multiple of {side} (windows of {window_size} after "
            f"downscaling by {factors}), got {image_size}",
            hint=f"resize the images to {fit}x{fit}, or pick another --arch",
        )


class SwinTransformer(nn.Module):
    """Four stages (channels-last inside), mean pooling, LayerNorm + Linear head ``mlp_head``; takes
    (B, channels, H, W) images whose side fits `check_image_size`."""

    def __init__(
        self,
        *,
        hidden_dim: int,
        layers: Sequence[int],
        heads: Sequence[int],
        channels: int = 3,
        num_classes: int = 10,
        head_dim: int = 32,
        window_size: int = 4,
        downscaling_factors: Sequence[int] = (2, 2, 2, 1),
        image_size: int | None = None,
    ):
        super().__init__()
        if len(layers) != 4 or len(heads) != 4 or len(downscaling_factors) != 4:
            raise UsageError(f"a Swin has 4 stages, got layers={list(layers)}, heads={list(heads)}")
        if any(n % 2 for n in layers):
            raise UsageError(f"each stage has (plain, shifted) pairs of blocks, got layers={list(layers)}")
        if image_size is not None:
            check_image_size(image_size, window_size, downscaling_factors)
        widths = [hidden_dim * 2**i for i in range(4)]
        for i, (cin, dim) in enumerate(zip([channels, *widths[:3]], widths, strict=True)):
            stage = StageModule(cin, dim, layers[i], downscaling_factors[i], heads[i], head_dim, window_size)
            self.add_module(f"stage{i + 1}", stage)
        self.mlp_head = nn.Sequential(nn.LayerNorm(widths[-1]), nn.Linear(widths[-1], num_classes))

    def forward(self, images: Tensor) -> Tensor:
        x = images.permute(0, 2, 3, 1)
        for i in range(1, 5):
            x = getattr(self, f"stage{i}")(x)
        return self.mlp_head(x.mean(dim=(1, 2)))


def swin_t(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """The research code's CIFAR Swin-T: hidden 96, layers (2, 2, 6, 2), heads (3, 6, 12, 24), window 4."""
    return SwinTransformer(
        hidden_dim=96,
        layers=(2, 2, 6, 2),
        heads=(3, 6, 12, 24),
        channels=in_channels,
        num_classes=num_classes,
        head_dim=32,
        window_size=4,
        downscaling_factors=(2, 2, 2, 1),
        image_size=image_size,
    )


def from_original(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A research-code Swin state dict made loadable into smu's (keys unchanged otherwise): its shift
    masks dropped once each is checked against the computed one, its ``normalize`` mean and std set to
    the identity (zeros and ones), which is what the research Swin's forward applied."""
    out = {}
    for key, value in state.items():
        name = key.rsplit(".", 1)[-1]
        if name not in MASKS:
            out[key] = value
            continue
        window = math.isqrt(value.shape[-1]) if value.ndim == 2 else 0
        expected = shift_masks(window)[MASKS.index(name)] if window >= 2 else None
        if expected is None or value.shape != expected.shape or not torch.equal(value.float(), expected):
            raise ArtifactError(
                f"{shown(key)} is not the shift mask of a Swin window",
                hint="the checkpoint is damaged or not the research code's swin_t",
            )
    if "normalize.mean" in out:
        out["normalize.mean"] = torch.zeros_like(out["normalize.mean"], dtype=torch.float32)
    if "normalize.std" in out:
        out["normalize.std"] = torch.ones_like(out["normalize.std"], dtype=torch.float32)
    return out
