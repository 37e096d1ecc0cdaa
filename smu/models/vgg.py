"""VGG-16 with batch normalisation (Simonyan & Zisserman 2015; Ioffe & Szegedy 2015), CIFAR variant.

As in the paper's research code (github.com/OPTML-Group/Unlearn-Sparse), the head is one linear layer
on the 512 pooled features rather than ImageNet VGG's three fully connected layers.
"""

from __future__ import annotations

from torch import Tensor, nn

# Output channels of each 3x3 conv; "M" is a 2x2 max-pool.
CFG: list[int | str] = [
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
]  # fmt: skip


class VGG(nn.Module):
    """Conv-BN-ReLU stacks with max-pools, global average pool, and a linear `classifier`."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, cfg: list[int | str] = CFG):
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for v in cfg:
            if v == "M":
                # Skip pools once the map is 1x1, so the five pools of VGG-16 do not break 8x8 inputs.
                if size >= 2:
                    layers.append(nn.MaxPool2d(2, 2))
                    size //= 2
            else:
                # Conv bias kept (as torchvision and the research code do) although BN makes it redundant,
                # so parameter counts and pruning rates match theirs.
                width = int(v)
                conv = nn.Conv2d(channels, width, 3, padding=1)
                layers += [conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def vgg16_bn(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """VGG-16-BN (14.7M parameters for 10 classes); max-pools stop at 1x1 so any size from 8 up works."""
    return VGG(in_channels, image_size, num_classes)
