"""`smu backdoor-cleanse`: plant a Trojan by poisoning, then remove it by unlearning the poisoned samples."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from smu.commands import common as c
from smu.commands.generate import config_options, method_options, parse_list
from smu.commands.unlearn import Method
from smu.commands.wrap import Alias, cli
from smu.data import load_splits, splits_of
from smu.engine import Reporter, TrainConfig, resolve_device
from smu.errors import UsageError
from smu.io import artifacts
from smu.io import schema as S
from smu.models import ARCHS
from smu.options import SEED_MAX, field_help, flag_of
from smu.pruning import METHODS as PRUNING
from smu.pruning import PruneConfig
from smu.registry import lookup
from smu.ui import table
from smu.unlearning import METHODS, make_config
from smu.workflows.backdoor import BackdoorConfig, check_rates, run_backdoor

HELP = field_help(BackdoorConfig)
D = BackdoorConfig()
EPILOG = (
    "Examples:\n\n"
    "smu backdoor-cleanse --dataset digits --arch cnn --epochs 10 --rewind-epoch 1 --rates 0,0.9\n\n"
    "smu backdoor-cleanse --model trojan/model.safetensors --poison 10% --method l1-sparse --json\n\n"
    "The unlearning method's training options carry an unlearn- prefix (--unlearn-epochs, --unlearn-lr); "
    "the plain ones train the Trojan model."
)
TRAINING = {f.name for f in dataclasses.fields(TrainConfig)}


def attack(name: str) -> Any:
    return typer.Option(flag_of(name), help=HELP[name], rich_help_panel="Attack")


def backdoor_cleanse(
    poison: Annotated[str, attack("poison")] = D.poison,
    target: Annotated[int, attack("target")] = D.target,
    trigger_size: Annotated[int, attack("trigger_size")] = D.trigger_size,
    trigger_value: Annotated[int | None, attack("trigger_value")] = None,
    forget_seed: Annotated[
        int,
        typer.Option(
            "--forget-seed",
            min=0,
            max=SEED_MAX,
            help="Seed that draws the poisoned samples.",
            rich_help_panel="Attack",
        ),
    ] = 0,
    prune: Annotated[
        str,
        typer.Option(
            "--prune",
            help="How the sparse Trojan models are pruned (a one-shot method).",
            rich_help_panel="Models",
        ),
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
            "--rewind-epoch",
            help="Rewind epoch after pruning (0 = initialisation).",
            rich_help_panel="Models",
        ),
    ] = 8,
    scope: Annotated[
        str, typer.Option("--scope", help="Weights pruned: conv or all.", rich_help_panel="Models")
    ] = "conv",
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Cleanse this Trojan model (with its mask) instead of training one; --poison and "
            "--forget-seed "
            "must match its training.",
            rich_help_panel="Models",
        ),
    ] = None,
    method: Method = "ft",
    arch: c.Arch = None,
    dataset: c.Dataset = None,
    data: c.DataDir = None,
    val_fraction: c.ValFraction = 0.1,
    subset: c.Subset = 0,
    device: c.Device = "auto",
    amp: c.Amp = False,
    compile: c.Compile = False,
    sync_bn: c.SyncBn = False,
    seed: c.Seed = 0,
    out: c.Out = None,
    force: c.Force = False,
    reporter: Reporter | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Poison the data, train Trojan model(s), unlearn the poisoned samples; SA and ASR before and after.

    ``options`` train the Trojan models (``epochs``, ``lr``...) and, prefixed ``unlearn_`` where the
    names clash (``unlearn_epochs``), set the unlearning method's. Returns what ``--json`` prints.
    """
    given = {k: v for k, v in locals().items() if k not in ("options", "reporter")} | options
    unlearning = method_fields()
    c.refuse_unknown(options, TRAINING | {f"unlearn_{n}" for n in TRAINING} | unlearning, "backdoor-cleanse")
    train = TrainConfig(**{k: v for k, v in options.items() if k in TRAINING})
    unlearn_given = {k.removeprefix("unlearn_"): v for k, v in options.items() if k not in TRAINING}
    unlearn_cfg = make_config(method, unlearn_given, where=unlearn_flag)
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
        lookup(ARCHS, arch, "architecture")
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
    command = c.command_line(
        "smu backdoor-cleanse",
        own_values,
        train,
        unlearn_cfg,
        prefix=lambda cfg, name: "unlearn" if cfg is unlearn_cfg and name in TRAINING else "",
    )
    out = Path(out) if out else c.default_out("backdoor", splits.info.name, arch, method)
    with c.run_folder(out, force=force, amp=amp, compile=compile, sync_bn=sync_bn) as folder:
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
        result["manifest"] = c.write_manifest(folder, command, given, result, dev)
    return result


def unlearn_flag(name: str) -> str:
    """How the unlearning method's options are spelled here: --unlearn-epochs, but --alpha."""
    return f"--unlearn-{name.replace('_', '-')}" if name in TRAINING else flag_of(name)


def method_fields() -> set[str]:
    return {f.name for spec in METHODS.values() for f in dataclasses.fields(spec.config)}


def parse_rates(rate: float | None, rates: str | list[float] | None) -> tuple[float, ...]:
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


def render(result: dict) -> list:
    p = result["poison"]
    title = (
        f"smu backdoor-cleanse --method {result['method']}: {p['size']} poisoned samples, "
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


def command(focus: str | None = None) -> Any:
    unlearning = method_options(
        dict(METHODS),
        focus=focus,
        panel="Cleanse",
        trainer_panel="Cleanse: training of the unlearning method",
        prefix="unlearn",
        clash=TRAINING,
    )
    return cli(
        backdoor_cleanse,
        render=render,
        paths=lambda r: [x["model_after"] for x in r["results"]],
        generated=config_options(TrainConfig, panel="Training of the Trojan model") + unlearning,
        aliases=(Alias("--unlearn", "method"),),
    )


def epilog() -> str:
    listing = "\n\n".join(f"{name}: {spec.summary}" for name, spec in METHODS.items())
    return f"Unlearning methods:\n\n{listing}\n\n{EPILOG}"
