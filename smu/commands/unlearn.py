"""`smu unlearn`: remove a forget set from a (dense or sparse) model with one of the paper's methods."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from smu import artifacts
from smu.commands import common as c
from smu.commands.evaluate import Forget, ForgetSeed, MiaFeatures, Reference
from smu.commands.evaluate import render as render_metrics
from smu.data.forget import resolve_forget
from smu.engine import resolve_device, runtime
from smu.registry import field_help, lookup
from smu.ui import emit, reporting
from smu.unlearning import METHODS, make_config
from smu.unlearning.pipeline import run_unlearn

EPILOG = (
    "Examples:\n\n"
    "smu unlearn --model runs/p/round-1/model.safetensors --forget class:3 --method retrain -o runs/rt\n\n"
    "smu unlearn --model runs/p/round-1/model.safetensors --forget runs/rt/forget.safetensors --method "
    "l1-sparse --reference runs/rt/model.safetensors --json"
)


def method_option(name: str, flag: str | None = None, panel: str = "Method options") -> Any:
    """An option shared by several methods: its help lists each method's default."""
    docs = {}
    for spec in METHODS.values():
        docs |= field_help(spec.config)
    defaults = ", ".join(
        f"{m} {getattr(s.config(), name)}"
        for m, s in METHODS.items()
        if name in {f.name for f in dataclasses.fields(s.config)}
    )
    return typer.Option(
        flag or f"--{name.replace('_', '-')}",
        help=f"{docs[name]} (default: {defaults})",
        rich_help_panel=panel,
        show_default=False,
    )


@c.errors_handled
def unlearn(
    ctx: typer.Context,
    model: Annotated[
        Path,
        typer.Option(
            "--model",
            help="The model to unlearn from (model.safetensors; a sparse model's mask is found beside it).",
            rich_help_panel="Model",
        ),
    ],
    forget: Forget,
    method: Annotated[
        str,
        typer.Option(
            "--method", "-m", help="retrain, ft, ga, ff, iu or l1-sparse.", rich_help_panel="Method"
        ),
    ],
    mask: Annotated[
        Path | None,
        typer.Option("--mask", help="Use this mask instead of the model's own.", rich_help_panel="Model"),
    ] = None,
    reference: Reference = None,
    no_eval: Annotated[
        bool,
        typer.Option("--no-eval", help="Skip the evaluation after unlearning.", rich_help_panel="Metrics"),
    ] = False,
    mia_features: MiaFeatures = "confidence",
    forget_seed: ForgetSeed = 0,
    epochs: Annotated[int | None, method_option("epochs")] = None,
    lr: Annotated[float | None, method_option("lr")] = None,
    batch_size: Annotated[int | None, method_option("batch_size")] = None,
    momentum: Annotated[float | None, method_option("momentum")] = None,
    weight_decay: Annotated[float | None, method_option("weight_decay")] = None,
    schedule: Annotated[str | None, method_option("schedule")] = None,
    decreasing_lr: Annotated[str | None, method_option("decreasing_lr")] = None,
    warmup: Annotated[int | None, method_option("warmup")] = None,
    no_aug: c.NoAug = False,
    alpha: Annotated[float | None, method_option("alpha")] = None,
    no_l1_epochs: Annotated[int | None, method_option("no_l1_epochs")] = None,
    fisher_batch_size: Annotated[int | None, method_option("fisher_batch_size")] = None,
    iu_samples: Annotated[int | None, method_option("iu_samples")] = None,
    data: c.DataDir = None,
    device: c.Device = "auto",
    amp: c.Amp = False,
    compile_model: c.Compile = False,
    seed: c.Seed = 0,
    out: c.Out = None,
    force: c.Force = False,
    resume: c.Resume = False,
    json_out: c.Json = False,
    quiet: c.Quiet = False,
) -> None:
    """Unlearn a forget set: retrain, ft, ga, ff, iu or l1-sparse, on a dense or sparse model."""
    lookup(METHODS, method, "unlearning method")
    overrides = {
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "schedule": schedule,
        "warmup": warmup,
        "alpha": alpha,
        "no_l1_epochs": no_l1_epochs,
        "fisher_batch_size": fisher_batch_size,
        "iu_samples": iu_samples,
        "decreasing_lr": c.parse_epochs(decreasing_lr) if decreasing_lr else None,
        "augment": False if no_aug else None,
    }
    cfg = make_config(method, overrides)
    dev = resolve_device(device)
    loaded = artifacts.load_model(model, dev, mask=mask)
    ref = artifacts.load_model(reference, dev, option="--reference") if reference else None
    splits = loaded.load_splits(data, dev)
    if ref is not None:
        ref.check_fits(splits, "--reference")
        ref.check_same_split(loaded)
    fs = resolve_forget(forget, splits, forget_seed)
    features = tuple(f.strip() for f in mia_features.split(",") if f.strip()) or ("confidence",)
    out_dir = out or c.default_out("unlearn", loaded.dataset, loaded.arch, method)
    with (
        artifacts.run_dir(out_dir, force or resume) as out_dir,
        reporting(quiet) as reporter,
        runtime(amp, compile_model),
    ):
        result = run_unlearn(
            loaded,
            splits,
            fs,
            method,
            cfg,
            out=out_dir,
            seed=seed,
            reporter=reporter,
            reference=ref,
            evaluate=not no_eval,
            features=features,
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
    emit(result, as_json=json_out, quiet=quiet, paths=[result["model"]], render=lambda: render(result))


def render(result: dict) -> list:
    rte = result["rte_s"]
    title = f"smu unlearn --method {result['method']} → {result['model']}"
    if result["metrics"] is None:
        return [f"{title}: RTE {rte / 60:.2f} min ({rte:.1f} s)"]
    return render_metrics(result, title, extra=[["RTE (min)", rte / 60, None, None]])
