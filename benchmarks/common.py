"""Shared helpers for the benchmarks: machine description and name=value output."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [
                line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")
            ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def median_time(run: Callable[[], Any], repeats: int = 3) -> tuple[float, list[float]]:
    """Median wall time of `run` over `repeats` runs (seconds), and all the times."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def report(figures: Mapping[str, float | int | str]) -> None:
    """The benchmark's figures as name=value lines, last in its output."""
    for name, value in figures.items():
        print(f"{name}={value:.6g}" if isinstance(value, float) else f"{name}={value}")
