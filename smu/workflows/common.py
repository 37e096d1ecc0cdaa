"""What every workflow shares: the run folder and its manifest, and the provenance string written
into every artifact (the command as options, the same whether it came from the CLI or the API)."""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from smu import __version__
from smu.core.options import flag_of, option_flag, show
from smu.core.progress import Estimate


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


TRACKING_OPTIONS = ("log", "log_dir", "tracking_uri", "wandb_project", "wandb_entity", "log_models")
"""Where a run is tracked (``smu.loggers``): not what it computes, so neither in its provenance nor in its
manifest, and a run logged to a tracker writes the files a run without one writes."""

OUTPUT_OPTIONS = (
    "out",
    "force",
    "resume",
    "reporter",
    "executor",
    "address",
    "cpus_per_step",
    "gpus_per_step",
    *TRACKING_OPTIONS,
)


def command_line(
    command: str,
    values: dict[str, Any],
    *configs: Any,
    prefix: Callable[[Any, str], str] = lambda cfg, name: "",
    arguments: tuple[Any, ...] = (),
    repeated: tuple[str, ...] = (),
) -> str:
    """The command as a shell line that runs it again, for the artifacts' headers: ``arguments`` (the
    positional ones), the command's own ``values`` (those named in ``repeated`` once per item, as
    ``--space A --space B``), then every field of each resolved config (``prefix(config, field)``
    before a flag, as backdoor-cleanse's --unlearn-epochs), so the same run gives the same string
    whether it came from the CLI or the API.

    A value of None (an option not given, with no default to write: SalUn's --saliency) and a False
    own value (an off switch: --no-eval, --amp) are left out; a config's boolean is its flag
    (``--aug``/``--no-aug``); lists are comma-separated as the CLI reads them; every value is
    shell-quoted. Paths are written as given, so relative ones are relative to the folder the run
    started in; where the output went (--out, --force, --resume, the executor) is left out, so a
    replay writes a new run folder with the same bytes."""
    words = [command, *(shlex.quote(show(a)) for a in arguments)]
    for key, value in sorted(values.items()):
        if value is None or value is False or key in OUTPUT_OPTIONS:
            continue
        flag = flag_of(key.rstrip("_"))
        items = value if key in repeated else [value]
        words += [flag] if value is True else [w for v in items for w in (flag, shlex.quote(show(v)))]
    for cfg in (c for c in configs if c is not None):
        for f in dataclasses.fields(cfg):
            value = getattr(cfg, f.name)
            if value is None:
                continue
            flags = option_flag(type(cfg), f.name, prefix(cfg, f.name)).split("/")
            if isinstance(value, bool):
                words += [flags[0]] if value else flags[1:]
            else:
                words += [flags[0], shlex.quote(show(value))]
    return " ".join(words)


def jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """Options for manifest.json: paths and tuples as JSON values, the reporter and the trackers left out."""
    return {
        k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
        for k, v in values.items()
        if k != "reporter" and k not in TRACKING_OPTIONS
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
    threads: int | None = None,
    reporter: Any = None,
    resumable: bool = False,
) -> Iterator[Path]:
    """The run folder (refused when it holds something, unless ``force``, naming ``--resume`` where the
    command has it; removed again if this run made it and failed), with the training runtime (--amp,
    --compile, --sync-bn) and torch's thread count (--threads, else :mod:`smu.execution.threads`'
    choice) set for everything inside; ``reporter`` hears when the machine is too busy for that many
    threads."""
    from smu.execution.engine import runtime
    from smu.io import files

    with (
        threads_for(threads, reporter),
        runtime(amp, compile, sync_bn),
        files.run_dir(out, force, resumable) as folder,
    ):
        yield folder


@contextlib.contextmanager
def threads_for(threads: int | None, reporter: Any = None) -> Iterator[Any]:
    """torch's thread count for a command's work (:func:`smu.execution.threads.applied`), with a note to
    ``reporter`` when other work already keeps the cores busy."""
    from smu.execution import threads as threading

    with threading.applied(threads) as chosen:
        hint = threading.busy_hint(chosen)
        if hint and reporter is not None:
            reporter.note(hint)
        yield chosen


@dataclasses.dataclass
class Tracked:
    """A command's run in the experiment trackers (``run`` None when none was asked for)."""

    run: Any
    settings: Any
    tags: dict[str, str]
    """What the run is, for a run table's filters; manifest.json keeps them, for ``smu log``."""

    def done(self, result: dict[str, Any], folder: Path, files: Sequence[Path | str] = ()) -> None:
        """Send the result's numbers as the final metrics (to the digits --json and manifest.json show
        them), and the run's files: ``manifest.json``, ``files`` (report.md, figures), and with
        --log-models every model, mask and forget set."""
        from smu import loggers
        from smu.core.units import reported

        if self.run is None:
            return
        self.run.final(loggers.numbers(reported(result)))
        sent = (
            [folder / "manifest.json", *map(Path, files)]
            if (folder / "manifest.json").is_file()
            else list(map(Path, files))
        )
        if self.settings.log_models:
            sent += sorted(folder.rglob("*.safetensors"))
        self.run.artifacts(sent)


@contextlib.contextmanager
def tracked(
    tracking: Any,
    folder: Path,
    command: str,
    tags: dict[str, Any],
    device: Any = None,
    *,
    root: Path | None = None,
    fresh: bool = False,
) -> Iterator[Tracked]:
    """The command's run in the trackers of ``tracking`` (:func:`smu.loggers.settings`) while the block
    runs: its parameters are the provenance string's, with smu's and torch's versions and the device;
    ``tags`` (command, method, scenario, model, sparsity, seed) are what a run table filters by."""
    from smu import loggers

    params = loggers.params_of(command) | {"smu_version": __version__, "device": str(device)}
    if tracking is not None and tracking.kinds:
        import torch

        params["torch_version"] = torch.__version__
    shown = loggers.tags_of(tags)
    with loggers.tracked(
        tracking, name=folder.name, folder=folder, params=params, tags=shown, root=root, fresh=fresh
    ) as run:
        yield Tracked(run, tracking, shown)


def write_manifest(
    out: Path,
    command: str,
    options: dict[str, Any],
    result: dict[str, Any],
    device: Any,
    tags: dict[str, str] | None = None,
) -> str:
    """manifest.json beside the artifacts: what ran, with which options and versions, and what it gave."""
    from smu.core.units import reported
    from smu.execution import threads
    from smu.io import files

    manifest = {
        "command": command,
        "options": jsonable(options),
        "result": reported(result),
        "versions": versions(device),
        "threads": threads.current().as_dict(),  # a CPU's results depend on it (smu.execution.threads)
        "tags": tags or {},  # what the run is, for experiment trackers (smu log reads them back)
    }
    return str(files.write_manifest(out, manifest))


def estimate(
    model: Any, splits: Any, batch_size: int, work: str, train_images: int, eval_images: int = 0
) -> Estimate:
    """The plan of a run that trains ``model``: ``work`` in words, ``train_images`` training-step images
    and ``eval_images`` images of passes without an update, timed by a few training steps of ``model``
    on its device (under torchrun each rank does its share)."""
    from smu.execution import distributed
    from smu.execution.engine import EVAL_SHARE, calibrate

    images = train_images + round(eval_images * EVAL_SHARE)
    per_second = calibrate(model, splits.info.input_shape, batch_size) * distributed.world_size()
    device = next(model.parameters()).device
    return Estimate(work, images, images / per_second, per_second, str(device))


def runs_estimate(runs: list[tuple[str, Any]], subject: Any, what: str, parallel: int | None = 1) -> Estimate:
    """The plan of a job of unlearning ``runs`` (method, config) on ``subject``'s model and forget set, each
    measured after: timed here, ``parallel`` at a time (None: an executor sends them elsewhere, untimed)."""
    from smu.methods.unlearning import METHODS

    splits, n_forget = subject.splits, len(subject.forget)
    n = len(splits.train)
    fed = [METHODS.get_spec(method).work(cfg, n_forget, n - n_forget) for method, cfg in runs]
    images = sum(f[1] for f in fed if f is not None)
    if None in fed:
        what += f"; {fed.count(None)} run(s) of your own code not counted"
    seen = len(runs) * (n + len(splits.val) + len(splits.test))
    batch = max((getattr(cfg, "batch_size", 64) for _, cfg in runs), default=64)
    plan = estimate(subject.loaded.model, splits, batch, what, images, seen)
    return plan.side_by_side(parallel)
