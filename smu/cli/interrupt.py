"""Ctrl-C: telling it from other failures, and the line it leaves before a command runs. Imports nothing
but the standard library, so that the entry point (``smu.cli.main``) has it before anything can fail."""

from __future__ import annotations

import signal
import sys

STARTING = "Interrupted while smu was starting; nothing was written"
"""Ctrl-C's line before the command runs (imports, the checks of the command line)."""

_signalled = False


def _on_ctrl_c(signum: int, frame: object) -> None:
    global _signalled
    _signalled = True
    raise KeyboardInterrupt


def record() -> None:
    """Have Ctrl-C raise KeyboardInterrupt as Python's own handler does, and note that it came; an
    embedding program's own handler is left alone."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_ctrl_c)


def import_held() -> None:
    """Import, with Ctrl-C held back for the millisecond it takes, what must not be imported twice: CPython's
    ``decimal`` (Typer imports it through pydantic) prints a C-level warning of libmpdec's to stderr when its
    initialisation runs again, as it does when Ctrl-C cuts the first import short and a library retries it.
    A Ctrl-C that came meanwhile is delivered right after."""
    if "decimal" in sys.modules or not hasattr(signal, "pthread_sigmask"):  # Windows has no signal masks
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        import decimal  # noqa: F401
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def by_ctrl_c(e: BaseException) -> bool:
    """Whether ``e`` comes of Ctrl-C: a KeyboardInterrupt, an error raised while one was handled, or any
    error once Ctrl-C has reached the process (a library that swallows the KeyboardInterrupt of an import
    it cut short fails later in its own way). Errors that carry an exit code (smu's, Typer's exits and
    usage errors) speak for themselves."""
    if hasattr(e, "exit_code"):
        return False
    seen: BaseException | None = e
    for _ in range(16):
        if seen is None:
            break
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return _signalled
