"""`smu prune`: make a sparse model with OMP, IMP, SynFlow or random pruning."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smu import artifacts
from smu.commands import common as c
from smu.data import load_splits
from smu.engine import resolve_device, runtime
from smu.errors import UsageError
from smu.models import ARCHS
from smu.pruning import PruneConfig
from smu.pruning.pipeline import run_prune
from smu.registry import field_help, lookup
from smu.ui import emit, reporting, table

HELP = field_help(PruneConfig)
D = PruneConfig()


def option(name: str, *flags: str) -> typer.models.OptionInfo:
    return typer.Option(
        *(flags or (f"--{name.replace('_', '-')}",)), help=HELP[name], rich_help_panel="Pruning"
    )


EPILOG = (
    "Examples:\n\n"
    "smu prune --dataset digits --arch resnet20 --method omp --rate 0.9 --epochs 4 --rewind-epoch 1\n\n"
    "smu prune --method imp --rate 0.2 --times 5 --json\n\n"
    "smu prune --method synflow --rate 0.95 -q"
)


@c.errors_handled
def prune(
    ctx: typer.Context,
    method: Annotated[str, option("method", "--method", "-m")] = D.method,
    rate: Annotated[float | None, option("rate")] = None,
    times: Annotated[int | None, option("times")] = None,
    scope: Annotated[str, option("scope")] = D.scope,
    rewind_epoch: Annotated[
        int | None,
        typer.Option(
            "--rewind-epoch",
            help=HELP["rewind_epoch"] + " (default: 8, or the --from model's)",
            rich_help_panel="Pruning",
        ),
    ] = None,
    synflow_iterations: Annotated[int, option("synflow_iterations")] = D.synflow_iterations,
    from_: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Start from this trained dense model.safetensors instead of training one (omp, imp).",
            rich_help_panel="Model",
        ),
    ] = None,
    rewind_from: Annotated[
        Path | None,
        typer.Option(
            "--rewind-from",
            help="With --from: the weights to rewind to (default: the rewind checkpoint saved beside it).",
            rich_help_panel="Model",
        ),
    ] = None,
    arch: c.Arch = None,
    dataset: c.Dataset = None,
    data: c.DataDir = None,
    val_fraction: c.ValFraction = 0.1,
    epochs: c.Epochs = c.DEFAULT_TRAIN.epochs,
    lr: c.Lr = c.DEFAULT_TRAIN.lr,
    batch_size: c.BatchSize = c.DEFAULT_TRAIN.batch_size,
    momentum: c.Momentum = c.DEFAULT_TRAIN.momentum,
    weight_decay: c.WeightDecay = c.DEFAULT_TRAIN.weight_decay,
    schedule: c.Schedule = c.DEFAULT_TRAIN.schedule,
    decreasing_lr: c.DecreasingLr = "91,136",
    warmup: c.Warmup = c.DEFAULT_TRAIN.warmup,
    no_aug: c.NoAug = False,
    device: c.Device = "auto",
    amp: c.Amp = False,
    compile_model: c.Compile = False,
    seed: c.Seed = 0,
    out: c.Out = None,
    force: c.Force = False,
    resume: c.Resume = False,
    per_layer: Annotated[
        bool, typer.Option("--per-layer", help="Also show each layer's sparsity.", rich_help_panel="Output")
    ] = False,
    json_out: c.Json = False,
    quiet: c.Quiet = False,
) -> None:
    """Prune a model: train dense, prune, rewind and retrain (omp, imp), or prune at init and train."""
    dev = resolve_device(device)
    train = c.train_config(
        epochs, lr, batch_size, momentum, weight_decay, schedule, decreasing_lr, warmup, no_aug
    )
    start = artifacts.load_model(from_, dev, option="--from") if from_ else None
    if start is not None:
        for flag, given, own in (("--arch", arch, start.arch), ("--dataset", dataset, start.dataset)):
            if given is not None and given != own:
                raise UsageError(
                    f"{flag} {given!r} does not match the --from model's {own!r}",
                    hint=f"leave {flag} out to use the model's",
                )
        arch, dataset = start.arch, start.dataset
        if rewind_epoch is None and start.meta.get("smu.rewind_epoch"):
            rewind_epoch = int(start.meta["smu.rewind_epoch"])
    arch, dataset = arch or "resnet18", dataset or "digits"
    rewind = artifacts.load_model(rewind_from, dev, option="--rewind-from") if rewind_from else None
    cfg = PruneConfig(
        method=method,
        rate=rate,
        times=times,
        scope=scope,
        rewind_epoch=D.rewind_epoch if rewind_epoch is None else rewind_epoch,
        synflow_iterations=synflow_iterations,
    ).resolved(train.epochs)
    lookup(ARCHS, arch, "architecture")
    splits = load_splits(dataset, data_dir=data, device=dev, val_fraction=val_fraction, seed=seed)
    out_dir = out or c.default_out("prune", dataset, arch, cfg.method)
    with (
        artifacts.run_dir(out_dir, force or resume) as out_dir,
        reporting(quiet) as reporter,
        runtime(amp, compile_model),
    ):
        result = run_prune(
            splits,
            arch,
            train,
            cfg,
            out=out_dir,
            seed=seed,
            device=dev,
            start=start,
            rewind_from=rewind,
            reporter=reporter,
            command=c.command_line(ctx),
            resume=resume,
        )
        result["manifest"] = str(
            artifacts.write_manifest(
                out_dir,
                {
                    "command": c.command_line(ctx),
                    "options": c.jsonable_params(ctx),
                    "result": result,
                    "versions": c.versions(dev),
                },
            )
        )
    emit(
        result,
        as_json=json_out,
        quiet=quiet,
        paths=[result["model"]],
        render=lambda: render(result, per_layer),
    )


def render(result: dict, per_layer: bool) -> list:
    def row(name: str, r: dict, sparsity: float) -> list:
        ips, model = r.get("images_per_second"), Path(r["model"])
        shown = model.relative_to(result["out"]) if model.is_relative_to(result["out"]) else model
        speed = f"{ips:,.0f}" if ips else None
        return [
            name,
            f"{sparsity:.4f}",
            r["test_acc"],
            r.get("val_acc"),
            f"{r['train_seconds']:.1f}",
            speed,
            shown,
        ]

    rows = [row("dense", result["dense"], 0.0)] if "dense" in result else []
    rows += [row(f"round {r['round']}", r, r["sparsity"]) for r in result["rounds"]]
    columns = ["Round", "Sparsity", "Test %", "Val %", "Train s", "img/s", "Model"]
    shown = [table(f"smu prune --method {result['method']}: {result['out']}", columns, rows)]
    if per_layer:
        layers = [[name, f"{s:.4f}"] for name, s in result["per_layer"].items()]
        shown.append(table("Per-layer sparsity (final mask)", ["Layer", "Sparsity"], layers))
    return shown
