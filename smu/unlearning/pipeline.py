"""`smu unlearn` as a library call: run a method, time it (RTE), save the result, evaluate it."""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smu import artifacts, distributed
from smu import schema as S
from smu.artifacts import LoadedModel, digest
from smu.data import Splits
from smu.data.forget import ForgetSet
from smu.engine import Checkpoint, Reporter, params_finite, synchronize
from smu.errors import DivergedError, SmuWarning
from smu.evaluation import compare
from smu.masks import Mask
from smu.unlearning import METHODS, Context, UnlearnData
from smu.unlearning.base import frozen_copy


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
    command: str = "",
    resume: bool = False,
    on_epoch_end: Callable[[int, nn.Module], None] | None = None,
) -> dict[str, Any]:
    """Unlearn ``forget_set`` from ``loaded`` with ``method``; write the model and return the result.

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
    remask(method, model, loaded.mask)
    distributed.broadcast_model(model)  # rank 0's result is the result, bit for bit, on every rank
    if not params_finite(model):
        raise DivergedError(
            f"{method} produced NaN or Inf weights",
            hint="lower its step size (--alpha, --lr); nothing was written",
        )
    meta = {k: v for k, v in loaded.meta.items() if k in (*S.MODEL_IDENTITY, *S.SPLIT)}
    meta |= {
        S.SEED: seed,
        S.COMMAND: command,
        S.PARENT: loaded.sha256,
        S.UNLEARN_METHOD: method,
        S.UNLEARN_CONFIG: json.dumps(hyper, sort_keys=True),
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
        "config": hyper,
        "forget": forget_set.summary() | {"path": str(out / "forget.safetensors")},
        "sparsity": loaded.mask.sparsity() if loaded.mask is not None else 0.0,
        "mask": str(out / "mask.safetensors") if loaded.mask is not None else None,
        "parent": str(loaded.path),
        # Where training resumed (0: a fresh run) and what it ran; None for methods that do not train.
        "start_epoch": ctx.fits[0].start_epoch if ctx.fits else None,
        "epochs_run": sum(f.epochs for f in ctx.fits) if ctx.fits else None,
        "extras": {name: str(out / name) for name in ctx.extras},
        "metrics": None,
        "reference": None,
        "gap": None,
    }
    if evaluate:
        ref_model = reference.model if reference is not None else None
        result |= compare(model, splits, forget_set, ref_model, features=features)
        result["reference_model"] = str(reference.path) if reference is not None else None
    return result


def remask(method: str, model: nn.Module, mask: Mask | None) -> None:
    """Hold the sparsity invariant whatever the method did: pruned weights it revived (a plug-in that
    changed weights without re-applying the mask) go back to 0, with one warning. The model is touched
    only then, so a method that kept them at 0 is saved bit for bit as it returned it."""
    revived = mask.revived(model) if mask is not None else 0
    if revived:
        mask.apply(model)
        warnings.warn(
            f"method {method!r} revived {revived:,} pruned weights; they were set back to 0",
            SmuWarning,
            stacklevel=2,
        )
