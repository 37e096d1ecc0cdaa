"""Backdoor metrics: SA (clean test accuracy) and ASR (attack success rate), in percent."""

from __future__ import annotations

from torch import nn

from smu.data import ImageSet
from smu.data.poison import Trigger, triggered_test
from smu.execution.engine import accuracy, predict


def attack_success_rate(model: nn.Module, test: ImageSet, trigger: Trigger) -> float:
    """Share of triggered non-target test images the model assigns to the target class."""
    attacked = triggered_test(test, trigger)
    if len(attacked) == 0:
        return float("nan")
    return 100.0 * (predict(model, attacked).argmax(1) == trigger.target).double().mean().item()


def backdoor_metrics(model: nn.Module, test: ImageSet, trigger: Trigger) -> dict[str, float]:
    return {"sa": accuracy(model, test), "asr": attack_success_rate(model, test, trigger)}
