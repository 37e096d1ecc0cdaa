"""`smu eval`: the paper's unlearning metrics for a model and a forget set, and the gap to a reference."""

from __future__ import annotations

import math
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
    "--mia-features confidence,entropy,m_entropy --json\n\n"
    "smu eval --model runs/ft/model.safetensors --forget class:3 --reference runs/retrain/model.safetensors "
    "--metrics zrf,js,activation_distance"
)


NEEDED = {"reference": "--reference", "random": "a random model of --metric-seed"}
"""How the help names what an extra metric needs."""


def epilog() -> str:
    from smu.evaluation.metrics import METRICS

    def line(name: str, spec: Any) -> str:
        needs = f" (needs {' and '.join(NEEDED[n] for n in sorted(spec.needs))})" if spec.needs else ""
        return f"{name}: {spec.summary}{needs}." + "".join(f" {t}." for t in (spec.note, spec.differs) if t)

    listing = "\n\n".join(line(name, spec) for name, spec in METRICS.items())
    return f"Extra metrics (--metrics):\n\n{listing}\n\n{EPILOG}"


OPTIONS = {
    "model": flags.Model,
    "forget": flags.Forget,
    "reference": flags.Reference,
    "mask": flags.Mask,
    "forget_seed": flags.ForgetSeed,
    "save_forget": flags.SaveForget,
    "mia_features": flags.MiaFeatures,
    "privacy": flags.Privacy,
    "metrics": flags.Metrics,
    "metric_seed": flags.MetricSeed,
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
    keys += [("Sub-class test acc", "forget_test_acc")] if "forget_test_acc" in m else []

    def get(d: dict | None, key):
        if d is None:
            return None
        return d.get(key[0], {}).get(key[1]) if isinstance(key, tuple) else d.get(key)

    rows = (
        [[label, get(m, k), get(ref, k), get(g, k)] for label, k in keys] + extra_rows(result) + (extra or [])
    )
    if g is not None:
        rows.append(["Avg. Gap", None, None, g["avg"]])
    f = result["forget"]
    title = title or f"smu eval {result['model']}"
    title += f": forget {f['spec']} ({f['size']} samples), sparsity {result['sparsity']:.2f}%"
    columns = ["Metric (%)", "Model", "Reference", "Gap"] if ref is not None else ["Metric (%)", "Model"]
    return [table(title, columns, [r[: len(columns)] for r in rows])]


def extra_rows(result: dict) -> list[list]:
    """A row per extra metric (``--metrics``): the model's number, and the reference's own where the metric
    needs no reference (ZRF); the metrics that compare with the reference have it in the Model column."""
    extra = result.get("extra")
    if not extra:
        return []
    from smu.evaluation.metrics import METRICS, headline

    rows = []
    for name, value in extra["metrics"].items():
        spec = METRICS.get_spec(name)
        own = (extra.get("reference") or {}).get(name)
        rows.append([spec.header, digits(headline(spec, value)), digits(own and headline(spec, own)), None])
    return rows


def digits(value: float | None) -> str | None:
    """An extra metric's number to 4 significant digits (they are scores and distances, often far below 1,
    which the percentages' 2 decimals would show as 0.00)."""
    if value is None:
        return None
    if value == 0:
        return "0"
    return f"{value:.{max(0, 3 - math.floor(math.log10(abs(value))))}f}"


def command(focus: str | None = None) -> Any:
    return cli(
        evaluate,
        options=OPTIONS,
        render=render,
        paths=lambda r: [r["forget"]["path"]] if "path" in r["forget"] else [],
    )
