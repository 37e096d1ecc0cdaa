"""`smu prune`: train, prune, rewind, retrain, and keep every round on disk.

Layout of a run folder::

    dense/model.safetensors            omp/imp: the dense model trained first
    dense/rewind-epoch-K.safetensors   its weights after K epochs (the rewind point)
    round-R/model.safetensors          the model after round R, with its mask beside it
    round-R/mask.safetensors
    manifest.json                      options, metrics, timings, versions
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smu import loggers
from smu.core.errors import ArtifactError, UsageError
from smu.core.masks import Mask, scope_share
from smu.core.progress import Estimate, epochs
from smu.core.registry import lookup
from smu.data import SOURCES, Splits, check_fits, load_splits, subset_meta
from smu.data.batches import Augment
from smu.execution import distributed
from smu.execution.engine import Checkpoint, Reporter, TrainConfig, accuracy, fit, resolve_device
from smu.io import artifacts, files, tensorfile
from smu.io import schema as S
from smu.io.artifacts import LoadedModel
from smu.io.files import digest
from smu.methods.pruning import METHODS, PruneConfig, PruneContext, prune_options
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


def prune(
    method: str = PruneConfig.method,
    rate: float | None = None,
    times: int | None = None,
    scope: str = PruneConfig.scope,
    rewind_epoch: int | None = None,
    model: str | Path | None = None,
    rewind_from: str | Path | None = None,
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
    """Prune a model: train dense, prune, rewind and retrain (omp, imp), or prune at init and train.

    ``model`` starts from a trained dense model instead of training one (``rewind_from``: the weights
    to rewind to, by default the rewind checkpoint saved beside it). ``options`` are the training
    options (``epochs=10``, ``lr=0.05``: the fields of ``TrainConfig``) and the method's own ones
    (``synflow_iterations=20``). Returns what ``smu prune --json`` prints; with ``dry_run``, only the
    plan and its time estimate (the model is built and timed for a few steps, nothing is written).
    ``log`` names experiment trackers to send the run to (README: Experiment tracking).
    """
    given = {k: v for k, v in locals().items() if k not in ("options", "reporter")} | options
    tracking = loggers.settings(log, log_dir, tracking_uri, wandb_project, wandb_entity, log_models)
    training = {f.name for f in fields(TrainConfig)}
    refuse_unknown(options, training | method_fields(), "prune")
    train = TrainConfig(**{k: v for k, v in options.items() if k in training})
    own = prune_options(method, {k: v for k, v in options.items() if k not in training})
    dev = resolve_device(device)
    start = artifacts.load_model(model, dev, option="--model") if model else None
    if start is not None:
        for flag, value, its in (("--arch", arch, start.arch), ("--dataset", dataset, start.dataset)):
            if value is not None and value != its:
                raise UsageError(
                    f"{flag} {value!r} does not match the --model's {its!r}",
                    hint=f"leave {flag} out to use the model's",
                )
        arch, dataset = start.arch, start.dataset
        if rewind_epoch is None and start.meta.get(S.REWIND_EPOCH):
            rewind_epoch = int(start.meta[S.REWIND_EPOCH])
        elif rewind_epoch is None and start.meta.get(S.IMPORTED_FROM):
            rewind_epoch = 0  # nothing to rewind to: the fine-tuning starts from the imported weights
    arch, dataset = arch or "resnet18", dataset or "digits"
    lookup(SOURCES, dataset, "dataset")  # a misspelt name first: it says more than a range check
    parse_arch(arch)
    rewind = artifacts.load_model(rewind_from, dev, option="--rewind-from") if rewind_from else None
    cfg = PruneConfig(
        method=method,
        rate=rate,
        times=times,
        scope=scope,
        rewind_epoch=PruneConfig.rewind_epoch if rewind_epoch is None else rewind_epoch,
        options=own,
    ).resolved(train.epochs)
    splits = load_splits(
        dataset, data_dir=data, device=dev, val_fraction=val_fraction, seed=seed, subset=subset
    )
    own_values = {k: v for k, v in given.items() if k not in options}
    command = command_line("smu prune", own_values, train, cfg.options)
    out = Path(out) if out else default_out("prune", dataset, arch, cfg.method)
    if dry_run:
        torch.manual_seed(seed)
        model = start.model.to(dev) if start is not None else build_for(arch, splits.info).to(dev)
        with threads_for(threads):  # timed with the thread count the run will use
            plan = prune_estimate(model, splits, train, cfg, start is not None)
        return {"dry_run": True, "method": cfg.method, "out": str(out), "estimate": plan.as_dict()}
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
        tracked(tracking, folder, command, prune_tags(cfg, arch, splits, seed), dev) as track,
    ):
        result = run_prune(
            splits,
            arch,
            train,
            cfg,
            out=folder,
            seed=seed,
            device=dev,
            start=start,
            rewind_from=rewind,
            reporter=reporter,
            command=command,
            resume=resume,
        )
        result["manifest"] = write_manifest(folder, command, given, result, dev, track.tags)
        track.done(result, folder)
    return result


def prune_tags(cfg: PruneConfig, arch: str, splits: Splits, seed: int) -> dict[str, Any]:
    """What a run table filters pruning runs by."""
    return {
        "command": "prune",
        "method": cfg.method,
        "dataset": splits.info.name,
        "model": arch,
        "seed": seed,
    }


def prune_estimate(
    model: nn.Module, splits: Splits, train: TrainConfig, cfg: PruneConfig, from_model: bool
) -> Estimate:
    """What a prune run will train: the dense model (omp and imp, unless ``from_model``), then each round
    from the rewind epoch (or from scratch, pruned at initialisation), every epoch on the train set; each
    model is measured on the test and validation sets."""
    at_init = METHODS[cfg.method].at_init
    dense = 0 if at_init or from_model else train.epochs
    each = train.epochs - (0 if at_init else cfg.rewind_epoch)
    rounds = f"{cfg.times} rounds of {epochs(each)}" if cfg.times > 1 else epochs(each)
    if at_init:
        work = f"{cfg.method} at initialisation, then {rounds}"
    elif dense:
        work = f"{cfg.method}: dense {epochs(dense)}, then {rounds} from epoch {cfg.rewind_epoch}"
    else:
        work = f"{cfg.method} of the --model, then {rounds} from epoch {cfg.rewind_epoch}"
    n = len(splits.train)
    models = cfg.times + (1 if dense else 0)
    return estimate(
        model,
        splits,
        train.batch_size,
        f"{work}, {n:,} images each",
        n * (dense + cfg.times * each),
        models * (len(splits.test) + len(splits.val)),
    )


MIN_SCOPE_SHARE = 0.05


def check_scope(model: nn.Module, scope: str, arch: str) -> None:
    """Refuse a scope that holds almost none of the model's weights: ``conv`` on a transformer is its
    patch embedding alone, ``linear`` on a CNN nothing but its head."""
    share = scope_share(model, scope)
    if share < MIN_SCOPE_SHARE:
        best = max(("conv", "linear"), key=lambda s: scope_share(model, s))
        raise UsageError(
            f"--scope {scope} covers {share:.1%} of the weights of {arch}",
            hint=f"prune its {'convolutions' if best == 'conv' else 'linear layers'} with --scope {best}",
        )


def method_fields() -> set[str]:
    """The options of every pruning method that has its own."""
    return {f.name for spec in METHODS.values() if spec.config for f in fields(spec.config)}


@dataclass
class Round:
    round: int
    sparsity: float
    """Percent of the scope's weights pruned."""
    test_acc: float
    val_acc: float
    model: str
    mask: str
    train_seconds: float
    images_per_second: float
    start_epoch: int | None
    """Where this round's training started: the rewind epoch, or a later checkpoint when resumed;
    None when the round was finished before and reused."""
    epochs_run: int


def base_meta(splits: Splits, arch: str, seed: int, command: str) -> dict[str, Any]:
    """The header fields every model of this run shares."""
    c, h, w = splits.info.input_shape
    return {
        S.ARCH: arch,
        S.DATASET: splits.info.name,
        S.NUM_CLASSES: splits.info.num_classes,
        S.INPUT_SHAPE: f"{c}x{h}x{w}",
        S.SEED: seed,
        S.VAL_FRACTION: splits.val_fraction,
        S.SPLIT_SEED: splits.split_seed,
        **subset_meta(splits),
        S.COMMAND: command,
    }


def run_prune(
    splits: Splits,
    arch: str,
    train: TrainConfig,
    cfg: PruneConfig,
    *,
    out: Path | str,
    seed: int = 0,
    device: str | torch.device = "cpu",
    start: LoadedModel | None = None,
    rewind_from: LoadedModel | None = None,
    reporter: Reporter | None = None,
    command: str = "",
    extra_meta: dict[str, Any] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Produce a sparse model with ``cfg.method`` and return the result as a JSON-ready dict.

    Every epoch checkpoints its state in the run folder. With ``resume``, finished phases (the dense
    model, each round) are read back and an interrupted one continues from its last epoch, giving the
    same bytes as an uninterrupted run.
    """
    out = Path(out)
    cfg = cfg.resolved(train.epochs)
    method = METHODS[cfg.method]
    reporter = reporter or Reporter()
    meta = base_meta(splits, arch, seed, command) | {S.PRUNE_METHOD: cfg.method} | (extra_meta or {})
    aug = Augment(splits.info.crop_pad, splits.info.flip)
    if start is not None and method.at_init:
        raise UsageError(
            f"--from does not apply to --method {cfg.method}: it prunes at initialisation",
            hint="use --from with omp or imp, or leave it out",
        )
    torch.manual_seed(seed)
    if start is not None:
        check_fits(start, splits, "--from")
        model = start.model.to(device)
    else:
        model = build_for(arch, splits.info).to(device)
    mask = Mask.ones(model, cfg.scope)
    check_scope(model, cfg.scope, arch)
    plan = None if reporter.planned() else prune_estimate(model, splits, train, cfg, start is not None)
    if plan is not None:  # inside a planned job (a recipe, a Trojan's training) the job's plan stands
        reporter.plan(plan)
    ctx = PruneContext(splits.info.input_shape, torch.Generator().manual_seed(seed), cfg.options)
    result: dict[str, Any] = {"method": cfg.method, "out": str(out), "estimate": plan and plan.as_dict()}

    if method.at_init:
        rewind_state, start_epoch, parent = None, 0, ""
        with METHODS.plugin_code(cfg.method):
            mask = method.choose(model, mask, cfg.pruned_after_round(mask), ctx)
        distributed.broadcast_(list(mask.tensors.values()))  # the same mask on every rank, to the bit
    else:
        rewind_state, dense, parent = dense_phase(
            model, splits, train, cfg, out, seed, aug, start, rewind_from, reporter, meta, resume
        )
        result["dense"] = dense
        start_epoch = cfg.rewind_epoch

    rounds: list[Round] = []
    run_key = digest({"train": asdict(train), "prune": asdict(cfg), "meta": meta, "dense": parent})
    for r in range(1, cfg.times + 1):
        folder = out / f"round-{r}"
        done = folder / "model.safetensors"
        seconds = ips = 0.0
        began, ran = None, 0
        if resume and done.is_file():
            finished = artifacts.load_model(done, next(model.parameters()).device)
            model.load_state_dict(finished.model.state_dict())
            mask, parent = finished.mask, finished.sha256
            reporter.note(f"round {r}/{cfg.times}: done before, reused")
        else:
            if not method.at_init:
                with METHODS.plugin_code(cfg.method):
                    mask = method.choose(model, mask, cfg.pruned_after_round(mask), ctx)
                distributed.broadcast_(list(mask.tensors.values()))
                model.load_state_dict(rewind_state)
            reporter.note(f"round {r}/{cfg.times}: {cfg.method} to sparsity {mask.percent():.2f}%")
            checkpoint = Checkpoint(folder / "checkpoint.safetensors", f"{run_key}-round-{r}")
            if not resume:
                checkpoint.clear()
            fitted = fit(
                model,
                splits.train,
                train,
                mask=mask,
                start_epoch=start_epoch,
                seed=seed,
                aug=aug,
                reporter=reporter,
                label=f"round {r}/{cfg.times}",
                checkpoint=checkpoint,
            )
            meta_r = meta | {
                S.PARENT: parent,
                S.PRUNE_ROUND: r,
                S.PRUNE_RATE: cfg.rate,
                S.PRUNE_REWIND_EPOCH: cfg.rewind_epoch if not method.at_init else "",
            }
            parent = artifacts.save_model(done, model, meta_r, mask=mask)
            checkpoint.clear()
            seconds, ips = fitted.seconds, fitted.images_per_second
            began, ran = fitted.start_epoch, fitted.epochs
        rounds.append(
            Round(
                r,
                mask.percent(),
                accuracy(model, splits.test),
                accuracy(model, splits.val),
                str(done),
                str(folder / "mask.safetensors"),
                seconds,
                ips,
                began,
                ran,
            )
        )
        reporter.note(
            f"round {r}: sparsity {rounds[-1].sparsity:.2f}%, test accuracy {rounds[-1].test_acc:.2f}%"
        )
        done_round = rounds[-1]
        loggers.series(
            "rounds",
            r,
            {"sparsity": done_round.sparsity, "test_acc": done_round.test_acc, "val_acc": done_round.val_acc},
        )

    last = rounds[-1]
    result.update(
        model=last.model,
        mask=last.mask,
        sparsity=last.sparsity,
        test_acc=last.test_acc,
        val_acc=last.val_acc,
        rounds=[asdict(r) for r in rounds],
        per_layer={name: 100 * fraction for name, fraction in mask.per_layer().items()},
        config={
            "prune": asdict(cfg),
            "train": asdict(train),
            "arch": arch,
            "dataset": splits.info.name,
            "seed": seed,
            "val_fraction": splits.val_fraction,
        },
    )
    return result


def dense_phase(
    model: nn.Module,
    splits: Splits,
    train: TrainConfig,
    cfg: PruneConfig,
    out: Path,
    seed: int,
    aug: Augment,
    start: LoadedModel | None,
    rewind_from: LoadedModel | None,
    reporter: Reporter,
    meta: dict[str, Any],
    resume: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """Train (or take) the dense model; return its rewind state, a summary and its hash."""
    if start is None:
        return train_dense(
            model, splits, train, cfg.rewind_epoch, out / "dense", seed, aug, reporter, meta, resume
        )
    if rewind_from is None and start.meta.get(S.IMPORTED_FROM) and not start.meta.get(S.REWIND):
        # Weights trained elsewhere have no earlier point to rewind to: prune them, then fine-tune
        # from them (the masked pretrained weights are the "rewind" state).
        reporter.note("imported model: pruned, then fine-tuned from its own weights")
        rewind_from = start
    rewind = rewind_from or find_rewind(start, cfg.rewind_epoch)
    if rewind.arch != start.arch:
        raise ArtifactError(
            f"--rewind-from {str(rewind.path)!r} is a {rewind.arch}, --from is a {start.arch}",
            hint="pass a rewind checkpoint of the same model",
        )
    dense = {
        "model": str(start.path),
        "test_acc": accuracy(model, splits.test),
        "val_acc": accuracy(model, splits.val),
        "train_seconds": 0.0,
        "images_per_second": None,
    }
    return clone_state(rewind.model), dense, start.sha256


def train_dense(
    model: nn.Module,
    splits: Splits,
    train: TrainConfig,
    rewind_epoch: int,
    folder: Path,
    seed: int,
    aug: Augment,
    reporter: Reporter,
    meta: dict[str, Any],
    resume: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """Train ``model`` densely and save it with its weights after ``rewind_epoch`` epochs beside it.

    Returns the rewind state, a summary (path, accuracy, time, throughput) and the model's sha256.
    With ``resume``, a dense model already saved is taken as is, and a cut-short training continues.
    """
    path, rewind_name = folder / "model.safetensors", f"rewind-epoch-{rewind_epoch}.safetensors"
    rewind_path = folder / rewind_name
    seconds = ips = 0.0
    began, ran = None, 0
    if resume and path.is_file() and rewind_path.is_file():
        model.load_state_dict(artifacts.load_model(path).model.state_dict())
        sha = files.sha256_file(path)
        reporter.note("dense model: done before, reused")
    else:
        checkpoint = Checkpoint(
            folder / "checkpoint.safetensors",
            digest({"train": asdict(train), "meta": meta, "rewind": rewind_epoch}),
        )
        if not resume:
            checkpoint.clear()
        if rewind_epoch == 0 and not (resume and rewind_path.is_file()):
            artifacts.save_model(rewind_path, model, meta | {S.EPOCH: 0})

        def keep_rewind_point(epoch: int, m: nn.Module) -> None:
            if epoch == rewind_epoch:  # written at once, so a resumed run past this epoch still has it
                artifacts.save_model(rewind_path, m, meta | {S.EPOCH: rewind_epoch})

        reporter.note("training the dense model")
        fitted = fit(
            model,
            splits.train,
            train,
            seed=seed,
            aug=aug,
            reporter=reporter,
            label="dense",
            on_epoch_end=keep_rewind_point,
            checkpoint=checkpoint,
        )
        sha = artifacts.save_model(
            path,
            model,
            meta | {S.EPOCH: train.epochs, S.REWIND: rewind_name, S.REWIND_EPOCH: rewind_epoch},
        )
        checkpoint.clear()
        seconds, ips = fitted.seconds, fitted.images_per_second
        began, ran = fitted.start_epoch, fitted.epochs
    dense = {
        "model": str(path),
        "test_acc": accuracy(model, splits.test),
        "val_acc": accuracy(model, splits.val),
        "train_seconds": seconds,
        "images_per_second": ips,
        "start_epoch": began,
        "epochs_run": ran,
    }
    reporter.note(f"dense: test accuracy {dense['test_acc']:.2f}%")
    return tensorfile.read_tensors(rewind_path), dense, sha


def find_rewind(start: LoadedModel, epoch: int) -> LoadedModel:
    """The rewind checkpoint that ``smu prune`` saved beside a dense model."""
    name = start.meta.get(S.REWIND)
    if not name or start.meta.get(S.REWIND_EPOCH) != str(epoch):
        raise ArtifactError(
            f"--from {str(start.path)!r} has no rewind checkpoint for epoch {epoch}",
            hint="pass one with --rewind-from (any model file of the same architecture; "
            "the model itself means no rewinding)",
        )
    return artifacts.load_model(
        start.path.with_name(name), start.model.normalize.mean.device, option="--rewind-from"
    )


def clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_models(
    splits: Splits,
    arch: str,
    train: TrainConfig,
    rates: tuple[float, ...] | list[float],
    out: Path,
    *,
    method: str = "omp",
    options: Any = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    rewind_epoch: int = 8,
    scope: str = "conv",
    reporter: Reporter | None = None,
    command: str = "",
    extra_meta: dict[str, Any] | None = None,
    resume: bool = False,
) -> list[tuple[float, Path]]:
    """One dense model, and a model per non-zero rate pruned with the one-shot ``method``:
    [(rate, model path), ...].

    The dense model is trained once (``out/dense``). A method that prunes trained weights rewinds it
    and retrains for each rate, so dense and sparse models share everything but the pruning; one that
    prunes at initialisation starts each rate from the same seeded initialisation
    (``out/rate-R/round-1``). Iterative methods (imp) take ``run_prune`` itself.
    """
    reporter = reporter or Reporter()
    spec = METHODS.get_spec(method)
    if spec.iterative:
        raise UsageError(
            f"--prune {method} is iterative; here every rate is pruned once from the dense model",
            hint="use a one-shot method (omp), or a recipe with prune.method imp",
        )
    pruned = [r for r in rates if r > 0]
    cfgs = [
        PruneConfig(method, rate=r, rewind_epoch=rewind_epoch, scope=scope, options=options).resolved(
            train.epochs
        )
        for r in pruned
    ]
    torch.manual_seed(seed)
    model = build_for(arch, splits.info).to(device)
    meta = base_meta(splits, arch, seed, command) | (extra_meta or {})
    dense = out / "dense" / "model.safetensors"
    train_dense(
        model,
        splits,
        train,
        rewind_epoch if pruned and not spec.at_init else 0,
        dense.parent,
        seed,
        Augment(splits.info.crop_pad, splits.info.flip),
        reporter,
        meta,
        resume,
    )
    models = [(0.0, dense)] if 0.0 in rates else []
    for cfg in cfgs:
        # run_prune retrains the model it starts from in place, so each rate starts from its own copy.
        result = run_prune(
            splits,
            arch,
            train,
            cfg,
            out=out / f"rate-{cfg.rate:g}",
            seed=seed,
            device=device,
            start=None if spec.at_init else artifacts.load_model(dense, device),
            reporter=reporter,
            command=command,
            extra_meta=extra_meta,
            resume=resume,
        )
        models.append((cfg.rate, Path(result["model"])))
    return models
