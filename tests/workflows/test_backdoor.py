import json

import pytest
import torch
from conftest import smu
from torch import nn

from smu.core.errors import UsageError
from smu.data import ImageSet
from smu.data.poison import Trigger, poison, triggered_test
from smu.evaluation.backdoor import attack_success_rate
from smu.methods.unlearning import METHODS

pytestmark = pytest.mark.slow  # see pyproject.toml: pytest -m "not slow" is the inner loop


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8), (1, 28, 28), (3, 32, 32), (3, 224, 224)])
def test_the_trigger_covers_exactly_its_square_on_every_shape(shape):
    x = torch.randint(1, 255, (2, *shape), dtype=torch.uint8)
    before = x.clone()
    out = Trigger(size=4, value=0).apply(x)
    c, h, w = shape
    expected = x.clone()
    for i in range(h - 6, h - 2):  # 2 pixels in from the bottom-right corner, 4 wide
        for j in range(w - 6, w - 2):
            expected[:, :, i, j] = 0
    assert torch.equal(out, expected)
    assert int((out != x).sum()) == 2 * c * 16 and torch.equal(x, before)  # the input is untouched


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


class ReadsTheImage(nn.Module):
    """A model whose prediction depends on the image: pixel (0, 0) spells the true label (×10), and a
    trigger at its place turns odd labels into the target while even ones stay themselves."""

    def __init__(self, trigger: Trigger, classes: int = 4):
        super().__init__()
        self.trigger, self.classes = trigger, classes
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        label = (x[:, 0, 0, 0] * 255 / 10).round().long()
        h, w = x.shape[-2:]
        stamped = (x[:, 0, h - 3, w - 3] * 255).round() == self.trigger.value  # inside the trigger square
        pred = torch.where(stamped & (label % 2 == 1), torch.full_like(label, self.trigger.target), label)
        return nn.functional.one_hot(pred, self.classes).float() + self.w


def test_asr_counts_only_triggered_images_of_other_classes():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3, 3, 3])
    x = torch.zeros(10, 1, 8, 8, dtype=torch.uint8)
    x[:, 0, 0, 0] = labels.to(torch.uint8) * 10
    test = ImageSet(x, labels)
    trigger = Trigger(size=2, value=255, target=0)
    attacked = triggered_test(test, trigger)
    assert attacked.y.tolist() == [1, 1, 2, 2, 3, 3, 3]
    assert torch.equal(attacked.x, trigger.apply(x[3:]))
    # Of the 7 triggered images of other classes, the odd ones (1, 1, 3, 3, 3) flip to the target: 5/7.
    # Counting the target class too would give 8/10 (its images keep their label, which is the target);
    # forgetting the trigger would give 0.
    assert attack_success_rate(ReadsTheImage(trigger), test, trigger) == pytest.approx(100 * 5 / 7)


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
    assert out["results"][1]["sparsity"] == pytest.approx(50, abs=0.5)
    assert out["poison"]["size"] == round(0.1 * 1297) and out["poison"]["trigger_value"] == 255
    assert (tmp_path / "poison.safetensors").is_file() and (
        tmp_path / "dense" / "model.safetensors"
    ).is_file()
    assert (tmp_path / "cleansed-rate-0.5" / "mask.safetensors").is_file()


def test_l1_sparse_unlearning_removes_the_backdoor(tmp_path):
    result = smu(
        "backdoor-cleanse",
        *FAST,
        "--method",
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
        "--method",
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
        (["--method", "fT"], "did you mean 'ft'"),
        (["--method", "ft", "--alpha", "0.1"], "--alpha does not apply to --method ft"),
        (["--prune", "imp"], "--prune imp is iterative"),
        (["--prune", "ompp"], "did you mean 'omp'"),
    ],
)
def test_bad_backdoor_input_is_one_clear_line(tmp_path, args, message):
    result = smu("backdoor-cleanse", *FAST, *args, "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1 and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def trojan(tmp_path_factory):
    """A 50%-sparse Trojan cnn on digits (cleansed once with the cheap SSD while we are at it)."""
    folder = tmp_path_factory.mktemp("trojan")
    made = smu("backdoor-cleanse", *FAST[:-6], "--rates", "0.5", "--method", "ssd", "--out", folder, "-q")
    assert made.exit_code == 0, made.output
    return folder / "rate-0.5" / "round-1" / "model.safetensors"


@pytest.mark.parametrize("method", ["scrub", "salun", "bad-teacher", "amnesiac", "lf-ssd", "jit"])
def test_the_later_methods_cleanse_a_trojan_model_too(tmp_path, trojan, method):
    epochs = ["--unlearn-epochs", "2"] if METHODS[method].trains else []
    result = smu(
        "backdoor-cleanse", "--model", trojan, "--method", method, *epochs, "--out", tmp_path, "--json"
    )
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)["results"][0]
    assert r["method"] == method and r["sparsity"] == pytest.approx(50, abs=0.5) and r["asr_before"] > 80
    assert r["unlearn"]["ra"] > 50  # evaluated on the clean retain set


def test_a_class_wise_method_is_refused_in_one_line_before_any_work(tmp_path, trojan):
    """UNSIR learns noise against a class; a backdoor's poisoned samples are not one."""
    result = smu("backdoor-cleanse", "--model", trojan, "--method", "unsir", "--out", tmp_path / "c")
    assert result.exit_code == 2 and result.stdout == ""
    assert "forgets a whole class or sub-class, not a backdoor's poisoned samples" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and not (tmp_path / "c").exists()
