"""Where work runs: a plan's steps (``steps``) and the executors that run them (``executor``: serial;
``local_executor``: worker processes here; ``ray_executor``: Ray tasks), and torchrun's ranks
(``distributed``).

This package's own namespace stays free of torch: ``smu --version`` imports ``distributed`` only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smu.execution.executor import Executor

EXECUTORS = ("serial", "local", "ray")


def make_executor(
    name: str = "serial",
    address: str | None = None,
    cpus_per_step: float | None = None,
    gpus_per_step: float | None = None,
) -> Executor:
    """The executor ``--executor NAME`` with its options (``check()`` it before anything runs)."""
    from smu.core.errors import UsageError

    if name not in EXECUTORS:
        raise UsageError(f"--executor {name!r} is not one of {', '.join(EXECUTORS)}")
    if name == "serial":
        if address is not None or cpus_per_step is not None or gpus_per_step is not None:
            raise UsageError(
                "--address, --cpus-per-step and --gpus-per-step need another --executor",
                hint="add --executor local (--cpus-per-step, --gpus-per-step) or ray, or leave them out",
            )
        from smu.execution.executor import Executor

        return Executor()
    if name == "local":
        if address is not None:
            raise UsageError("--address needs --executor ray", hint="leave it out with --executor local")
        from smu.execution.local_executor import LocalExecutor

        return LocalExecutor(cpus_per_step, gpus_per_step)
    from smu.execution.ray_executor import RayExecutor  # ray itself is imported only when it runs

    return RayExecutor(address, cpus_per_step, gpus_per_step)
