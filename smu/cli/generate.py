"""CLI options made from hyper-parameter dataclasses: one field, one option, with the field's docstring
as help, its declared flag and range, and its type parsed by Typer.

The training options of every command that trains come from ``TrainConfig``; the options of
``smu unlearn`` and ``smu backdoor-cleanse`` from the union of the registered methods' configs, each
option's help giving every method's own text and default (or, with ``--method X --help``, X's only).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from smu.core.options import declared, field_help, help_range, option_flag, parse_list, show


@dataclass(frozen=True)
class Generated:
    """One CLI option made from a dataclass field: ``name`` is the Python keyword it arrives as."""

    name: str
    annotation: Any
    default: Any
    convert: Callable[[Any], Any] | None = None


def cli_type(kind: Any, flag: str) -> tuple[Any, Callable[[Any], Any] | None]:
    """The type Typer parses for a field type, and how to turn the parsed value into the field's."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        kind = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (tuple, list):
        return str, functools.partial(parse_list, args[0], origin, flag=flag)
    return kind, None


def described(text: str, default: Any, cls: type, name: str) -> str:
    """A method's option in --help: its text, default and declared range ('Weight α (default 0) [x>=0].')."""
    return f"{text.rstrip('.')} (default {show(default)}){bounds(cls, name)}."


def bounds(cls: type, name: str) -> str:
    """' [x>0]': the declared range of field ``name``, as Typer's help shows it ('\\[': Typer reads [...]
    as Rich markup and would drop it), or '' when it has none."""
    shown = help_range(declared(cls)[name])
    return f" \\{shown}" if shown else ""


def field_option(
    cls: type,
    name: str,
    *,
    panel: str,
    help_text: str | None = None,
    default: Any = None,
    prefix: str = "",
) -> Generated:
    """The option for field ``name`` of ``cls``: its flag (``--name`` or its declared one, with
    ``prefix``), its help (the field docstring unless ``help_text``), and ``default`` (None = not given)."""
    flag = option_flag(cls, name, prefix)
    kind, convert = cli_type(typing.get_type_hints(cls)[name], flag)
    if help_text is None:
        help_text = field_help(cls).get(name, "") + bounds(cls, name)
    option = typer.Option(flag, help=help_text, rich_help_panel=panel, show_default=default is not None)
    annotation = Annotated[kind if default is not None else kind | None, option]
    shown = show(default) if convert is not None and default is not None else default
    return Generated(f"{prefix.replace('-', '_')}_{name}" if prefix else name, annotation, shown, convert)


def config_options(cls: type, *, panel: str, skip: set[str] = frozenset()) -> list[Generated]:
    """Every field of ``cls`` as an option, with the dataclass's defaults shown."""
    defaults = cls()
    return [
        field_option(cls, f.name, panel=panel, default=getattr(defaults, f.name))
        for f in dataclasses.fields(cls)
        if f.name not in skip
    ]


def method_options(
    methods: dict[str, Any],
    *,
    focus: str | None,
    panel: str,
    trainer_panel: str,
    prefix: str = "",
    clash: set[str] = frozenset(),
) -> list[Generated]:
    """The union of the methods' options (None = the method's default). Each option's help gives every
    method's own text and default; with ``focus`` (``--method X --help``), only X's options, with X's
    text. Options named in ``clash`` get ``prefix`` (backdoor-cleanse: --unlearn-epochs)."""
    from smu.execution.engine import TrainConfig

    chosen = {focus: methods[focus]} if focus in methods else methods
    fields: dict[str, list[tuple[str, type, str, Any]]] = {}
    for name, spec in chosen.items():
        defaults, docs = spec.config(), field_help(spec.config)
        for f in dataclasses.fields(spec.config):
            fields.setdefault(f.name, []).append(
                (name, spec.config, docs.get(f.name, ""), getattr(defaults, f.name))
            )
    training = {f.name for f in dataclasses.fields(TrainConfig)}
    options = []
    for field_name, owners in fields.items():
        groups: dict[str, list[str]] = {}
        for method, config, text, default in owners:
            groups.setdefault(described(text, default, config, field_name), []).append(method)
        if focus in methods:
            help_text, where = next(iter(groups)), f"{focus} options"
        else:
            help_text = " ".join(f"{', '.join(ms)}: {text}" for text, ms in groups.items())
            where = trainer_panel if field_name in training else panel
            if len(owners) == 1 and field_name not in training:
                where = f"{panel}: {owners[0][0]}"
        options.append(
            field_option(
                owners[0][1],
                field_name,
                panel=where,
                help_text=help_text,
                prefix=prefix if field_name in clash else "",
            )
        )
    return options


def retrain_options(trainer_panel: str) -> list[Generated]:
    """The options of the retrained reference of ``smu audit`` and ``smu tune``: retrain's, spelled
    --retrain-epochs, --retrain-lr, ..."""
    from smu.methods.unlearning import METHODS

    reference = next(name for name, spec in METHODS.items() if spec.exact)
    return method_options(
        {reference: METHODS[reference]},
        focus=None,
        panel="Reference",
        trainer_panel=trainer_panel,
        prefix="retrain",
        clash={f.name for f in dataclasses.fields(METHODS[reference].config)},
    )


def pruning_options() -> list[Generated]:
    """Each pruning method's own options (not given = the method's default), in the Pruning panel."""
    from smu.methods.pruning import METHODS

    found: dict[str, Generated] = {}
    for name, spec in METHODS.items():
        if spec.config is None:
            continue
        docs = field_help(spec.config)
        for f in dataclasses.fields(spec.config):
            default = getattr(spec.config(), f.name)
            help_text = f"{name}: {described(docs.get(f.name, ''), default, spec.config, f.name)}"
            found.setdefault(f.name, field_option(spec.config, f.name, panel="Pruning", help_text=help_text))
    return list(found.values())


def search_spaces() -> str:
    """Each method's numeric options ``smu tune`` searches, with their ranges, a paragraph per method."""
    from smu.core.options import tunable
    from smu.methods.unlearning import METHODS

    def shown(space: Any) -> str:  # not LOW:HIGH here: Rich would read ":100:" as an emoji
        return f"{space.low:g} to {space.high:g}" + (" log-uniform" if space.log else "")

    spaces = {
        name: ", ".join(f"{option} {shown(space)}" for option, space in tunable(spec.config).items())
        for name, spec in METHODS.items()
    }
    return "\n\n".join(f"{name}: {text}" for name, text in spaces.items() if text)
