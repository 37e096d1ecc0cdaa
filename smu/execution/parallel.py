"""What the executors that run steps side by side share (``local_executor``, ``ray_executor``): the live
display of their workers, and the one error that names the steps that failed."""

from __future__ import annotations

import time

from smu.core.errors import SmuError
from smu.core.progress import Reporter
from smu.execution.steps import Step


def take_ready(
    waiting: list[Step],
    results: dict[str, object],
    failed: dict[str, str],
    blocked: set[str],
    display: Display,
) -> list[Step]:
    """Remove from ``waiting`` and return, in plan order (which lists a step's needs before it), the steps
    whose needs are all done; a step that needs a failed or blocked one is removed too, and ``blocked``."""
    ready = []
    for step in list(waiting):
        if any(n in failed or n in blocked for n in step.needs):
            waiting.remove(step)
            blocked.add(step.key)
            display.blocked(step.key)
        elif all(n in results for n in step.needs):
            waiting.remove(step)
            ready.append(step)
    return ready


def raise_failed(todo: list[Step], failed: dict[str, str], blocked: set[str]) -> None:
    """One SmuError naming the steps of ``todo`` that failed (key -> why) and counting those ``blocked``
    (never run: they need a failed one); nothing when none failed."""
    if not failed:
        return
    names = "; ".join(f"{s.title}: {failed[s.key]}" for s in todo if s.key in failed)
    waiting = f"; {len(blocked)} steps that need them did not run" if blocked else ""
    raise SmuError(
        f"{len(failed)} of {len(todo)} steps failed: {names}{waiting}",
        hint="the other steps are done: fix the cause and run the same command again to continue",
    )


class Display:
    """Live progress through the reporter: a bar of finished steps, and one row per worker (host:pid)
    with the step it runs; a line for each step done, failed or retried."""

    def __init__(self, reporter: Reporter, titles: dict[str, str]):
        self.reporter, self.titles = reporter, titles
        self.total = reporter.bar()
        self.total.start("steps", len(titles))
        self.workers: dict[str, Reporter] = {}
        self.running: dict[str, tuple[str, float]] = {}
        self.over: set[str] = set()
        self.done = self.failed = self.skipped = 0
        self.status()

    def worker(self, name: str) -> Reporter:
        if name not in self.workers:
            self.workers[name] = self.reporter.bar()
            self.workers[name].start(f"  {name}", None)
        return self.workers[name]

    def started(self, key: str, worker: str) -> None:
        if key in self.over:  # its result came back before the news that it started
            return
        earlier = self.running.get(key)
        if earlier and earlier[0] != worker:  # Ray reran the task: its first worker died
            self.worker(earlier[0]).update(status="died")
            self.reporter.note(f"retrying: {self.titles[key]} (worker {earlier[0]} died)")
        self.running[key] = (worker, time.monotonic())
        self.worker(worker).update(status=self.titles[key])
        self.status()

    def finished(self, key: str, worker: str | None, error: str | None) -> None:
        self.over.add(key)
        known, since = self.running.pop(key, (None, None))
        worker = worker or known or "?"
        where = f"{worker}, {time.monotonic() - since:.0f} s" if since is not None else worker
        if error is None:
            self.done += 1
            self.reporter.note(f"done: {self.titles[key]} ({where})")
        else:
            self.failed += 1
            self.reporter.note(f"failed: {self.titles[key]} ({where}): {error}")
        if worker != "?":
            self.worker(worker).update(advance=1, status="idle")
        self.total.update(advance=1)
        self.status()

    def blocked(self, key: str) -> None:
        self.over.add(key)
        self.skipped += 1
        self.reporter.note(f"not run: {self.titles[key]} (it needs a step that failed)")
        self.total.update(advance=1)
        self.status()

    def status(self) -> None:
        waiting = len(self.titles) - self.done - self.failed - self.skipped - len(self.running)
        line = f"{self.done} done, {len(self.running)} running, {self.failed} failed, {waiting} waiting"
        self.total.update(status=line + (f", {self.skipped} not run" if self.skipped else ""))

    def close(self) -> None:
        for bar in [self.total, *self.workers.values()]:
            bar.stop()
