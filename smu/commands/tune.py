"""`smu tune`: find a method's hyper-parameters by matching retrain, scored without the test split, and
measured once on a held-out forget set (:mod:`smu.workflows.tune`)."""

from __future__ import annotations

import dataclasses
import shlex
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from smu.commands import common as c
from smu.commands.evaluate import Forget, ForgetSeed
from smu.commands.generate import config_options, method_options, retrain_options
from smu.commands.unlearn import Method
from smu.commands.wrap import cli
from smu.data import check_fits, splits_of
from smu.data.forget import resolve_forget
from smu.engine import Reporter, resolve_device
from smu.errors import UsageError
from smu.execution import make_executor
from smu.execution.steps import Plan
from smu.io import artifacts
from smu.options import flag_of, search_space
from smu.ui import table
from smu.unlearning import METHODS, make_config
from smu.workflows.tune import (
    REFERENCE,
    Subject,
    TuneConfig,
    command_plan,
    heldout_forget,
    open_study,
    optuna_module,
    plan,
    summary,
)

EPILOG = (
    "Examples:\n\n"
    "smu tune --model runs/p/round-1/model.safetensors --forget class:3 --method ga --trials 20 "
    "--retrain-epochs 20 -o runs/tune\n\n"
    "smu tune ... --method l1-sparse --space alpha=1e-5:1e-3:log --epochs 5   (--epochs fixed, alpha "
    "searched in a narrower range, lr in its own)\n\n"
    "smu tune ... --trials 40   (the same --out: the study continues, the references are reused)\n\n"
    "An option given a value is fixed, not searched. The reference retrains with retrain's options, "
    "spelled --retrain-epochs, --retrain-lr, ..."
)


def epilog() -> str:
    from smu.options import tunable

    def shown(space: Any) -> str:  # not LOW:HIGH here: Rich would read ":100:" as an emoji
        return f"{space.low:g} to {space.high:g}" + (" log-uniform" if space.log else "")

    spaces = {
        name: ", ".join(f"{option} {shown(space)}" for option, space in tunable(spec.config).items())
        for name, spec in METHODS.items()
    }
    listing = "\n\n".join(f"{name}: {text}" for name, text in spaces.items() if text)
    return f"Searched by default:\n\n{listing}\n\n{EPILOG}"


Space = Annotated[
    list[str] | None,
    typer.Option(
        "--space",
        help="NAME=LOW:HIGH or NAME=LOW:HIGH:log: search this numeric option in this range instead of the "
        "method's own (repeat for several).",
        rich_help_panel="Tuning",
    ),
]
HoldoutForget = Annotated[
    str | None,
    typer.Option(
        "--holdout-forget",
        help="The forget set the chosen setting is measured on (default: the next class for class:C, the "
        "next --forget-seed for random:N).",
        rich_help_panel="Tuning",
    ),
]
Workers = Annotated[
    int,
    typer.Option(
        "--workers",
        min=1,
        help="Study workers running trials side by side, as Ray tasks (--executor ray); each process or "
        "task adds trials to the one study in --out until it has --trials.",
        rich_help_panel="Executor",
    ),
]
TuneReference = Annotated[
    Path | None,
    typer.Option(
        "--reference",
        help="A model retrained without the forget set to tune against (default: smu retrains one with the "
        "--retrain-* options, cached in --out).",
        rich_help_panel="Reference",
    ),
]


def tune(
    model: c.Model,
    forget: Forget,
    method: Method,
    space: Space = None,
    holdout_forget: HoldoutForget = None,
    reference: TuneReference = None,
    forget_seed: ForgetSeed = 0,
    data: c.DataDir = None,
    device: c.Device = "auto",
    seed: c.Seed = 0,
    out: c.Out = None,
    force: c.Force = False,
    workers: Workers = 1,
    executor: c.ExecutorName = "serial",
    address: c.Address = None,
    cpus_per_step: c.CpusPerStep = None,
    gpus_per_step: c.GpusPerStep = None,
    reporter: Reporter | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Tune a method's hyper-parameters against retrain: trials scored on validation data, the chosen
    setting measured on a held-out forget set.

    ``options`` are the tuning's (``trials=30``, ``timeout``, ``prune``), the method's fixed
    hyper-parameters (``epochs=5``: not searched) and, prefixed ``retrain_``, the reference's
    (``retrain_epochs=20``). Returns what ``--json`` prints.
    """
    given = {k: v for k, v in locals().items() if k not in ("options", "reporter")} | options
    own = {f.name for f in dataclasses.fields(TuneConfig)}
    tune_cfg = TuneConfig(**{k: v for k, v in options.items() if k in own and v is not None})
    retrain = {k.removeprefix("retrain_"): v for k, v in options.items() if k.startswith("retrain_")}
    fixed = {
        k: v for k, v in options.items() if k not in own and not k.startswith("retrain_") and v is not None
    }
    if method == REFERENCE:
        raise UsageError(
            "--method retrain is the reference: there is nothing to match it to",
            hint="tune an approximate method",
        )
    make_config(method, fixed)  # the fixed options checked before anything is loaded
    retrain_cfg = make_config(REFERENCE, retrain, where=lambda name: flag_of(f"retrain_{name}"))
    chosen = search_space(METHODS.get_spec(method).config, space or [], fixed=list(fixed))
    if workers > 1 and executor == "serial":
        raise UsageError(
            f"--workers {workers} needs --executor ray: the serial executor runs one worker",
            hint="add --executor ray, or start more smu tune processes on the same --out",
        )
    runner = make_executor(executor, address, cpus_per_step, gpus_per_step)
    runner.check()
    optuna_module()  # installed?
    dev = resolve_device(device)
    loaded = artifacts.load_model(model, dev)
    splits = splits_of(loaded, data, dev)
    ref = artifacts.load_model(reference, dev, option="--reference") if reference else None
    if ref is not None:
        check_fits(ref, splits, "--reference")
        ref.check_same_split(loaded)
    subject = Subject(loaded, splits, resolve_forget(forget, splits, forget_seed))
    spec, heldout_seed = (
        (holdout_forget, forget_seed)
        if holdout_forget
        else heldout_forget(subject.forget, splits, forget_seed)
    )
    heldout = Subject(loaded, splits, resolve_forget(spec, splits, heldout_seed))
    if heldout.forget.sha256 == subject.forget.sha256:
        raise UsageError(
            f"--holdout-forget {spec!r} is the forget set being tuned on",
            hint="the held-out number must come from another draw",
        )
    out = Path(out) if out else c.default_out("tune", loaded.dataset, loaded.arch, method)
    if out.is_dir() and any(out.iterdir()) and not (out / "study.db").is_file() and not force:
        raise UsageError(
            f"--out {str(out)!r} is not empty and holds no study",
            hint="choose another --out, or pass --force",
        )
    reporter = reporter or Reporter()
    started = time.perf_counter()
    with c.run_folder(out, force=True) as folder:
        given_ref = (lambda: ref) if ref is not None else None
        identity = {
            "parent": loaded.sha256,
            "forget": subject.forget.sha256,
            "heldout": heldout.forget.sha256,
        }
        steps = plan(
            lambda: subject,
            lambda: heldout,
            identity,
            method,
            fixed,
            chosen,
            retrain_cfg,
            tune_cfg,
            seed,
            folder,
            workers=workers,
            reference=given_ref,
            reporter=reporter,
        )
        again = {  # what a Ray worker plans the same steps from
            "model": str(model),
            "data": None if data is None else str(data),
            "device": device,
            "forget": (forget, forget_seed),
            "heldout": (spec, heldout_seed),
            "identity": identity,
            "method": method,
            "fixed": fixed,
            "space": chosen,
            "retrain_cfg": retrain_cfg,
            "tune_cfg": tune_cfg,
            "seed": seed,
            "out": str(folder),
            "workers": workers,
            "reference": None if reference is None else str(reference),
        }
        open_study(folder, steps[2].tags["study"])  # made here, before workers race to make it
        done = runner.run(steps, Plan(command_plan, again), reporter)
        result = summary(subject, steps, done, method, chosen, fixed, folder, started)
        result["reproduce"] = reproduce(
            model,
            heldout,
            heldout_seed,
            method,
            result["config"],
            fixed,
            seed,
            data,
            result["heldout"]["reference_model"],
        )
        snippet = folder / f"tuned-{method}.yaml"
        artifacts.atomic_write(snippet, result["recipe"].encode())
        result["snippet"] = str(snippet)
        artifacts.write_json(
            folder / method / "tune.json", result
        )  # methods tuned into one --out keep theirs
        prefix = {id(retrain_cfg): "retrain"}
        command = c.command_line(
            "smu tune",
            {k: v for k, v in given.items() if k not in options},
            tune_cfg,
            make_config(method, fixed),
            retrain_cfg,
            prefix=lambda config, name: prefix.get(id(config), ""),
        )
        result["manifest"] = c.write_manifest(folder / method, command, given, result, dev)
    return result


def reproduce(
    model: Path,
    heldout: Subject,
    forget_seed: int,
    method: str,
    config: dict[str, Any],
    fixed: dict[str, Any],
    seed: int,
    data: Any,
    reference: str,
) -> str:
    """The `smu unlearn` command that gives the held-out model and its gap to retrain again."""
    words = ["smu", "unlearn", "--model", str(model), "--forget", heldout.forget.spec, "--method", method]
    words += ["--forget-seed", str(forget_seed)]
    defaults = dataclasses.asdict(METHODS.get_spec(method).config())
    for name, value in config.items():
        if value != defaults.get(name) or name in fixed:
            words += [
                flag_of(name),
                ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value),
            ]
    words += ["--seed", str(seed)] + (["--data", str(data)] if data else [])
    return shlex.join([*words, "--reference", reference])


def render(result: dict) -> list:
    h, t = result["heldout"], result["tuning"]
    title = (
        f"smu tune --method {result['method']}: best of {len(result['trials'])} trials "
        f"({', '.join(f'{n} {s}' for s, n in sorted(result['counts'].items()))})"
    )
    best = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result["best"]["params"].items()
    )
    summary = [
        ["Chosen setting", best, f"trial {result['best']['number']}"],
        [
            "Avg. Gap, tuning draw",
            t["avg_gap"],
            f"{t['forget']['spec']}: UA, MIA, RA, validation acc. (what the trials were scored on)",
        ],
        [
            "Avg. Gap, held-out draw",
            h["tuning_gap"]["avg"],
            f"{h['forget']['spec']}: the same four, on a forget set the search never saw",
        ],
        ["Avg. Gap, held-out, paper", h["gap"]["avg"], "UA, MIA, RA, TA (test split): the number to report"],
        [
            "Cost",
            f"{(result['cost']['tuning_s'] + result['cost']['references_s']) / 60:.1f} min",
            f"trials {result['cost']['tuning_s'] / 60:.1f} min + references "
            f"{result['cost']['references_s'] / 60:.1f} min; RTE: {result['cost']['rte_s']:.2f} s",
        ],
    ]
    metrics = [
        [k.upper().replace("_", "-"), h["metrics"][k], h["reference"][k], h["gap"][k]]
        for k in ("ua", "mia_efficacy", "ra", "ta")
    ]
    trials = [
        [
            r["number"],
            r["state"],
            "–" if r["value"] is None else r["value"],
            ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items()),
            "–" if r["seconds"] is None else f"{r['seconds']:.1f}",
        ]
        for r in result["trials"]
    ]
    parts = [
        table(title, ["", "Value", "Reading"], summary),
        table(
            f"Held-out draw {h['forget']['spec']} (percent)",
            ["Metric", result["method"], "retrain", "gap"],
            metrics,
        ),
        table(
            "Trials (value: Avg. Gap on the tuning draw)", ["#", "State", "Value", "Parameters", "s"], trials
        ),
    ]
    if result["importance"]:
        rows = [[k, v] for k, v in result["importance"].items()]
        parts.append(table("Importance (fANOVA)", ["Option", "Importance"], rows))
    parts.append(
        Text(f"# for a recipe ({result['snippet']}):\n{result['recipe']}# again: {result['reproduce']}")
    )
    return parts


def command(focus: str | None = None) -> Any:
    options = method_options(
        {k: v for k, v in METHODS.items() if k != REFERENCE},
        focus=focus,
        panel="Method options (given: fixed, not searched)",
        trainer_panel="Training (methods that train)",
    )
    reference = retrain_options("Reference: the retrained model")
    generated = config_options(TuneConfig, panel="Tuning") + options + reference
    return cli(tune, render=render, paths=lambda r: [r["snippet"]], generated=generated)
