"""Errors a user can fix. Library code raises these; only the command layer prints them."""

from __future__ import annotations

import reprlib
from pathlib import Path


class SmuWarning(UserWarning):
    """Something the user should know while the command goes on; the CLI shows it as one line."""


class SmuError(Exception):
    """A failure the user can fix; shown as one line without a traceback (exit code 1)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class UsageError(SmuError):
    """A bad option value or combination (exit code 2, like Typer's own usage errors)."""

    exit_code = 2


class UnknownNameError(UsageError):
    """A name that is not in a registry (method, architecture, dataset, ...)."""


class DataError(SmuError):
    """A dataset that is missing, unreadable or does not fit."""


class ArtifactError(SmuError):
    """A model, mask or forget-set file that is missing, corrupt or does not fit."""


def no_such_file(path: object, option: str = "") -> ArtifactError:
    """The error for a file an option names that is not there: the same words from the CLI's check before
    torch is imported (``smu.cli.precheck``) and from the readers after."""
    what = f"{option} {str(path)!r}" if option else repr(str(path))
    return ArtifactError(
        f"{what}: no such file", hint="check the path (smu prune -q prints the paths it wrote)"
    )


class DivergedError(SmuError):
    """A loss or weight became NaN or Inf."""


class DistributedError(SmuError):
    """Under torchrun: another rank stopped, or a collective timed out (every rank reports it)."""


def left_in(stop: BaseException, folder: Path) -> None:
    """Mark what stopped a run (Ctrl-C, mostly) with the run folder it left behind, where a rerun can
    continue; the outermost folder marks last."""
    stop.smu_run_folder = folder  # type: ignore[attr-defined]


def left_folder(stop: BaseException) -> Path | None:
    """The run folder a stop left behind, or None when it left none."""
    return getattr(stop, "smu_run_folder", None)


def _short_repr() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxstring = r.maxother = r.maxlong = 60
    r.maxlist = r.maxtuple = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 4
    r.maxdict = 3
    r.maxlevel = 2
    return r


_SHORT = _short_repr()


def shown(value: object) -> str:
    """A value from a file, a recipe or an option as an error quotes it: its repr, cut to a few dozen
    characters, items and levels, so that a megabyte string or an alias bomb stays one short line."""
    return _SHORT.repr(value)
