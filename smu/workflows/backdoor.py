"""`smu backdoor-cleanse` as a library call (the paper's Sec. 6 Trojan study).

Poison part of the training set, train the Trojan model (dense, and OMP-sparse at each rate from the
same dense training), then unlearn the poisoned samples with any unlearning method and measure the
clean accuracy (SA) and the attack success rate (ASR) before and after. Run folder::

    poison.safetensors                  the poisoned indices (a forget set; its spec names the trigger)
    dense/model.safetensors             the dense Trojan model (and its rewind checkpoint)
    rate-R/round-1/model.safetensors    the OMP Trojan model at sparsity R (and its mask)
    cleansed-rate-R/model.safetensors   that model after unlearning the poisoned samples
    manifest.json
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from smu.data import Splits
from smu.data.forget import ForgetSet
from smu.data.poison import Trigger, default_trigger_value, poison
from smu.engine import Reporter, TrainConfig
from smu.errors import UsageError
from smu.evaluation.backdoor import backdoor_metrics
from smu.io import artifacts
from smu.io import schema as S
from smu.io.artifacts import LoadedModel
from smu.options import Checked, param
from smu.workflows.prune import train_models
from smu.workflows.unlearn import run_unlearn


@dataclass
class BackdoorConfig(Checked):
    """The attack: which training images are poisoned, with what trigger, towards which class."""

    poison: str = "10%"
    """Training samples to poison: N or P% (the paper: 10%, 4,500 of CIFAR-10)."""
    target: int = param(0, ge=0)
    """The attacker's class."""
    trigger_size: int = param(4, ge=1)
    """Side of the trigger square, in pixels, 2 pixels in from the bottom-right corner."""
    trigger_value: int | None = param(None, ge=0, le=255)
    """Trigger pixel value: black (0) as in the original, white (255) on black-background datasets."""

    def trigger(self, splits: Splits) -> Trigger:
        """The trigger for these splits, checked against their image size and classes."""
        value = default_trigger_value(splits.info.name) if self.trigger_value is None else self.trigger_value
        return Trigger(self.trigger_size, value, self.target).check(splits)


def check_rates(rates: tuple[float, ...] | list[float]) -> tuple[float, ...]:
    """Sparsities to compare: 0 is the dense Trojan model, others are pruned from the same dense training."""
    for r in rates:
        if not 0.0 <= r < 1.0:
            raise UsageError(f"--rates: {r!r} is outside [0, 1)", hint="e.g. --rates 0,0.9 (0 = dense)")
    return tuple(rates)


def run_backdoor(
    splits: Splits,
    arch: str,
    train: TrainConfig,
    cfg: BackdoorConfig,
    method: str,
    unlearn_cfg: Any,
    *,
    rates: tuple[float, ...] = (0.0,),
    prune: str = "omp",
    out: Path | str,
    seed: int = 0,
    forget_seed: int = 0,
    device: str | torch.device = "cpu",
    start: LoadedModel | None = None,
    rewind_epoch: int = 8,
    scope: str = "conv",
    reporter: Reporter | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Poison, train, cleanse and measure; returns the JSON-ready result. ``rates`` are the Trojan models'
    sparsities (0 = dense), pruned with ``prune`` from one dense training."""
    out = Path(out)
    reporter = reporter or Reporter()
    attack = Attack.prepare(splits, cfg, forget_seed)
    attack.poison_set.save(out / "poison.safetensors")
    if start is not None:
        trojans = [(float(start.meta.get(S.SPARSITY, 0)), start)]
    else:
        paths = train_models(
            attack.poisoned,
            arch,
            train,
            check_rates(rates),
            out,
            method=prune,
            seed=seed,
            device=device,
            rewind_epoch=rewind_epoch,
            scope=scope,
            reporter=reporter,
            command=command,
            extra_meta=attack.meta(),
        )
        trojans = [(rate, artifacts.load_model(path, device)) for rate, path in paths]
    results = [
        attack.cleanse(
            trojan,
            rate,
            method,
            unlearn_cfg,
            out / f"cleansed-rate-{rate:g}",
            seed=seed,
            reporter=reporter,
            command=command,
        )
        for rate, trojan in trojans
    ]
    return {
        "results": results,
        "method": method,
        "poison": attack.summary(out / "poison.safetensors"),
        "out": str(out),
    }


@dataclass
class Attack:
    """The clean splits, the trigger, and the poisoned splits with the poisoned indices."""

    splits: Splits
    trigger: Trigger
    poisoned: Splits
    poison_set: ForgetSet

    @classmethod
    def prepare(cls, splits: Splits, cfg: BackdoorConfig, forget_seed: int = 0) -> Attack:
        trigger = cfg.trigger(splits)
        poisoned, poison_set = poison(splits, cfg.poison, trigger, forget_seed)
        return cls(splits, trigger, poisoned, poison_set)

    def meta(self) -> dict[str, str]:
        """Header fields that mark a model as trained on this poisoned data."""
        return {S.POISON: self.poison_set.spec, S.POISON_SHA256: self.poison_set.sha256}

    def summary(self, path: Path) -> dict[str, Any]:
        t = self.trigger
        return self.poison_set.summary() | {
            "path": str(path),
            "target": t.target,
            "trigger_size": t.size,
            "trigger_value": t.value,
        }

    def cleanse(
        self,
        trojan: LoadedModel,
        rate: float,
        method: str,
        unlearn_cfg: Any,
        out: Path,
        *,
        seed: int = 0,
        reporter: Reporter | None = None,
        command: str = "",
    ) -> dict[str, Any]:
        """Unlearn the poisoned samples from ``trojan``; clean-test SA and ASR before and after."""
        reporter = reporter or Reporter()
        before = backdoor_metrics(trojan.model, self.splits.test, self.trigger)
        reporter.note(f"rate {rate:g}: SA {before['sa']:.2f}%, ASR {before['asr']:.2f}% before cleansing")
        result = run_unlearn(
            trojan,
            self.poisoned,
            self.poison_set,
            method,
            unlearn_cfg,
            out=out,
            seed=seed,
            reporter=reporter,
            command=command,
        )
        device = next(trojan.model.parameters()).device
        after = backdoor_metrics(
            artifacts.load_model(result["model"], device).model, self.splits.test, self.trigger
        )
        return {
            "rate": rate,
            "sparsity": result["sparsity"],
            "sa_before": before["sa"],
            "asr_before": before["asr"],
            "sa_after": after["sa"],
            "asr_after": after["asr"],
            "rte_s": result["rte_s"],
            "model_before": str(trojan.path),
            "model_after": result["model"],
            "unlearn": result["metrics"],
            "method": method,
        }
