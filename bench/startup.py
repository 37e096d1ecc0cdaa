"""Start-up: how long the quick commands take, and whether they import torch; and `smu demo` on the
AVX2 and the native (here AVX-512) CPU kernels.

    python bench/startup.py                 # start-up only (a minute)
    python bench/startup.py --demo          # and smu demo twice (about two minutes more)
    python bench/startup.py --before DIR    # also time a checkout of an older smu in DIR, side by side
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch
from common import header, interleaved, table

# `python -m smu ARGS` in any layout of the package (its __main__ is the entry point), then whether it
# imported torch. A crash leaves no last line and stops the benchmark instead of being timed.
CHECK = (
    "import runpy, sys\nsys.argv[0] = 'smu'\ntry:\n    runpy.run_module('smu', run_name='__main__')\n"
    "except SystemExit as e:\n    assert e.code in (0, None), f'smu exited with {e.code}'\n"
    "print('torch' in sys.modules, file=sys.stderr)"
)


def smu(args: list[str], env: dict[str, str], cwd: str) -> bool:
    """Run smu once in a fresh interpreter; return whether it imported torch."""
    proc = subprocess.run(
        [sys.executable, "-c", CHECK, *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    last = proc.stderr.strip().splitlines()[-1:]
    if proc.returncode != 0 or last not in (["True"], ["False"]):
        raise SystemExit(f"smu {' '.join(args)} failed ({env.get('PYTHONPATH', 'this checkout')}): {last}")
    return last == ["True"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--before", help="an older smu checkout to compare with (put first on PYTHONPATH)")
    opts = parser.parse_args()
    header("smu start-up")
    cwd = tempfile.mkdtemp()  # not the checkout: `python -c` would import ./smu from there
    trees = {"now": dict(os.environ)} | (
        {"before": dict(os.environ, PYTHONPATH=opts.before)} if opts.before else {}
    )
    rows = []
    for args in (["--version"], ["--help"], ["recipes"], ["unlearn", "--help"]):
        fns = {
            name: (lambda env=env, args=args: smu(args, env, cwd) and None)
            for name, env in trees.items()
            if not (name == "before" and args == ["recipes"])
        }
        times = interleaved(fns, repeats=7, device=torch.device("cpu"))
        for name, env in trees.items():
            if name in times:
                rows.append(
                    [f"smu {' '.join(args)}", name, times[name], "yes" if smu(args, env, cwd) else "no"]
                )
    table(rows, ["command", "smu", "median s", "imports torch"])
    if opts.demo:
        rows = []
        for kernels, extra in (("AVX2", {"ATEN_CPU_CAPABILITY": "avx2"}), ("native", {})):
            env = dict(os.environ, **extra)
            start = time.perf_counter()
            subprocess.run(
                ["smu", "demo", "--out", f"{cwd}/demo-{kernels}", "-q"], env=env, cwd=cwd, check=True
            )
            rows.append([kernels, time.perf_counter() - start])
        print(f"\n# smu demo, CPU kernels: {torch.backends.cpu.get_cpu_capability()} natively")
        table(rows, ["kernels", "wall s"])


if __name__ == "__main__":
    main()
