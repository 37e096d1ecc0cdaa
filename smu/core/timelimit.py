"""Stop a call that runs past a time limit, in the thread that makes it.

A watchdog thread waits out the limit, then raises :class:`TimeLimitExceeded` inside the calling thread
with CPython's ``PyThreadState_SetAsyncExc``, the mechanism behind ``KeyboardInterrupt``-like stops of
another thread. Why this one: ``signal.alarm`` works only on the main thread and only on Unix (smu's
steps also run in Ray's and pytest's threads) and takes the process's one SIGALRM from whoever else uses
it; a thread that only checks cannot stop Python code; a child process would have to copy the model, the
data and the user's code to it and could not hand back CUDA tensors cheaply.

Its limits: the exception arrives at the next Python instruction of the calling thread, so a single
long C call (one huge kernel, a ``time.sleep``) finishes first; threads or processes the call started
are not stopped; and a call that catches ``BaseException`` and goes on cannot be stopped at all (the
caller still learns that the limit passed: ``expired()``). Imports neither torch nor anything that does.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable, Iterator


class TimeLimitExceeded(BaseException):  # noqa: N818 (an interruption, like KeyboardInterrupt)
    """Raised inside a call that ran past its limit. A ``BaseException``, so that the ``except
    Exception`` of the code it interrupts does not swallow it."""


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in thread ``thread_id`` at its next instruction (None: cancel one not raised yet)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None
    )


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[Callable[[], bool]]:
    """Run the block for at most ``seconds`` (None: no limit): past it, :class:`TimeLimitExceeded` is
    raised in the block. Yields ``expired()``, true once the limit has passed, for a block that swallowed
    the exception. Nothing is raised after the block has ended."""
    if seconds is None:
        yield lambda: False
        return
    target, lock = threading.get_ident(), threading.Lock()
    state = {"done": False, "fired": False}

    def fire() -> None:
        with lock:
            if not state["done"]:
                state["fired"] = True
                _raise_in(target, TimeLimitExceeded)

    watchdog = threading.Timer(seconds, fire)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield lambda: state["fired"]
    finally:
        with lock:
            state["done"] = True  # from here the watchdog raises nothing
        watchdog.cancel()
        if state["fired"]:
            _raise_in(target, None)  # raised but not yet delivered: it must not surface after the block
