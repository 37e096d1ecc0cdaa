"""Steps, the unit of execution: a recipe, an audit's ensembles are plans of independent steps.

A step writes into its own folder and is done when that folder holds ``step.json`` with the same
key, a hash of everything that decides its output (resolved options, the keys of the steps it reads
from). So an interrupted run continues where it stopped (an unfinished step resumes from its own
checkpoints), a changed option reruns exactly the steps it affects, and another plan sharing a step
(a second audit of the same model) reuses it.

An executor runs the steps that are not done: :func:`run_steps` one after another in this process (the
default), ``smu.ray_executor`` as Ray tasks, each once the steps it ``needs`` are done. A Ray worker
cannot be handed a step (its ``run`` closes over the planner and its reporter), so it is handed a
:class:`Plan`, plain data from which it plans again and picks the step by its key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smu import artifacts, distributed
from smu.errors import UsageError
from smu.progress import Reporter


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


EXECUTORS = ("serial", "ray")


@dataclass(frozen=True)
class Executor:
    """Where the steps run: ``serial``, one after another in this process (the default), or ``ray``, as
    Ray tasks on a local Ray or the cluster at ``address`` (``smu.ray_executor``)."""

    name: str = "serial"
    address: str | None = None
    cpus_per_step: float | None = None
    """None: 1 for a step with a GPU; on CPUs, the driver's torch threads (a CPU's results depend on the
    thread count, so the report then equals a serial run on the driver)."""
    gpus_per_step: float | None = None
    """None: one GPU per step where the cluster has GPUs, none elsewhere."""

    def check(self) -> None:
        """Every option, and for ray that Ray is installed, before anything runs."""
        if self.name not in EXECUTORS:
            raise UsageError(f"--executor {self.name!r} is not one of {', '.join(EXECUTORS)}")
        if self.name == "serial" and (
            self.address is not None or self.cpus_per_step is not None or self.gpus_per_step is not None
        ):
            raise UsageError(
                "--address, --cpus-per-step and --gpus-per-step need --executor ray",
                hint="add --executor ray, or leave them out",
            )
        if self.cpus_per_step is not None and not self.cpus_per_step > 0:
            raise UsageError(f"--cpus-per-step {self.cpus_per_step:g} must be > 0")
        if self.gpus_per_step is not None and not self.gpus_per_step >= 0:
            raise UsageError(f"--gpus-per-step {self.gpus_per_step:g} must be >= 0")
        if self.name == "ray":
            if distributed.world_size() > 1:
                raise UsageError(
                    "--executor ray under torchrun: every rank would start the same Ray tasks",
                    hint="run smu run --executor ray without torchrun, or torchrun with the serial executor",
                )
            from smu import ray_executor  # the only module that imports ray

            ray_executor.check(self)

    def run(
        self, steps: list[Step], plan: Plan | None, reporter: Reporter | None = None
    ) -> list[tuple[Step, dict[str, Any], bool]]:
        """Run every step that is not done; return (step, result, skipped) for all, in plan order.
        ``plan`` plans ``steps`` again in another process (the serial executor does without it)."""
        if self.name == "serial":
            return run_steps(steps, reporter)
        from smu import ray_executor

        if plan is None:
            raise ValueError(f"the {self.name} executor needs a Plan to find the steps in its workers")

        return ray_executor.run_steps(steps, plan, self, reporter or Reporter())


def is_done(step: Step) -> bool:
    marker = step.folder / "step.json"
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("key") == step.key
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, or not an object: not done
        return False


def result_of(step: Step) -> dict[str, Any]:
    """The result a finished step recorded."""
    return json.loads((step.folder / "step.json").read_text())["result"]


def start(step: Step) -> None:
    """Mark a step as started with its key; leftovers of a step started with another key are cleared.

    Steps resume from their checkpoints, so what is in the folder must belong to this very step.
    """
    marker = step.folder / "step.started"
    if step.folder.is_dir() and (not marker.is_file() or marker.read_text() != step.key):
        artifacts.remove_tree(step.folder)  # rank 0 alone under torchrun
    artifacts.atomic_write(marker, step.key.encode())


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
    checkpoints), and record its result."""
    start(step)
    result = step.run()
    artifacts.write_json(step.folder / "step.json", {"key": step.key, "title": step.title, "result": result})
    return result
