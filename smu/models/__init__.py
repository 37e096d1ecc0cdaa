"""Architectures by spec, and the wrapper that puts input normalisation in the model.

A spec is a name of smu's registry (``resnet18``, ``vit``, ``swin_t``, ...) or a classifier of
torchvision or timm (``torchvision:resnet18``, ``timm:vit_tiny_patch16_224``), with ``@SIZE`` to build
the network for SIZE×SIZE images; artifacts store the spec, so a file rebuilds its model anywhere.
Every network takes images in [0, 1]; `Classifier` adapts them (channels, size) and normalises them
itself, so a saved model file is self-contained (no dataset statistics to carry around) and pruning,
unlearning and evaluation all see the same inputs. State-dict keys are `normalize.mean`,
`normalize.std` and `net.<layer>...`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from smu.core.errors import UsageError
from smu.core.names import split_arch
from smu.core.registry import lookup
from smu.models.cnn import cnn, cnn_gn
from smu.models.resnet import resnet18, resnet20, resnet50
from smu.models.swin import swin_t
from smu.models.vgg import vgg16_bn
from smu.models.vit import vit

__all__ = [
    "ARCHS",
    "Arch",
    "ArchSpec",
    "Classifier",
    "Normalize",
    "build_model",
    "classifier_layer",
    "parse_arch",
]


@dataclass(frozen=True)
class Arch:
    """An architecture: how to build the raw network, and one line for listings."""

    build: Callable[[int, int, int], nn.Module]
    """`build(in_channels, image_size, num_classes)` -> a network that takes normalised images."""
    summary: str
    """One line for `--help` and listings."""
    input_size: Callable[[int], int] | None = None
    """The image side the network needs for images of this side (resized inside the model); None: any."""


ARCHS: dict[str, Arch] = {
    "resnet18": Arch(resnet18, "CIFAR-style ResNet-18 (3x3 stem, no max-pool), the paper's model; 11.2M"),
    "resnet20": Arch(resnet20, "He et al. 2016 CIFAR ResNet-20 with parameter-free shortcuts; 0.27M"),
    "vgg16_bn": Arch(vgg16_bn, "VGG-16 with BatchNorm and one linear head (CIFAR variant); 14.7M"),
    "resnet50": Arch(resnet50, "torchvision's ImageNet ResNet-50 (7x7 stem, max-pool); 23.5M"),
    "cnn": Arch(cnn, "small 3-conv CNN, fast on a CPU; for tests and the digits recipes; 0.09M"),
    "cnn_gn": Arch(cnn_gn, "the cnn with GroupNorm for BatchNorm: no batch statistics, for DDP; 0.09M"),
    "vit": Arch(vit, "Vision Transformer sized by the image (CIFAR recipe at 32x32: 6.3M; digits: 0.14M)"),
    # Windows of 4 after downscaling by 2, 2, 2, 1 need a side that is a multiple of 32: smaller images
    # (digits, Fashion-MNIST) are resized up to it inside the model.
    "swin_t": Arch(
        swin_t,
        "the research code's CIFAR Swin-T (its checkpoints import); 26.6M",
        input_size=lambda side: -(-side // 32) * 32,
    ),
}


@dataclass(frozen=True)
class ArchSpec:
    """A parsed architecture spec: ``resnet18``, ``torchvision:resnet18``, ``timm:NAME``; any ``@SIZE``."""

    text: str
    library: str | None
    name: str
    size: int | None
    """``@SIZE``: the network is built for SIZE×SIZE images and the model resizes its input to that."""


def parse_arch(spec: str) -> ArchSpec:
    """Check an architecture spec and split it; an unknown name is a usage error with a did-you-mean."""
    library, name, size = split_arch(spec)  # the syntax, which the CLI checks before importing torch
    if library is None:
        lookup(ARCHS, name, "architecture")
    else:
        from smu.models import external

        external.check_name(library, name)
    return ArchSpec(spec, library, name, size)


class Normalize(nn.Module):
    """Per-channel (x - mean) / std; mean and std are persistent float32 buffers of shape (C,)."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std) or len(mean) == 0:
            raise UsageError(
                f"normalisation needs one mean and one std per channel, got {list(mean)} and {list(std)}"
            )
        if any(s <= 0 for s in std):
            raise UsageError(f"normalisation std must be positive, got {list(std)}")
        # Persistent buffers: they are saved with the weights, so the model file alone reproduces its outputs.
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean[:, None, None]) / self.std[:, None, None]


class Classifier(nn.Module):
    """A network that takes images in [0, 1]; normalisation lives in the model so a file is self-contained.

    When the network takes other images than the data's, the model adapts them first: grey images
    are repeated to the network's three channels, and images are resized (bilinear, antialiased) to
    the side it was built for. Neither has parameters, so the state dict is the same.
    """

    def __init__(
        self, net: nn.Module, mean: Sequence[float], std: Sequence[float], *, channels: int, size: int | None
    ):
        super().__init__()
        self.channels, self.size = channels, size
        self.normalize = Normalize(mean, std)
        self.net = net

    def adapt(self, x: Tensor) -> Tensor:
        """The images as the network takes them: its channels, its size."""
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        if self.size is not None and x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.normalize(self.adapt(x)))


def build_model(
    arch: str,
    *,
    in_channels: int,
    image_size: int,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> Classifier:
    """Build architecture ``arch`` (a spec, see :func:`parse_arch`) for images of ``in_channels`` x
    ``image_size``^2, wrapped with its normalisation (one mean and std per channel of the images or of
    the network: grey statistics are repeated for a network that takes three channels).

    Weights are freshly initialised from torch's global RNG, so `torch.manual_seed` makes them repeatable.
    """
    spec = parse_arch(arch)
    sizes = {"in_channels": in_channels, "image_size": image_size, "num_classes": num_classes}
    for name, value in sizes.items():
        if int(value) < 1:
            raise UsageError(f"{name} must be a positive integer, got {value!r}")
    channels, size = in_channels, spec.size
    if spec.library is None:
        builder = ARCHS[spec.name].build
        fit = ARCHS[spec.name].input_size
        size = size or (fit(image_size) if fit else None)
    else:
        from smu.models import external

        channels = 3  # as their pretrained weights: grey images are repeated to RGB
        builder = lambda _, s, k: external.LIBRARIES[spec.library].build(spec.name, s, k)  # noqa: E731
    if channels != in_channels and in_channels != 1:
        raise UsageError(
            f"{arch} takes {channels}-channel images, the data has {in_channels}",
            hint="use grey or RGB images, or an architecture built for them",
        )
    if len(mean) == in_channels != channels:
        mean, std = list(mean) * channels, list(std) * channels
    if len(mean) != channels:
        raise UsageError(
            f"{in_channels}-channel images need {in_channels} normalisation means, got {len(mean)}",
            hint="pass the dataset's per-channel mean and std",
        )
    size = None if size == image_size else size
    net = builder(channels, size or image_size, num_classes)
    return Classifier(net, mean, std, channels=channels, size=size)


def build_for(arch: str, info: Any) -> Classifier:
    """A freshly initialised ``arch`` for the images a dataset's ``info`` describes (its channels, image
    size, classes and normalisation: :class:`smu.data.DataInfo`), from torch's global RNG."""
    return build_model(
        arch,
        in_channels=info.channels,
        image_size=info.image_size,
        num_classes=info.num_classes,
        mean=info.mean,
        std=info.std,
    )


def classifier_layer(model: nn.Module) -> str:
    """Qualified parameter-name prefix of the final nn.Linear (e.g. 'net.fc'), used by Fisher forgetting."""
    # Every registered network defines its head last, so the last Linear in registration order is the head.
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise UsageError(f"{type(model).__name__} has no nn.Linear classifier layer")
    return names[-1]
