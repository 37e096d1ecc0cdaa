import pytest
import torch

from smu.data import load_splits
from smu.models import build_model


@pytest.fixture(scope="session")
def digits():
    """The embedded dataset with the default 10% validation hold-out, on the CPU."""
    return load_splits("digits", seed=0)


@pytest.fixture
def tiny_model(digits):
    """A freshly initialised small CNN for digits."""
    torch.manual_seed(0)
    info = digits.info
    return build_model(
        "cnn",
        in_channels=info.channels,
        image_size=info.image_size,
        num_classes=info.num_classes,
        mean=info.mean,
        std=info.std,
    )
