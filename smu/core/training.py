"""How to train and what to prune: the hyper-parameters every command that trains shares, declared
without torch so that the CLI checks their ranges before importing it (``smu.cli.precheck``).

``smu.execution.engine`` trains with :class:`TrainConfig` (and names it too, for the methods that
subclass it); ``smu.methods.pruning.PruneConfig`` adds to :class:`PruneOptions` what needs the method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smu.core.names import SCOPES
from smu.core.options import Checked, Problem, param

SCHEDULES = ("multistep", "cosine", "constant")
OPTIMIZERS = ("sgd", "adam")
"""What :func:`smu.execution.engine.fit` steps with: SGD (momentum, weight decay), the default of every
config; Adam (betas 0.9, 0.999, weight decay as L2 in the gradient), for the configs that declare an
``optimizer`` field (:class:`AdamConfig`)."""


@dataclass
class TrainConfig(Checked):
    """How to train: the paper's CIFAR settings are the defaults."""

    epochs: int = param(182, ge=1)
    """Training epochs."""
    lr: float = param(0.1, gt=0)
    """Initial learning rate (SGD)."""
    batch_size: int = param(256, ge=1)
    """Images per step."""
    momentum: float = param(0.9, ge=0)
    """SGD momentum."""
    weight_decay: float = param(5e-4, ge=0)
    """L2 weight decay."""
    schedule: str = param("multistep", choices=SCHEDULES)
    """Learning-rate schedule: multistep (x0.1 at each --decreasing-lr epoch), cosine (to 0 over the
    epochs) or constant."""
    decreasing_lr: tuple[int, ...] = param((91, 136), ge=0)
    """Epochs at which the multistep schedule multiplies the learning rate by 0.1."""
    warmup: int = param(0, ge=0)
    """Epochs of linear learning-rate warm-up."""
    augment: bool = param(True, flag="--aug/--no-aug")
    """Pad-and-random-crop and flip (where the dataset allows) while training."""


@dataclass
class AdamConfig(TrainConfig):
    """Training with Adam at a constant learning rate and no weight decay: the optimiser the SSD authors'
    baselines (Bad Teacher, Amnesiac, UNSIR) train with (``torch.optim.Adam(model.parameters(), lr)``)."""

    optimizer: str = param("adam", choices=OPTIMIZERS)
    """Optimiser: adam (the official code's) or sgd (with --momentum)."""
    lr: float = param(1e-4, gt=0, tune="1e-5:1e-2:log")
    """Learning rate (constant)."""
    momentum: float = param(0.9, ge=0)
    """SGD momentum, with --optimizer sgd (Adam has its own betas, 0.9 and 0.999)."""
    weight_decay: float = param(0.0, ge=0)
    """L2 weight decay (none in the official optimiser)."""
    schedule: str = param("constant", choices=SCHEDULES)
    """Learning-rate schedule (constant: the official code's)."""
    augment: bool = param(False, flag="--aug/--no-aug")
    """Pad-and-random-crop and flip while training (off: the official loaders do not augment)."""


@dataclass
class PruneOptions(Checked):
    """What to prune and how."""

    method: str = "omp"
    """Pruning method: omp, imp, synflow, random or a plug-in's (listed at the end of smu prune --help)."""
    rate: float | None = param(None, gt=0, lt=1)
    """Fraction to prune: of all weights in scope (omp, synflow, random; default 0.95), or of the weights
    still alive in each round (imp; default 0.2)."""
    times: int | None = param(None, ge=1)
    """Rounds of prune-rewind-retrain for imp (default 5); the others prune once."""
    scope: str = param("conv", choices=tuple(SCOPES))
    """Weights ranked globally: conv (the paper) or all (conv and linear)."""
    rewind_epoch: int = param(8, ge=0)
    """omp/imp: rewind weights and learning-rate schedule to this epoch of dense training (0 = init)."""
    options: Any = None
    """The method's own options (its ``config``), e.g. SynFlow's iterations; None = its defaults."""

    def schedule_problems(self, epochs: int, *, iterative: bool, at_init: bool) -> list[Problem]:
        """What the method's kind rules out: rounds for a one-shot method, a rewind epoch not before
        ``epochs`` for a method that trains dense first."""
        found: list[Problem] = []
        if self.times is not None and self.times > 1 and not iterative:
            found.append(
                ("times", self.times, f"1 for --method {self.method}: only iterative methods (imp) repeat")
            )
        if not at_init and self.rewind_epoch >= epochs:
            found.append(("rewind_epoch", self.rewind_epoch, f"below --epochs {epochs} (0 rewinds to init)"))
        return found
