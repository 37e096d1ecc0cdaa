"""`smu prune`: make a sparse model with any registered pruning method (OMP, IMP, SynFlow, random)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from smu import artifacts
from smu import schema as S
from smu.commands import common as c
from smu.commands.generate import Generated, config_options, described, field_option
from smu.commands.wrap import Alias, cli
from smu.data import load_splits
from smu.engine import Reporter, TrainConfig, resolve_device
from smu.errors import UsageError
from smu.models import ARCHS
from smu.options import field_help, flag_of
from smu.pruning import METHODS, PruneConfig, prune_options
from smu.pruning.pipeline import run_prune
from smu.registry import lookup
from smu.ui import table

HELP = field_help(PruneConfig)
D = PruneConfig()
EPILOG = (
    "Examples:\n\n"
    "smu prune --dataset digits --arch resnet20 --method omp --rate 0.9 --epochs 4 --rewind-epoch 1\n\n"
    "smu prune --method imp --rate 0.2 --times 5 --json\n\n"
    "smu prune --model runs/p/dense/model.safetensors --rate 0.95 -q"
)


def option(name: str, *flags: str, extra: str = "") -> Any:
    return typer.Option(*(flags or (flag_of(name),)), help=HELP[name] + extra, rich_help_panel="Pruning")


def prune(
    method: Annotated[str, option("method", "--method", "-m")] = D.method,
    rate: Annotated[float | None, option("rate")] = None,
    times: Annotated[int | None, option("times")] = None,
    scope: Annotated[str, option("scope")] = D.scope,
    rewind_epoch: Annotated[
        int | None, option("rewind_epoch", extra=" (default: 8, or the --model's)")
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Start from this trained dense model.safetensors instead of training one (omp, imp).",
            rich_help_panel="Model",
        ),
    ] = None,
    rewind_from: Annotated[
        Path | None,
        typer.Option(
            "--rewind-from",
            help="With --model: the weights to rewind to (default: the rewind checkpoint saved beside it).",
            rich_help_panel="Model",
        ),
    ] = None,
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
    resume: c.Resume = False,
    reporter: Reporter | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Prune a model: train dense, prune, rewind and retrain (omp, imp), or prune at init and train.

    ``options`` are the training options (``epochs=10``, ``lr=0.05``) and the method's own ones
    (``synflow_iterations=20``). Returns what ``smu prune --json`` prints.
    """
    given = {k: v for k, v in locals().items() if k not in ("options", "reporter")} | options
    training = {f.name for f in dataclasses.fields(TrainConfig)}
    c.refuse_unknown(options, training | method_fields(), "prune")
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
    arch, dataset = arch or "resnet18", dataset or "digits"
    rewind = artifacts.load_model(rewind_from, dev, option="--rewind-from") if rewind_from else None
    cfg = PruneConfig(
        method=method,
        rate=rate,
        times=times,
        scope=scope,
        rewind_epoch=D.rewind_epoch if rewind_epoch is None else rewind_epoch,
        options=own,
    ).resolved(train.epochs)
    lookup(ARCHS, arch, "architecture")
    splits = load_splits(
        dataset, data_dir=data, device=dev, val_fraction=val_fraction, seed=seed, subset=subset
    )
    own_values = {k: v for k, v in given.items() if k not in options}
    command = c.command_line("smu prune", own_values, train, cfg.options)
    out = Path(out) if out else c.default_out("prune", dataset, arch, cfg.method)
    with c.run_folder(out, force=force or resume, amp=amp, compile=compile, sync_bn=sync_bn) as folder:
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
        result["manifest"] = c.write_manifest(folder, command, given, result, dev)
    return result


def render(result: dict, per_layer: bool = False) -> list:
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


def method_fields() -> set[str]:
    """The options of every pruning method that has its own."""
    return {f.name for spec in METHODS.values() if spec.config for f in dataclasses.fields(spec.config)}


def method_option_list() -> list[Generated]:
    """Each pruning method's own options (not given = the method's default)."""
    found: dict[str, Generated] = {}
    for name, spec in METHODS.items():
        if spec.config is None:
            continue
        docs = field_help(spec.config)
        for f in dataclasses.fields(spec.config):
            default = getattr(spec.config(), f.name)
            help_text = f"{name}: {described(docs.get(f.name, ''), default, spec.config, f.name)}"
            found.setdefault(f.name, field_option(spec.config, f.name, panel="Pruning", help_text=help_text))
    return list(found.values())


def command(focus: str | None = None) -> Any:
    PerLayer = Annotated[
        bool, typer.Option("--per-layer", help="Also show each layer's sparsity.", rich_help_panel="Output")
    ]
    return cli(
        prune,
        render=render,
        paths=lambda r: [r["model"]],
        generated=config_options(TrainConfig, panel="Training") + method_option_list(),
        render_options={"per_layer": PerLayer},
        aliases=(Alias("--from", "model", Path | None),),
    )


def epilog() -> str:
    listing = "\n\n".join(f"{name}: {spec.summary}" for name, spec in METHODS.items())
    return f"Methods:\n\n{listing}\n\n{EPILOG}"
