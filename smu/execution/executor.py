"""Where a plan's steps run: :class:`Executor` is the interface and the default, serial executor;
``smu.execution.ray_executor`` implements it with Ray; ``smu.execution.make_executor`` picks one by
name."""

from __future__ import annotations

from typing import Any

from smu.core.progress import Reporter
from smu.execution.steps import Plan, Step, run_steps


class Executor:
    """Runs the steps of a plan that are not done. This one runs them one after another in this
    process, and needs nothing else."""

    name = "serial"
    parallel: int | None = 1
    """How many steps run at a time on this machine (None: they run elsewhere), for the plan's time."""
    threads: int | None = None
    """Each step's torch threads when the executor sets them (None: the command's own choice)."""

    def check(self) -> None:
        """Everything that can be checked before anything runs (raises UsageError)."""

    def start(self) -> None:
        """Get ready to run steps (start workers) while the command loads data and plans; ``run`` is called
        next, and releases what this started."""

    def run(
        self, steps: list[Step], plan: Plan | None, reporter: Reporter | None = None
    ) -> list[tuple[Step, dict[str, Any], bool]]:
        """Run every step that is not done; return (step, result, skipped) for all, in plan order.
        ``plan`` plans ``steps`` again in another process (the serial executor does without it)."""
        return run_steps(steps, reporter)
