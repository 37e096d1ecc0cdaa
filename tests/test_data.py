from pathlib import Path

import pytest
import torch

from smu.data import holdout, load_splits
from smu.errors import UsageError


def test_holdout_takes_a_tenth_of_each_class_and_depends_only_on_the_seed():
    labels = torch.arange(10).repeat_interleave(30)
    train, val = holdout(labels, 0.1, seed=3)
    assert len(val) == 30 and all(int((labels[val] == c).sum()) == 3 for c in range(10))
    assert set(train.tolist()).isdisjoint(val.tolist()) and len(train) + len(val) == 300
    assert torch.equal(holdout(labels, 0.1, seed=3)[1], val)
    assert not torch.equal(holdout(labels, 0.1, seed=4)[1], val)


def test_holdout_rejects_a_fraction_outside_zero_to_one():
    with pytest.raises(UsageError, match="--val-fraction"):
        holdout(torch.zeros(5, dtype=torch.long), 1.0, 0)


def test_digits_splits_hold_uint8_images_minus_the_validation_hold_out(digits):
    assert digits.train.x.dtype == torch.uint8 and digits.info.input_shape == (1, 8, 8)
    assert len(digits.train) + len(digits.val) == 1437 and len(digits.test) == 360
    assert digits.info.num_classes == 10


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="needs Debian's dataset-fashion-mnist package",
)
def test_fashion_mnist_loads_60000_and_10000_images_from_the_debian_path():
    splits = load_splits("fashion-mnist", data_dir="/nonexistent", val_fraction=0.1, seed=0)
    assert len(splits.train) == 54_000 and len(splits.val) == 6_000 and len(splits.test) == 10_000
    assert splits.info.input_shape == (1, 28, 28) and splits.info.num_classes == 10
