"""`smu unlearn`: remove a forget set from a (dense or sparse) model with any registered method."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from smu.commands import common as c
from smu.commands.evaluate import Forget, ForgetSeed, Mask, MiaFeatures, Reference, mia_feature_list
from smu.commands.evaluate import render as render_metrics
from smu.commands.generate import method_options
from smu.commands.wrap import cli
from smu.data import check_fits, splits_of
from smu.data.forget import resolve_forget
from smu.engine import Reporter, resolve_device
from smu.io import artifacts
from smu.unlearning import METHODS, make_config
from smu.workflows.unlearn import run_unlearn

EPILOG = (
    "Examples:\n\n"
    "smu unlearn --model runs/p/round-1/model.safetensors --forget class:3 --method retrain -o runs/rt\n\n"
    "smu unlearn --model runs/p/round-1/model.safetensors --forget runs/rt/forget.safetensors --method "
    "l1-sparse --reference runs/rt/model.safetensors --json\n\n"
    "smu unlearn --method ff --help   (the options of one method, with its own help and defaults)"
)

Method = Annotated[
    str,
    typer.Option(
        "--method",
        "-m",
        help="The unlearning method (the methods and their options are listed below; --method X --help shows "
        "only X's).",
        rich_help_panel="Method",
    ),
]
NoEval = Annotated[
    bool, typer.Option("--no-eval", help="Skip the evaluation after unlearning.", rich_help_panel="Metrics")
]


def unlearn(
    model: c.Model,
    forget: Forget,
    method: Method,
    mask: Mask = None,
    reference: Reference = None,
    no_eval: NoEval = False,
    mia_features: MiaFeatures = "confidence",
    forget_seed: ForgetSeed = 0,
    data: c.DataDir = None,
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
    """Unlearn a forget set from a dense or sparse model with any registered method.

    ``options`` are the method's hyper-parameters by the names of its options (``epochs=3``,
    ``alpha=1e-8``); those not given keep the method's defaults. Returns what ``--json`` prints.
    """
    given = {k: v for k, v in locals().items() if k not in ("options", "reporter")} | options
    cfg = make_config(method, options)  # every option checked before anything is loaded
    dev = resolve_device(device)
    loaded = artifacts.load_model(model, dev, mask=mask)
    ref = artifacts.load_model(reference, dev, option="--reference") if reference else None
    splits = splits_of(loaded, data, dev)
    if ref is not None:
        check_fits(ref, splits, "--reference")
        ref.check_same_split(loaded)
    fs = resolve_forget(forget, splits, forget_seed)
    own_values = {k: v for k, v in given.items() if k not in options}
    command = c.command_line("smu unlearn", own_values, cfg)
    out = Path(out) if out else c.default_out("unlearn", loaded.dataset, loaded.arch, method)
    with c.run_folder(out, force=force or resume, amp=amp, compile=compile, sync_bn=sync_bn) as folder:
        result = run_unlearn(
            loaded,
            splits,
            fs,
            method,
            cfg,
            out=folder,
            seed=seed,
            reporter=reporter,
            reference=ref,
            evaluate=not no_eval,
            features=mia_feature_list(mia_features),
            command=command,
            resume=resume,
        )
        result["manifest"] = c.write_manifest(folder, command, given, result, dev)
    return result


def render(result: dict) -> list:
    rte = result["rte_s"]
    title = f"smu unlearn --method {result['method']} → {result['model']}"
    if result["metrics"] is None:
        return [f"{title}: RTE {rte / 60:.2f} min ({rte:.1f} s)"]
    return render_metrics(result, title, extra=[["RTE (min)", rte / 60, None, None]])


def command(focus: str | None = None) -> Any:
    options = method_options(
        dict(METHODS), focus=focus, panel="Method options", trainer_panel="Training (methods that train)"
    )
    return cli(unlearn, render=render, paths=lambda r: [r["model"]], generated=options)


def epilog() -> str:
    listing = "\n\n".join(f"{name}: {spec.summary}" for name, spec in METHODS.items())
    return f"Methods:\n\n{listing}\n\n{EPILOG}"
