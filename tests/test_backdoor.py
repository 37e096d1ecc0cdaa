import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from smu.cli import app
from smu.data import ImageSet
from smu.data.poison import Trigger, poison, triggered_test
from smu.errors import UsageError
from smu.evaluation.backdoor import attack_success_rate

runner = CliRunner()


def smu(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8), (1, 28, 28), (3, 32, 32), (3, 224, 224)])
def test_the_trigger_covers_exactly_its_square_on_every_shape(shape):
    x = torch.randint(1, 255, (2, *shape), dtype=torch.uint8)
    out = Trigger(size=4, value=0).apply(x)
    c, h, w = shape
    expected = x.clone()
    for i in range(h - 6, h - 2):  # 2 pixels in from the bottom-right corner, 4 wide
        for j in range(w - 6, w - 2):
            expected[:, :, i, j] = 0
    assert torch.equal(out, expected)
    assert int((out != x).sum()) == 2 * c * 16 and torch.equal(x, x.clone())  # the input is untouched


def test_poisoning_relabels_and_stamps_only_the_chosen_samples(digits):
    trigger = Trigger(size=3, value=255, target=7)
    poisoned, chosen = poison(digits, "10%", trigger, seed=1)
    idx = chosen.indices
    assert len(idx) == round(0.1 * len(digits.train))
    assert (poisoned.train.y[idx] == 7).all()
    others = chosen.retain_indices()
    assert torch.equal(poisoned.train.y[others], digits.train.y[others])
    assert torch.equal(poisoned.train.x[others], digits.train.x[others])
    assert torch.equal(poisoned.train.x[idx], trigger.apply(digits.train.x[idx]))
    assert torch.equal(poisoned.test.x, digits.test.x)  # the test set stays clean
    assert torch.equal(poison(digits, "10%", trigger, seed=1)[1].indices, idx)


class Predicts(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn, self.w = fn, nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.fn(x) + self.w


def test_asr_counts_only_triggered_images_of_other_classes():
    test = ImageSet(torch.zeros(10, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 0, 0, 1, 1, 2, 2, 3, 3, 3]))
    trigger = Trigger(size=2, value=255, target=0)
    attacked = triggered_test(test, trigger)
    assert len(attacked) == 7 and 0 not in attacked.y.tolist()
    always_target = Predicts(
        lambda x: torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.long), 4).float()
    )
    assert attack_success_rate(always_target, test, trigger) == 100.0
    never = Predicts(lambda x: torch.nn.functional.one_hot(torch.ones(len(x), dtype=torch.long), 4).float())
    assert attack_success_rate(never, test, trigger) == 0.0


@pytest.mark.parametrize(
    "trigger, message",
    [
        (Trigger(size=7), "does not fit a 8x8 image"),
        (Trigger(size=2, value=300), "not a pixel value"),
        (Trigger(size=2, target=10), "not a class of digits"),
    ],
)
def test_bad_triggers_are_usage_errors(digits, trigger, message):
    with pytest.raises(UsageError, match=message):
        trigger.check(digits)


FAST = [
    "--dataset",
    "digits",
    "--arch",
    "cnn",
    "--epochs",
    "12",
    "--batch-size",
    "64",
    "--lr",
    "0.05",
    "--rewind-epoch",
    "1",
    "--unlearn-epochs",
    "20",
    "--unlearn-lr",
    "0.05",
    "--unlearn-batch-size",
    "64",
]


def test_a_trojan_model_on_digits_has_a_high_asr_and_cleansing_with_ft_lowers_it(tmp_path):
    result = smu("backdoor-cleanse", *FAST, "--rates", "0,0.5", "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["rate"] for r in out["results"]] == [0.0, 0.5]
    for r in out["results"]:
        # A clean fine-tune erodes a backdoor only slowly (the paper's point: FT alone is a weak cleanser).
        assert r["asr_before"] > 90 and r["asr_after"] < r["asr_before"] - 3, r
        assert r["sa_before"] > 90 and r["sa_after"] > 90 and r["rte_s"] > 0
    assert out["results"][1]["sparsity"] == pytest.approx(0.5, abs=0.005)
    assert out["poison"]["size"] == round(0.1 * 1297) and out["poison"]["trigger_value"] == 255
    assert (tmp_path / "poison.safetensors").is_file() and (
        tmp_path / "dense" / "model.safetensors"
    ).is_file()
    assert (tmp_path / "cleansed-rate-0.5" / "mask.safetensors").is_file()


def test_l1_sparse_unlearning_removes_the_backdoor(tmp_path):
    result = smu(
        "backdoor-cleanse",
        *FAST,
        "--unlearn",
        "l1-sparse",
        "--alpha",
        "5e-3",
        "--unlearn-epochs",
        "10",
        "--out",
        tmp_path,
        "--json",
    )
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)["results"][0]
    assert r["asr_before"] > 90 and r["asr_after"] < 10 and r["sa_after"] > 85


def test_an_existing_trojan_model_can_be_cleansed_again(tmp_path):
    first = smu("backdoor-cleanse", *FAST, "--out", tmp_path / "a", "-q")
    assert first.exit_code == 0, first.output
    again = smu(
        "backdoor-cleanse",
        "--model",
        tmp_path / "a" / "dense" / "model.safetensors",
        "--unlearn",
        "ga",
        "--unlearn-epochs",
        "2",
        "--out",
        tmp_path / "b",
        "--json",
    )
    assert again.exit_code == 0, again.output
    r = json.loads(again.stdout)["results"][0]
    assert r["asr_before"] > 80 and r["model_before"].endswith("dense/model.safetensors")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rates", "0,1.5"], "outside [0, 1)"),
        (["--rates", "zero"], "not a comma-separated list"),
        (["--rate", "0.5", "--rates", "0"], "not both"),
        (["--trigger-size", "9"], "does not fit"),
        (["--unlearn", "fT"], "did you mean 'ft'"),
        (["--unlearn", "ft", "--alpha", "0.1"], "--alpha does not apply to --method ft"),
        (["--prune", "imp"], "unknown backdoor pruning method"),
    ],
)
def test_bad_backdoor_input_is_one_clear_line(tmp_path, args, message):
    result = smu("backdoor-cleanse", *FAST, *args, "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1 and not (tmp_path / "o").exists()
