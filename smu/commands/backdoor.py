"""`smu backdoor-cleanse`: plant a Trojan by poisoning, then remove it by unlearning the poisoned samples."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smu import artifacts
from smu.backdoor import BackdoorConfig, run_backdoor
from smu.commands import common as c
from smu.commands.unlearn import method_option
from smu.data import load_splits
from smu.engine import resolve_device, runtime
from smu.errors import UsageError
from smu.models import ARCHS
from smu.pruning import PruneConfig
from smu.registry import field_help, lookup
from smu.ui import emit, reporting, table
from smu.unlearning import make_config

HELP = field_help(BackdoorConfig)
EPILOG = (
    "Examples:\n\n"
    "smu backdoor-cleanse --dataset digits --arch cnn --epochs 10 --rewind-epoch 1 --rates 0,0.9\n\n"
    "smu backdoor-cleanse --model trojan/model.safetensors --poison 10% --unlearn l1-sparse --json"
)


def attack_option(name: str, flag: str | None = None) -> typer.models.OptionInfo:
    return typer.Option(flag or f"--{name.replace('_', '-')}", help=HELP[name], rich_help_panel="Attack")


@c.errors_handled
def cleanse(
    ctx: typer.Context,
    poison: Annotated[str, attack_option("poison")] = "10%",
    target: Annotated[int, attack_option("target")] = 0,
    trigger_size: Annotated[int, attack_option("trigger_size")] = 4,
    trigger_value: Annotated[int | None, attack_option("trigger_value")] = None,
    forget_seed: Annotated[
        int,
        typer.Option("--forget-seed", help="Seed that draws the poisoned samples.", rich_help_panel="Attack"),
    ] = 0,
    prune: Annotated[
        str,
        typer.Option("--prune", help="How sparse Trojan models are made (omp).", rich_help_panel="Models"),
    ] = "omp",
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate", help="One sparsity to cleanse at (same as --rates R).", rich_help_panel="Models"
        ),
    ] = None,
    rates: Annotated[
        str | None,
        typer.Option(
            "--rates",
            help="Comma-separated sparsities to compare, 0 = dense (default: 0).",
            rich_help_panel="Models",
        ),
    ] = None,
    rewind_epoch: Annotated[
        int,
        typer.Option(
            "--rewind-epoch", help="OMP rewind epoch (0 = initialisation).", rich_help_panel="Models"
        ),
    ] = 8,
    scope: Annotated[
        str, typer.Option("--scope", help="Weights pruned: conv or all.", rich_help_panel="Models")
    ] = "conv",
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Cleanse this Trojan model (with its mask) instead "
            "of training one; --poison and --forget-seed must match its "
            "training.",
            rich_help_panel="Models",
        ),
    ] = None,
    unlearn: Annotated[
        str,
        typer.Option(
            "--unlearn",
            help="Unlearning method: ft, l1-sparse, ga, ff, iu or retrain.",
            rich_help_panel="Cleanse",
        ),
    ] = "ft",
    unlearn_epochs: Annotated[int | None, method_option("epochs", "--unlearn-epochs", "Cleanse")] = None,
    unlearn_lr: Annotated[float | None, method_option("lr", "--unlearn-lr", "Cleanse")] = None,
    unlearn_batch_size: Annotated[
        int | None, method_option("batch_size", "--unlearn-batch-size", "Cleanse")
    ] = None,
    alpha: Annotated[float | None, method_option("alpha", panel="Cleanse")] = None,
    no_l1_epochs: Annotated[int | None, method_option("no_l1_epochs", panel="Cleanse")] = None,
    fisher_batch_size: Annotated[int | None, method_option("fisher_batch_size", panel="Cleanse")] = None,
    iu_samples: Annotated[int | None, method_option("iu_samples", panel="Cleanse")] = None,
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
    json_out: c.Json = False,
    quiet: c.Quiet = False,
) -> None:
    """Poison the data, train Trojan model(s), unlearn the poisoned samples; SA and ASR before and after."""
    lookup({"omp": 0}, prune, "backdoor pruning method")
    unlearn_cfg = make_config(
        unlearn,
        {
            "epochs": unlearn_epochs,
            "lr": unlearn_lr,
            "batch_size": unlearn_batch_size,
            "alpha": alpha,
            "no_l1_epochs": no_l1_epochs,
            "fisher_batch_size": fisher_batch_size,
            "iu_samples": iu_samples,
        },
    )
    train = c.train_config(
        epochs, lr, batch_size, momentum, weight_decay, schedule, decreasing_lr, warmup, no_aug
    )
    cfg = BackdoorConfig(poison, target, trigger_size, trigger_value, parse_rates(rate, rates))
    lookup({"conv": 0, "all": 0}, scope, "pruning scope")
    dev = resolve_device(device)
    start = artifacts.load_model(model, dev) if model else None
    if start is not None:
        if rate is not None or rates is not None:
            raise UsageError(
                "--rate/--rates train new Trojan models; with --model the given one is cleansed",
                hint="leave out --rates, or leave out --model",
            )
        splits = start.load_splits(data, dev)
        arch = start.arch
    else:
        arch = arch or "resnet18"
        lookup(ARCHS, arch, "architecture")
        splits = load_splits(
            dataset or "digits", data_dir=data, device=dev, val_fraction=val_fraction, seed=seed
        )
    cfg.trigger(splits)  # checks the rates and the trigger before anything is written
    if start is None and any(r > 0 for r in cfg.rates):
        PruneConfig("omp", rate=max(cfg.rates), rewind_epoch=rewind_epoch).resolved(train.epochs)
    out_dir = out or c.default_out("backdoor", splits.info.name, arch, unlearn)
    with (
        artifacts.run_dir(out_dir, force) as out_dir,
        reporting(quiet) as reporter,
        runtime(amp, compile_model),
    ):
        result = run_backdoor(
            splits,
            arch,
            train,
            cfg,
            unlearn,
            unlearn_cfg,
            out=out_dir,
            seed=seed,
            forget_seed=forget_seed,
            device=dev,
            start=start,
            rewind_epoch=rewind_epoch,
            scope=scope,
            reporter=reporter,
            command=c.command_line(ctx),
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
    paths = [r["model_after"] for r in result["results"]]
    emit(result, as_json=json_out, quiet=quiet, paths=paths, render=lambda: render(result))


def parse_rates(rate: float | None, rates: str | None) -> tuple[float, ...]:
    if rate is not None and rates is not None:
        raise UsageError(
            "give --rate or --rates, not both", hint="--rates 0,0.9 compares dense and 90% sparse"
        )
    if rate is not None:
        return (rate,)
    if rates is None:
        return (0.0,)
    try:
        return tuple(float(r) for r in rates.replace(" ", "").split(",") if r)
    except ValueError:
        raise UsageError(
            f"--rates {rates!r} is not a comma-separated list of numbers", hint="e.g. --rates 0,0.9"
        ) from None


def render(result: dict) -> list:
    p = result["poison"]
    title = (
        f"smu backdoor-cleanse --unlearn {result['method']}: {p['size']} poisoned samples, "
        f"target {p['target']} → {result['out']}"
    )
    rows = [
        [
            f"{r['rate']:g}",
            f"{r['sparsity']:.4f}",
            r["sa_before"],
            r["asr_before"],
            r["sa_after"],
            r["asr_after"],
            r["rte_s"] / 60,
        ]
        for r in result["results"]
    ]
    columns = ["Rate", "Sparsity", "SA before %", "ASR before %", "SA after %", "ASR after %", "RTE (min)"]
    return [table(title, columns, rows)]
