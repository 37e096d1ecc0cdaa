"""The time estimate said before a run: its speed measurement leaves the run's bytes alone, and its line
says what a person needs (how long, and what to do when it is long on a CPU)."""

import copy

import torch

from smu.core.progress import Estimate, duration, epochs
from smu.execution.engine import calibrate
from smu.models import build_model


def test_calibrate_leaves_the_model_and_every_random_stream_as_they_were(digits):
    torch.manual_seed(3)
    info = digits.info
    model = build_model("vit", in_channels=1, image_size=8, num_classes=10, mean=info.mean, std=info.std)
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    speed = calibrate(model, info.input_shape, batch_size=256)
    assert speed > 0
    assert torch.equal(torch.get_rng_state(), rng)  # ViT's dropout draws from it in training mode
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training or model.training == copy.deepcopy(model).training


def test_the_plan_line_says_how_long_and_how_to_shorten_a_long_cpu_run():
    long_cpu = Estimate("imp: dense 182 epochs", 10_000_000, 7.2 * 3600, 386.0, "cpu")
    assert long_cpu.line() == (
        "plan: imp: dense 182 epochs; about 7.2 h on cpu (386 img/s over 10,000,000 images); "
        "fewer --epochs or a GPU (--device cuda) make it shorter"
    )
    assert "shorter" not in Estimate("ft", 10_000_000, 7.2 * 3600, 386.0, "cuda:0").line()
    assert "shorter" not in Estimate("ft", 1000, 30.0, 33.0, "cpu").line()
    assert Estimate("mine: its own code", 0, None, None, "cpu").line() == (
        "plan: mine: its own code (time not estimated)"
    )


def test_durations_and_epochs_read_as_a_person_says_them():
    assert [duration(s) for s in (4, 89, 90, 600, 5399, 5400, 26000)] == [
        "4 s",
        "89 s",
        "2 min",
        "10 min",
        "90 min",
        "1.5 h",
        "7.2 h",
    ]
    assert (epochs(1), epochs(174)) == ("1 epoch", "174 epochs")
