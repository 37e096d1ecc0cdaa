"""Transformers and large images: what a training step costs, and which of the usual speed-ups help here.

Side by side in one run (medians of interleaved repeats, images/s of a full training step: forward,
backward, SGD step, on a batch already in memory):
  - the ViT's attention through scaled_dot_product_attention (what smu uses) against the same
    attention written out (softmax(q kᵀ / √d) v), which is what SDPA replaces;
  - bf16 autocast against float32;
  - torch.compile against eager (with --compile: compiling takes minutes on a small CPU);
  - 224×224 images: torchvision's ResNet-18 and ViT-B/16 (what a pretrained model on a user's
    imagefolder costs per image).

    python bench/transformers.py                # CPU, about 3 minutes on 2 cores
    python bench/transformers.py --device cuda --compile
"""

from __future__ import annotations

import argparse
import math

import torch
from common import header, interleaved, table
from torch.nn import functional as F

from smu.models import build_model


def written_out(q, k, v, **_):
    """Attention as its definition, the way SDPA's fused kernels avoid computing it."""
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


def step_fn(arch: str, channels: int, size: int, batch: int, device, *, bf16=False, compiled=False):
    torch.manual_seed(0)
    model = build_model(
        arch,
        in_channels=channels,
        image_size=size,
        num_classes=10,
        mean=[0.5] * channels,
        std=[0.25] * channels,
    ).to(device)
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, channels, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    header("Transformer training step")

    batch = 64
    fns = {"vit 32x32, SDPA": step_fn("vit", 3, 32, batch, device)}
    fns["vit 32x32, bf16 autocast"] = step_fn("vit", 3, 32, batch, device, bf16=True)
    if args.compile:
        fns["vit 32x32, torch.compile"] = step_fn("vit", 3, 32, batch, device, compiled=True)
    sdpa = F.scaled_dot_product_attention
    written = step_fn("vit", 3, 32, batch, device)

    def written_step() -> None:
        F.scaled_dot_product_attention = written_out  # for this step only: nothing else runs meanwhile
        try:
            written()
        finally:
            F.scaled_dot_product_attention = sdpa

    fns["vit 32x32, attention written out"] = written_step
    times = interleaved(fns, args.repeats, device)
    base = times["vit 32x32, SDPA"]
    table(
        [[name, f"{batch / t:,.0f}", f"{base / t:.2f}"] for name, t in times.items()],
        ["6.3M-parameter ViT, batch 64", "images/s", "× SDPA fp32"],
    )

    big = 16
    fns = {
        "torchvision:resnet18 224x224": step_fn("torchvision:resnet18", 3, 224, big, device),
        "torchvision:vit_b_16 224x224": step_fn("torchvision:vit_b_16", 3, 224, big, device),
    }
    times = interleaved(fns, max(2, args.repeats // 2), device)
    table([[name, f"{big / t:,.1f}"] for name, t in times.items()], ["training step, batch 16", "images/s"])


if __name__ == "__main__":
    main()
