from pathlib import Path

import pytest
import torch

from smu.core.errors import UsageError
from smu.data import holdout, load_splits, splits_of


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


def test_a_subset_draws_that_many_training_images_with_the_seed_and_keeps_the_test_set(digits):
    small = load_splits("digits", seed=0, subset=500)
    assert len(small.train) + len(small.val) == 500 and len(small.test) == len(digits.test)
    assert small.subset == 500 and digits.subset == 0
    again, other = load_splits("digits", seed=0, subset=500), load_splits("digits", seed=1, subset=500)
    assert torch.equal(again.train.x, small.train.x) and not torch.equal(other.train.x, small.train.x)

    # Another seed draws other images, not just another validation split of the same ones.
    def images(splits):
        return torch.cat([splits.train.x, splits.val.x]).double().sum().item()

    assert images(again) == images(small) != images(other)
    # Every image of the subset is one of the full training set's.
    full = torch.cat([digits.train.x, digits.val.x]).flatten(1)
    assert all(bool((full == img).all(1).any()) for img in small.train.x.flatten(1)[:20])
    assert torch.equal(load_splits("digits", seed=0, subset=0).train.x, digits.train.x)
    with pytest.raises(
        UsageError, match=r"--subset 2000 must be between 0 \(all\) and the 1437 training images"
    ):
        load_splits("digits", subset=2000)


def test_a_subset_travels_with_models_and_forget_sets(tmp_path):
    from smu.cli.app import main
    from smu.data.forget import resolve_forget
    from smu.io import artifacts
    from smu.io import schema as S

    with pytest.raises(SystemExit) as e:
        main(["prune", "--dataset", "digits", "--arch", "cnn", "--subset", "600", "--epochs", "2",
              "--rate", "0.5", "--rewind-epoch", "1", "-q", "--out", str(tmp_path / "p")])  # fmt: skip
    assert e.value.code == 0
    loaded = artifacts.load_model(tmp_path / "p" / "round-1" / "model.safetensors")
    assert loaded.meta[S.SUBSET] == "600"
    splits = splits_of(loaded)
    assert splits.subset == 600 and len(splits.train) + len(splits.val) == 600
    saved, full = str(tmp_path / "forget.safetensors"), str(tmp_path / "full.safetensors")
    resolve_forget("class:3", splits).save(saved)
    assert (
        resolve_forget(saved, splits).indices.tolist() == resolve_forget("class:3", splits).indices.tolist()
    )
    with pytest.raises(UsageError, match="was made for subset '600', here it is '0'"):
        resolve_forget(saved, load_splits("digits"))
    resolve_forget("class:3", load_splits("digits")).save(full)
    with pytest.raises(UsageError, match="was made for subset '0', here it is '600'"):
        resolve_forget(full, splits)
