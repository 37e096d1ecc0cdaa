"""Every method feeds the model what it declares (``UnlearnMethod.feeds``, pinned against its official
code): which set, in which mode, in batches of which option, in which order, augmented or not.

Each method runs with its defaults (only its epochs cut to 1) on a small digits split whose dataset is
told it allows crops and flips, so that augmentation is visible. A spy on ``batches`` — wherever smu
imported it — records every pass; a forward hook records the mode of the model being unlearned (the
one whose weights take gradients: not a frozen teacher) on the images of each pass's batches.
"""

import copy
import dataclasses
import sys

import pytest
import torch

import smu.data.batches as batches_module
from smu.data.forget import resolve_forget
from smu.execution.engine import TrainConfig, fit
from smu.methods.unlearning import METHODS, Context, UnlearnData, make_config
from smu.methods.unlearning.base import ORDERS, frozen_copy
from smu.models import Classifier, build_model

FORGET, RETAIN = 40, 96


@pytest.fixture(scope="module")
def subject(digits):
    """A trained cnn and digits split by class 3, with a dataset that allows crops and flips."""
    torch.manual_seed(0)
    info = dataclasses.replace(digits.info, crop_pad=2, flip=True)
    splits = dataclasses.replace(digits, info=info)
    model = build_model("cnn", in_channels=1, image_size=8, num_classes=10, mean=info.mean, std=info.std)
    fit(model, digits.train, TrainConfig(epochs=2, batch_size=64, lr=0.05))
    fs = resolve_forget("class:3", splits)
    full = UnlearnData.of(splits, fs)
    data = dataclasses.replace(
        full, forget=full.forget.subset(torch.arange(FORGET)), retain=full.retain.subset(torch.arange(RETAIN))
    )
    assert data.aug  # crops and flips are on: an augmented pass can be seen
    return model, data


def rows_of(part: torch.Tensor, whole: torch.Tensor) -> bool:
    """Whether every image of ``part`` is an image of ``whole``, in ``whole``'s order."""
    flat, rows = whole.flatten(1), part.flatten(1)
    at = 0
    for row in rows:
        while at < len(flat) and not torch.equal(flat[at], row):
            at += 1
        if at == len(flat):
            return False
        at += 1
    return True


class Spy:
    """The passes a run draws: (data, order, batch size, augmented, modes seen)."""

    def __init__(self, data: UnlearnData):
        self.data, self.passes, self.current = data, [], None
        self.original = batches_module.batches

    def identify(self, images) -> tuple[str, str]:
        forget, retain = self.data.forget, self.data.retain
        by_class = retain.subset(torch.sort(retain.y, stable=True).indices)
        candidates = {
            ("forget", "in order"): forget.x,
            ("retain", "in order"): retain.x,
            ("retain+forget", "in order"): torch.cat([retain.x, forget.x]),
            ("retain+forget", "by class"): torch.cat([by_class.x, forget.x]),
        }
        for key, x in candidates.items():
            if images.x.shape == x.shape and torch.equal(images.x, x):
                return key
        if len(images) < len(retain) and torch.equal(images.x, retain.x[: len(images)]):
            return "retain", "in order"  # its first images (IU's per-sample gradients)
        head, tail = images.x[: len(images) - len(forget)], images.x[len(images) - len(forget) :]
        if 0 < len(head) < len(retain) and torch.equal(tail, forget.x) and rows_of(head, retain.x):
            return "retain part+forget", "in order"  # Bad Teacher's random part of the retain set
        if images.x.is_floating_point() and torch.equal(images.x[: len(retain)], retain.x.float()):
            return "noise+retain", "in order"  # UNSIR's impair set: float noise images after them
        return "other", "in order"

    def batches(self, data, batch_size, *, shuffle=False, gen=None, aug=None, **options):
        name, order = self.identify(data)
        record = {
            "data": name,
            "order": "shuffled" if shuffle else order,
            "batch_size": batch_size,
            "augment": bool(aug),
            "modes": set(),
            "images": len(data),
        }
        self.passes.append(record)
        for batch in self.original(data, batch_size, shuffle=shuffle, gen=gen, aug=aug, **options):
            self.current, record["last"] = record, batch[0]
            yield batch

    def owner(self, x: torch.Tensor) -> dict:
        """The pass whose latest batch these images are (NegGrad+ draws a forget batch after each retain
        batch, before either is seen), else the pass drawn last (inside vmap: per-sample images)."""
        for record in reversed(self.passes):
            last = record.get("last")
            if last is not None and last.shape == x.shape and torch.equal(last, x):
                return record
        return self.current

    def hook(self, module, args):
        trainable = any(p.requires_grad for p in module.parameters())
        if isinstance(module, Classifier) and trainable and self.current is not None:
            self.owner(args[0])["modes"].add("train" if module.training else "eval")


def run_with_spy(name, subject, monkeypatch, epochs=1):
    model, data = subject
    spec = METHODS[name]
    spy = Spy(data)
    for module in list(sys.modules.values()):  # every module that imported `batches` by name
        if (
            getattr(module, "__name__", "").startswith("smu")
            and getattr(module, "batches", None) is spy.original
        ):
            monkeypatch.setattr(module, "batches", spy.batches)
    cfg = make_config(name, {"epochs": epochs} if spec.trains else {})
    model = copy.deepcopy(model)
    ctx = Context("cnn", seed=0, original=frozen_copy(model) if "original" in spec.needs else None)
    handle = torch.nn.modules.module.register_module_forward_pre_hook(spy.hook)
    try:
        spec.run(model, data, cfg, ctx)
    finally:
        handle.remove()
    return spy, cfg


def distinct(passes):
    """The passes in the order first drawn, each once (a pass repeats every epoch); a pass whose images
    went only to a frozen teacher or nowhere shows no mode."""
    seen = []
    for p in passes:
        key = (p["data"], p["order"], p["batch_size"], p["augment"], frozenset(p["modes"]))
        if key not in seen:
            seen.append(key)
    return seen


@pytest.mark.parametrize("name", list(METHODS))
def test_a_method_feeds_the_model_what_it_declares(name, subject, monkeypatch):
    """Every pass over images is declared, in order; a method that declares none feeds none."""
    spec = METHODS[name]
    spy, cfg = run_with_spy(name, subject, monkeypatch)
    passes = distinct(spy.passes)
    declared = f"{name} feeds the model {len(passes)} stream(s), {passes}, and declares {len(spec.feeds)}"
    assert len(passes) == len(spec.feeds), f"{declared}: declare each as a Feed in UnlearnMethod(feeds=...)"
    for (data, order, size, augment, modes), feed in zip(passes, spec.feeds, strict=True):
        assert feed.order in ORDERS and feed.mode in ("train", "eval")
        assert (data, order, augment, modes) == (feed.data, feed.order, feed.augment, {feed.mode}), feed
        if feed.batch != "per-sample":  # per-sample gradients are computed in chunks of any size
            assert size == getattr(cfg, feed.batch), feed


def test_every_method_that_feeds_images_names_the_code_its_pipeline_was_pinned_against():
    for name, spec in METHODS.items():
        assert spec.source or not spec.feeds, name


@pytest.mark.parametrize("name", list(METHODS))
def test_a_methods_planned_work_is_the_images_it_feeds(name, subject, monkeypatch):
    """The plan printed before a run (``UnlearnMethod.work``) counts exactly the images the run draws,
    over two epochs, so that per-epoch passes are told from one-off ones."""
    spy, cfg = run_with_spy(name, subject, monkeypatch, epochs=2)
    what, planned = METHODS[name].work(cfg, FORGET, RETAIN)
    assert planned == sum(p["images"] for p in spy.passes), what
