"""Experiment tracking's cost per epoch: the quickstart recipe's model (its dataset and arch, digits
and cnn, with its training settings) trained on the CPU by ``smu.execution.engine.fit`` with no tracker,
then with each tracker open through ``smu.loggers.tracked``, as ``--log KIND`` opens it: csv,
tensorboard, mlflow (an SQLite store in the run's parent folder, the default) and wandb
(``WANDB_MODE=offline``). The engine sends each epoch's curves itself (``smu.loggers.series``); the
tracker writes them from a thread of its own while the next epoch trains.

- epoch ms: ``fit``'s wall time over ``--epochs`` epochs, divided by them, once the tracker is open;
  its minimum over the repeats beside the median (other work on the machine only ever adds time)
- overhead: (epoch with the tracker - epoch without) / epoch without; at this scale it is mostly the
  tracker's thread competing with training for the interpreter and the cores (noise can put it below 0)
- CPU ms: CPU time per epoch of this process (training and the tracking thread) and of its child
  processes (W&B's service), from /proc: what the tracker costs a machine, whatever else runs on it;
  CPU overhead: its difference to the run without a tracker
- tracker CPU ms: the CPU time the tracker itself spends per epoch while the model trains, once open
  (its thread in this process, measured with the thread's own CPU clock, plus W&B's service process);
  tracker share: that over the CPU of an epoch without a tracker. Unlike the wall and CPU columns, which
  a shared machine's noise moves by several per cent, this is the tracker's cost alone. tracker CPU at
  close: what ending the run costs once, after the last epoch (the last flush, the run marked finished)
- series µs, training: each ``smu.loggers.series`` call the engine made, timed in the training thread
- series µs, N calls: ``--calls`` calls in a row with the engine's four curves, nothing training
  (a run of its own, so its writes do not reach the training run's close)
- open ms: entering ``tracked`` (the caller's share; the tracker opens in the run's thread);
  ready ms: until the tracker is open (``Run.tracking()``); close ms: leaving the block, which waits
  for everything sent to be handed to the tracker and the run to finish (for wandb, until
  ``wandb.finish()`` returns: its service may write the run's file up to 0.1 s later)
- first ready s: the first run of the process, in the warm-up round (wandb starts its service,
  MLflow creates the SQLite store and its schema); not in the medians

    python bench/tracking_overhead.py                       # 15 epochs (the recipe's), 5 repeats
    python bench/tracking_overhead.py --epochs 5 --repeats 3 --trackers csv,wandb --threads 1
    python bench/tracking_overhead.py --trackers mlflow --flush-s 0   # a database write every epoch

Numbers are medians of --repeats interleaved repeats (no tracker, then each tracker in turn, the order
rotated by one each round, after one warm-up round), each with a fresh model from the same seed and a
fresh run folder; the microbenchmarks run after all the training. On a 70-90 ms epoch runs differ by
5-10% with no tracker at all: read the overhead column with the min column beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import torch
from common import header, table

from smu import loggers
from smu.data import load_splits
from smu.data.batches import Augment
from smu.execution.engine import fit
from smu.models import build_for
from smu.workflows.recipes.config import load_recipe

TRACKERS = ("csv", "tensorboard", "mlflow", "wandb")
CURVES = {"loss": 0.5, "acc": 90.0, "lr": 0.1, "images_per_second": 30000.0}
"""What the engine sends each epoch (without a method's extra loss terms)."""


class Timed:
    """``smu.loggers.series`` with each call's time in the calling thread kept (the engine looks the
    function up at every epoch, so replacing the module's attribute reaches it)."""

    def __init__(self) -> None:
        self.inner, self.seconds = loggers.series, []

    def __call__(self, label: str, step: int, values: dict[str, float]) -> None:
        began = time.perf_counter()
        self.inner(label, step, values)
        self.seconds.append(time.perf_counter() - began)


def children_cpu() -> float:
    """CPU seconds used so far by this process's live descendants (W&B's service process), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid], used[pid] = int(fields[1]), (int(fields[11]) + int(fields[12])) / tick
    mine, total = {os.getpid()}, 0.0
    for _ in range(4):  # children, grandchildren, ...
        found = {pid for pid, parent in parents.items() if parent in mine} - mine
        total += sum(used[pid] for pid in found)
        mine |= found
    return total


def thread_cpu_at_exit() -> None:
    """Have every run's tracking thread keep its CPU time when it ends (``Run._serve`` wrapped)."""
    serve = loggers.Run._serve

    def timed(run: loggers.Run) -> None:
        try:
            serve(run)
        finally:
            run.bench_cpu = time.thread_time()  # type: ignore[attr-defined]

    loggers.Run._serve = timed  # type: ignore[method-assign]


class Bench:
    def __init__(self, args: argparse.Namespace, base: Path):
        recipe = load_recipe("quickstart")
        self.arch, self.base, self.calls = recipe.arch, base, args.calls
        self.cfg = dataclasses.replace(recipe.train, epochs=args.epochs)
        self.splits = load_splits(recipe.dataset, seed=0)
        self.aug = Augment(self.splits.info.crop_pad, self.splits.info.flip)
        self.runs = 0

    def settings(self, kind: str) -> loggers.Settings | None:
        if kind == "none":
            return None
        return loggers.settings([kind], tracking_uri=f"sqlite:///{self.base / kind / 'mlflow.db'}")

    def folder(self, kind: str) -> Path:
        self.runs += 1
        return self.base / kind / f"run-{self.runs}"

    def open(self, kind: str, name: str) -> tuple[object, object, float, float]:
        """Enter ``tracked`` and wait for the tracker: (context, run, open s, ready s)."""
        params = {"arch": self.arch, "epochs": str(self.cfg.epochs)}
        context = loggers.tracked(
            self.settings(kind), name=name, folder=self.folder(kind), params=params, tags={"command": "bench"}
        )
        began = time.perf_counter()
        run = context.__enter__()
        opened = time.perf_counter()
        if run is not None and not run.tracking():
            raise SystemExit(f"tracker {kind} did not open")
        return context, run, opened - began, time.perf_counter() - began

    def train(self, kind: str) -> dict[str, float | list[float]]:
        """One tracked training run: its epochs, the engine's series calls, open, ready and close, and
        the tracker's own CPU time once open: its thread's (to its end, the last flush included) and
        its service process's (W&B)."""
        context, run, opened, ready = self.open(kind, "train")
        thread_cpu = time.clock_gettime(time.pthread_getcpuclockid(run._thread.ident)) if run else 0.0
        service_cpu = children_cpu()
        torch.manual_seed(0)
        net = build_for(self.arch, self.splits.info)
        timed = Timed()
        loggers.series = timed
        try:
            began, cpu, others = time.perf_counter(), time.process_time(), children_cpu()
            fit(net, self.splits.train, self.cfg, aug=self.aug, seed=0)
            epoch = (time.perf_counter() - began) / self.cfg.epochs
            cpu = (time.process_time() - cpu + children_cpu() - others) / self.cfg.epochs
        finally:
            loggers.series = timed.inner
        clock = time.pthread_getcpuclockid(run._thread.ident) if run else None
        during = (time.clock_gettime(clock) - thread_cpu if run else 0.0) + children_cpu() - service_cpu
        began = time.perf_counter()
        context.__exit__(None, None, None)
        closed = time.perf_counter() - began
        tracker = (run.bench_cpu - thread_cpu if run else 0.0) + children_cpu() - service_cpu
        return {
            "tracker": during / self.cfg.epochs,
            "at_close": tracker - during,
            "epoch": epoch,
            "cpu": cpu,
            "series": timed.seconds,
            "open": opened,
            "ready": ready,
            "close": closed,
        }

    def burst(self, kind: str) -> list[float]:
        """``--calls`` series calls in a row in a run of their own, each timed."""
        context, _, _, _ = self.open(kind, "calls")
        seconds = []
        for step in range(1, self.calls + 1):
            began = time.perf_counter()
            loggers.series("bench", step, CURVES)
            seconds.append(time.perf_counter() - began)
        context.__exit__(None, None, None)
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=15, help="epochs per training run (the recipe's: 15)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200, help="series calls in the microbenchmark")
    parser.add_argument(
        "--trackers", default=",".join(TRACKERS), help="comma-separated, of " + ", ".join(TRACKERS)
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument(
        "--flush-s",
        type=float,
        default=loggers.FLUSH_S,
        help="how often curves reach the trackers (smu.loggers.FLUSH_S; 0: every epoch, as before batching)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run folders (their path is printed)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loggers.FLUSH_S = args.flush_s
    os.environ["WANDB_MODE"] = "offline"  # what is measured: no network, whatever the environment says
    warnings.simplefilter("error", loggers.TrackerWarning)  # a failed tracker would time nothing
    kinds = ["none", *[k.strip() for k in args.trackers.split(",") if k.strip()]]
    base = Path(tempfile.mkdtemp(prefix="tracking-overhead-"))
    load = os.getloadavg()[0]
    bench = Bench(args, base)
    thread_cpu_at_exit()
    header(
        f"tracking overhead per epoch: quickstart's {bench.arch} on {len(bench.splits.train)} "
        f"{bench.splits.info.name} images, batch {bench.cfg.batch_size}, {args.epochs} epochs per run, CPU"
    )
    libraries = ", ".join(f"{m} {version(m)}" for m in ("mlflow", "tensorboard", "wandb") if m in kinds)
    print(f"# {libraries}; run folders under {base}" if libraries else f"# run folders under {base}")

    first = {kind: bench.train(kind)["ready"] for kind in kinds}  # warm-up round
    trains: dict[str, list[dict]] = {kind: [] for kind in kinds}
    bursts: dict[str, list[float]] = {kind: [] for kind in kinds}
    for r in range(args.repeats):  # each round starts one further along, so no tracker always follows
        for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:  # another's lingering work
            trains[kind].append(bench.train(kind))
    for _ in range(args.repeats):  # after the training: W&B's service still writes after finish()
        for kind in kinds:
            bursts[kind] += bench.burst(kind)

    def median(kind: str, key: str) -> float:
        return statistics.median(t[key] for t in trains[kind])

    plain, plain_cpu = median("none", "epoch"), median("none", "cpu")
    rows = []
    for kind in kinds:
        epoch = median(kind, "epoch")
        row = [
            kind,
            1e3 * epoch,
            1e3 * min(t["epoch"] for t in trains[kind]),
            "–" if kind == "none" else f"{100 * (epoch - plain) / plain:+.1f}%",
            1e3 * median(kind, "cpu"),
            "–" if kind == "none" else f"{100 * (median(kind, 'cpu') - plain_cpu) / plain_cpu:+.1f}%",
            "–" if kind == "none" else f"{1e3 * median(kind, 'tracker'):.2f}",
            "–" if kind == "none" else f"{100 * median(kind, 'tracker') / plain_cpu:.2f}%",
            "–" if kind == "none" else f"{1e3 * median(kind, 'at_close'):.1f}",
            1e6 * statistics.median(s for t in trains[kind] for s in t["series"]),
            1e6 * statistics.median(bursts[kind]),
        ]
        if kind == "none":
            row += ["–"] * 4
        else:
            row += [
                1e3 * median(kind, "open"),
                1e3 * median(kind, "ready"),
                1e3 * median(kind, "close"),
                first[kind],
            ]
        rows.append(row)
    print()
    columns = ["tracker", "epoch ms", "min", "overhead", "CPU ms", "CPU overhead", "tracker CPU ms"]
    columns += ["tracker share", "tracker CPU at close ms", "series µs, training"]
    columns += [f"series µs, {args.calls} calls", "open ms", "ready ms", "close ms", "first ready s"]
    table(rows, columns)
    print(
        f"\n# medians of {args.repeats} interleaved repeats after a warm-up round; series µs over "
        f"{args.repeats * args.epochs} engine calls and {args.repeats * args.calls} calls in a row; "
        f"torch threads {torch.get_num_threads()}; load average {load:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    if args.keep:
        print(f"# kept: {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
