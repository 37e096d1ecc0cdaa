"""The Ray executor's cost per step against the serial executor, and a small recipe's wall time on both.

    python bench/ray_overhead.py                 # about 5 minutes on 2 busy CPU cores
    python bench/ray_overhead.py --repeats 5 --steps 100

1. Overhead per step, on one Ray CPU so that nothing runs side by side: (Ray wall - serial wall) / steps,
   for steps that do nothing (the executor alone: a task, planning again in the worker, the step's files)
   and for the quickstart recipe cut to one epoch per step (9 steps that load data and train briefly).
   Ray is started once before (its start-up is shown on its own); the medians are over warm workers.
2. The same small recipe on Ray with every core, by default (each step holds as many CPUs as the driver
   has torch threads, so the steps compute what the serial run does) and with --cpus-per-step 1 (one
   thread per step, as many steps at once as cores), against the serial executor with torch's default
   threads (what a user sees) and with one thread, Ray's start-up included. On a loaded machine torch's
   threads wait on each other, so a run with several threads per step can be the slowest: read the four
   together.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import ray
import torch
from common import header, interleaved, table

from smu.cli.run import run
from smu.core.progress import Reporter
from smu.execution import make_executor
from smu.execution.steps import Plan, Step

TINY = [
    "seeds=[0]",
    "train.epochs=1",
    "prune.rewind_epoch=0",
    "unlearn.retrain.epochs=1",
    "unlearn.ft.epochs=1",
    "unlearn.ga.epochs=1",
    "unlearn.l1-sparse.epochs=1",
]


def empty_plan(folder: str, steps: int) -> list[Step]:
    """Steps that do nothing, in a chain of pairs (each needs the one two before), so the executor's
    bookkeeping of needs is exercised too."""
    keys = [f"empty-{i}" for i in range(steps)]
    return [
        Step(
            f"empty {i}",
            Path(folder) / keys[i],
            keys[i],
            dict,
            {"kind": "empty"},
            (keys[i - 2],) if i >= 2 else (),
        )
        for i in range(steps)
    ]


def fresh() -> str:
    return tempfile.mkdtemp(prefix="ray-overhead-")


def run_empty(executor: str, steps: int) -> None:
    folder = fresh()
    make_executor(executor).run(
        empty_plan(folder, steps), Plan(empty_plan, {"folder": folder, "steps": steps})
    )


def run_recipe(executor: str, cpus: float | None = None) -> None:
    out = Path(fresh()) / "run"
    # The thread count this script set (smu would otherwise choose its own for the run).
    threads = torch.get_num_threads()
    run(
        "quickstart",
        TINY,
        out=out,
        executor=executor,
        cpus_per_step=cpus,
        threads=threads,
        reporter=Reporter(),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50, help="empty steps per run")
    opts = parser.parse_args()
    header("Ray executor against serial: overhead per step, and a small recipe's wall time")
    print(f"# ray {ray.__version__}; load average {os.getloadavg()[0]:.1f} (other work on the machine)")
    cpu = torch.device("cpu")
    threads = torch.get_num_threads()

    began = time.perf_counter()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    started = time.perf_counter() - began
    torch.set_num_threads(1)  # what the one Ray worker uses (--cpus-per-step 1)
    empty = interleaved(
        {name: lambda name=name: run_empty(name, opts.steps) for name in ("serial", "ray")},
        opts.repeats,
        cpu,
    )
    recipe = interleaved(
        {name: lambda name=name: run_recipe(name) for name in ("serial", "ray")}, opts.repeats, cpu
    )
    ray.shutdown()
    rows = [
        [
            "empty steps",
            opts.steps,
            empty["serial"],
            empty["ray"],
            (empty["ray"] - empty["serial"]) / opts.steps,
        ],
        ["quickstart, 1 epoch", 9, recipe["serial"], recipe["ray"], (recipe["ray"] - recipe["serial"]) / 9],
    ]
    print(
        "\n## Overhead per step: one Ray CPU, one torch thread on both sides "
        f"(ray.init took {started:.1f} s)\n"
    )
    table(rows, ["plan", "steps", "serial s", "ray s", "overhead s/step"])

    walls: dict[str, list[float]] = {
        f"serial, {threads} torch threads": [],
        "serial, 1 torch thread": [],
        f"ray, default ({threads} CPUs per step)": [],
        "ray, --cpus-per-step 1": [],
    }
    for _ in range(opts.repeats):
        for name in walls:
            torch.set_num_threads(1 if name == "serial, 1 torch thread" else threads)
            began = time.perf_counter()
            on_ray = name.startswith("ray")
            if on_ray:  # start-up included: a fresh local Ray with every core, as smu run starts one
                ray.init(
                    num_cpus=os.cpu_count(),
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                )
            run_recipe("ray", 1.0 if "--cpus" in name else None) if on_ray else run_recipe("serial")
            if on_ray:
                ray.shutdown()
            walls[name].append(time.perf_counter() - began)
    torch.set_num_threads(threads)
    rows = [[name, 9, sorted(ts)[len(ts) // 2], min(ts)] for name, ts in walls.items()]
    print(
        "\n## quickstart cut to one epoch per step: wall time, Ray start-up included "
        f"({os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f})\n"
    )
    table(rows, ["executor", "steps", "median s", "min s"])


if __name__ == "__main__":
    main()
