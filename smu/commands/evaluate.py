"""`smu eval`: the paper's unlearning metrics for a model and a forget set, and the gap to a reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from smu.commands import common as c
from smu.commands.wrap import Alias, cli
from smu.data import check_fits, splits_of
from smu.data.forget import SPEC_HELP, resolve_forget
from smu.engine import Reporter, resolve_device
from smu.evaluation import compare
from smu.io import artifacts
from smu.options import SEED_MAX
from smu.ui import table

EPILOG = (
    "Examples:\n\n"
    "smu eval --model runs/ft/model.safetensors --forget class:3 "
    "--reference runs/retrain/model.safetensors\n\n"
    "smu eval --model model.safetensors --forget random:10% "
    "--mia-features confidence,entropy,m_entropy --json"
)

Forget = Annotated[
    str, typer.Option("--forget", "-f", help=f"The forget set: {SPEC_HELP}.", rich_help_panel="Forget set")
]
ForgetSeed = Annotated[
    int,
    typer.Option(
        "--forget-seed",
        min=0,
        max=SEED_MAX,
        help="Seed that draws random and class:C:N forget sets.",
        rich_help_panel="Forget set",
    ),
]
MiaFeatures = Annotated[
    str,
    typer.Option(
        "--mia-features",
        help="Comma-separated attack features: confidence, entropy, m_entropy, prob, correctness; "
        "the first is "
        "MIA-Efficacy.",
        rich_help_panel="Metrics",
    ),
]
Reference = Annotated[
    Path | None,
    typer.Option(
        "--reference",
        "-r",
        help="A model to compare with, normally the one retrained without the forget set.",
        rich_help_panel="Metrics",
    ),
]
Mask = Annotated[
    Path | None,
    typer.Option("--mask", help="Apply this mask instead of the model's own.", rich_help_panel="Model"),
]


def mia_feature_list(features: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'confidence,entropy' (or a list) -> ('confidence', 'entropy'); empty means the paper's confidence."""
    items = features.split(",") if isinstance(features, str) else features
    return tuple(f.strip() for f in items if f.strip()) or ("confidence",)


def evaluate(
    model: c.Model,
    forget: Forget,
    reference: Reference = None,
    mask: Mask = None,
    forget_seed: ForgetSeed = 0,
    save_forget: Annotated[
        Path | None,
        typer.Option(
            "--save-forget",
            help="Write the resolved forget set here (forget.safetensors) for later commands.",
            rich_help_panel="Forget set",
        ),
    ] = None,
    mia_features: MiaFeatures = "confidence",
    privacy: Annotated[
        bool,
        typer.Option(
            "--privacy",
            help="Also report MIA-Privacy (attack accuracy on held-out halves of retain and test).",
            rich_help_panel="Metrics",
        ),
    ] = False,
    data: c.DataDir = None,
    device: c.Device = "auto",
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Measure UA, MIA-Efficacy, RA and TA of a model on a forget set, and the gap to a reference."""
    dev = resolve_device(device)
    features = mia_feature_list(mia_features)
    loaded = artifacts.load_model(model, dev, mask=mask)
    ref = artifacts.load_model(reference, dev, option="--reference") if reference else None
    splits = splits_of(loaded, data, dev)
    if ref is not None:
        check_fits(ref, splits, "--reference")
        ref.check_same_split(loaded)
    fs = resolve_forget(forget, splits, forget_seed)
    result = {"model": str(loaded.path)} | compare(
        loaded.model, splits, fs, ref.model if ref else None, features=features, privacy=privacy
    )
    result |= {
        "reference_model": str(ref.path) if ref else None,
        "forget": fs.summary(),
        "sparsity": loaded.mask.sparsity() if loaded.mask is not None else 0.0,
        "dataset": splits.info.name,
    }
    if save_forget is not None:
        fs.save(save_forget)
        result["forget"]["path"] = str(save_forget)
    return result


ROWS = [("UA", "ua"), ("MIA-Efficacy", "mia_efficacy"), ("RA", "ra"), ("TA", "ta"), ("Val acc", "val_acc")]


def render(result: dict, title: str | None = None, extra: list[list] | None = None) -> list:
    """Rows = metrics; columns = model, reference and gap (when there is a reference)."""
    m, ref, g = result["metrics"], result["reference"], result["gap"]
    keys = ROWS + [(f"MIA ({name})", ("mia", name)) for name in list(m["mia"])[1:]]
    keys += [("MIA-Privacy", "mia_privacy")] if "mia_privacy" in m else []

    def get(d: dict | None, key):
        if d is None:
            return None
        return d.get(key[0], {}).get(key[1]) if isinstance(key, tuple) else d.get(key)

    rows = [[label, get(m, k), get(ref, k), get(g, k)] for label, k in keys] + (extra or [])
    if g is not None:
        rows.append(["Avg. Gap", None, None, g["avg"]])
    f = result["forget"]
    title = title or f"smu eval {result['model']}"
    title += f": forget {f['spec']} ({f['size']} samples), sparsity {result['sparsity']:.4f}"
    columns = ["Metric (%)", "Model", "Reference", "Gap"] if ref is not None else ["Metric (%)", "Model"]
    return [table(title, columns, [r[: len(columns)] for r in rows])]


def command(focus: str | None = None) -> Any:
    return cli(
        evaluate,
        render=render,
        paths=lambda r: [r["forget"]["path"]] if "path" in r["forget"] else [],
        aliases=(Alias("model", "model", Path | None, argument=True),),
    )
