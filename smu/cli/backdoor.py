"""`smu backdoor-cleanse`: plant a Trojan by poisoning, then remove it by unlearning the poisoned samples."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from smu.cli import flags
from smu.cli.generate import config_options, method_options
from smu.cli.ui import plan_text, table
from smu.cli.wrap import START_OVER, cli
from smu.core.options import field_help, flag_of
from smu.execution.engine import TrainConfig
from smu.methods.unlearning import METHODS, focus_of, offered
from smu.workflows.backdoor import TRAINING, BackdoorConfig, backdoor_cleanse

HELP = field_help(BackdoorConfig)
EPILOG = (
    "Examples:\n\n"
    "smu backdoor-cleanse --dataset digits --arch cnn --epochs 10 --rewind-epoch 1 --rates 0,0.9\n\n"
    "smu backdoor-cleanse --model trojan/model.safetensors --poison 10% --method l1-sparse --json\n\n"
    "The unlearning method's training options carry an unlearn- prefix (--unlearn-epochs, --unlearn-lr); "
    "the plain ones train the Trojan model."
)


def attack(name: str) -> Any:
    return typer.Option(flag_of(name), help=HELP[name], rich_help_panel="Attack")


OPTIONS = {
    "poison": Annotated[str, attack("poison")],
    "target": Annotated[int, attack("target")],
    "trigger_size": Annotated[int, attack("trigger_size")],
    "trigger_value": Annotated[int | None, attack("trigger_value")],
    "forget_seed": flags.PoisonSeed,
    "prune": flags.TrojanPrune,
    "rate": flags.Rate,
    "rates": flags.Rates,
    "rewind_epoch": flags.TrojanRewindEpoch,
    "scope": flags.TrojanScope,
    "model": flags.TrojanModel,
    "method": flags.Method,
    "seed": flags.Seed,
    "out": flags.Out,
    "force": flags.Force,
    "dry_run": flags.PlanOnly,
    **flags.DATA,
    **flags.RUNTIME,
    **flags.TRACKING,
}


def render(result: dict) -> list:
    if result.get("dry_run"):
        return plan_text(result)
    p = result["poison"]
    title = (
        f"smu backdoor-cleanse --method {result['method']}: {p['size']} poisoned samples, "
        f"target {p['target']} → {result['out']}"
    )
    rows = [
        [
            f"{r['rate']:g}",
            r["sparsity"],
            r["sa_before"],
            r["asr_before"],
            r["sa_after"],
            r["asr_after"],
            r["rte_s"] / 60,
        ]
        for r in result["results"]
    ]
    columns = ["Rate", "Sparsity %", "SA before %", "ASR before %", "SA after %", "ASR after %", "RTE (min)"]
    return [table(title, columns, rows)]


def command(focus: str | None = None) -> Any:
    unlearning = method_options(
        offered(),
        focus=focus_of(focus),
        panel="Cleanse",
        trainer_panel="Cleanse: training of the unlearning method",
        prefix="unlearn",
        clash=TRAINING,
    )
    return cli(
        backdoor_cleanse,
        options=OPTIONS,
        render=render,
        paths=lambda r: [x["model_after"] for x in r.get("results", [])],
        generated=config_options(TrainConfig, panel="Training of the Trojan model") + unlearning,
        again=START_OVER,
    )


def epilog() -> str:
    listing = "\n\n".join(f"{name}: {spec.summary}" for name, spec in METHODS.items())
    return f"Unlearning methods:\n\n{listing}\n\n{EPILOG}"
