"""A termination that lands inside a DuckDB query stays an interruption (KeyboardInterrupt),
so the orchestrator stops the run instead of recording a failed query and going on."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

import duckdb
import pytest

from ltr_assets.ingest.interruptions import interruptions_passed_on

LONG_QUERY = "SELECT count(*) FROM range(100000000000) a"


class Terminated(Exception):
    """What an orchestrator's SIGINT handler raises (Dagster's is its own exception type)."""


@pytest.fixture
def raising_sigint_handler() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated("the run is being terminated")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _sigint_after(seconds: float) -> threading.Thread:
    def send() -> None:
        time.sleep(seconds)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_a_signal_during_a_query_is_passed_on_as_an_interruption(
    raising_sigint_handler: None,
) -> None:
    con = duckdb.connect()
    sender = _sigint_after(0.3)
    with pytest.raises(KeyboardInterrupt, match="Query interrupted"), interruptions_passed_on():
        con.execute(LONG_QUERY).fetchall()
    sender.join()
    # without it, the caller sees a failed query
    sender = _sigint_after(0.3)
    with pytest.raises(RuntimeError, match="Query interrupted"):
        con.execute(LONG_QUERY).fetchall()
    sender.join()


def test_duckdbs_own_interrupt_is_passed_on_and_other_errors_are_not() -> None:
    con = duckdb.connect()
    timer = threading.Timer(0.3, con.interrupt)
    timer.start()
    with pytest.raises(KeyboardInterrupt, match="DuckDB"), interruptions_passed_on():
        con.execute(LONG_QUERY).fetchall()
    timer.join()
    with pytest.raises(RuntimeError, match="other"), interruptions_passed_on():
        raise RuntimeError("other")
    with pytest.raises(duckdb.CatalogException), interruptions_passed_on():
        con.execute("SELECT * FROM no_such_table")
