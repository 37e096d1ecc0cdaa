"""What every workflow shares: the run folder and its manifest, and the provenance string written
into every artifact (the command as options, the same whether it came from the CLI or the API)."""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from smu import __version__
from smu.core.options import flag_of, option_flag, show


def refuse_unknown(options: dict[str, Any], known: set[str], command: str) -> None:
    """An option (keyword) no part of the command takes is an error with the closest one, not ignored."""
    from smu.core.errors import UsageError
    from smu.core.registry import suggest

    for key in options:
        if key not in known:
            close = suggest(key, sorted(known))
            guess = f" (did you mean {flag_of(close)}?)" if close else ""
            raise UsageError(f"unknown option {flag_of(key)}{guess}", hint=f"smu {command} --help lists them")


def default_out(command: str, *parts: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    # An arch spec such as torchvision:vit_b_16@224 holds characters some file systems refuse.
    parts = tuple(p.replace(":", "-").replace("@", "-") for p in parts if p)
    return Path("runs") / "-".join([command, *parts, stamp])


OUTPUT_OPTIONS = (
    "out",
    "force",
    "resume",
    "reporter",
    "executor",
    "address",
    "cpus_per_step",
    "gpus_per_step",
)


def command_line(
    command: str,
    values: dict[str, Any],
    *configs: Any,
    prefix: Callable[[Any, str], str] = lambda cfg, name: "",
) -> str:
    """The command as options, for the artifacts' headers: the command's own ``values``, then every field
    of each resolved config (None skipped; ``prefix(config, field)`` before a flag, as backdoor-cleanse's
    --unlearn-epochs), so the same run gives the same string whether it came from the CLI or the API."""
    words = [command]
    for key, value in sorted(values.items()):
        if value is None or value is False or key in OUTPUT_OPTIONS:
            continue
        flag = flag_of(key.rstrip("_"))
        words.append(flag if value is True else f"{flag} {show(value)}")
    for cfg in (c for c in configs if c is not None):
        for f in dataclasses.fields(cfg):
            value, flags = (
                getattr(cfg, f.name),
                option_flag(type(cfg), f.name, prefix(cfg, f.name)).split("/"),
            )
            if isinstance(value, bool):
                words += [flags[0]] if value else flags[1:]
            else:
                words.append(f"{flags[0]} {show(value)}")
    return " ".join(words)


def jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """Options for manifest.json: paths and tuples as JSON values, the reporter left out."""
    return {
        k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
        for k, v in values.items()
        if k != "reporter"
    }


def versions(device: Any) -> dict[str, Any]:
    import torch

    from smu.execution import distributed

    ranks = {"ranks": distributed.world_size()} if distributed.active() else {}
    return {
        "smu": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if getattr(device, "type", "") == "cuda"
        else platform.processor() or platform.machine(),
        **ranks,
    }


@contextlib.contextmanager
def run_folder(
    out: Path,
    *,
    force: bool,
    amp: bool = False,
    compile: bool = False,
    sync_bn: bool = False,
    resumable: bool = False,
) -> Iterator[Path]:
    """The run folder (refused when it holds something, unless ``force``, naming ``--resume`` where the
    command has it; removed again if this run made it and failed), with the training runtime (--amp,
    --compile, --sync-bn) set for everything inside."""
    from smu.execution.engine import runtime
    from smu.io import files

    with runtime(amp, compile, sync_bn), files.run_dir(out, force, resumable) as folder:
        yield folder


def write_manifest(
    out: Path, command: str, options: dict[str, Any], result: dict[str, Any], device: Any
) -> str:
    """manifest.json beside the artifacts: what ran, with which options and versions, and what it gave."""
    from smu.io import files

    manifest = {
        "command": command,
        "options": jsonable(options),
        "result": result,
        "versions": versions(device),
    }
    return str(files.write_manifest(out, manifest))
