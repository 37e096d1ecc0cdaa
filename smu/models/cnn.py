"""A small three-conv network: fast enough on a CPU to run the whole pipeline in tests and on real data."""

from __future__ import annotations

from torch import Tensor, nn


def _conv_norm_relu(cin: int, cout: int, group_norm: bool) -> list[nn.Module]:
    # No conv bias: the normalisation that follows has its own shift.
    norm = nn.GroupNorm(8, cout) if group_norm else nn.BatchNorm2d(cout)
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), norm, nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """conv(32)-pool-conv(64)-pool-conv(128), global average pool, linear `fc` (about 94k parameters).

    Pooling early keeps it cheap: about 7 M multiply-adds for a 28×28 image, a quarter of ResNet-20's.
    With ``group_norm``, GroupNorm (8 groups) replaces BatchNorm: no statistic depends on the batch.
    """

    def __init__(self, in_channels: int, image_size: int, num_classes: int, group_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        size = image_size
        for cin, cout in ((in_channels, 32), (32, 64)):
            layers += _conv_norm_relu(cin, cout, group_norm)
            # Pool only while there is something to halve, so tiny inputs still reach the classifier.
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        layers += _conv_norm_relu(64, 128, group_norm)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def cnn(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """The small CNN used by the CPU recipes and the tests."""
    return SmallCNN(in_channels, image_size, num_classes)


def cnn_gn(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """The small CNN with GroupNorm: trained data-parallel it gives the same model on any number of ranks."""
    return SmallCNN(in_channels, image_size, num_classes, group_norm=True)
