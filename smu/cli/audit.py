"""`smu audit`: judge an unlearning method example by example against an ensemble of retrained models."""

from __future__ import annotations

from typing import Any

from smu.cli import flags, report
from smu.cli.generate import config_options, method_options, retrain_options
from smu.cli.wrap import cli
from smu.evaluation.judges import SIDES
from smu.methods.unlearning import focus_of, offered
from smu.workflows.audit import STATISTICS, AuditConfig, audit

EPILOG = (
    "Examples:\n\n"
    "smu audit --model runs/p/round-1/model.safetensors --forget class:3 --method ga --models 8 "
    "--retrain-epochs 20 -o runs/audit\n\n"
    "smu audit --model runs/p/round-1/model.safetensors --forget class:3 --method salun --epochs 2 "
    "--models 8 --retrain-epochs 20 -o runs/audit   (the same folder: the retrained ensemble is reused)\n\n"
    "smu audit ... --method retrain --epochs 20   (what a perfect method scores at this N: read F against "
    "it)\n\n"
    "smu audit ... --metrics zrf,js,activation_distance   (each unlearned model against the retrained one "
    "of its index, and the retrained models' own ZRF)\n\n"
    "smu audit ... --models 64 --executor ray --address auto -o /shared/runs/audit   (the members as Ray "
    "tasks over a cluster)\n\n"
    "The reference ensemble retrains with retrain's options, spelled --retrain-epochs, --retrain-lr, ..."
)


OPTIONS = {
    "model": flags.Model,
    "forget": flags.Forget,
    "method": flags.Method,
    "keep_models": flags.KeepModels,
    "metrics": flags.AuditMetrics,
    "metric_seed": flags.MetricSeed,
    "forget_seed": flags.ForgetSeed,
    "data": flags.DataDir,
    "out": flags.AuditOut,
    "force": flags.Force,
    "dry_run": flags.PlanOnly,
    **flags.RUNTIME,
    **flags.TRACKING,
    **flags.EXECUTOR,
}


def command(focus: str | None = None) -> Any:
    options = method_options(
        offered(),
        focus=focus_of(focus),
        panel="Method options",
        trainer_panel="Training (methods that train)",
    )
    reference = retrain_options("Reference: the retrained ensemble")
    generated = config_options(AuditConfig, panel="Audit") + options + reference
    return cli(
        audit,
        options=OPTIONS,
        render=report.audit_tables,
        paths=lambda r: [] if r.get("dry_run") else [r["artifact"]],
        generated=generated,
        again="the same command with --out {out} continues this audit",
    )


def epilog() -> str:
    def listing(entries: dict[str, str]) -> str:
        return "\n\n".join(f"{name}: {text}" for name, text in entries.items())

    return f"Statistics:\n\n{listing(STATISTICS)}\n\nThresholds:\n\n{listing(SIDES)}\n\n{EPILOG}"
