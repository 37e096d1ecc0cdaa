"""Shared helpers for the benchmarks: interleaved, repeated timing; medians; the machine."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads{gpu}; "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def header(title: str) -> None:
    print(f"# {title}")
    print(f"# command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"# machine: {machine()}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    fns: dict[str, Callable[[], float | None]], repeats: int, device: torch.device, warmup: int = 1
) -> dict[str, float]:
    """Median seconds of each function, run in turn ``repeats`` times so drift hits them all alike.

    A function may return its own measured seconds (to exclude set-up); otherwise its wall time counts.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            own = fn()
            sync(device)
            times[name].append(own if isinstance(own, float) else time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def table(rows: list[list[object]], columns: list[str]) -> None:
    widths = [max(len(str(c)), *(len(fmt(r[i])) for r in rows)) for i, c in enumerate(columns)]
    print("| " + " | ".join(str(c).ljust(w) for c, w in zip(columns, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(fmt(v).ljust(w) for v, w in zip(r, widths, strict=True)) + " |")


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"
    return str(v)
