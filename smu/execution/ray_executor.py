"""The Ray executor: a plan's steps as Ray tasks, each started once the steps it needs are done.

- A task is handed plain data (the :class:`~smu.execution.steps.Plan` and a step's key), never a
  step: a step's ``run`` closes over the planner and its reporter. The worker plans again (cheap: no
  data is loaded) and runs the step with that key, exactly as the serial executor would.
- The run folder must be on a filesystem that the driver and every worker see at the same path: a step's
  result is its ``step.json``, later steps read their inputs from there, and a retried task resumes from
  the checkpoints in the step's folder. Each task checks a token file the driver wrote there.
- Faults: a task whose worker dies (SIGKILL, out of memory, a lost node) is retried by Ray, and the step
  resumes from its last checkpoint. A step that fails by itself (an ``SmuError``: a bad option,
  divergence; or a bug) is not retried, is reported with its message, and every step that does not need
  it still runs; then :func:`run_steps` raises one ``SmuError`` naming the failed steps, and running the
  same command again continues.

This is the only module that imports ray, and only inside functions: smu runs without it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from smu import loggers
from smu.core.errors import SmuError, SmuWarning, UsageError
from smu.core.progress import Reporter
from smu.execution import distributed, threads
from smu.execution.executor import Executor
from smu.execution.parallel import Display, raise_failed, take_ready
from smu.execution.steps import Plan, Step, is_done, result_of, run_one, start
from smu.io import files

RETRIES = 3
"""Times Ray reruns a task whose worker died (each rerun resumes the step from its checkpoint)."""
INSTALL = "pip install 'smu[ray]'"


@dataclass(frozen=True)
class RayExecutor(Executor):
    """The steps as Ray tasks on a local Ray or the cluster at ``address``."""

    address: str | None = None
    cpus_per_step: float | None = None
    """None: 1 for a step with a GPU; on CPUs, the driver's torch threads (a CPU's results depend on the
    thread count, so the report then equals a serial run on the driver)."""
    gpus_per_step: float | None = None
    """None: one GPU per step where the cluster has GPUs, none elsewhere."""
    name = "ray"
    parallel = None

    def check(self) -> None:
        if self.cpus_per_step is not None and not self.cpus_per_step > 0:
            raise UsageError(f"--cpus-per-step {self.cpus_per_step:g} must be > 0")
        if self.gpus_per_step is not None and not self.gpus_per_step >= 0:
            raise UsageError(f"--gpus-per-step {self.gpus_per_step:g} must be >= 0")
        if distributed.world_size() > 1:
            raise UsageError(
                "--executor ray under torchrun: every rank would start the same Ray tasks",
                hint="run smu run --executor ray without torchrun, or torchrun with the serial executor",
            )
        check(self)

    def run(
        self, steps: list[Step], plan: Plan | None, reporter: Reporter | None = None
    ) -> list[tuple[Step, dict[str, Any], bool]]:
        if plan is None:
            raise ValueError("the ray executor needs a Plan to find the steps in its workers")
        plan = replace(plan, tracking=loggers.parent_handle())  # the steps are child runs of the job's
        return run_steps(steps, plan, self, reporter or Reporter())


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray, which is not installed", hint=INSTALL) from None
    return ray


def check(executor: RayExecutor) -> None:
    """Ray is installed and ``--address`` names a cluster that answers (Ray itself waits for minutes on
    an address where nothing listens)."""
    ray_module()
    address = executor.address
    if address in (None, "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(
            f"--address {address!r} is not auto, local, HOST:PORT or ray://HOST:PORT",
            hint="auto joins the cluster `ray start` made on this machine",
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise SmuError(
            f"--address {address!r}: nothing answers there ({e.strerror or e})",
            hint="start the cluster (ray start --head), or leave out --address for a local Ray",
        ) from None


@contextlib.contextmanager
def connected(executor: RayExecutor) -> Iterator[Any]:
    """Ray, joined at ``executor.address`` (None: Ray's default, the cluster started on this machine or
    else a new local one) and left again; a Ray the caller already started is used as it is."""
    ray = ray_module()
    if ray.is_initialized():
        yield ray
        return
    try:
        # Workers' output would break the live display on stderr; Ray keeps it in its own logs.
        ray.init(address=executor.address, log_to_driver=False, logging_level=logging.ERROR)
    except (OSError, RuntimeError, ValueError) as e:
        raise SmuError(
            f"cannot start or join Ray at {executor.address or 'local'!r}: {str(e).splitlines()[0]}",
            hint="check --address (ray status on the head node shows the cluster)",
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


class Board:
    """A Ray actor where tasks post the step they start and on which worker; the driver drains it to
    draw the live display (Ray's own task listing needs its dashboard, which a plain install lacks)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def post(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def drain(self) -> list[dict[str, Any]]:
        events, self.events = self.events, []
        return events


def run_steps(
    steps: list[Step], plan: Plan, executor: RayExecutor, reporter: Reporter
) -> list[tuple[Step, dict[str, Any], bool]]:
    """Run every step that is not done as a Ray task; return (step, result, skipped) in plan order."""
    by_key = {s.key: s for s in steps}
    if len(by_key) != len(steps) or any(n not in by_key for s in steps for n in s.needs):
        raise ValueError("a plan's step keys must be unique and name only steps of the plan")
    results = {s.key: (result_of(s), True) for s in steps if is_done(s)}
    todo = [s for s in steps if s.key not in results]
    if results:
        reporter.note(f"{len(results)} of {len(steps)} steps done before, skipped")
    if todo:
        # stdout is data: Ray's driver prints what the raylet reports (a worker died, ...) on stdout.
        with (
            contextlib.redirect_stdout(sys.stderr),
            connected(executor) as ray,
            shared_token(steps) as (token_file, token),
        ):
            failed, blocked = drive(ray, todo, plan, executor, reporter, results, (str(token_file), token))
        raise_failed(todo, failed, blocked)
    return [(s, *results[s.key]) for s in steps]


@contextlib.contextmanager
def shared_token(steps: list[Step]) -> Iterator[tuple[Path, str]]:
    """A file with a fresh token in the run folder: a worker that cannot read it back does not see the
    driver's filesystem, and says so instead of writing its results where nobody reads them."""
    root = Path(os.path.commonpath([str(s.folder.parent.resolve()) for s in steps]))
    token = uuid.uuid4().hex
    path = root / f".smu-ray-{token[:12]}"
    files.atomic_write(path, token.encode())
    try:
        yield path, token
    finally:
        path.unlink(missing_ok=True)


def drive(
    ray: Any,
    todo: list[Step],
    plan: Plan,
    executor: RayExecutor,
    reporter: Reporter,
    results: dict[str, tuple[dict[str, Any], bool]],
    token: tuple[str, str],
) -> tuple[dict[str, str], set[str]]:
    """Submit each step once the steps it needs are done, until none is left; fill ``results``, and
    return the failed steps' messages and the steps never submitted because they need a failed one."""
    cpus, gpus = resources(ray, executor)
    reporter.note(f"each step holds {cpus:g} CPU(s) and {gpus:g} GPU(s) (--cpus-per-step, --gpus-per-step)")
    warn_if_nothing_fits(ray, cpus, gpus, reporter)
    task = ray.remote(
        num_cpus=cpus,
        num_gpus=gpus,
        max_retries=RETRIES,
        retry_exceptions=False,  # an error of the step's own comes back the same every time
    )(run_task)
    board = ray.remote(num_cpus=0)(Board).remote()
    display = Display(reporter, {s.key: s.title for s in todo})
    by_key = {s.key: s for s in todo}
    waiting, in_flight, failed, blocked = list(todo), {}, {}, set()
    cwd = os.getcwd()  # a worker runs in the driver's folder, so relative paths in step.json resolve alike
    while True:
        for step in take_ready(waiting, results, failed, blocked, display):
            ref = task.options(name=step.title[:200]).remote(plan, step.key, cwd, *token, board)
            in_flight[ref] = step.key
        if not in_flight:
            break
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
        if ready:
            ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0)
        with contextlib.suppress(ray.exceptions.RayError):  # without its board, the display only lags
            for event in ray.get(board.drain.remote()):
                display.started(event["key"], event["worker"])
        for ref in ready:
            step = by_key[in_flight.pop(ref)]
            worker, error = outcome(ray, ref)
            if error is None and not is_done(step):
                error = "its step.json is not visible here: the run folder must be on a filesystem every "
                error += "Ray worker and this machine share"
            if error is None:
                results[step.key] = (result_of(step), False)
            else:
                failed[step.key] = error
            display.finished(step.key, worker, error)
    display.close()
    return failed, blocked


def resources(ray: Any, executor: RayExecutor) -> tuple[float, float]:
    """(CPUs, GPUs) a step holds: the options, else one GPU where the cluster has GPUs, and one CPU beside
    it; a CPU step gets as many CPUs (torch threads) as this process has, so that each step computes
    what a serial run here computes, to the bit (fewer if no node has that many)."""
    import torch

    gpus = executor.gpus_per_step
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    cpus = executor.cpus_per_step
    if cpus is None:
        largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
        cpus = 1.0 if gpus > 0 else float(min(torch.get_num_threads(), max(largest, 1)))
    return cpus, gpus


def outcome(ray: Any, ref: Any) -> tuple[str | None, str | None]:
    """(the worker, None) when the task ran its step; else (the worker if known, why not in one line)."""
    try:
        answer = ray.get(ref)
    except ray.exceptions.RayTaskError as e:  # a bug in the step: not retried, shown in one line
        if os.environ.get("SMU_DEBUG") == "1":
            raise
        cause = e.cause if e.cause is not None else e
        return None, f"{type(cause).__name__}: {(str(cause).splitlines() or [''])[0]}"
    except ray.exceptions.RayError as e:  # the worker died again after every retry, or no node fits
        return None, f"its Ray worker failed {RETRIES + 1} times ({type(e).__name__})"
    for message in answer.get("warnings", []):
        warnings.warn(message, SmuWarning, stacklevel=1)
    return answer["worker"], answer.get("error")


def warn_if_nothing_fits(ray: Any, cpus: float, gpus: float, reporter: Reporter) -> None:
    """A task no node can hold waits for one to join (an autoscaling cluster adds it): say so."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        largest = max((n.get("CPU", 0) for n in nodes), default=0)
        reporter.note(
            f"no Ray node has {cpus:g} CPUs and {gpus:g} GPUs for a step now (largest: {largest:g} CPUs); "
            "the steps wait until one joins (--cpus-per-step, --gpus-per-step)"
        )


# ── In the worker ──────────────────────────────────────────────────────────────────────────────────

_PLANNED: dict[str, dict[str, Step]] = {}
"""The last plan this worker process made, by key: its steps share what they load (an audit's model)."""


def run_task(plan: Plan, key: str, cwd: str, token_file: str, token: str, board: Any) -> dict[str, Any]:
    """A Ray task: :func:`run_step`, with smu's warnings (a tracker that failed) sent back to the driver,
    which shows them as the serial executor would."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SmuWarning)
        answer = run_step(plan, key, cwd, token_file, token, board)
    return answer | {"warnings": [str(w.message) for w in caught if issubclass(w.category, SmuWarning)]}


def run_step(plan: Plan, key: str, cwd: str, token_file: str, token: str, board: Any) -> dict[str, Any]:
    """Find the step ``key`` in ``plan`` and run it; an SmuError comes back as {"error"}."""
    import ray

    from smu.execution.engine import runtime

    worker = f"{socket.gethostname()}:{os.getpid()}"
    here = os.getcwd()
    try:
        try:
            seen = Path(token_file).read_text()
        except OSError:
            seen = ""
        if seen != token:
            raise SmuError(
                f"the run folder is not visible on {socket.gethostname()}",
                hint="put --out on a filesystem every Ray worker shares (NFS, a cluster filesystem)",
            )
        with contextlib.suppress(OSError):
            os.chdir(cwd)
        mark = repr((plan, cwd))
        if mark not in _PLANNED:
            _PLANNED.clear()
            _PLANNED[mark] = {s.key: s for s in plan.build(**plan.kwargs)}
        step = _PLANNED[mark].get(key)
        if step is None:
            raise SmuError(
                f"step {key[:12]} is not in the plan a worker makes on {socket.gethostname()}",
                hint="install the same smu version on every node",
            )
        # As many torch threads as CPUs Ray gave the task (--cpus-per-step), for every step alike: on a CPU
        # the float reduction order, and so a trained model, depends on the thread count.
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
        count = max(1, int(cpus))
        board.post.remote({"key": key, "worker": worker})
        start(step)
        record_attempt(step, worker)
        chosen = threads.Threads(count, "Ray --cpus-per-step", f"{cpus:g} CPUs assigned to the task")
        with threads.applied(chosen), runtime(plan.amp, plan.compile), loggers.under(plan.tracking):
            run_one(step)
        return {"worker": worker}
    except SmuError as e:
        return {"worker": worker, "error": str(e)}
    finally:
        os.chdir(here)


def record_attempt(step: Step, worker: str) -> None:
    """workers.json in the step's folder: every worker that started it (more than one: Ray retried)."""
    path = step.folder / "workers.json"
    try:
        attempts = json.loads(path.read_text()) if path.is_file() else []
    except (OSError, ValueError):
        attempts = []
    files.write_json(path, [*attempts, {"worker": worker, "time": time.time()}])
