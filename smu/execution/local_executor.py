"""The local executor: a plan's steps side by side in worker processes on this machine, each started once
the steps it needs are done.

Why: a small model gains little from a second torch thread, which spins while it waits, while two
processes with one thread each compute twice as much (the demo on 2 cores: 48 s of CPU time in two
one-thread workers, 60 s serially with 2 threads; docs/PERFORMANCE.md, section 8). So each worker holds
``--cpus-per-step`` CPUs (default 1) as its torch threads, and there are as many workers as those fit in
the physical cores (or ``--gpus-per-step`` in the GPUs: a worker sees only its own GPU through
``CUDA_VISIBLE_DEVICES``). A step computes exactly what a serial run with ``--threads`` equal to its CPUs
computes, to the bit.

A worker is a fresh interpreter (``spawn``: safe with CUDA and threads) that is handed the
:class:`~smu.execution.steps.Plan` and a step's key, as a Ray task is, plans again and runs that step; results
travel through the step's ``step.json``. Faults: a step that fails by itself (an ``SmuError``, or a bug) is
reported in one line and every step that does not need it still runs, as with Ray; a worker that dies
(killed, out of memory) fails its step, and a new worker takes the next one. Running the same command again
continues, each unfinished step from its checkpoint. Ctrl-C stops the workers with the driver.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from typing import Any

from smu import loggers
from smu.core.errors import SmuError, SmuWarning, UsageError
from smu.core.progress import Reporter
from smu.execution import distributed, threads
from smu.execution.executor import Executor
from smu.execution.parallel import Display, raise_failed, take_ready
from smu.execution.steps import Plan, Step, is_done, result_of, run_one


@dataclass
class LocalExecutor(Executor):
    """The steps in worker processes on this machine."""

    cpus_per_step: float | None = None
    """CPUs each step holds, its torch threads (default 1)."""
    gpus_per_step: float | None = None
    """GPUs each step holds (default: 1 where this machine has GPUs, else 0; 0.5 puts two steps on one)."""
    name = "local"
    workers: list[Worker] = field(default_factory=list, init=False, repr=False, compare=False)
    """Started by :meth:`start`, stopped when :meth:`run` returns."""

    def check(self) -> None:
        if self.cpus_per_step is not None and not (self.cpus_per_step >= 1 and self.cpus_per_step % 1 == 0):
            raise UsageError(
                f"--cpus-per-step {self.cpus_per_step:g} must be a whole number >= 1 with --executor local",
                hint="it is the torch thread count of each worker process",
            )
        gpus = self.gpus_per_step
        if gpus is not None and not (gpus == 0 or 0 < gpus <= 1 and (1 / gpus) % 1 == 0 or gpus % 1 == 0):
            raise UsageError(
                f"--gpus-per-step {gpus:g} with --executor local must be 0, whole, or 1/n (0.5, 0.25)",
                hint="a step holds whole GPUs or a fair share of one",
            )
        self.slots()  # GPUs asked for and not here
        if distributed.world_size() > 1:
            raise UsageError(
                "--executor local under torchrun: every rank would start the same workers",
                hint="run smu run --executor local without torchrun, or torchrun with the serial executor",
            )

    @property
    def threads(self) -> int:
        """Each step's torch threads."""
        return int(self.cpus_per_step or 1)

    def slots(self) -> list[str | None]:
        """One entry per worker: the GPUs it sees (``CUDA_VISIBLE_DEVICES``), None for a CPU worker."""
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        share = (1.0 if gpus else 0.0) if self.gpus_per_step is None else self.gpus_per_step
        if share == 0:
            return [None] * max(1, threads.machine_cores().count // self.threads)
        if gpus == 0:
            raise UsageError(
                f"--gpus-per-step {share:g}: this machine has no GPU torch can use",
                hint="leave --gpus-per-step out, or pass --gpus-per-step 0",
            )
        if share < 1:  # 1/n: n workers on each GPU
            return [str(i) for i in range(gpus) for _ in range(round(1 / share))]
        whole = int(share)
        if whole > gpus:
            raise UsageError(f"--gpus-per-step {share:g}: this machine has {gpus} GPUs", hint="ask for fewer")
        return [",".join(map(str, range(i * whole, (i + 1) * whole))) for i in range(gpus // whole)]

    @property
    def parallel(self) -> int:
        return len(self.workers) or len(self.slots())

    def start(self) -> None:
        """Start the workers now: each imports torch and the rest (seconds) while this process loads the
        data and plans."""
        if not self.workers:
            self.workers = [Worker(i, gpus, self.threads) for i, gpus in enumerate(self.slots())]
            for worker in self.workers:
                worker.spawn()

    def run(
        self, steps: list[Step], plan: Plan | None, reporter: Reporter | None = None
    ) -> list[tuple[Step, dict[str, Any], bool]]:
        if plan is None:
            raise ValueError("the local executor needs a Plan to find the steps in its workers")
        plan = replace(plan, tracking=loggers.parent_handle())  # the steps are child runs of the job's
        reporter = reporter or Reporter()
        results = {s.key: (result_of(s), True) for s in steps if is_done(s)}
        todo = [s for s in steps if s.key not in results]
        if results:
            reporter.note(f"{len(results)} of {len(steps)} steps done before, skipped")
        try:
            if todo:
                self.start()
                n, gpus = len(self.workers), self.workers[0].gpus
                where = "" if gpus is None else f" and {self.gpus_per_step or 1:g} GPU(s)"
                reporter.note(
                    f"{n} worker processes; each step holds {self.threads} CPU(s){where} "
                    "(--cpus-per-step, --gpus-per-step)"
                )
                failed, blocked = drive(todo, plan, self.workers, reporter, results)
                raise_failed(todo, failed, blocked)
        finally:
            for worker in self.workers:
                worker.stop()
            self.workers = []
        return [(s, *results[s.key]) for s in steps]


class Worker:
    """One worker process and the pipe to it; ``name`` is what the display shows."""

    def __init__(self, index: int, gpus: str | None, count: int):
        self.gpus, self.count = gpus, count
        self.name = f"worker {index + 1}" + (f" (GPU {gpus})" if gpus is not None else "")
        self.conn: Connection | None = None
        self.process: Any = None
        self.step: Step | None = None

    def spawn(self) -> None:
        here, there = multiprocessing.Pipe()
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(target=serve, args=(there, self.gpus, self.count), daemon=True)
        self.process.start()
        there.close()
        self.conn = here

    def send(self, plan: Plan, step: Step, cwd: str) -> None:
        if self.process is None or not self.process.is_alive():
            self.spawn()
        assert self.conn is not None
        self.conn.send((plan, step.key, cwd))
        self.step = step

    def receive(self) -> dict[str, Any]:
        """The answer to the step sent; a dead worker's answer says so (and the next step starts another)."""
        assert self.conn is not None
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self.process.join(timeout=5)
            code = self.process.exitcode
            self.process = None
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return {"error": f"its worker process died ({how})"}

    def stop(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=10)


def drive(
    todo: list[Step],
    plan: Plan,
    workers: list[Worker],
    reporter: Reporter,
    results: dict[str, tuple[dict[str, Any], bool]],
) -> tuple[dict[str, str], set[str]]:
    """Give each free worker the next step whose needs are done, until none is left; fill ``results``,
    and return the failed steps' messages and the steps never run because they need a failed one."""
    display = Display(reporter, {s.key: s.title for s in todo})
    waiting, ready, failed, blocked = list(todo), [], {}, set()
    cwd = os.getcwd()  # a worker runs in the driver's folder, so relative paths in step.json resolve alike
    try:
        while True:
            ready += take_ready(waiting, results, failed, blocked, display)
            for worker in workers:
                if worker.step is None and ready:
                    step = ready.pop(0)
                    worker.send(plan, step, cwd)
                    display.started(step.key, worker.name)
            busy = [w for w in workers if w.step is not None]
            if not busy:
                break
            answered = wait([w.conn for w in busy])
            for worker in busy:
                if worker.conn not in answered:
                    continue
                step, answer = worker.step, worker.receive()
                worker.step = None
                assert step is not None
                for message in answer.get("warnings", []):
                    warnings.warn(message, SmuWarning, stacklevel=1)
                error = answer.get("error")
                if error is None:
                    results[step.key] = (result_of(step), False)
                else:
                    failed[step.key] = error
                display.finished(step.key, worker.name, error)
    finally:
        display.close()
    return failed, blocked


# ── In the worker ──────────────────────────────────────────────────────────────────────────────────


def warm() -> None:
    """Import what every step needs first, while the driver still loads data and plans: torch and the
    engine, scikit-learn's SVM (the MIA), and torch's compiler, which torch imports on the first optimiser
    made (1.6 s on our 2-core EPYC)."""
    import sklearn.svm  # noqa: F401
    import torch

    import smu.execution.engine  # noqa: F401

    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)


def serve(conn: Connection, gpus: str | None, count: int) -> None:
    """A worker's life: run the steps the driver sends, one at a time, until the pipe closes."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the driver stops us
    os.dup2(2, 1)  # stdout is the driver's data (--json); a worker has nothing to say there
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus  # before CUDA starts in this process
    warm()
    from smu.execution.engine import runtime

    planned: dict[str, dict[str, Step]] = {}  # the last plan, by key: its steps share what they load
    chosen = threads.Threads(count, "--cpus-per-step", f"{count} CPU(s) per step of --executor local")
    while True:
        try:
            plan, key, cwd = conn.recv()
        except (EOFError, OSError):
            return
        os.chdir(cwd)
        answer: dict[str, Any] = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SmuWarning)
            try:
                mark = repr(plan)
                if mark not in planned:
                    planned.clear()
                    planned[mark] = {s.key: s for s in plan.build(**plan.kwargs)}
                step = planned[mark][key]
                with threads.applied(chosen), runtime(plan.amp, plan.compile), loggers.under(plan.tracking):
                    run_one(step)
            except SmuError as e:
                answer["error"] = str(e)
            except Exception as e:  # a bug in the step: one line, as the Ray executor says it
                if os.environ.get("SMU_DEBUG") == "1":
                    import traceback

                    traceback.print_exc()
                answer["error"] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
        answer["warnings"] = [str(w.message) for w in caught if issubclass(w.category, SmuWarning)]
        conn.send(answer)
