"""The wall time of `smu demo` as a user runs it (a fresh process, start-up and figures included), for
variants side by side: runs interleaved, medians reported, with the load average around each run.

    python bench/demo_wall.py                                   # this checkout, 3 runs
    python bench/demo_wall.py --before DIR --repeats 3          # and an older checkout (first on PYTHONPATH)
    python bench/demo_wall.py --variant 'serial=--threads 2'    # and the demo with other options

`bench/demo_profile.py` says where the time goes inside one process; with `--executor local` the steps
run in worker processes it does not see, so this script measures what the user waits for.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def once(path: Path, args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the demo's processes: user + system)."""
    env = {**os.environ, "PYTHONPATH": str(path)}
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "smu", "demo", "--out", f"{tmp}/demo", "-q", *args],
            check=True,
            env=env,
            cwd=tmp,  # not this checkout: `python -m` puts the working folder before PYTHONPATH
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", help="an older smu checkout, put first on PYTHONPATH")
    parser.add_argument("--variant", action="append", default=[], help="NAME=ARGS: the demo with ARGS")
    options = parser.parse_args()
    variants = [("now", ROOT, [])]
    if options.before:
        variants.insert(0, ("before", Path(options.before).resolve(), []))
    for spec in options.variant:
        name, _, args = spec.partition("=")
        variants.append((name, ROOT, shlex.split(args)))
    print("# smu demo, wall time")
    print(f"# command: python {' '.join(map(shlex.quote, sys.argv))}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs; load average {os.getloadavg()}")
    walls: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    cpus: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    for r in range(options.repeats):
        for name, path, args in variants:
            wall, cpu = once(path, args)
            walls[name].append(wall)
            cpus[name].append(cpu)
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"#   run {r + 1} {name}: {wall:.1f} s, CPU {cpu:.1f} s (load average {load})", flush=True)
    print("\n| variant | median wall (s) | median CPU (s) | walls (s) |\n|---|---|---|---|")
    for name, times in walls.items():
        runs = ", ".join(f"{t:.1f}" for t in times)
        print(f"| {name} | {statistics.median(times):.1f} | {statistics.median(cpus[name]):.1f} | {runs} |")


if __name__ == "__main__":
    main()
