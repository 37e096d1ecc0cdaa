"""The terminal: the Typer app (``app``), one thin module per command (parse options, call one
workflow, render its result), every option spelled once (``flags``), the options generated from
method dataclasses (``generate``), and the only code that prints (``ui``, ``report``).

:func:`main` is the console entry point (``smu``, ``python -m smu``). It imports nothing before it
starts, so that Ctrl-C at any moment, while Typer or torch imports too, is one line and exit code
130 rather than a traceback; past that, the app says where an interrupted run can continue.
"""

from __future__ import annotations

import os
import sys

from smu.cli import interrupt


def main(argv: list[str] | None = None) -> None:
    """Run ``smu ARGS`` (``argv``, default the process's) and exit with its code."""
    interrupt.record()
    try:
        interrupt.import_held()
        from smu.cli.app import main as run

        run(argv)
    except (KeyboardInterrupt, Exception) as e:
        if not interrupt.by_ctrl_c(e):
            raise
        # Under torchrun, rank 0 alone speaks (smu.execution.distributed.rank, not imported: it may be
        # what was importing).
        if os.environ.get("RANK", "0") == "0":
            print(interrupt.STARTING, file=sys.stderr)
        sys.exit(130)
    finally:
        # Under `python -m`, CPython remembers a KeyboardInterrupt that passed through exec() or eval()
        # of a string (dataclasses and namedtuples are made so while modules import), even once caught,
        # and then ends the process by SIGINT instead of with its exit code; an exec() of a string that
        # finishes clears the record (_Py_UnhandledKeyboardInterrupt in CPython's pythonrun.c).
        exec("")
