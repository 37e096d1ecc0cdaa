"""ResNets: the CIFAR-style ResNet-18 the paper prunes, He et al.'s ResNet-20, and ImageNet ResNet-50.

ResNet-18 follows the paper's code (Jia, Liu et al. 2023, github.com/OPTML-Group/Unlearn-Sparse): a
torchvision ResNet-18 whose stem is a 3x3 stride-1 conv with no max-pool, so 32x32 inputs keep their
resolution. ResNet-20 is the CIFAR network of He et al. 2016 (Sec. 4.2) with option-A shortcuts.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ZeroPadShortcut(nn.Module):
    """He et al. 2016 option A: subsample by 2 and zero-pad channels, so the shortcut has no parameters."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride = stride
        extra = planes - in_planes
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, *self.pad))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity, projection (option B) or zero-pad (option A) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int, *, option: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        # Named as in torchvision and the research code, so their checkpoints map key for key.
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if option == "A":
                self.downsample = ZeroPadShortcut(in_planes, planes, stride)
            else:
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
                )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.downsample(x))


class CifarResNet(nn.Module):
    """3x3 stem, no max-pool, stages ``layerN`` of BasicBlocks (stride 2 after the first), pooling, `fc`."""

    def __init__(self, in_channels: int, widths: list[int], depths: list[int], num_classes: int, option: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        in_planes = widths[0]
        self.stages = len(widths)
        for stage, (planes, depth) in enumerate(zip(widths, depths, strict=True)):
            blocks = []
            for i in range(depth):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(in_planes, planes, stride, option=option))
                in_planes = planes
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
        # Adaptive pooling rather than a fixed 4x4 / 8x8 pool, so 8x8 digits and 224x224 images both work.
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        for stage in range(1, self.stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(self.pool(x).flatten(1))


def resnet18(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """CIFAR-style ResNet-18 (11.2M parameters for 10 classes), the paper's main architecture."""
    del image_size  # global average pooling makes the network size-agnostic
    net = CifarResNet(in_channels, [64, 128, 256, 512], [2, 2, 2, 2], num_classes, option="B")
    # The paper's ResNet-18 is torchvision's, so keep torchvision's conv initialisation.
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


def resnet20(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """He et al. 2016 CIFAR ResNet-20 (0.27M parameters for 10 classes) with parameter-free shortcuts."""
    del image_size
    net = CifarResNet(in_channels, [16, 32, 64], [3, 3, 3], num_classes, option="A")
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)  # He et al. 2015 init, as in the original CIFAR experiments
    return net


def resnet50(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """torchvision's ImageNet ResNet-50 (7x7 stride-2 stem and max-pool), randomly initialised."""
    import torchvision  # here, not at the top: it takes most of a second to import; only ResNet-50 needs it

    del image_size  # torchvision ends in adaptive pooling, so even 8x8 inputs reach `fc` as 1x1
    net = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return net
