"""`smu eval`: the paper's unlearning metrics for a model and a forget set, and the gap to a reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from smu.commands import common as c
from smu.commands.wrap import cli
from smu.data.forget import SPEC_HELP
from smu.options import SEED_MAX
from smu.ui import table
from smu.workflows.evaluate import evaluate

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


SaveForget = Annotated[
    Path | None,
    typer.Option(
        "--save-forget",
        help="Write the resolved forget set here (forget.safetensors) for later commands.",
        rich_help_panel="Forget set",
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
OPTIONS = {
    "model": c.Model,
    "forget": Forget,
    "reference": Reference,
    "mask": Mask,
    "forget_seed": ForgetSeed,
    "save_forget": SaveForget,
    "mia_features": MiaFeatures,
    "privacy": Privacy,
    "data": c.DataDir,
    "device": c.Device,
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


def command(focus: str | None = None) -> Any:
    return cli(
        evaluate,
        options=OPTIONS,
        render=render,
        paths=lambda r: [r["forget"]["path"]] if "path" in r["forget"] else [],
    )
