"""What an unlearning method is, and what it receives: the data split by the forget set, and the run.

A method declares itself once, in its own module, as an :class:`UnlearnMethod`; the CLI, recipes,
the Python API, validation and the docs all read that declaration (docs/PLUGINS.md).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smu.core.errors import UsageError
from smu.core.masks import Mask
from smu.core.options import config_problems
from smu.data import ImageSet, Splits
from smu.data.batches import Augment
from smu.data.forget import ForgetSet
from smu.execution.engine import Checkpoint, FitResult, Pass, Reporter, TrainConfig, fit

NEEDS = {
    "original": "a frozen copy of the model before unlearning, as ctx.original (e.g. a teacher)",
}
"""What a method may ask the run for, beyond the model and the data."""


RESERVED = frozenset(
    {
        # smu unlearn's, backdoor-cleanse's, audit's and tune's own options (and their API keywords)
        *("model", "forget", "forget_seed", "method", "mask", "reference", "no_eval", "mia_features"),
        *("data", "dataset", "arch", "val_fraction", "subset", "device", "amp", "compile", "sync_bn"),
        *("seed", "out", "force", "resume", "reporter", "poison", "target", "trigger_size"),
        *("trigger_value", "prune", "rate", "rates", "rewind_epoch", "scope", "keep_models", "space"),
        *("holdout_forget", "workers", "executor", "address", "cpus_per_step", "gpus_per_step"),
        *("models", "statistic", "thresholds", "trials", "timeout"),  # AuditConfig's and TuneConfig's
        *("dry_run", "threads", "metrics", "metric_seed"),
        *("log", "log_dir", "tracking_uri", "wandb_project", "wandb_entity", "log_models"),  # the trackers'
        *("json", "json_out", "quiet", "help", "unlearn", "config"),  # --json, -q, --help; the API's config=
    }
)
"""Names a method's option may not take: the commands that take a method's options beside their own
would keep the value for themselves (a plug-in's ``seed`` set the command's seed, never the method's).
tests/methods/test_plugins.py checks that it holds every option of those commands."""
RESERVED_PREFIXES = ("retrain_", "unlearn_")
"""audit's and tune's retrained reference (--retrain-epochs) and backdoor-cleanse's method training
(--unlearn-epochs) take the options that start so."""


ORDERS = ("shuffled", "in order", "by class")
"""How a feed orders its images: reshuffled every pass, the set's own order, or sorted by class
(stable: the set's order within a class)."""


@dataclass(frozen=True)
class Feed:
    """One stream of images a method's default run feeds the model, pinned against its official code.

    Every feed keeps the last partial batch, as every official loader does (none drops it), except
    that a shuffled training pass ends before a last batch of a single image (BatchNorm cannot train
    on one; the next epoch's shuffle gives it its turn). ``tests/methods/test_method_data.py`` runs every
    method and checks that what it feeds is what it declares."""

    data: str
    """``forget``, ``retain`` (or its first images, or the first of each class), ``retain+forget``: retain
    first, then forget; ``retain part+forget``: a random part of retain (the option ``retain_fraction``),
    then forget; ``noise+retain``: the retain images, then learnt noise images (``noise_images`` ×
    ``noise_copies``)."""
    mode: str
    """``train`` or ``eval``: the model's mode while it sees these images."""
    batch: str
    """The option holding the batch size, or ``per-sample`` (one gradient per image)."""
    order: str
    """One of :data:`ORDERS`."""
    augment: bool
    """Pad-and-random-crop and flip, where the dataset allows them (``--no-aug`` turns them off)."""
    purpose: str
    """What the pass is for: training, saliency, Fisher, ..."""
    epochs: str = "epochs"
    """The option holding how many times a training pass runs."""


@dataclass(frozen=True)
class UnlearnMethod:
    """An unlearning method: everything smu needs to offer it everywhere a method is taken."""

    name: str
    """What users type: ``smu unlearn --method NAME``, the key under ``unlearn:`` in a recipe."""
    summary: str
    """One line for help, listings and the README."""
    config: type
    """Its hyper-parameters: a dataclass whose field docstrings are the help texts and whose defaults
    are the paper's or the method's authors'; ranges declared with ``smu.core.options.param``. A method
    that trains subclasses :class:`~smu.execution.engine.TrainConfig` and gets every training option."""
    run: Callable[[nn.Module, UnlearnData, Any, Context], nn.Module]
    """``run(model, data, config, ctx) -> model``: the unlearning step; it may change ``model`` in
    place or return a new one. Training goes through ``ctx.train`` (the shared engine)."""
    needs: frozenset[str] = frozenset()
    """Extras from :data:`NEEDS` the run must provide."""
    exact: bool = False
    """Exact unlearning (retrain): the reference every approximate method is measured against."""
    classwise: bool = False
    """It forgets a whole class or sub-class only (UNSIR learns noise against the class): a forget set
    that is neither (``random:N``, a backdoor's poisoned samples) is refused before any work, and a
    recipe leaves such cells empty."""
    ddp: str = ""
    """How it runs under torchrun where that is more than data-parallel training (each rank trains on
    its part of every global batch): a line shown at run time."""
    feeds: tuple[Feed, ...] = ()
    """The images a default run feeds the model, pass by pass, as its official code feeds them."""
    source: str = ""
    """The official code its defaults, data pipeline included, were pinned against."""
    differs: str = ""
    """Where smu deliberately differs from that code, and why."""
    quick: Mapping[str, Any] = field(default_factory=dict)
    """Options for a short run on a tiny model (every test that runs all methods uses them), only
    where its defaults would take long there: a trainer is run with a few epochs in batches of 64 and
    then these; e.g. IU's ``iu_samples``."""
    code: Mapping[str, str] = field(default_factory=dict)
    """For a user's function (``FILE.py:FUNCTION``, :mod:`smu.methods.unlearning.competition`): its
    ``spec``, ``file`` and the ``sha256`` of that file, recorded with the model so a later run can tell
    that the code changed. Empty for a registered method: its code is smu's, or its plug-in's."""

    @property
    def trains(self) -> bool:
        return issubclass(self.config, TrainConfig)

    def refuses(self, forget_set: ForgetSet | None) -> str | None:
        """Why this method cannot forget ``forget_set`` (None: backdoor-cleanse's poisoned samples), or
        None: a class-wise method and a set that is not a whole class or sub-class."""
        if not self.classwise:
            return None
        if forget_set is None:
            return (
                f"--method {self.name} forgets a whole class or sub-class, not a backdoor's poisoned samples"
            )
        if forget_set.forget_class is None and forget_set.forget_subclass is None:
            return (
                f"--method {self.name} forgets a whole class or sub-class, not the samples of --forget "
                f"{forget_set.spec}"
            )
        return None

    def check_forget(self, forget_set: ForgetSet | None) -> None:
        """Raise a usage error where :meth:`refuses` gives a reason: before any model is trained."""
        problem = self.refuses(forget_set)
        if problem:
            give = "" if forget_set is None else "give it --forget class:C or subclass:NAME, or "
            raise UsageError(problem, hint=f"{give}choose another method")

    def work(self, cfg: Any, forget: int, retain: int) -> tuple[str, int] | None:
        """What a run with ``cfg`` feeds the model, from :attr:`feeds`: its passes in words and the images
        that go through forward and backward (a training pass once per epoch; a per-sample pass over its
        first ``iu_samples + 2`` images). None where nothing is declared (a user's function, a plug-in
        without ``feeds``); ``(..., 0)`` for a method that feeds nothing."""
        if not self.feeds:  # the baseline feeds nothing by definition; anything else did not say
            return ("nothing to train", 0) if self.name == "none" and not self.code else None
        sizes = {"forget": forget, "retain": retain, "retain+forget": retain + forget}
        if hasattr(cfg, "retain_fraction"):
            sizes["retain part+forget"] = int(cfg.retain_fraction * retain) + forget
        if hasattr(cfg, "noise_copies"):  # at most: the retain images are capped per class
            sizes["noise+retain"] = retain + cfg.noise_images * cfg.noise_copies
        parts, images = [], 0
        for feed in self.feeds:
            n = sizes[feed.data]
            if feed.batch == "per-sample":
                n = min(n, getattr(cfg, "iu_samples", n) + 2)
            passes = getattr(cfg, feed.epochs, 1) if feed.mode == "train" else 1
            parts.append(f"{feed.purpose} {passes}x {feed.data} ({n:,})")
            images += passes * n
        return "; ".join(parts), images


@dataclass
class UnlearnData:
    """The training split divided by a forget set: D_f (forget) and D_r (retain)."""

    splits: Splits
    forget_set: ForgetSet
    forget: ImageSet
    retain: ImageSet
    aug: Augment

    @classmethod
    def of(cls, splits: Splits, forget_set: ForgetSet) -> UnlearnData:
        aug = Augment(splits.info.crop_pad, splits.info.flip)
        return cls(splits, forget_set, forget_set.forget(splits), forget_set.retain(splits), aug)


@dataclass
class Context:
    """The run around a method: the model's mask (kept through every step), seed, progress, architecture."""

    arch: str
    mask: Mask | None = None
    seed: int = 0
    reporter: Reporter | None = None
    checkpoint: Checkpoint | None = None
    """Where training methods save their state each epoch (and resume from)."""
    original: nn.Module | None = None
    """With ``needs={"original"}``: a frozen copy of the model before unlearning."""
    model_meta: dict[str, str] = field(default_factory=dict)
    """The header of the model file being unlearned (its identity, for extras written beside it)."""
    model_sha256: str = ""
    extras: dict[str, Callable[[Path], Any]] = field(default_factory=dict)
    """Files a method adds beside the model: file name -> writer(path). The run writes them after the
    model, once the method has succeeded, so a failed run leaves none."""
    fits: list[FitResult] = field(default_factory=list)
    """What each training loop of the method did (where it started, how many epochs it ran)."""
    on_epoch_end: Callable[[int, nn.Module], None] | None = None
    """Called after every epoch of every training loop (``smu tune`` scores and prunes trials there)."""

    def generator(self) -> torch.Generator:
        """Random numbers for a method's own passes outside :meth:`train` (augmenting the images of a
        gradient estimate), from the run's seed and apart from the epochs' streams (seed·1,000,003 + e)."""
        return torch.Generator().manual_seed(self.seed + 2**32)

    def train(
        self,
        model: nn.Module,
        images: ImageSet | list[Pass],
        cfg: TrainConfig,
        aug: Augment,
        label: str,
        **options: Any,
    ) -> FitResult:
        """:func:`smu.execution.engine.fit` with this run's mask, seed, progress and checkpoint. ``images``
        is a dataset or a list of passes; ``options`` go to ``fit`` (the loss, a freeze, the divergence
        hint, another mask for a model whose shape the method changed). A method that trains more than once
        (UNSIR: impair, then repair) names each ``phase``: each then resumes only from its own checkpoint."""
        phase = options.pop("phase", "")
        checkpoint = self.checkpoint
        if checkpoint is not None and phase:
            checkpoint = dataclasses.replace(checkpoint, key=f"{checkpoint.key}|{phase}")
        result = fit(
            model,
            images,
            cfg,
            mask=options.pop("mask", self.mask),
            seed=self.seed,
            aug=aug,
            reporter=self.reporter,
            label=label,
            checkpoint=checkpoint,
            **({"on_epoch_end": self.on_epoch_end} | options),
        )
        self.fits.append(result)
        return result


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode whose parameters take no gradient."""
    twin = copy.deepcopy(model).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def method_problems(method: Any, registry: Any) -> list[str]:
    """What keeps ``method`` (a plug-in's) from working like a built-in; empty when nothing does."""
    found = []
    if not dataclasses.is_dataclass(method.config):
        found.append("its config is not a dataclass")
    else:
        found += option_clashes(method.config, [m.config for m in registry.values()])
        taken = reserved_options(method.config)
        if taken:
            found.append(
                f"its option{'s' * (len(taken) > 1)} {', '.join(taken)} would be shadowed by the command's "
                "own (reserved names: docs/PLUGINS.md)"
            )
        found += config_problems(method.config)
    unknown = set(method.needs) - set(NEEDS)
    if unknown:
        found.append(f"it needs {sorted(unknown)}, which smu does not provide (known: {', '.join(NEEDS)})")
    return found


def reserved_options(config: type) -> list[str]:
    """The flags of ``config``'s options that take a :data:`RESERVED` name (``--seed``, or ``--no-eval``
    of a bool option ``eval``)."""
    from smu.core.options import option_flag

    found = []
    for f in dataclasses.fields(config):
        flags = option_flag(config, f.name).split("/")
        if any(
            name in RESERVED or name.startswith(RESERVED_PREFIXES)
            for name in [f.name, *(flag[2:].replace("-", "_") for flag in flags)]
        ):
            found.append(flags[0])
    return found


def option_clashes(config: type, others: list[type]) -> list[str]:
    """Options that another method declares with another type: one CLI flag cannot take both."""
    import typing

    mine = typing.get_type_hints(config)
    found = []
    for other in others:
        theirs = typing.get_type_hints(other)
        for name in set(mine) & set(theirs):
            if mine[name] != theirs[name]:
                found.append(f"its option {name!r} is {mine[name]} where another method's is {theirs[name]}")
    return sorted(set(found))
