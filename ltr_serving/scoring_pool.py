"""Scoring off the event loop, bounded in time and in the threads it can hold.

POST /rank runs a scorer whose cost it cannot bound (the LightGBM model: its cost grows with
trees, depth and the list) in a small dedicated thread pool and waits at most
LTR_SCORE_TIMEOUT_MS for the answer: a request that cannot be scored in time fails alone (503),
and the event loop goes on serving every other request. The linear weights scorer, a bounded
numpy dot product, stays on the event loop: a thread hop costs more than it does.

A C call cannot be interrupted: the worker of a request that timed out keeps running until
LightGBM returns. It is counted as stuck until then (`stuck`; the `ltr_scoring_workers_stuck`
gauge; `scoring` in /ltr/health). The pool is bounded: while every worker is busy, a new request
fails at once (503) instead of queueing behind them, so slow requests cannot pile up work.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

SCORING_WORKERS = 4


class ScoringUnavailable(RuntimeError):
    """The request was not scored (a 503); the message says why."""


class ScoringTimeout(ScoringUnavailable):
    """Scoring took longer than the timeout; the worker may still be running."""


class ScoringBusy(ScoringUnavailable):
    """Every worker was busy: the request was refused without waiting."""


@dataclass
class _Job:
    finished: bool = False
    abandoned: bool = False  # timed out while running: its worker is stuck until it returns


class ScoringPool:
    """`run(fn)` on one of `workers` threads, within `timeout_s` (see the module docstring)."""

    def __init__(self, timeout_s: float, workers: int = SCORING_WORKERS) -> None:
        if timeout_s <= 0 or workers < 1:
            raise ValueError("a scoring pool needs a positive timeout and at least one worker")
        self.timeout_s = timeout_s
        self.workers = workers
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="ltr-score")
        self._free = threading.Semaphore(workers)
        self._lock = threading.Lock()
        self._busy = 0
        self._stuck = 0

    @property
    def busy(self) -> int:
        """Workers scoring now (stuck ones included)."""
        return self._busy

    @property
    def stuck(self) -> int:
        """Workers still scoring a request that has already failed with a timeout."""
        return self._stuck

    async def run(self, fn: Callable[[], T]) -> T:
        """`fn()` on a worker; ScoringBusy at once when none is free, ScoringTimeout when it
        has not returned within the timeout (it then runs on, counted as stuck)."""
        if not self._free.acquire(blocking=False):
            raise ScoringBusy(
                f"all {self.workers} scoring workers are busy (slow or stuck requests); "
                "refused without waiting"
            )
        job = _Job()
        with self._lock:
            self._busy += 1
        try:
            future = self._executor.submit(fn)
        except BaseException:
            self._finish(job)
            raise
        future.add_done_callback(lambda _: self._finish(job))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except TimeoutError:
            with self._lock:
                if not job.finished:
                    job.abandoned = True
                    self._stuck += 1
            raise ScoringTimeout(
                f"scoring took longer than LTR_SCORE_TIMEOUT_MS={self.timeout_s * 1000:g} ms; "
                "the request was not ranked"
            ) from None

    def _finish(self, job: _Job) -> None:
        """When the worker returns (or its job is cancelled before it started)."""
        with self._lock:
            job.finished = True
            self._busy -= 1
            if job.abandoned:
                self._stuck -= 1
        self._free.release()

    def shutdown(self) -> None:
        """Stop taking work; jobs not started are cancelled, running ones finish on their own."""
        self._executor.shutdown(wait=False, cancel_futures=True)
