"""What every unlearning method receives: the data split by the forget set, and the run's context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from smu.data import ImageSet, Splits
from smu.data.batches import Augment
from smu.data.forget import ForgetSet
from smu.engine import Checkpoint, FitResult, Reporter, TrainConfig, fit
from smu.masks import Mask


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
    fits: list[FitResult] = field(default_factory=list)
    """What each training loop of the method did (where it started, how many epochs it ran)."""

    def train(
        self, model: nn.Module, images: ImageSet, cfg: TrainConfig, aug: Augment, label: str, **options: Any
    ) -> FitResult:
        """:func:`smu.engine.fit` with this run's mask, seed, progress and checkpoint (``options``: the
        loss, the divergence hint)."""
        result = fit(
            model,
            images,
            cfg,
            mask=self.mask,
            seed=self.seed,
            aug=aug,
            reporter=self.reporter,
            label=label,
            checkpoint=self.checkpoint,
            **options,
        )
        self.fits.append(result)
        return result
