"""Benchmark 6: wall time and peak memory (max RSS) of whole commands, each in its own process.

python bench/memory.py          # smu demo, and smu unlearn --method iu on Fashion-MNIST
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import header, table

SMU = [sys.executable, "-m", "smu"]
# Runs the CLI in this child and reports the child's own peak RSS, so each command is measured alone.
PEAK = """
import resource, sys
from smu.cli.app import app
code = 0
try:
    app(sys.argv[2:], prog_name="smu")
except SystemExit as e:
    code = e.code
finally:
    open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
sys.exit(code)
"""


def measure(args: list[str], report: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one smu command run in a child process."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", PEAK, str(report), *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - start
    return seconds, int(report.read_text()) / 1024


def main() -> None:
    header("wall time and peak memory of whole commands")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        seconds, rss = measure(["demo", "--out", str(folder / "demo"), "-q"], folder / "rss")
        rows.append(["smu demo", seconds, rss])
        # A trained Fashion-MNIST cnn to unlearn from (its training is not what is measured).
        subprocess.run(
            [
                *SMU,
                "prune",
                "--dataset",
                "fashion-mnist",
                "--arch",
                "cnn",
                "--epochs",
                "2",
                "--rewind-epoch",
                "1",
                "--rate",
                "0.9",
                "--out",
                str(folder / "p"),
                "-q",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        model = str(folder / "p" / "round-1" / "model.safetensors")
        seconds, rss = measure(
            [
                "unlearn",
                "--model",
                model,
                "--forget",
                "random:10%",
                "--method",
                "iu",
                "--out",
                str(folder / "iu"),
                "-q",
            ],
            folder / "rss",
        )
        rows.append(["smu unlearn --method iu (fashion-mnist cnn, random:10%, with eval)", seconds, rss])
    table(rows, ["command", "wall s", "peak RSS MiB"])


if __name__ == "__main__":
    main()
