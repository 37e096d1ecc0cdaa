"""Ctrl-C at any moment, while Typer and torch import too, is one line and exit code 130 that says how to
continue; never a traceback. Tried on real processes, as a terminal sends it."""

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import PROGRESS

from smu.cli.app import main
from smu.cli.interrupt import STARTING
from smu.cli.wrap import RESUME, STARTED

ROOT = Path(__file__).parents[2]


def prune(out):
    return [
        "prune",
        "--dataset",
        "digits",
        "--arch",
        "cnn",
        "--epochs",
        "40",
        "--rewind-epoch",
        "1",
        "--out",
        out,
    ]


def interrupted(args, after, ready=lambda: True):
    """Start ``python -m smu ARGS``; once Python's own signal handling is set up (its import of ``site``
    is done: ``-X importtime`` says so) and ``ready()``, wait ``after`` seconds and send SIGINT. Returns the
    exit code and stderr's lines, less the import times and the progress lines of a log."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "smu", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines, started = [], threading.Event()

    def read() -> None:  # all along: -X importtime fills the pipe, and a full pipe would stop the process
        for line in proc.stderr:
            lines.append(line)
            if line.rstrip().endswith("| site"):
                started.set()

    reader = threading.Thread(target=read)
    reader.start()
    started.wait(timeout=120)
    deadline = time.monotonic() + 120
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    reader.join()
    shown = [line.rstrip("\n") for line in lines if line.strip() and not line.startswith("import time:")]
    return proc.returncode, [line for line in shown if not PROGRESS.match(line)]  # a log's progress lines


@pytest.mark.parametrize("after", [0.1, 0.5, 2.0])
def test_ctrl_c_at_any_moment_is_one_line_and_exit_code_130(after, tmp_path):
    out = tmp_path / "run"
    code, shown = interrupted(prune(out), after)
    resume = "Interrupted; " + RESUME.format(out=shlex.quote(str(out)))
    assert code == 130 and len(shown) == 1, shown
    assert shown[0] in (STARTING, STARTED, resume)  # imports, before the first checkpoint, or after it
    assert (shown[0] == resume) == out.is_dir()  # a folder left behind is named; an empty one is removed


def test_ctrl_c_in_training_names_the_folder_resume_continues_and_the_refusal_says_so_too(tmp_path, capsys):
    out = tmp_path / "run"
    code, shown = interrupted(prune(out), 0.0, ready=lambda: any(out.rglob("*.safetensors")))
    assert code == 130
    assert shown == [
        f"Interrupted; the same command with --out {out} --resume continues this run, "
        "with --force starts it over"
    ]
    with pytest.raises(SystemExit) as e:
        main([*map(str, prune(out))])  # the same command without --resume
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "exists and is not empty; pass --resume to continue the run in it, --force to start it over" in err


HELD = """
import os, signal, sys
from smu.cli import interrupt

class CtrlCWhileImporting:  # a finder that is asked for `decimal` in the middle of its import
    def find_spec(self, name, path=None, target=None):
        if name == "decimal":
            os.kill(os.getpid(), signal.SIGINT)
        return None

interrupt.record()
sys.meta_path.insert(0, CtrlCWhileImporting())
try:
    interrupt.import_held()
except KeyboardInterrupt:
    print("interrupted after", "decimal" in sys.modules and hasattr(sys.modules["decimal"], "Decimal"))
"""


def test_ctrl_c_during_an_import_that_must_not_run_twice_waits_for_it_to_finish():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", HELD], capture_output=True, text=True, env=env)
    assert (done.stdout, done.stderr) == ("interrupted after True\n", "")
