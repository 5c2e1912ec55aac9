"""Scoring off the event loop, bounded in time and in the threads it can hold.

POST /rank runs a scorer whose cost it cannot bound (the LightGBM model: its cost grows with
trees, depth and the list) in a small dedicated thread pool and waits at most
LTR_SCORE_TIMEOUT_MS for the answer: a request that cannot be scored in time fails alone (503),
and the event loop goes on serving every other request. The linear weights scorer, a bounded
numpy dot product, stays on the event loop: a thread hop costs more than it does.

A C call cannot be interrupted: the worker of a request that timed out keeps running until
LightGBM returns. It is counted as stuck until then (`stuck`; the `ltr_scoring_workers_stuck`
gauge; `scoring` in /ltr/health). The pool is bounded. While every worker is busy, a request
waits for one in line (first come, first served), at most LTR_SCORE_TIMEOUT_MS, and is then
given the whole LTR_SCORE_TIMEOUT_MS to be scored: a burst of requests a little larger than
the pool is answered, not refused (it once was, at 8 concurrent clients with 4 workers, every
request fast), and a worker counted as stuck is one that really scored that long (a request
started with a sliver of a shared budget left timed out at once and counted so). A request
therefore takes at most twice LTR_SCORE_TIMEOUT_MS in the pool. It fails at once (503) when
every worker is stuck (waiting could not help) or MAX_WAITING requests already wait, so slow
requests cannot pile up work.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

SCORING_WORKERS = 4
MAX_WAITING = 64  # requests waiting for a worker; one more is refused at once


class ScoringUnavailable(RuntimeError):
    """The request was not scored (a 503); the message says why."""


class ScoringTimeout(ScoringUnavailable):
    """Scoring took longer than the timeout; the worker may still be running."""


class ScoringBusy(ScoringUnavailable):
    """Every worker stuck, or the line for one full: the request was refused without waiting."""


@dataclass
class _Job:
    finished: bool = False
    abandoned: bool = False  # timed out while running: its worker is stuck until it returns


class ScoringPool:
    """`run(fn)` on one of `workers` threads, within `timeout_s` (see the module docstring)."""

    def __init__(
        self, timeout_s: float, workers: int = SCORING_WORKERS, max_waiting: int = MAX_WAITING
    ) -> None:
        if timeout_s <= 0 or workers < 1 or max_waiting < 0:
            raise ValueError(
                "a scoring pool needs a positive timeout, at least one worker and a line of 0 "
                "or more"
            )
        self.timeout_s = timeout_s
        self.workers = workers
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="ltr-score")
        self._lock = threading.Lock()  # the workers' callbacks run on their own threads
        self._busy = 0
        self._stuck = 0
        # requests waiting for a worker, first first: a worker that returns hands its slot on
        self._waiting: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @property
    def busy(self) -> int:
        """Workers scoring now (stuck ones included)."""
        return self._busy

    @property
    def stuck(self) -> int:
        """Workers still scoring a request that has already failed with a timeout."""
        return self._stuck

    @property
    def waiting(self) -> int:
        """Requests waiting for a free worker."""
        return len(self._waiting)

    async def run(self, fn: Callable[[], T]) -> T:
        """`fn()` on a worker; ScoringBusy at once when every worker is stuck or the line is
        full, ScoringTimeout when no worker came free within the timeout, or when `fn` has not
        returned within the timeout after it started (it then runs on, counted as stuck)."""
        await self._take_worker()
        job = _Job()
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
            raise self._timeout() from None

    def _timeout(self, waited: bool = False) -> ScoringTimeout:
        limit = f"LTR_SCORE_TIMEOUT_MS={self.timeout_s * 1000:g} ms"
        what = (
            f"no scoring worker came free within {limit}"
            if waited
            else (f"scoring took longer than {limit}")
        )
        return ScoringTimeout(f"{what}; the request was not ranked")

    async def _take_worker(self) -> None:
        """A worker for this request: at once if one is free and nobody waits, else in line
        until one returns, within the timeout."""
        with self._lock:
            if self._busy < self.workers and not self._waiting:
                self._busy += 1
                return
            if self._stuck >= self.workers:
                raise ScoringBusy(
                    f"all {self.workers} scoring workers are busy with requests that timed out "
                    "(stuck in the model); refused without waiting"
                )
            if len(self._waiting) >= self.max_waiting:
                raise ScoringBusy(
                    f"all {self.workers} scoring workers are busy and {len(self._waiting)} "
                    "requests wait for one; refused without waiting"
                )
            loop = asyncio.get_running_loop()
            handed: asyncio.Future[None] = loop.create_future()
            entry = (loop, handed)
            self._waiting.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(handed), self.timeout_s)
        except BaseException as exc:  # timed out or cancelled: leave the line
            with self._lock:
                in_line = entry in self._waiting
                if in_line:
                    self._waiting.remove(entry)
            if not in_line:  # a worker was handed over meanwhile: pass it on
                self._release()
            if isinstance(exc, TimeoutError):
                raise self._timeout(waited=True) from None
            raise

    def _finish(self, job: _Job) -> None:
        """When the worker returns (or its job is cancelled before it started)."""
        with self._lock:
            job.finished = True
            if job.abandoned:
                self._stuck -= 1
        self._release()

    def _release(self) -> None:
        """A worker is free: to the first request in line, else back to the pool."""
        with self._lock:
            if not self._waiting:
                self._busy -= 1
                return
            loop, handed = self._waiting.popleft()
        try:
            loop.call_soon_threadsafe(_hand_over, handed)
        except RuntimeError:  # its loop is closed (the service stopping): to the next one
            self._release()

    def shutdown(self) -> None:
        """Stop taking work; jobs not started are cancelled, running ones finish on their own."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _hand_over(handed: asyncio.Future[None]) -> None:
    """On the waiting request's loop: it may have given up since (its future cancelled)."""
    if not handed.done():
        handed.set_result(None)
