"""torch's thread count: smu's default against fixed counts, on the machine as it is and with CPU hogs
started beside it, on one seed of the quickstart recipe (a third of `smu demo`).

    python bench/threads.py                          # default, 1, 2, 4 threads; no hogs, then 3 hogs
    python bench/threads.py --threads 1,2 --hogs 0,2,4 --repeats 5 --seeds '[0,1,2]'

Each run is a fresh `python -m smu run quickstart seeds=[0] -q` (start-up included), with `--threads N`
or without it (smu's choice: the physical cores, here printed first). The settings run in turn within
each repetition, so load that comes and goes hits them alike; the table gives medians. A hog is a Python
process spinning on one core (`while True: pass`), started before the runs of its condition and ended
after them. The 1-minute load average is read before every run: this machine may be shared, so "no
hogs" is not "idle" — the table shows the load each median was measured under.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(threads: int | None, seeds: str, out: str) -> float:
    """Seconds of one run of the recipe in a fresh interpreter."""
    args = [sys.executable, "-m", "smu", "run", "quickstart", f"seeds={seeds}", "--out", out, "-q"]
    args += ["--threads", str(threads)] if threads else []
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # smu's own choice as default
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    start = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2,4", help="fixed counts to compare with the default")
    parser.add_argument("--hogs", default="0,3", help="conditions: how many CPU hogs run beside")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", default="[0]")
    opts = parser.parse_args()
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import table

    from smu.execution.threads import choose

    default = choose(env={})
    print("# smu run quickstart: torch threads, the default against fixed counts, with and without load")
    print(f"# command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} CPUs; smu's default: {default.count} "
        f"({default.reason}: {default.detail})"
    )
    settings: list[int | None] = [None, *(int(t) for t in opts.threads.split(","))]
    name = {None: f"default ({default.count})"} | {t: f"--threads {t}" for t in settings if t}
    rows = []
    scratch = tempfile.mkdtemp(prefix="smu-threads-")
    for hogs in (int(h) for h in opts.hogs.split(",")):
        spinning = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
        try:
            time.sleep(2 if hogs else 0)  # let the hogs reach the run queue before the first run
            walls: dict[int | None, list[float]] = {t: [] for t in settings}
            loads: dict[int | None, list[float]] = {t: [] for t in settings}
            for i in range(opts.repeats):
                for t in settings:
                    loads[t].append(os.getloadavg()[0])
                    walls[t].append(run(t, opts.seeds, os.path.join(scratch, f"h{hogs}-{t}-{i}")))
                    print(
                        f"#   {hogs} hogs, {name[t]}: {walls[t][-1]:.1f} s (load {loads[t][-1]:.2f})",
                        flush=True,
                    )
        finally:
            for p in spinning:
                p.kill()
                p.wait()
        base = statistics.median(walls[None])
        for t in settings:
            median = statistics.median(walls[t])
            load = f"{min(loads[t]):.1f}–{max(loads[t]):.1f}"
            rows.append([f"{hogs} hogs", name[t], median, min(walls[t]), base / median, load])
    print()
    table(rows, ["beside the runs", "threads", "median s", "best s", "speed vs default", "load average"])


if __name__ == "__main__":
    main()
