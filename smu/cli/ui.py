"""The only module that talks to the terminal.

stdout is data: a Rich table for people, ``--json`` one JSON object, ``-q`` only the paths written.
Progress, notes and errors go to stderr: live bars on a terminal, timestamped lines at a steady rate
when stderr is a file or a pipe (a batch job's log), nothing with ``-q``. Under torchrun only rank 0
shows anything; the other ranks report only their own failure to reach the rest
(``smu.execution.distributed``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from smu.core.errors import DistributedError, SmuError
from smu.core.progress import Estimate, Reporter, duration
from smu.core.text import CELL, LINE, printable
from smu.core.units import reported
from smu.execution import distributed


def err_console() -> Console:
    # Built on use, so it follows whatever sys.stderr is now (CliRunner swaps it in tests).
    return Console(stderr=True, soft_wrap=True)


def out_console() -> Console:
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        # Rich assumes 80 columns on a pipe; tables written to a file or a pager read better wider.
        console.width = 120
    return console


def stats_text(f: dict[str, object]) -> str:
    """A progress update's fields as one short line: epoch, loss, accuracy, learning rate, images/s."""
    return "  ".join(
        filter(
            None,
            [
                f"epoch {f['epoch']}" if "epoch" in f else "",
                f"loss {f['loss']:.4f}" if "loss" in f else "",
                f"acc {f['acc']:.1f}%" if "acc" in f else "",
                f"lr {f['lr']:.3g}" if "lr" in f else "",
                f"{f['ips']:,.0f} img/s" if "ips" in f else "",
                str(f["status"]) if "status" in f else "",
            ],
        )
    )


class RichReporter(Reporter):
    """Live progress bars on stderr: epoch, loss, accuracy, learning rate and images/s, and under them
    the whole job's bar and time left, once a workflow has said its plan."""

    def __init__(self, progress: Progress, job: list[Any] | None = None):
        self.progress = progress
        self.task: Any = None
        self.job = job if job is not None else []
        """The job's task, shared with every bar of this display (empty until ``plan``)."""

    def start(self, label: str, total: int | None) -> None:
        self.task = self.progress.add_task(printable(label, LINE), total=total, stats="")

    def update(self, advance: int = 0, **f: object) -> None:
        self.progress.update(self.task, advance=advance, stats=printable(stats_text(f), LINE))
        if self.job and f.get("images"):
            self.progress.update(self.job[0], advance=f["images"])

    def stop(self) -> None:
        if self.task is not None:
            self.progress.stop_task(self.task)
            self.task = None

    def note(self, message: str) -> None:
        self.progress.console.print(plain(message, LINE, style="dim"))

    def plan(self, estimate: Estimate) -> None:
        if not self.job:  # a plan inside a planned job (a recipe's step) is part of it: not shown again
            self.note(estimate.line())
            self.job.append(self.progress.add_task("whole job", total=estimate.images, stats="planned"))

    def planned(self) -> bool:
        return bool(self.job)

    def finish(self) -> None:
        if self.job:
            self.progress.update(self.job[0], completed=self.progress.tasks[self.job[0]].total)

    def bar(self) -> Reporter:
        return RichReporter(self.progress, self.job)


class LogReporter(Reporter):
    """Progress for a log (stderr redirected: a batch job, nohup, CI): plain timestamped lines, at most one
    update every ``every`` seconds, every note, and a line when a bar ends; with a plan, the share of
    the job done and the time left (from the pace so far)."""

    def __init__(self, every: float, clock: dict[str, Any] | None = None):
        self.every = every
        self.clock = clock if clock is not None else {"printed": time.monotonic(), "job": None}
        """Shared by every bar: when the last update line went out, and the job's (start, total, done)."""
        self.label, self.fields, self.began = "", {}, 0.0

    def say(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {printable(text, LINE)}", file=sys.stderr, flush=True)

    def start(self, label: str, total: int | None) -> None:
        self.label, self.fields, self.began = label, {}, time.monotonic()

    def update(self, advance: int = 0, **f: object) -> None:
        self.fields = f
        job = self.clock["job"]
        if job is not None and f.get("images"):
            job[2] += f["images"]
        if time.monotonic() - self.clock["printed"] >= self.every:
            self.say(f"{self.label}: {stats_text(f)}{self.left()}")
            self.clock["printed"] = time.monotonic()

    def stop(self) -> None:
        if self.label:
            took = time.monotonic() - self.began
            self.say(f"{self.label}: ended after {duration(took)}  {stats_text(self.fields)}{self.left()}")
            self.label = ""

    def note(self, message: str) -> None:
        self.say(message)

    def plan(self, estimate: Estimate) -> None:
        if self.clock["job"] is None:  # a plan inside a planned job (a recipe's step) is part of it
            self.say(estimate.line())
            self.clock["job"] = [time.monotonic(), estimate.images, 0]

    def planned(self) -> bool:
        return self.clock["job"] is not None

    def left(self) -> str:
        """``; job 40%, about 3 min left`` from the pace of the job so far (nothing before a plan)."""
        job = self.clock["job"]
        if job is None or not job[2]:
            return ""
        began, total, done = job
        share = min(done / max(total, 1), 1.0)
        rest = (time.monotonic() - began) * (1 - share) / share
        return f"; job {100 * share:.0f}%, about {duration(rest)} left"

    def bar(self) -> Reporter:
        return LogReporter(self.every, self.clock)


LOG_EVERY_S = 30.0
"""How often a log gets a progress line, at most (``SMU_LOG_EVERY`` seconds overrides it)."""


@contextmanager
def reporting(quiet: bool) -> Iterator[Reporter]:
    """A Rich reporter when a person is watching stderr, else one that shows nothing."""
    console = err_console()
    if quiet or not distributed.is_main():
        yield Reporter()
        return
    if not console.is_terminal:
        yield LogReporter(log_every())
        return
    columns = [
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}", markup=False),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        reporter = RichReporter(progress)
        yield reporter
        reporter.finish()


def log_every() -> float:
    """Seconds between progress lines in a log: ``SMU_LOG_EVERY`` when it is a number, else the default."""
    try:
        return max(0.0, float(os.environ.get("SMU_LOG_EVERY", LOG_EVERY_S)))
    except ValueError:
        return LOG_EVERY_S


def plan_text(result: dict[str, Any]) -> list[Text]:
    """A ``--dry-run``'s result: the plan line and where the run would write."""
    return [plain(Estimate(**result["estimate"]).line()), plain(f"would write into {result['out']}")]


def plain(value: object, limit: int | None = None, style: str = "") -> Text:
    """Text for Rich that shows ``value`` as it is: ``[bold]`` stays brackets, escapes are escaped."""
    return Text(printable(str(value), limit), style=style)


def emit(
    result: dict[str, Any],
    *,
    as_json: bool,
    quiet: bool,
    paths: list[str],
    render: Callable[[], RenderableType | list[RenderableType]],
) -> None:
    """Print the result: JSON, paths only, or tables (after any progress display has closed)."""
    if not distributed.is_main():
        return
    if as_json:
        print(json.dumps(reported(result), indent=None))
    elif quiet:
        for p in paths:
            print(p)
    else:
        console = out_console()
        shown = render()
        for item in shown if isinstance(shown, list) else [shown]:
            console.print(item)
    sys.stdout.flush()


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """A results table: numbers right-aligned with two decimals, text (names, paths) left-aligned; a
    list is a cell of one line per item (each escaped on its own, so only these breaks are real)."""
    t = Table(title=plain(title, LINE), title_justify="left")
    for i, c in enumerate(columns):
        text = i == 0 or any(isinstance(r[i], str | Path | list) and not is_number(str(r[i])) for r in rows)
        t.add_column(plain(c), justify="left" if text else "right", overflow="fold" if text else "ellipsis")
    for r in rows:
        t.add_row(*[cell(v) for v in r])
    return t


def cell(value: Any) -> Text:
    if isinstance(value, list):
        return Text("\n").join(plain(fmt(v), CELL) for v in value)
    return plain(fmt(value), CELL)


def is_number(text: str) -> bool:
    return text.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()


def fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def show_error(err: SmuError) -> None:
    """One line on stderr: what is wrong, and the next step. Under torchrun the other ranks meet the same
    errors as rank 0 and leave them to it, except their own loss of contact with the rest."""
    if not distributed.is_main() and not isinstance(err, DistributedError):
        return
    line = Text("" if distributed.is_main() else f"rank {distributed.rank()}: ")
    line.append("Error: ", style="bold red")
    hint = printable(err.hint, LINE // 2) if err.hint else ""
    line.append(printable(err.message, LINE - len(line) - len(hint) - 40))  # 40: room for the "… more" note
    if hint:
        line.append(f"; {hint}")
    err_console().print(line)


def interrupted(line: str) -> None:
    """Ctrl-C's one line on stderr (``smu.cli.wrap.interruption_line``); under torchrun, rank 0's alone.
    Plain print: the live display has closed, and Rich would only add ways to fail while stopping."""
    if distributed.is_main():
        print(printable(line, LINE), file=sys.stderr)


def warn(message: str) -> None:
    """One line on stderr that something was skipped or is going away; the command goes on."""
    if not distributed.is_main():
        return
    line = Text("Warning: ", style="bold yellow")
    line.append(printable(message, LINE))
    err_console().print(line)
