"""Single-machine scale: one day of N events through raw_events -> feature_matrix -> ltr_model.

    python -m benchmarks.scale [--events 1000000,10000000] [--days 1] [--window 28]
                               [--timeout 1800] [--max-rss-mb 12000]
                               [--assets raw_events,feature_matrix]

For each N the audit-log file of one day is written first (the simulator's events of
`benchmarks.ingest`; above 1M events the 1M-event day is repeated with renamed request, case
and event ids, so every copy is a distinct set of lists), then a fresh child process runs the
domain functions the assets call — `ingest_day` (raw_events), `build_feature_matrix`
(feature_matrix), `train_candidate` (ltr_model, `LTR_TRAIN_WINDOW_DAYS=--window`) — and reports
the wall time of each and the peak RSS of the process during each (sampled every 20 ms with
psutil) and overall (getrusage).

With `--days D` the log holds D days of N events each (the same day's events under each date,
with ids renamed per day, so every day is a distinct set of lists), the days up to DAY are
ingested and built one by one, and ltr_model trains on the window ending at DAY: a daily run
with a full window. Then `raw_events_s` and `feature_matrix_s` are the mean time of one day's
partition (what a daily run pays; `*_all_days_s` the sums) and `total_s` is a daily run's: one
day's raw_events and feature_matrix plus ltr_model.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import machine, report
from benchmarks.ingest import DAY, simulate

BASE_EVENTS = 1_000_000
ASSETS = ("raw_events", "feature_matrix", "ltr_model")


class PeakRss:
    """Largest RSS of this process since the last `reset`, sampled by a thread."""

    def __init__(self, interval: float = 0.02, limit_mb: float = 0.0) -> None:
        self._process = psutil.Process()
        self._limit = limit_mb * 2**20
        self.step = ""
        self.started = time.perf_counter()
        self.partial: dict[str, Any] = {}
        self._interval = interval
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._process.memory_info().rss)
            if self._limit and self._peak > self._limit:
                # past the cap: stop before the machine (shared) runs out of memory
                result = {
                    **self.partial,
                    f"{self.step}_exceeded_rss_mb": self._limit / 2**20,
                    f"{self.step}_exceeded_after_s": time.perf_counter() - self.started,
                }
                print("RESULT " + json.dumps(result), flush=True)
                os._exit(3)
            time.sleep(self._interval)

    def reset(self) -> None:
        self._peak = self._process.memory_info().rss

    def peak_mb(self) -> float:
        return max(self._peak, self._process.memory_info().rss) / 2**20

    def stop(self) -> None:
        self._stop.set()


def window_days(days: int) -> list[date]:
    """The `days` dates ending at DAY, oldest first."""
    return [DAY - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def write_log(path: Path, n_events: int, days: int = 1) -> int:
    """The audit log of `days` days ending at DAY with `n_events` events each; returns the
    number written."""
    base = simulate(min(n_events, BASE_EVENTS))
    lines = [json.dumps(e, separators=(",", ":")) + "\n" for e in base]
    del base
    written = 0
    marker = f"-{DAY:%Y%m%d}"
    stamp = f'"timestamp":"{DAY.isoformat()}T'
    with path.open("w") as handle:
        for day in window_days(days):
            on_day = lines
            if day != DAY:  # the same events under another date, with that date's ids
                new_marker, new_stamp = f"-{day:%Y%m%d}", f'"timestamp":"{day.isoformat()}T'
                on_day = [x.replace(marker, new_marker).replace(stamp, new_stamp) for x in lines]
            day_marker = f"-{day:%Y%m%d}"
            day_written, copy = 0, 0
            while day_written < n_events:
                take = on_day[: n_events - day_written]
                if copy:
                    renamed = f"{day_marker}x{copy}-"
                    handle.writelines(line.replace(day_marker + "-", renamed) for line in take)
                else:
                    handle.writelines(take)
                day_written += len(take)
                copy += 1
            written += day_written
    return written


def run_child(
    root: Path, window: int, limit_mb: float, days: int = 1, assets: tuple[str, ...] = ASSETS
) -> dict[str, Any]:
    """In this (fresh) process: the assets' domain functions on `root`; raw_events and
    feature_matrix for each of the `days` days, then ltr_model for DAY."""
    from ltr_assets.gate.candidate import CandidateReport, train_candidate
    from ltr_assets.ingest.day import ingest_day
    from ltr_assets.ingest.matrix import build_feature_matrix
    from ltr_assets.ingest.sources import AuditLogSource
    from ltr_assets.lake.paths import Lake
    from ltr_assets.registry.local import LocalRegistry
    from ltr_core.settings import Settings

    settings = Settings.from_env({"LTR_HOME": str(root), "LTR_TRAIN_WINDOW_DAYS": str(window)})
    lake = Lake(root / "lake")
    registry = LocalRegistry(root / "registry")
    source = AuditLogSource(str(root / "audit.jsonl"))
    sampler = PeakRss(limit_mb=limit_mb)
    out = sampler.partial
    dates = window_days(days)
    steps: dict[str, Callable[[date], object]] = {
        "raw_events": lambda day: ingest_day(source.read_day(day), day, lake, source.name),
        "feature_matrix": lambda day: build_feature_matrix(
            lake, day, settings.feedback_window_hours
        ),
        "ltr_model": lambda day: train_candidate(lake, registry, day, settings),
    }
    for name, step in steps.items():
        if name not in assets:
            continue
        sampler.step = name
        sampler.started = time.perf_counter()
        sampler.reset()
        seconds = []
        for day in dates if name != "ltr_model" else [DAY]:
            start = time.perf_counter()
            result = step(day)
            seconds.append(time.perf_counter() - start)
        out[f"{name}_s"] = sum(seconds) / len(seconds)
        if len(seconds) > 1:
            out[f"{name}_all_days_s"] = sum(seconds)
        out[f"{name}_peak_rss_mb"] = sampler.peak_mb()
        print("PARTIAL " + json.dumps(out), flush=True)
        if name == "ltr_model":
            assert isinstance(result, CandidateReport)
            window_info = result.summary.training_window
            out["window_days_present"] = len(window_info.present)
            out["rows"] = window_info.rows.total
            out["lists"] = window_info.groups.total
            out["best_iteration"] = result.summary.best_iteration
            for part, record in result.summary.sampling.items():
                out[f"{part}_rows_used"] = record.rows_used
            out["gate_passed"] = int(result.gate_passed)
    sampler.stop()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", default="1000000,10000000")
    parser.add_argument("--window", type=int, default=28)
    parser.add_argument("--days", type=int, default=1, help="days of --events each, up to DAY")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per size")
    parser.add_argument(
        "--max-rss-mb", type=float, default=12000.0, help="stop a run whose RSS passes this"
    )
    parser.add_argument(
        "--assets",
        default=",".join(ASSETS),
        help="the first steps to run (each needs those before it): raw_events,feature_matrix",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    assets = tuple(a for a in args.assets.split(",") if a)
    if assets != ASSETS[: len(assets)]:
        parser.error(f"--assets must be the first steps of {','.join(ASSETS)}")
    if args.child:
        result = run_child(Path(args.child), args.window, args.max_rss_mb, args.days, assets)
        print("RESULT " + json.dumps(result), flush=True)
        return
    print(
        f"machine: {machine()}; {args.days} day(s) up to {DAY}, LTR_TRAIN_WINDOW_DAYS={args.window}"
    )
    figures: dict[str, float | int | str] = {}
    for n in (int(v) for v in args.events.split(",")):
        label = f"{n}" if args.days == 1 else f"{n}x{args.days}d"
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            start = time.perf_counter()
            written = write_log(root / "audit.jsonl", n, args.days)
            print(f"{written} events written in {time.perf_counter() - start:.1f} s", flush=True)
            command = [sys.executable, "-m", "benchmarks.scale", "--child", tmp]
            command += ["--window", str(args.window), "--max-rss-mb", str(args.max_rss_mb)]
            command += ["--days", str(args.days), "--assets", ",".join(assets)]
            log = root / "child.out"
            with log.open("w") as handle:
                child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
                try:
                    child.wait(timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                    figures[f"scale_{label}_timed_out_s"] = args.timeout
            lines = log.read_text().splitlines()
            found = [x for x in lines if x.startswith(("RESULT ", "PARTIAL "))]
            if not found:
                print("\n".join(lines[-40:]), flush=True)
                figures[f"scale_{label}_failed"] = 1
                continue
            result = json.loads(found[-1].split(" ", 1)[1])
            if all(f"{a}_s" in result for a in assets):
                result["total_s"] = sum(result[f"{a}_s"] for a in assets)
            print(f"{label} events: {result}", flush=True)
            figures.update({f"scale_{label}_{k}": v for k, v in result.items()})
    report(figures)


if __name__ == "__main__":
    main()
