"""The serving process's side of the writer-process log (`PipeEventLog`), on a real OS pipe: a
record goes into the pipe at once; when the pipe is full records wait in a bounded backlog, in
order, and past it are spilled to this process's own file; nothing is dropped or lost; a
record after the stop or into a broken pipe fails and is counted, never written to a reused
descriptor."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import orjson
import pytest

from ltr_serving.impressions import FeedbackRecord, FileSink, Line, LogCounts
from ltr_serving.log_process import PipeEventLog, _frames, decode_record
from ltr_serving.metrics import ServingMetrics

_SET_PIPE_SIZE = 1031  # fcntl.F_SETPIPE_SZ (Linux)


class Pipe:
    """A pipe whose ends are closed once each (a number closed twice may be someone else's)."""

    def __init__(self) -> None:
        self.read, self.write = os.pipe()
        fcntl.fcntl(self.write, _SET_PIPE_SIZE, 4096)  # the smallest pipe: records fill it
        self.open = {self.read, self.write}

    def close(self, fd: int) -> None:
        if fd in self.open:
            self.open.discard(fd)
            os.close(fd)


class FakeWriter:
    """The writer process as `PipeEventLog` sees it: the write end of a pipe."""

    kind = "file"

    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe
        self.stdin_fd = pipe.write
        self.closed = False

    def tick(self, now: float) -> None:
        pass

    def close(self) -> None:
        self.pipe.close(self.stdin_fd)
        self.closed = True


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    pipe = Pipe()
    yield pipe
    for fd in list(pipe.open):
        pipe.close(fd)


def record(i: int, events: int = 2) -> FeedbackRecord:
    data = orjson.dumps({"i": i, "pad": "x" * 900}) + b"\n"
    return FeedbackRecord([("2026-12-03", Line(data, None, i, "feedback"))] * events)


def metric(log: PipeEventLog, name: str) -> float:
    return log._metrics.registry.get_sample_value(name, {"kind": "feedback"}) or 0.0


def make_log(pipe: Pipe, directory: Path, capacity: int = 10) -> PipeEventLog:
    return PipeEventLog(
        FakeWriter(pipe),
        capacity,
        spill=FileSink(directory),
        requested="file",
        metrics=ServingMetrics(),
        counts=LogCounts(),
    )


def spilled_records(directory: Path) -> tuple[list[int], list[bytes]]:
    """The numbers of the records in the spill files, and their lines."""
    lines = [x for path in directory.rglob("*.jsonl*") for x in path.read_bytes().splitlines()]
    return sorted({number(x) for x in lines}), lines


def number(line: bytes) -> int:
    """The number of the record a line (its first, for a frame's) came from."""
    return int(orjson.loads(line.splitlines()[0])["i"])


def test_a_full_pipe_queues_in_order_then_spills_and_loses_nothing(
    pipe: Pipe, tmp_path: Path
) -> None:
    log = make_log(pipe, tmp_path, capacity=3)
    assert all(log.submit(record(i)) for i in range(12))  # nobody reads the pipe yet
    assert log.depth == 3  # the backlog is full ...
    spilled, lines = spilled_records(tmp_path)
    assert spilled and len(lines) == 2 * len(spilled)  # what did not fit, spilled, not dropped
    assert log.counts.dropped == 0 and log.counts.logged["feedback"] == len(lines)
    assert metric(log, "ltr_events_dropped_total") == 0

    got: list[int] = []

    def drain() -> None:
        for frame in _frames(pipe.read, 0.1):
            if frame is not None:
                decoded = decode_record(frame)
                assert isinstance(decoded, FeedbackRecord)
                got.append(number(decoded.events[0][1].data))

    reader = threading.Thread(target=drain)
    reader.start()
    log.start()
    assert log.submit(record(100))  # behind the backlog, or spilled if it is still full
    log.stop(10)
    reader.join(10)
    assert cast(FakeWriter, log.sink).closed and not reader.is_alive()
    assert not list(tmp_path.rglob("*.part"))  # the spill file is complete
    spilled, _ = spilled_records(tmp_path)
    assert sorted(got + spilled) == [*range(12), 100]  # every record once ...
    assert got == sorted(got)  # ... the piped ones in order
    assert log.counts.failed == 0


def test_a_record_after_the_stop_fails_and_is_counted(pipe: Pipe, tmp_path: Path) -> None:
    log = make_log(pipe, tmp_path)
    log.stop(1)
    reused = os.open(os.devnull, os.O_WRONLY)  # may take the closed pipe's number
    try:
        assert log.submit(record(1)) is False
    finally:
        os.close(reused)
    assert log.counts.failed == 2 and metric(log, "ltr_events_failed_total") == 2


def test_a_broken_pipe_fails_the_record_and_says_why(pipe: Pipe, tmp_path: Path) -> None:
    pipe.close(pipe.read)  # the writer process is gone
    log = make_log(pipe, tmp_path)
    assert log.submit(record(1)) is False
    assert log.submit(record(2)) is False
    assert log.counts.failed == 4 and metric(log, "ltr_events_failed_total") == 4
    error = log.counts.last_error
    assert error is not None and "BrokenPipeError" in error
