"""`smu audit`: judge an unlearning method example by example against an ensemble of retrained models."""

from __future__ import annotations

from typing import Any

from smu.cli import flags
from smu.cli.generate import config_options, method_options, retrain_options
from smu.cli.ui import table
from smu.cli.wrap import cli
from smu.evaluation.judges import SIDES
from smu.unlearning import METHODS
from smu.workflows.audit import (
    STATISTICS,
    AuditConfig,
    audit,
)

EPILOG = (
    "Examples:\n\n"
    "smu audit --model runs/p/round-1/model.safetensors --forget class:3 --method ga --models 8 "
    "--retrain-epochs 20 -o runs/audit\n\n"
    "smu audit --model runs/p/round-1/model.safetensors --forget class:3 --method salun --epochs 2 "
    "--models 8 --retrain-epochs 20 -o runs/audit   (the same folder: the retrained ensemble is reused)\n\n"
    "smu audit ... --method retrain --epochs 20   (what a perfect method scores at this N: read F against "
    "it)\n\n"
    "smu audit ... --models 64 --executor ray --address auto -o /shared/runs/audit   (the members as Ray "
    "tasks over a cluster)\n\n"
    "The reference ensemble retrains with retrain's options, spelled --retrain-epochs, --retrain-lr, ..."
)


OPTIONS = {
    "model": flags.Model,
    "forget": flags.Forget,
    "method": flags.Method,
    "keep_models": flags.KeepModels,
    "forget_seed": flags.ForgetSeed,
    "data": flags.DataDir,
    "out": flags.AuditOut,
    "force": flags.Force,
    **flags.RUNTIME,
    **flags.EXECUTOR,
}


def render(result: dict) -> list:
    u, r = result["ulira"], result["tow"]
    rows = [
        [
            "Forgetting quality F",
            result["forgetting_quality"],
            "1 = no example told apart; compare with F of retrain at the same N",
        ],
        [
            "Examples told apart",
            f"{result['separated']} of {result['forget']['size']}",
            "ε = ∞: every unlearned model on one side of every retrained one",
        ],
        ["Final score", result["score"], "F × (RA_U / RA_R) × (TA_U / TA_R)"],
        [
            "U-LiRA accuracy %",
            f"{u['mean']:.1f} [{u['low']:.1f}, {u['high']:.1f}]",
            "50 = indistinguishable from retraining",
        ],
        ["ToW", f"{r['mean']:.3f} [{r['low']:.3f}, {r['high']:.3f}]", "1 = the accuracies of retraining"],
    ]
    if result["constant"]:
        count = f"{result['constant']} of {result['forget']['size']}"
        reading = "the N unlearned models agree: no threshold splits one value, so F counts them forgotten "
        reading += "unless every retrained model lies on one side; read U-LiRA"
        rows.insert(3, ["Examples with one unlearned value", count, reading])
    title = (
        f"smu audit --method {result['method']}: forget {result['forget']['spec']} "
        f"({result['forget']['size']} samples), {result['models']} + {result['models']} models, "
        f"statistic {result['statistic']}, thresholds {result['thresholds']}; "
        f"{result['steps']['ran']} steps run, {result['steps']['reused']} reused, "
        f"{result['wall_s'] / 60:.1f} min"
    )
    metrics = [
        [f"mean {k.upper().replace('_', '-')}", result["unlearned"][k], result["retrained"][k]]
        for k in result["unlearned"]
    ]
    worst = [[w["index"], w["class"], "∞" if w["epsilon"] is None else w["epsilon"]] for w in result["worst"]]
    return [
        table(title, ["Judge", "Value", "Reading"], rows),
        table("Ensembles (percent)", ["Metric", "Unlearned", "Retrained"], metrics),
        table(f"Least forgotten examples (ε; all in {result['artifact']})", ["Index", "Class", "ε"], worst),
    ]


def command(focus: str | None = None) -> Any:
    options = method_options(
        dict(METHODS), focus=focus, panel="Method options", trainer_panel="Training (methods that train)"
    )
    reference = retrain_options("Reference: the retrained ensemble")
    generated = config_options(AuditConfig, panel="Audit") + options + reference
    return cli(audit, options=OPTIONS, render=render, paths=lambda r: [r["artifact"]], generated=generated)


def epilog() -> str:
    def listing(entries: dict[str, str]) -> str:
        return "\n\n".join(f"{name}: {text}" for name, text in entries.items())

    return f"Statistics:\n\n{listing(STATISTICS)}\n\nThresholds:\n\n{listing(SIDES)}\n\n{EPILOG}"
