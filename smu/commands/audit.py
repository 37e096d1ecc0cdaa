"""`smu audit`: judge an unlearning method example by example against an ensemble of retrained models."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from smu.commands import common as c
from smu.commands.evaluate import Forget, ForgetSeed
from smu.commands.generate import config_options, method_options, retrain_options
from smu.commands.unlearn import Method
from smu.commands.wrap import cli
from smu.data import splits_of
from smu.engine import Reporter, resolve_device
from smu.errors import UsageError
from smu.evaluation.judges import SIDES
from smu.execution import make_executor
from smu.execution.steps import Plan
from smu.io import artifacts
from smu.options import flag_of
from smu.ui import table
from smu.unlearning import METHODS, make_config
from smu.workflows.audit import (
    REFERENCE,
    STATISTICS,
    AuditConfig,
    Subject,
    command_plan,
    plan,
    resolve_audit_forget,
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


def audit(
    model: c.Model,
    forget: Forget,
    method: Method,
    keep_models: Annotated[
        bool,
        typer.Option(
            "--keep-models",
            help="Keep every member's weights (they are deleted once measured).",
            rich_help_panel="Audit",
        ),
    ] = False,
    forget_seed: ForgetSeed = 0,
    data: c.DataDir = None,
    device: c.Device = "auto",
    amp: c.Amp = False,
    compile: c.Compile = False,
    sync_bn: c.SyncBn = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Audit folder (default: runs/audit-<dataset>-<arch>-<time>); audit another method into the "
            "same folder to reuse the retrained ensemble.",
            rich_help_panel="Output",
        ),
    ] = None,
    force: c.Force = False,
    executor: c.ExecutorName = "serial",
    address: c.Address = None,
    cpus_per_step: c.CpusPerStep = None,
    gpus_per_step: c.GpusPerStep = None,
    reporter: Reporter | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Audit an unlearning method: per-example attacks between N unlearned and N retrained models.

    ``options`` are the audit's (``models=8``, ``statistic``, ``thresholds``), the method's
    hyper-parameters (``epochs=2``) and, prefixed ``retrain_``, those of the retrained ensemble
    (``retrain_epochs=20``). Returns what ``--json`` prints.
    """
    start = time.perf_counter()
    given = {k: v for k, v in locals().items() if k not in ("options", "reporter", "start")} | options
    own = {f.name for f in dataclasses.fields(AuditConfig)}
    audit_cfg = AuditConfig(**{k: v for k, v in options.items() if k in own and v is not None})
    retrain = {k.removeprefix("retrain_"): v for k, v in options.items() if k.startswith("retrain_")}
    mine = {k: v for k, v in options.items() if k not in own and not k.startswith("retrain_")}
    cfg = make_config(method, mine)
    retrain_cfg = make_config(REFERENCE, retrain, where=lambda name: flag_of(f"retrain_{name}"))
    runner = make_executor(executor, address, cpus_per_step, gpus_per_step)
    runner.check()
    dev = resolve_device(device)
    loaded = artifacts.load_model(model, dev)
    splits = splits_of(loaded, data, dev)
    out = Path(out) if out else c.default_out("audit", loaded.dataset, loaded.arch)
    fs = resolve_audit_forget(forget, splits, forget_seed, out)
    if out.is_dir() and any(out.iterdir()) and not (out / "forget.safetensors").is_file() and not force:
        raise UsageError(
            f"--out {str(out)!r} is not empty and holds no audit",
            hint="choose another --out, or pass --force",
        )
    subject = Subject(loaded, splits, fs)
    with c.run_folder(out, force=True, amp=amp, compile=compile, sync_bn=sync_bn) as folder:
        if not (folder / "forget.safetensors").is_file():
            fs.save(folder / "forget.safetensors")
        identity = {"parent": loaded.sha256, "forget": fs.sha256}
        steps = plan(
            lambda: subject,
            identity,
            {method: cfg},
            retrain_cfg,
            audit_cfg,
            folder,
            keep_models=keep_models,
            reporter=reporter,
        )
        again = {  # what a Ray worker plans the same steps from; its subject loads on its own device
            "model": str(model),
            "data": None if data is None else str(data),
            "device": device,
            "identity": identity,
            "methods": {method: cfg},
            "retrain_cfg": retrain_cfg,
            "audit": audit_cfg,
            "out": str(folder),
            "keep_models": keep_models,
        }
        done = runner.run(steps, Plan(command_plan, again, amp=amp, compile=compile), reporter)
        ran = sum(not skipped for _, _, skipped in done)
        result = done[-1][1] | {
            "out": str(folder),
            "wall_s": time.perf_counter() - start,
            "steps": {"total": len(done), "ran": ran, "reused": len(done) - ran},
            "config": dataclasses.asdict(cfg),
            "retrain_config": dataclasses.asdict(retrain_cfg),
        }
        prefix = {id(retrain_cfg): "retrain"}
        command = c.command_line(
            "smu audit",
            {k: v for k, v in given.items() if k not in options},
            audit_cfg,
            cfg,
            retrain_cfg,
            prefix=lambda config, name: prefix.get(id(config), ""),
        )
        result["manifest"] = c.write_manifest(steps[-1].folder, command, given, result, dev)
    return result


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
        *(
            [
                [
                    "Examples with one unlearned value",
                    f"{result['constant']} of {result['forget']['size']}",
                    "the N unlearned models agree: no threshold splits one value, so F "
                    "counts them forgotten unless every retrained model lies on one side; read U-LiRA",
                ]
            ]
            if result["constant"]
            else []
        ),
        [
            "U-LiRA accuracy %",
            f"{u['mean']:.1f} [{u['low']:.1f}, {u['high']:.1f}]",
            "50 = indistinguishable from retraining",
        ],
        ["ToW", f"{r['mean']:.3f} [{r['low']:.3f}, {r['high']:.3f}]", "1 = the accuracies of retraining"],
    ]
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
    return cli(audit, render=render, paths=lambda r: [r["artifact"]], generated=generated)


def epilog() -> str:
    def listing(entries: dict[str, str]) -> str:
        return "\n\n".join(f"{name}: {text}" for name, text in entries.items())

    return f"Statistics:\n\n{listing(STATISTICS)}\n\nThresholds:\n\n{listing(SIDES)}\n\n{EPILOG}"
