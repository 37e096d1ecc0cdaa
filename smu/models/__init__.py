"""Architecture registry: name -> builder, and the wrapper that puts input normalisation in the model.

Every network takes images in [0, 1]; `Classifier` normalises them itself, so a saved model file is
self-contained (no dataset statistics to carry around) and pruning, unlearning and evaluation all see
the same inputs. State-dict keys are `normalize.mean`, `normalize.std` and `net.<layer>...`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from smu.core.errors import UsageError
from smu.core.registry import lookup
from smu.models.cnn import cnn, cnn_gn
from smu.models.resnet import resnet18, resnet20, resnet50
from smu.models.vgg import vgg16_bn

__all__ = ["ARCHS", "Arch", "Classifier", "Normalize", "build_model", "classifier_layer"]


@dataclass(frozen=True)
class Arch:
    """An architecture: how to build the raw network, and one line for listings."""

    build: Callable[[int, int, int], nn.Module]
    """`build(in_channels, image_size, num_classes)` -> a network that takes normalised images."""
    summary: str
    """One line for `--help` and listings."""


ARCHS: dict[str, Arch] = {
    "resnet18": Arch(resnet18, "CIFAR-style ResNet-18 (3x3 stem, no max-pool), the paper's model; 11.2M"),
    "resnet20": Arch(resnet20, "He et al. 2016 CIFAR ResNet-20 with parameter-free shortcuts; 0.27M"),
    "vgg16_bn": Arch(vgg16_bn, "VGG-16 with BatchNorm and one linear head (CIFAR variant); 14.7M"),
    "resnet50": Arch(resnet50, "torchvision's ImageNet ResNet-50 (7x7 stem, max-pool); 23.5M"),
    "cnn": Arch(cnn, "small 3-conv CNN, fast on a CPU; for tests and the digits recipes; 0.09M"),
    "cnn_gn": Arch(cnn_gn, "the cnn with GroupNorm for BatchNorm: no batch statistics, for DDP; 0.09M"),
}


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
    """A network that takes images in [0, 1]; normalisation lives in the model so a file is self-contained."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.normalize(x))


def build_model(
    arch: str,
    *,
    in_channels: int,
    image_size: int,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> Classifier:
    """Build architecture `arch` for images of `in_channels` x `image_size`^2, wrapped with its normalisation.

    Weights are freshly initialised from torch's global RNG, so `torch.manual_seed` makes them repeatable.
    """
    spec = lookup(ARCHS, arch, "architecture")
    sizes = {"in_channels": in_channels, "image_size": image_size, "num_classes": num_classes}
    for name, value in sizes.items():
        if int(value) < 1:
            raise UsageError(f"{name} must be a positive integer, got {value!r}")
    if len(mean) != in_channels:
        raise UsageError(
            f"{in_channels}-channel images need {in_channels} normalisation means, got {len(mean)}",
            hint="pass the dataset's per-channel mean and std",
        )
    return Classifier(spec.build(in_channels, image_size, num_classes), mean, std)


def classifier_layer(model: nn.Module) -> str:
    """Qualified parameter-name prefix of the final nn.Linear (e.g. 'net.fc'), used by Fisher forgetting."""
    # Every registered network defines its head last, so the last Linear in registration order is the head.
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise UsageError(f"{type(model).__name__} has no nn.Linear classifier layer")
    return names[-1]
