"""`smu eval`: the paper's unlearning metrics for a model and a forget set, and the gap to a reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smu import artifacts
from smu.commands import common as c
from smu.data.forget import SPEC_HELP, resolve_forget
from smu.engine import resolve_device
from smu.evaluation import gap, unlearning_metrics
from smu.ui import emit, table

EPILOG = (
    "Examples:\n\n"
    "smu eval runs/ft/model.safetensors --forget class:3 --reference runs/retrain/model.safetensors\n\n"
    "smu eval model.safetensors --forget random:10% --mia-features confidence,entropy,m_entropy --json"
)

Forget = Annotated[
    str, typer.Option("--forget", "-f", help=f"The forget set: {SPEC_HELP}.", rich_help_panel="Forget set")
]
ForgetSeed = Annotated[
    int,
    typer.Option(
        "--forget-seed",
        help="Seed that draws random and class:C:N forget sets.",
        rich_help_panel="Forget set",
    ),
]
MiaFeatures = Annotated[
    str,
    typer.Option(
        "--mia-features",
        help="Comma-separated attack features: confidence, "
        "entropy, m_entropy, prob, correctness; the first is MIA-Efficacy.",
        rich_help_panel="Metrics",
    ),
]
Privacy = Annotated[
    bool,
    typer.Option(
        "--privacy",
        help="Also report MIA-Privacy (attack accuracy on held-out halves of retain and test).",
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


@c.errors_handled
def evaluate(
    model: Annotated[Path, typer.Argument(help="model.safetensors to evaluate (its mask is applied).")],
    forget: Forget,
    reference: Reference = None,
    mask: Annotated[
        Path | None,
        typer.Option("--mask", help="Apply this mask instead of the model's own.", rich_help_panel="Model"),
    ] = None,
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
    privacy: Privacy = False,
    data: c.DataDir = None,
    device: c.Device = "auto",
    json_out: c.Json = False,
    quiet: c.Quiet = False,
) -> None:
    """Measure UA, MIA-Efficacy, RA and TA of a model on a forget set, and the gap to a reference."""
    dev = resolve_device(device)
    features = tuple(f.strip() for f in mia_features.split(",") if f.strip()) or ("confidence",)
    loaded = artifacts.load_model(model, dev, mask=mask)
    ref = artifacts.load_model(reference, dev, option="--reference") if reference else None
    splits = loaded.load_splits(data, dev)
    if ref is not None:
        ref.check_fits(splits, "--reference")
        ref.check_same_split(loaded)
    fs = resolve_forget(forget, splits, forget_seed)
    result = evaluate_models(loaded, ref, splits, fs, features, privacy)
    paths = []
    if save_forget is not None:
        fs.save(save_forget)
        result["forget"]["path"] = str(save_forget)
        paths.append(str(save_forget))
    emit(result, as_json=json_out, quiet=quiet, paths=paths, render=lambda: render(result))


def evaluate_models(loaded, ref, splits, fs, features, privacy) -> dict:
    """The dict `smu eval --json` prints; unlearn, backdoor-cleanse and recipes build on it too."""
    metrics = unlearning_metrics(loaded.model, splits, fs, features=features, privacy=privacy)
    ref_metrics = (
        unlearning_metrics(ref.model, splits, fs, features=features, privacy=privacy) if ref else None
    )
    return {
        "model": str(loaded.path),
        "metrics": metrics,
        "reference": ref_metrics,
        "reference_model": str(ref.path) if ref else None,
        "gap": gap(metrics, ref_metrics) if ref_metrics else None,
        "forget": fs.summary(),
        "sparsity": float(loaded.meta.get("smu.sparsity", 0)),
        "dataset": splits.info.name,
    }


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
