"""`smu eval`: the paper's unlearning metrics for a model and a forget set, and the gap to a reference."""

from __future__ import annotations

from typing import Any

from smu.cli import flags
from smu.cli.ui import table
from smu.cli.wrap import cli
from smu.workflows.evaluate import evaluate

EPILOG = (
    "Examples:\n\n"
    "smu eval --model runs/ft/model.safetensors --forget class:3 "
    "--reference runs/retrain/model.safetensors\n\n"
    "smu eval --model model.safetensors --forget random:10% "
    "--mia-features confidence,entropy,m_entropy --json"
)


OPTIONS = {
    "model": flags.Model,
    "forget": flags.Forget,
    "reference": flags.Reference,
    "mask": flags.Mask,
    "forget_seed": flags.ForgetSeed,
    "save_forget": flags.SaveForget,
    "mia_features": flags.MiaFeatures,
    "privacy": flags.Privacy,
    "data": flags.DataDir,
    "device": flags.Device,
    **{k: v for k, v in flags.TRACKING.items() if k != "log_models"},
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
    title += f": forget {f['spec']} ({f['size']} samples), sparsity {result['sparsity']:.2f}%"
    columns = ["Metric (%)", "Model", "Reference", "Gap"] if ref is not None else ["Metric (%)", "Model"]
    return [table(title, columns, [r[: len(columns)] for r in rows])]


def command(focus: str | None = None) -> Any:
    return cli(
        evaluate,
        options=OPTIONS,
        render=render,
        paths=lambda r: [r["forget"]["path"]] if "path" in r["forget"] else [],
    )
