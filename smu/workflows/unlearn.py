"""`smu unlearn`: remove a forget set from a dense or sparse model with any registered method, time it
(RTE), save the result with its mask and provenance, and evaluate it against a reference."""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smu import loggers
from smu.core.errors import DivergedError, SmuWarning, UsageError
from smu.core.masks import Mask
from smu.core.progress import Estimate
from smu.data import Splits
from smu.data.forget import ForgetSet
from smu.evaluation import compare
from smu.evaluation.metrics import check_needs, measure, metric_names
from smu.execution import distributed
from smu.execution.engine import Checkpoint, Reporter, params_finite, resolve_device, synchronize
from smu.io import artifacts
from smu.io import schema as S
from smu.io.artifacts import LoadedModel
from smu.io.files import digest
from smu.methods.unlearning import METHODS, Context, UnlearnData, UnlearnMethod, folder_name, make_config
from smu.methods.unlearning.base import frozen_copy
from smu.workflows.common import (
    command_line,
    default_out,
    estimate,
    run_folder,
    threads_for,
    tracked,
    write_manifest,
)
from smu.workflows.evaluate import mia_feature_list, without_metrics
from smu.workflows.subject import open_subject


def unlearn(
    model: str | Path,
    forget: str | Path,
    method: str,
    config: Any = None,
    *,
    mask: str | Path | None = None,
    reference: str | Path | None = None,
    no_eval: bool = False,
    mia_features: str | Sequence[str] = "confidence",
    metrics: str | Sequence[str] | None = None,
    metric_seed: int = 0,
    forget_seed: int = 0,
    data: str | Path | None = None,
    device: str = "auto",
    amp: bool = False,
    compile: bool = False,
    sync_bn: bool = False,
    threads: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    force: bool = False,
    resume: bool = False,
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
    """Unlearn a forget set from a dense or sparse model with any registered method.

    The method's hyper-parameters are ``config`` (its config dataclass, e.g. ``GAConfig(epochs=3)``)
    or keyword ``options`` by the names of its fields (``epochs=3``, ``alpha=1e-8``); those not given
    keep the method's defaults. ``forget`` is a spec (``class:3``, ``random:10%``) or a
    forget.safetensors. Returns what ``smu unlearn --json`` prints; with ``dry_run``, only the plan and
    its time estimate (nothing is written). ``metrics`` adds extra metrics to the evaluation (as
    ``smu eval``'s, under ``result["extra"]``). ``log`` names experiment trackers (``mlflow``,
    ``tensorboard``, ``wandb``, ``csv``) to send the run to, with the options of each (README:
    Experiment tracking).
    """
    given = {k: v for k, v in locals().items() if k not in ("options", "reporter", "config")} | options
    given = without_metrics(given) if not metrics else given
    extra = metric_names(metrics)
    if extra and no_eval:
        raise UsageError("--metrics adds to the evaluation, which --no-eval skips", hint="drop one of them")
    check_needs(extra, reference is not None)
    if config is not None:
        options = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)} | options
    cfg = make_config(method, options)  # every option checked before anything is loaded
    tracking = loggers.settings(log, log_dir, tracking_uri, wandb_project, wandb_entity, log_models)
    dev = resolve_device(device)
    subject = open_subject(
        model,
        forget,
        device=dev,
        forget_seed=forget_seed,
        mask=mask,
        reference=reference,
        data=data,
        method=method,
    )
    loaded = subject.loaded
    own_values = {k: v for k, v in given.items() if k not in options}
    command = command_line("smu unlearn", own_values, cfg)
    out = Path(out) if out else default_out("unlearn", loaded.dataset, loaded.arch, folder_name(method))
    if dry_run:
        data = UnlearnData.of(subject.splits, subject.forget)
        spec, has_reference = METHODS.get_spec(method), subject.reference is not None
        with threads_for(threads):  # timed with the thread count the run will use
            plan = unlearn_estimate(spec, cfg, loaded.model, data, subject.splits, not no_eval, has_reference)
        return {"dry_run": True, "method": method, "out": str(out), "estimate": plan.as_dict()}
    with (
        run_folder(
            out,
            force=force or resume,
            amp=amp,
            compile=compile,
            sync_bn=sync_bn,
            threads=threads,
            reporter=reporter,
            resumable=True,
        ) as folder,
        tracked(tracking, folder, command, run_tags(loaded, method, subject.forget, seed), dev) as track,
    ):
        result = run_unlearn(
            loaded,
            subject.splits,
            subject.forget,
            method,
            cfg,
            out=folder,
            seed=seed,
            reporter=reporter,
            reference=subject.reference,
            evaluate=not no_eval,
            features=mia_feature_list(mia_features),
            metrics=extra,
            metric_seed=metric_seed,
            command=command,
            resume=resume,
        )
        result["manifest"] = write_manifest(folder, command, given, result, dev, track.tags)
        track.done(result, folder)
    return result


def run_tags(loaded: LoadedModel, method: str, forget_set: ForgetSet, seed: int) -> dict[str, Any]:
    """What a run table filters unlearning runs by."""
    sparsity = loaded.mask.percent() if loaded.mask is not None else 0.0
    return {
        "command": "unlearn",
        "method": method,
        "scenario": forget_set.spec,
        "dataset": loaded.dataset,
        "model": loaded.arch,
        "sparsity": f"{sparsity:.1f}",
        "seed": seed,
    }


def run_unlearn(
    loaded: LoadedModel,
    splits: Splits,
    forget_set: ForgetSet,
    method: str,
    cfg: Any,
    *,
    out: Path | str,
    seed: int = 0,
    reporter: Reporter | None = None,
    reference: LoadedModel | None = None,
    evaluate: bool = True,
    features: tuple[str, ...] = ("confidence",),
    metrics: tuple[str, ...] = (),
    metric_seed: int = 0,
    command: str = "",
    resume: bool = False,
    on_epoch_end: Callable[[int, nn.Module], None] | None = None,
) -> dict[str, Any]:
    """Unlearn ``forget_set`` from ``loaded`` with ``method``; write the model and return the result.
    ``metrics``: extra metrics of the evaluation (:mod:`smu.evaluation.metrics`), the random model drawn
    from ``metric_seed``.

    Training methods checkpoint every epoch in ``out``; with ``resume`` an interrupted run continues
    from its last epoch (RTE then counts only the resumed part).
    """
    out = Path(out)
    spec = METHODS.get_spec(method)
    model = loaded.model
    data = UnlearnData.of(splits, forget_set)
    hyper = dataclasses.asdict(cfg)
    key = digest(
        {
            "method": method,
            "config": hyper,
            "parent": loaded.sha256,
            "forget": forget_set.sha256,
            "seed": seed,
        }
    )
    checkpoint = Checkpoint(out / "checkpoint.safetensors", key)
    if not resume:
        checkpoint.clear()
    ctx = Context(
        arch=loaded.arch,
        mask=loaded.mask,
        seed=seed,
        reporter=reporter or Reporter(),
        checkpoint=checkpoint,
        original=frozen_copy(model) if "original" in spec.needs else None,
        model_meta=loaded.meta,
        model_sha256=loaded.sha256,
        on_epoch_end=on_epoch_end,
    )
    plan = None  # inside a planned job (a recipe, an audit, a study) the job's plan stands
    if not ctx.reporter.planned():
        plan = unlearn_estimate(spec, cfg, model, data, splits, evaluate, reference is not None)
    if plan is not None and plan.seconds is not None:  # a function of the user's: nothing to say ahead
        ctx.reporter.plan(plan)
    device = next(model.parameters()).device
    if spec.ddp and distributed.active():
        ctx.reporter.note(f"{method} on {distributed.world_size()} ranks: {spec.ddp}")
    torch.manual_seed(seed)
    # RTE: the unlearning step alone; data is already in memory and evaluation comes after.
    synchronize(device)
    start = time.perf_counter()
    with METHODS.plugin_code(method):
        model = spec.run(model, data, cfg, ctx)
    synchronize(device)
    rte = time.perf_counter() - start
    distributed.broadcast_model(model)  # rank 0's result is the result, bit for bit, on every rank
    if not params_finite(model):  # before remask: a NaN at a pruned weight is divergence, not revival
        lower = "your function's step size" if spec.code else "its step size (--alpha, --lr)"
        raise DivergedError(
            f"{method} produced NaN or Inf weights", hint=f"lower {lower}; nothing was written"
        )
    revived = remask(method, model, loaded.mask)
    code = {"code_sha256": spec.code["sha256"]} if spec.code else {}  # a user's function: which code ran
    meta = {k: v for k, v in loaded.meta.items() if k in (*S.MODEL_IDENTITY, *S.SPLIT)}
    meta |= {
        S.SEED: seed,
        S.COMMAND: command,
        S.PARENT: loaded.sha256,
        S.UNLEARN_METHOD: method,
        S.UNLEARN_CONFIG: json.dumps(hyper | code, sort_keys=True),
        S.FORGET_SHA256: forget_set.sha256,
        S.FORGET_SPEC: forget_set.spec,
    }
    model_path = out / "model.safetensors"
    artifacts.save_model(model_path, model, meta, mask=loaded.mask)
    for name, write in ctx.extras.items():
        write(out / name)
    checkpoint.clear()
    forget_set.save(out / "forget.safetensors")
    result: dict[str, Any] = {
        "model": str(model_path),
        "method": method,
        "rte_s": rte,
        "estimate": plan and plan.as_dict(),
        "config": hyper,
        "forget": forget_set.summary() | {"path": str(out / "forget.safetensors")},
        "sparsity": loaded.mask.percent() if loaded.mask is not None else 0.0,
        "mask": str(out / "mask.safetensors") if loaded.mask is not None else None,
        "parent": str(loaded.path),
        # Where training resumed (0: a fresh run) and what it ran; None for methods that do not train.
        "start_epoch": ctx.fits[0].start_epoch if ctx.fits else None,
        "epochs_run": sum(f.epochs for f in ctx.fits) if ctx.fits else None,
        "extras": {name: str(out / name) for name in ctx.extras},
        # Pruned weights the method left non-zero, set back to 0 before saving (0 for a dense model).
        "revived": revived,
        # A user's function: its spec, file and that file's sha256 (None for a registered method).
        "code": dict(spec.code) or None,
        "metrics": None,
        "reference": None,
        "gap": None,
    }
    if evaluate:
        ref_model = reference.model if reference is not None else None
        result |= compare(model, splits, forget_set, ref_model, features=features)
        result["reference_model"] = str(reference.path) if reference is not None else None
        if metrics:
            result["extra"] = measure(
                metrics, model, splits, forget_set, arch=loaded.arch, reference=ref_model, seed=metric_seed
            )
    return result


def unlearn_estimate(
    spec: UnlearnMethod,
    cfg: Any,
    model: nn.Module,
    data: UnlearnData,
    splits: Splits,
    evaluate: bool = True,
    reference: bool = False,
) -> Estimate:
    """What an unlearning run will feed the model (:meth:`UnlearnMethod.work`), then the evaluation of the
    result (and of the reference) on the train, validation and test sets."""
    work = spec.work(cfg, len(data.forget), len(data.retain))
    # Only a run that is evaluated counts the test set (a tuning trial must not even look at it).
    seen = (1 + reference) * (len(splits.train) + len(splits.val) + len(splits.test)) if evaluate else 0
    if work is None:
        return Estimate(f"{spec.name}: its own code", 0, None, None, str(next(model.parameters()).device))
    what, images = work
    return estimate(model, splits, getattr(cfg, "batch_size", 64), f"{spec.name}: {what}", images, seen)


def remask(method: str, model: nn.Module, mask: Mask | None) -> int:
    """Hold the sparsity invariant whatever the method did: pruned weights it revived (a plug-in or a
    user's function that changed weights without re-applying the mask) go back to 0, with one warning;
    returns how many. The model is touched only then, so a method that kept them at 0 is saved bit for
    bit as it returned it."""
    revived = mask.revived(model) if mask is not None else 0
    if revived:
        mask.apply(model)
        warnings.warn(
            f"method {method!r} revived {revived:,} pruned weights; they were set back to 0",
            SmuWarning,
            stacklevel=2,
        )
    return revived
