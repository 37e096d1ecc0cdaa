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

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from smu import loggers
from smu.core.errors import UsageError
from smu.core.options import Checked, flag_of, param, parse_list
from smu.core.progress import Estimate
from smu.core.registry import lookup
from smu.data import Splits, load_splits, splits_of
from smu.data.forget import ForgetSet
from smu.data.poison import Trigger, default_trigger_value, poison
from smu.evaluation.backdoor import backdoor_metrics
from smu.execution.engine import Reporter, TrainConfig, resolve_device
from smu.io import artifacts
from smu.io import schema as S
from smu.io.artifacts import LoadedModel
from smu.methods.pruning import METHODS as PRUNING
from smu.methods.pruning import PruneConfig
from smu.methods.unlearning import METHODS, folder_name, make_config, offered
from smu.models import build_for, parse_arch
from smu.workflows.common import (
    command_line,
    default_out,
    estimate,
    refuse_unknown,
    run_folder,
    threads_for,
    tracked,
    write_manifest,
)
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


def backdoor_cleanse(
    poison: str = BackdoorConfig.poison,
    target: int = BackdoorConfig.target,
    trigger_size: int = BackdoorConfig.trigger_size,
    trigger_value: int | None = None,
    forget_seed: int = 0,
    prune: str = "omp",
    rate: float | None = None,
    rates: str | Sequence[float] | None = None,
    rewind_epoch: int = 8,
    scope: str = "conv",
    model: str | Path | None = None,
    method: str = "ft",
    arch: str | None = None,
    dataset: str | None = None,
    data: str | Path | None = None,
    val_fraction: float = 0.1,
    subset: int = 0,
    device: str = "auto",
    amp: bool = False,
    compile: bool = False,
    sync_bn: bool = False,
    threads: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    force: bool = False,
    dry_run: bool = False,
    log: Sequence[str] = (),
    log_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    wandb_project: str | None = None,
    wandb_entity: str | None = None,
    log_models: bool = False,
    reporter: Reporter | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Poison the data, train Trojan model(s), unlearn the poisoned samples; SA and ASR before and after.

    ``rates``: the sparsities to compare (``"0,0.9"`` or a list; 0 = dense), each pruned once with
    ``prune`` from one dense model; ``model`` cleanses a given Trojan model instead. ``options`` train
    the Trojan models (``epochs``, ``lr``...) and, prefixed ``unlearn_`` where the names clash
    (``unlearn_epochs``), set the unlearning method's. Returns what ``--json`` prints; with ``dry_run``,
    only the plan and its time estimate. ``log`` names experiment trackers to send the run to.
    """
    given = {k: v for k, v in locals().items() if k not in ("options", "reporter")} | options
    tracking = loggers.settings(log, log_dir, tracking_uri, wandb_project, wandb_entity, log_models)
    unlearning = {f.name for spec in offered().values() for f in fields(spec.config)}
    refuse_unknown(options, TRAINING | {f"unlearn_{n}" for n in TRAINING} | unlearning, "backdoor-cleanse")
    train = TrainConfig(**{k: v for k, v in options.items() if k in TRAINING})
    unlearn_given = {k.removeprefix("unlearn_"): v for k, v in options.items() if k not in TRAINING}
    unlearn_cfg = make_config(method, unlearn_given, where=unlearn_flag)
    METHODS.get_spec(method).check_forget(None)  # the poisoned samples are never a class
    cfg = BackdoorConfig(poison, target, trigger_size, trigger_value)
    chosen = check_rates(parse_rates(rate, rates))
    if lookup(PRUNING, prune, "pruning method").iterative:
        raise UsageError(
            f"--prune {prune} is iterative; here each sparsity is pruned once from one dense model",
            hint="use a one-shot method (omp, synflow, random), or a recipe with prune.method imp",
        )
    dev = resolve_device(device)
    start = artifacts.load_model(model, dev) if model else None
    if start is not None:
        if rate is not None or rates is not None:
            raise UsageError(
                "--rate/--rates train new Trojan models; with --model the given one is cleansed",
                hint="leave out --rates, or leave out --model",
            )
        splits = splits_of(start, data, dev)
        arch = start.arch
        chosen = (float(start.meta.get(S.SPARSITY, 0)),)
    else:
        arch = arch or "resnet18"
        parse_arch(arch)
        splits = load_splits(
            dataset or "digits",
            data_dir=data,
            device=dev,
            val_fraction=val_fraction,
            seed=seed,
            subset=subset,
        )
        if any(r > 0 for r in chosen):  # checks the rewind epoch and scope before anything is trained
            PruneConfig(prune, rate=max(chosen), rewind_epoch=rewind_epoch, scope=scope).resolved(
                train.epochs
            )
    cfg.trigger(splits)  # checks the trigger before anything is written
    own_values = {k: v for k, v in given.items() if k not in options}
    command = command_line(
        "smu backdoor-cleanse",
        own_values,
        train,
        unlearn_cfg,
        prefix=lambda cfg, name: "unlearn" if cfg is unlearn_cfg and name in TRAINING else "",
    )
    out = Path(out) if out else default_out("backdoor", splits.info.name, arch, folder_name(method))
    attack = Attack.prepare(splits, cfg, forget_seed)
    with threads_for(threads):  # timed with the thread count the run will use
        plan = backdoor_estimate(attack, arch, train, method, unlearn_cfg, chosen, prune, rewind_epoch, start)
    if dry_run:
        return {"dry_run": True, "method": method, "out": str(out), "estimate": plan.as_dict()}
    (reporter or Reporter()).plan(plan)
    tags = {"command": "backdoor-cleanse", "method": method, "scenario": f"backdoor:{poison}", "model": arch}
    tags |= {"dataset": splits.info.name, "sparsity": ",".join(f"{r:g}" for r in chosen), "seed": seed}
    with (
        run_folder(
            out, force=force, amp=amp, compile=compile, sync_bn=sync_bn, threads=threads, reporter=reporter
        ) as folder,
        tracked(tracking, folder, command, tags, dev) as track,
    ):
        result = run_backdoor(
            splits,
            arch,
            train,
            cfg,
            method,
            unlearn_cfg,
            rates=chosen,
            prune=prune,
            out=folder,
            seed=seed,
            forget_seed=forget_seed,
            device=dev,
            start=start,
            rewind_epoch=rewind_epoch,
            scope=scope,
            reporter=reporter,
            command=command,
        )
        result["estimate"] = plan.as_dict()
        result["manifest"] = write_manifest(folder, command, given, result, dev, track.tags)
        track.done(result, folder)
    return result


TRAINING = {f.name for f in fields(TrainConfig)}


def backdoor_estimate(
    attack: Attack,
    arch: str,
    train: TrainConfig,
    method: str,
    unlearn_cfg: Any,
    rates: tuple[float, ...],
    prune: str,
    rewind_epoch: int,
    start: LoadedModel | None,
) -> Estimate:
    """What a cleanse will train: the dense Trojan model and one pruned model per rate above 0 (unless
    ``start`` is the Trojan model), then ``method`` on the poisoned images of each; every model is
    measured before and after."""
    splits = attack.poisoned
    n, poisoned = len(splits.train), len(attack.poison_set)
    pruned = sum(r > 0 for r in rates)
    each = train.epochs - (0 if PRUNING[prune].at_init else rewind_epoch)
    trained = 0 if start is not None else n * (train.epochs + pruned * each)
    models = 1 if start is not None else len(rates)
    fed = METHODS.get_spec(method).work(unlearn_cfg, poisoned, n - poisoned)
    what = f"{method} on {poisoned:,} poisoned images, {models} model(s)"
    if start is None:
        what = f"Trojan model trained {train.epochs} epochs, {pruned} pruned and retrained; then {what}"
    if fed is None:
        return Estimate(what, trained, None, None, str(resolve_device("auto")))
    with torch.random.fork_rng():  # the Trojan model is initialised from the seed later, as before
        model = start.model if start is not None else build_for(arch, splits.info).to(splits.train.device)
    checks = len(splits.test) + len(splits.val)
    return estimate(model, splits, train.batch_size, what, trained + models * fed[1], 3 * models * checks)


def unlearn_flag(name: str) -> str:
    """How the unlearning method's options are spelled here: --unlearn-epochs, but --alpha."""
    return f"--unlearn-{name.replace('_', '-')}" if name in TRAINING else flag_of(name)


def parse_rates(rate: float | None, rates: str | Sequence[float] | None) -> tuple[float, ...]:
    if rate is not None and rates is not None:
        raise UsageError(
            "give --rate or --rates, not both", hint="--rates 0,0.9 compares dense and 90% sparse"
        )
    if rate is not None:
        return (rate,)
    if rates is None:
        return (0.0,)
    if not isinstance(rates, str):
        return tuple(float(r) for r in rates)
    return parse_list(float, tuple, rates, flag="--rates")


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
            "revived": result["revived"],
            "model_before": str(trojan.path),
            "model_after": result["model"],
            "unlearn": result["metrics"],
            "method": method,
        }
