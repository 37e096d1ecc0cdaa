"""Steps, the unit of execution: a recipe, an audit's ensembles are plans of independent steps.

A step writes into its own folder and is done when that folder holds ``step.json`` with the same
key, a hash of everything that decides its output (resolved options, the keys of the steps it reads
from). So an interrupted run continues where it stopped (an unfinished step resumes from its own
checkpoints), a changed option reruns exactly the steps it affects, and another plan sharing a step
(a second audit of the same model) reuses it.

An executor (``smu.execution.executor``) runs the steps that are not done: :func:`run_steps` one
after another in this process (the default), ``smu.execution.ray_executor`` as Ray tasks, each once the
steps it ``needs`` are done; both build on what this module defines. A Ray worker
cannot be handed a step (its ``run`` closes over the planner and its reporter), so it is handed a
:class:`Plan`, plain data from which it plans again and picks the step by its key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smu import loggers
from smu.core.progress import Reporter
from smu.io import files


@dataclass
class Step:
    title: str
    folder: Path
    key: str
    run: Callable[[], dict[str, Any]]
    """Does the work, writing into ``folder``; returns the JSON-able result kept in step.json."""
    tags: dict[str, Any]
    """What the step is, for reports (kind, seed, method, ...)."""
    needs: tuple[str, ...] = ()
    """Keys of the steps whose results this one reads; they come earlier in a plan, and a parallel
    executor starts this step only once they are done."""


@dataclass(frozen=True)
class Plan:
    """How to plan the same steps again elsewhere: ``build(**kwargs)`` returns them. ``build`` is a
    module-level function and ``kwargs`` plain data, so both travel to a worker by value; planning does
    not load data, so it is cheap. ``amp``/``compile``: the training runtime the steps run in."""

    build: Callable[..., list[Step]]
    kwargs: dict[str, Any]
    amp: bool = False
    compile: bool = False
    tracking: dict[str, Any] | None = None
    """The job's run in the experiment trackers (``smu.loggers``: its handle), for the steps' child runs;
    set by the executor that sends the plan to workers."""


def is_done(step: Step) -> bool:
    return recorded_key(step.folder) == step.key


def recorded_key(folder: Path) -> str | None:
    """The key of the step that finished in ``folder``; None where none did."""
    marker = folder / "step.json"
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text()).get("key")
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, or not an object: not done
        return None


def result_of(step: Step) -> dict[str, Any]:
    """The result a finished step recorded."""
    return json.loads((step.folder / "step.json").read_text())["result"]


def start(step: Step) -> None:
    """Mark a step as started with its key; leftovers of a step started with another key are cleared.

    Steps resume from their checkpoints, so what is in the folder must belong to this very step.
    """
    marker = step.folder / "step.started"
    if step.folder.is_dir() and (not marker.is_file() or marker.read_text() != step.key):
        files.remove_tree(step.folder)  # rank 0 alone under torchrun
    files.atomic_write(marker, step.key.encode())


def run_steps(steps: list[Step], reporter: Reporter | None = None) -> list[tuple[Step, dict[str, Any], bool]]:
    """The serial executor: run every step that is not done yet, in order; return (step, result,
    skipped) for all of them."""
    reporter = reporter or Reporter()
    done = []
    for i, step in enumerate(steps, 1):
        if is_done(step):
            reporter.note(f"step {i}/{len(steps)}: {step.title} (done before, skipped)")
            done.append((step, result_of(step), True))
            continue
        reporter.note(f"step {i}/{len(steps)}: {step.title}")
        done.append((step, run_one(step), False))
    return done


def run_one(step: Step) -> dict[str, Any]:
    """Run a step that is not done, wherever it runs: mark it started, run it (resuming from its own
    checkpoints), and record its result. In a tracked job the step is a child run of the job's, with
    its result's numbers as final metrics (and its model files, with --log-models)."""
    start(step)
    with loggers.step_run(step.title, step.folder, step.tags) as tracked:
        result = step.run()
        record = {"key": step.key, "title": step.title, "tags": step.tags, "result": result}
        files.write_json(step.folder / "step.json", record)
        if tracked is not None:
            tracked.final(loggers.numbers(result))
            if tracked.settings.log_models:
                tracked.artifacts(sorted(step.folder.rglob("*.safetensors")))
    return result
