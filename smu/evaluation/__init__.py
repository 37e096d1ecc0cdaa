"""The paper's unlearning metrics for one model, and the gap to a reference (normally retrain).

All in percent: UA = 100 − acc(forget), RA = acc(retain), TA = acc(test, without the forgotten class
for class-wise forgetting, without the forgotten sub-class for sub-class forgetting, whose own test
images give forget_test_acc), MIA-Efficacy = share of forget samples the attack calls non-members.
"""

from __future__ import annotations

import torch
from torch import nn

from smu.core.registry import lookup
from smu.data import ImageSet, Splits
from smu.data.forget import ForgetSet
from smu.evaluation.mia import FEATURES, feature, svc_attack
from smu.execution.engine import predict

GAP_METRICS = ("ua", "mia_efficacy", "ra", "ta")
"""Avg. Gap is the mean absolute difference over these four, as in the paper."""


def acc(logits: torch.Tensor, labels: torch.Tensor) -> float:
    if len(labels) == 0:
        return float("nan")
    return 100.0 * (logits.argmax(1) == labels.to(logits.device)).double().mean().item()


def unlearning_metrics(
    model: nn.Module,
    splits: Splits,
    forget: ForgetSet,
    *,
    features: tuple[str, ...] = ("confidence",),
    privacy: bool = False,
    batch_size: int | None = None,
    test: bool = True,
) -> dict:
    """UA, RA, TA, validation accuracy and MIA of ``model``; the first feature gives MIA-Efficacy.

    ``test=False`` (what ``smu tune`` scores trials with) never reads the test split: no TA, and the
    validation split stands in for it as the attack's shadow non-members."""
    for name in features:
        lookup(FEATURES, name, "MIA feature")
    forget_set, retain = forget.forget(splits), forget.retain(splits)
    sets = {"forget": forget_set, "retain": retain, "val": forget.without_class(splits.val)}
    if test:
        sets["test"] = forget.without_class(splits.test)
        forgotten = forget.subclass_images(splits.test)  # a sub-class's own test images, told apart
        if forgotten is not None:
            sets["forget_test"] = forgotten
    out = {s: predict(model, d, batch_size) for s, d in sets.items()}
    metrics = {
        "ua": 100.0 - acc(out["forget"], forget_set.y),
        "ra": acc(out["retain"], retain.y),
        **({"ta": acc(out["test"], sets["test"].y)} if test else {}),
        "val_acc": acc(out["val"], sets["val"].y),
        "forget_acc": acc(out["forget"], forget_set.y),
    }
    if "forget_test" in sets:  # SSD's sub-class table reports it: siblings share the label, so it stays > 0
        metrics["forget_test_acc"] = acc(out["forget_test"], sets["forget_test"].y)
    # Shadow members and non-members, as many of each: the first n retain samples (in index order) and
    # the first n of the test set (the validation set with test=False), n the smaller of the two. With
    # the paper's data (retain 45,000, test 10,000) that is the whole test set, as in the authors' code;
    # a retain set smaller than the test set (a subset) would otherwise leave the SVC so few members
    # that it calls every sample a non-member, and MIA-Efficacy reads 100 whatever the model.
    unseen = "test" if test else "val"
    shadow = slice(0, min(len(retain), len(sets[unseen])))
    mia = {}
    for name in features:
        f = {s: feature(name, out[s], sets[s].y) for s in ("forget", "retain", unseen)}
        mia[name] = svc_attack(f["retain"][shadow], f[unseen][shadow], target_out=f["forget"])
    metrics["mia_efficacy"] = mia[features[0]]
    metrics["mia"] = mia
    if privacy:
        metrics["mia_privacy"] = mia_privacy(out["retain"], out[unseen], retain, sets[unseen], features[0])
    return metrics


def compare(
    model: nn.Module,
    splits: Splits,
    forget: ForgetSet,
    reference: nn.Module | None = None,
    *,
    features: tuple[str, ...] = ("confidence",),
    privacy: bool = False,
) -> dict:
    """The metrics of ``model``, those of ``reference`` and the gap between them: what ``smu eval`` and
    ``smu unlearn`` report (``reference`` and ``gap`` are None without a reference)."""
    metrics = unlearning_metrics(model, splits, forget, features=features, privacy=privacy)
    ref = (
        None
        if reference is None
        else unlearning_metrics(reference, splits, forget, features=features, privacy=privacy)
    )
    return {"metrics": metrics, "reference": ref, "gap": None if ref is None else gap(metrics, ref)}


def mia_privacy(
    retain_out: torch.Tensor, test_out: torch.Tensor, retain: ImageSet, test: ImageSet, name: str
) -> float:
    """Attack accuracy with half of retain/test as shadow and the other halves as targets."""
    n = min(len(retain), len(test)) // 2
    r, t = feature(name, retain_out, retain.y), feature(name, test_out, test.y)
    return svc_attack(r[:n], t[:n], target_in=r[n : 2 * n], target_out=t[n : 2 * n])


TUNING_METRICS = ("ua", "mia_efficacy", "ra", "val_acc")
"""What ``smu tune`` scores a trial on: the Avg. Gap with validation accuracy in place of TA."""


def gap(metrics: dict, reference: dict, over: tuple[str, ...] = GAP_METRICS) -> dict:
    """Absolute difference per metric, and Avg. Gap = their mean over UA, MIA-Efficacy, RA and TA (or
    the metrics ``over``)."""
    g = {k: abs(metrics[k] - reference[k]) for k in over}
    g["avg"] = sum(g.values()) / len(over)
    return g
