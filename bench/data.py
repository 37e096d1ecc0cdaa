"""Benchmark inputs: real Fashion-MNIST when Debian's copy is installed, else synthetic data of a shape."""

from __future__ import annotations

import argparse

import torch

from smu.core.errors import SmuError
from smu.data import ImageSet, load_splits
from smu.models import build_model

SHAPES = {"fashion-mnist": (1, 28, 28, 10), "cifar10": (3, 32, 32, 10), "digits": (1, 8, 8, 10)}


def add_arguments(parser: argparse.ArgumentParser, arch: str = "resnet20") -> None:
    parser.add_argument("--arch", default=arch, help="architecture(s), comma-separated")
    parser.add_argument("--shape", default="fashion-mnist", choices=list(SHAPES), help="data shape")
    parser.add_argument("--synthetic", action="store_true", help="random images instead of the real dataset")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=10240, help="images per timed pass")
    parser.add_argument("--repeats", type=int, default=5)


def images(args: argparse.Namespace, classes: int | None = None) -> tuple[ImageSet, str]:
    """``args.images`` training images on ``args.device`` and a word on where they came from."""
    c, h, w, k = SHAPES[args.shape]
    k = classes or k
    if not args.synthetic and classes is None:
        try:
            train = load_splits(args.shape, device=args.device).train
            n = min(args.images, len(train))
            return train.subset(torch.arange(n)), f"{args.shape} ({n} real images)"
        except SmuError:
            pass
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.images, c, h, w), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, k, (args.images,), generator=gen)
    return ImageSet(x, y).to(args.device), f"synthetic {c}x{h}x{w}, {k} classes ({args.images} images)"


def model(arch: str, data: ImageSet, device: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    c, h = data.x.shape[1], data.x.shape[2]
    classes = int(data.y.max()) + 1
    return build_model(
        arch, in_channels=c, image_size=h, num_classes=max(classes, 10), mean=[0.5] * c, std=[0.25] * c
    ).to(device)
