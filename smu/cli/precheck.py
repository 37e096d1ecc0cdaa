"""The checks of a command line that need no torch, made before the command is built (building it
imports torch through the method registries: seconds, more on a loaded machine).

For the command being run: the options it cannot do without, the names (dataset, architecture,
device, methods), the files that must exist, the forget-set specs, and the declared ranges of the
training and pruning options. Every problem found is reported in one message, the most basic first:
missing options, names, files, ranges, then a range that depends on a name (the rewind epoch against
``--epochs`` of a method that trains dense first), only once that name is known. What needs the
registries or the data (a method's own options, a class of the dataset, a file's contents) the
command checks as before; so does Typer, for a value of the wrong type or an unknown option.

The line is read the way Click reads it (``--flag value``, ``--flag=value``, the last value wins), but
only for the options named here; ``tests/cli/test_precheck.py`` proves that each is an option of its
command, spelled and required as the command declares it.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from smu.core import names
from smu.core.errors import SmuError, UsageError, no_such_file
from smu.core.options import ConfigError, Problem, declared, option_flag, parse_list
from smu.core.registry import lookup, suggest
from smu.core.training import PruneOptions, TrainConfig

DATASET, ARCH, DEVICE, PRUNING, UNLEARNING = "dataset", "architecture", "device", "pruning", "unlearning"
METRIC = "metric"


@dataclass(frozen=True)
class Checks:
    """What the check reads of one command's line: options by their long flag."""

    required: tuple[str, ...] = ()
    """Options the command cannot run without."""
    names: dict[str, str] = field(default_factory=dict)
    """Option -> the kind of name it takes (DATASET, ARCH, DEVICE, PRUNING or UNLEARNING method, or a
    comma-separated list of METRIC names)."""
    files: tuple[str, ...] = ()
    """Options naming a file that must exist."""
    forget: tuple[str, ...] = ()
    """Options taking a forget-set spec."""
    ranges: tuple[type, ...] = ()
    """Config classes whose ranged fields are options of the command, by their flags."""
    argument: str | None = None
    """What the first argument is, if it is checked: "recipe" (a file or a shipped name) or "file"."""
    short: dict[str, str] = field(default_factory=dict)
    """Short spellings of the options read: ``-d`` -> ``--dataset``."""
    values: tuple[str, ...] = ()
    """With ``argument``: every other option of the command that takes a value, and below, those that
    take none, so that no value is mistaken for the argument."""
    switches: tuple[str, ...] = ()


RUNNING = {"--device": DEVICE}
COMMANDS: dict[str, Checks] = {
    "prune": Checks(
        names={"--dataset": DATASET, "--arch": ARCH, "--method": PRUNING, **RUNNING},
        files=("--model", "--rewind-from"),
        ranges=(TrainConfig, PruneOptions),
        short={"-d": "--dataset", "-a": "--arch", "-m": "--method"},
    ),
    "unlearn": Checks(
        required=("--model", "--forget", "--method"),
        names={"--method": UNLEARNING, "--metrics": METRIC, **RUNNING},
        files=("--model", "--mask", "--reference", "--saliency"),
        forget=("--forget",),
        short={"-f": "--forget", "-m": "--method", "-r": "--reference"},
    ),
    "backdoor-cleanse": Checks(
        names={"--dataset": DATASET, "--arch": ARCH, "--method": UNLEARNING, "--prune": PRUNING, **RUNNING},
        files=("--model", "--saliency"),
        ranges=(TrainConfig,),
        short={"-d": "--dataset", "-a": "--arch", "-m": "--method"},
    ),
    "eval": Checks(
        required=("--model", "--forget"),
        names={"--metrics": METRIC, **RUNNING},
        files=("--model", "--reference", "--mask"),
        forget=("--forget",),
        short={"-f": "--forget", "-r": "--reference"},
    ),
    "audit": Checks(
        required=("--model", "--forget", "--method"),
        names={"--method": UNLEARNING, "--metrics": METRIC, **RUNNING},
        files=("--model", "--saliency"),
        forget=("--forget",),
        short={"-f": "--forget", "-m": "--method"},
    ),
    "tune": Checks(
        required=("--model", "--forget", "--method"),
        names={"--method": UNLEARNING, **RUNNING},
        files=("--model", "--reference", "--saliency"),
        forget=("--forget", "--holdout-forget"),
        short={"-f": "--forget", "-m": "--method"},
    ),
    "import": Checks(
        required=("--dataset",),
        names={"--dataset": DATASET, "--arch": ARCH},
        short={"-d": "--dataset", "-a": "--arch"},
    ),
    "run": Checks(
        argument="recipe",
        short={"-o": "--out"},
        values=(
            *("--out", "--executor", "--address", "--cpus-per-step", "--gpus-per-step", "--threads"),
            *("--log", "--log-dir", "--tracking-uri", "--wandb-project", "--wandb-entity"),
        ),
        switches=("--dry-run", "--force", "--resume", "--json", "--quiet", "-q", "--log-models"),
    ),
    "inspect": Checks(argument="file", switches=("--json", "--quiet", "-q")),
}
"""The commands checked, by name; the others (demo, recipes, plot) start without torch or check little."""


@dataclass
class Found:
    """A problem: the error the command would raise for it alone, and its words among several."""

    error: SmuError
    brief: str


def precheck(command: str, args: Sequence[str]) -> None:
    """Raise one SmuError for everything wrong with ``smu COMMAND ARGS`` that is visible without torch;
    nothing for a line asking for help."""
    checks = COMMANDS.get(command)
    if checks is None or any(a in ("--help", "-h") for a in args):
        return
    given, argument = read_line(args, checks)
    found = problems(checks, given, argument)
    if len(found) == 1:
        raise found[0].error
    if found:
        usage = [f for f in found if f.error.exit_code == UsageError.exit_code]
        error = (UsageError if usage else type(found[0].error))(
            "; ".join(f.brief for f in found), hint=f"see 'smu {command} --help'"
        )
        raise error


def read_line(args: Sequence[str], checks: Checks) -> tuple[dict[str, str], str | None]:
    """The values of the options the checks read (by long flag; a switch as "true" or "false"), and the
    first argument where the checks say what it is and no unknown option makes its place uncertain."""
    wanted = {*checks.required, *checks.names, *checks.files, *checks.forget, *checks.values}
    wanted |= {flag for cls in checks.ranges for flag in range_flags(cls)}
    given: dict[str, str] = {}
    argument, certain, i = None, True, 0
    while i < len(args):
        word = args[i]
        if word == "--":
            if argument is None and certain and i + 1 < len(args):
                argument = args[i + 1]
            break
        flag, eq, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        flag = checks.short.get(flag, flag)
        if flag in wanted:
            if eq:
                given[flag] = inline
            elif i + 1 < len(args):
                given[flag], i = args[i + 1], i + 1
        elif flag.startswith("-") and len(flag) > 1:
            certain = certain and flag in checks.switches  # an unknown option may take the next word
        elif argument is None and certain:
            argument = word
        i += 1
    return given, (argument if checks.argument else None)


def range_flags(cls: type) -> dict[str, str]:
    """The flags of the fields of ``cls`` that declare a range, by flag: field name."""
    ranged = ("gt", "ge", "lt", "le", "choices")
    return {
        option_flag(cls, name): name for name, meta in declared(cls).items() if any(k in meta for k in ranged)
    }


def problems(checks: Checks, given: dict[str, str], argument: str | None) -> list[Found]:
    found: list[Found | None] = [missing(flag, checks) for flag in checks.required if flag not in given]
    for flag, kind in checks.names.items():
        if flag in given:
            found += name_problems(given[flag], kind)
    found += [
        Found(no_such_file(given[flag], flag), f"{flag} {given[flag]!r}: no such file")
        for flag in checks.files
        if flag in given and not names.is_file(given[flag])
    ]
    found += [caught(names.forget_kind, given[flag]) for flag in checks.forget if flag in given]
    if argument is not None:
        found.append(caught(ARGUMENTS[checks.argument], argument))  # type: ignore[index]
    known = [f for f in found if f is not None]
    return known + range_problems(checks, given, known)


def missing(flag: str, checks: Checks) -> Found:
    spelled = " / ".join(f"'{s}'" for s in (flag, *(k for k, v in checks.short.items() if v == flag)))
    text = f"Missing option {spelled}"
    return Found(UsageError(text), text)


def choices(kind: str) -> tuple[Sequence[str], str]:
    """The names of a kind, and what the registry calls it in its error."""
    if kind == PRUNING:
        return (*names.PRUNING_METHODS, *names.plugin_names(names.PRUNING_GROUP)), "pruning method"
    if kind == UNLEARNING:
        return (*names.UNLEARNING_METHODS, *names.plugin_names(names.UNLEARNING_GROUP)), "unlearning method"
    if kind == METRIC:
        return (*names.METRICS, *names.plugin_names(names.METRICS_GROUP)), "metric"
    return {DATASET: names.DATASETS, ARCH: names.ARCHS, DEVICE: names.DEVICES}[kind], kind


def name_problems(value: str, kind: str) -> list[Found]:
    """An unknown name, as the registry would refuse it; a user's function (FILE.py:FUNCTION) and an arch
    of a library (torchvision:NAME) are checked later, their syntax here."""
    if kind == METRIC:  # a list: each name on its own
        return [found for item in value.split(",") if item.strip() for found in one_name(item.strip(), kind)]
    return one_name(value, kind)


def one_name(value: str, kind: str) -> list[Found]:
    known, what = choices(kind)
    try:
        if kind == ARCH:
            library, value, _ = names.split_arch(value)
            if library is not None:
                return []
        if kind == DEVICE:
            value = value.strip().lower()
            if value == "auto":
                return []
            value = value.partition(":")[0]
        if kind == UNLEARNING and ":" in value:
            return []
        lookup(dict.fromkeys(known), value, what)
    except SmuError as e:
        close = suggest(value, list(known)) if e.message.startswith("unknown") else None
        return [Found(e, e.message + (f" (did you mean {close!r}?)" if close else ""))]
    return []


def caught(check: Callable[[str], Any], value: str) -> Found | None:
    try:
        check(value)
    except SmuError as e:
        return Found(e, e.message)
    return None


def artifact_exists(path: str) -> None:
    if not names.is_file(path):
        raise no_such_file(path)


def recipe_exists(name: str) -> None:
    from smu.workflows.recipes.catalog import read_recipe

    read_recipe(name)


ARGUMENTS: dict[str, Callable[[str], None]] = {"recipe": recipe_exists, "file": artifact_exists}


def range_problems(checks: Checks, given: dict[str, str], before: list[Found]) -> list[Found]:
    """The declared ranges of the config classes' options that were given, then (for ``smu prune``, once
    the method is known to be a built-in and nothing it depends on is wrong) the rewind epoch and the
    rounds against the method's kind."""
    found: list[Problem] = []
    built: dict[type, Any] = {}
    for cls in checks.ranges:
        values = {}
        for flag, name in range_flags(cls).items():
            if flag in given:
                value = parsed(cls, name, given[flag])
                if value is not None:
                    values[name] = value
        try:
            built[cls] = cls(**values)
        except ConfigError as e:
            found += e.problems
    if PruneOptions in built and TrainConfig in built and not before and not found and "--model" not in given:
        found += schedule(built[PruneOptions], built[TrainConfig], given)
    if not found:
        return []
    error = ConfigError(found)
    return [Found(error, error.message)]


def schedule(prune: PruneOptions, train: TrainConfig, given: dict[str, str]) -> list[Problem]:
    """What ``PruneConfig.resolved`` will refuse, for a built-in method (a plug-in's kind is known only
    once it is loaded). ``--model`` brings its own rewind epoch, so the caller leaves that case out."""
    method = given.get("--method", PruneOptions.method)
    if method not in names.PRUNING_METHODS:
        return []
    return prune.schedule_problems(
        train.epochs, iterative=method in names.PRUNING_ITERATIVE, at_init=method in names.PRUNING_AT_INIT
    )


def parsed(cls: type, name: str, text: str) -> Any:
    """The option's value as its field's type, or None when it does not parse (Typer says so later, in its
    own words)."""
    kind = typing.get_type_hints(cls)[name]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    try:
        if typing.get_origin(kind) is tuple:
            return parse_list(typing.get_args(kind)[0], tuple, text)
        return kind(text)
    except (ValueError, SmuError):
        return None
