"""The serving process's side of the writer-process log (`PipeEventLog`), on a real OS pipe: a
record goes into the pipe at once; when the pipe is full records wait in a bounded backlog, in
order, and past it are spilled to this process's own file; nothing is dropped or lost; a
record after the stop fails and is counted, never written to a reused descriptor; a writer that
dies is replaced and gets again what it had not confirmed."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import orjson
import pytest

from ltr_core.settings import Settings
from ltr_serving.impressions import FeedbackRecord, FileSink, Line, LogCounts
from ltr_serving.log_process import (
    MAX_RESTARTS,
    PipeEventLog,
    ProcessSink,
    _frames,
    decode_record,
)
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
    """The writer process as `PipeEventLog` sees it: the write end of a pipe, and the reports
    the test makes for it (`report`)."""

    kind = "file"

    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe
        self.stdin_fd = pipe.write
        self.closed = False
        self.exit_code: int | None = None
        self.on_progress: Callable[[int, list[int]], None] | None = None
        self.reader: threading.Thread | None = None  # the test's thread reading the pipe

    def exited(self) -> int | None:
        return self.exit_code

    def abandon(self) -> None:
        self.pipe.close(self.stdin_fd)

    def close(self) -> None:
        """As the writer process's: its input ends, and its reading (and last report) ends."""
        self.pipe.close(self.stdin_fd)
        if self.reader is not None:
            self.reader.join(10)
        self.closed = True

    def report(self, done: int, failed: list[int] | None = None) -> None:
        assert self.on_progress is not None
        self.on_progress(done, failed or [])


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


def make_log(pipe: Pipe, directory: Path, capacity: int = 10, *more: FakeWriter) -> PipeEventLog:
    """The log over a writer on `pipe`, and the `more` writers to replace it with, in turn."""
    writers = iter([FakeWriter(pipe), *more])
    return PipeEventLog(
        lambda: next(writers),
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

    def drain() -> None:  # the writer: reads, and confirms what it read
        for frame in _frames(pipe.read, 0.1):
            if frame is not None:
                decoded = decode_record(frame)
                assert isinstance(decoded, FeedbackRecord)
                got.append(number(decoded.events[0][1].data))
                cast(FakeWriter, log.sink).report(len(got))

    reader = threading.Thread(target=drain)
    reader.start()
    cast(FakeWriter, log.sink).reader = reader
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


def read_numbers(pipe: Pipe) -> list[int]:
    """The numbers of the records waiting in the pipe, in order (the pipe's write end closed)."""
    got = []
    for frame in _frames(pipe.read, 0.1):
        if frame is None:
            break
        decoded = decode_record(frame)
        assert isinstance(decoded, FeedbackRecord)
        got.append(number(decoded.events[0][1].data))
    return got


def test_a_dead_writer_is_replaced_and_gets_what_it_had_not_confirmed(tmp_path: Path) -> None:
    """The writer confirms 2 of 4 frames and dies: the next writer gets the other 2 again, in
    order, before the records that follow; callers learn of each record once."""
    first, second = Pipe(), Pipe()
    log = make_log(first, tmp_path, 10, FakeWriter(second))
    writers = [cast(FakeWriter, log.sink)]
    outcomes: dict[int, bool] = {}

    def outcome_of(i: int) -> Callable[[bool], None]:
        return lambda ok: outcomes.__setitem__(i, ok)

    for i in range(4):
        assert log.submit(record(i), outcome_of(i))
    writers[0].report(2, failed=[1])  # frames 0 and 1 done, 1 of them failed
    assert outcomes == {0: True, 1: False}
    writers[0].exit_code = -9  # killed
    first.close(first.read)
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.extend(read_numbers(second)))
    reader.start()
    log.start()  # its flusher meets the broken pipe, or notices the exit within a second
    assert log.submit(record(4))
    deadline = time.monotonic() + 5
    while log.counts.writer_restarts == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    log.stop(10)
    reader.join(10)
    writers.append(cast(FakeWriter, log.sink))
    assert writers[1].pipe is second and writers[1].closed
    assert got == [2, 3, 4]
    assert log.counts.writer_restarts == 1 and log.counts.failed == 0
    assert log.counts.last_error is not None and "writer process is gone" in log.counts.last_error
    writers[0].report(4)  # a late report of the dead writer changes nothing
    # the new writer confirmed none of them: stop wrote them to the spill file too, and said so
    assert outcomes == {0: True, 1: False, 2: True, 3: True}
    spilled, _ = spilled_records(tmp_path)
    assert spilled == [2, 3, 4]
    for pipe in (first, second):
        for fd in list(pipe.open):
            pipe.close(fd)


def test_writers_that_keep_dying_are_given_up_and_nothing_is_lost(tmp_path: Path) -> None:
    """Every writer's pipe is broken: after MAX_RESTARTS replacements within the window the
    server writes the records to its own spill file, and none fails."""
    pipes = [Pipe() for _ in range(MAX_RESTARTS + 1)]
    for broken in pipes:
        broken.close(broken.read)
    log = make_log(pipes[0], tmp_path, 10, *[FakeWriter(broken) for broken in pipes[1:]])
    log._metrics.kafka_connected.set(1)  # as the last writer's last report said
    outcomes: list[bool] = []
    log.start()  # its flusher meets each new writer's broken pipe in turn
    for i in range(6):
        assert log.submit(record(i), outcomes.append)
    deadline = time.monotonic() + 5
    while len(outcomes) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    log.stop(5)
    spilled, lines = spilled_records(tmp_path)
    assert spilled == list(range(6)) and len(lines) == 12
    assert outcomes == [True] * 6
    assert log.counts.failed == 0 and log.counts.writer_restarts == MAX_RESTARTS
    assert log.counts.last_error is not None and "spilling every record" in log.counts.last_error
    # nothing reaches Kafka any more: the gauge the docs say to alert on says so
    assert log._metrics.registry.get_sample_value("ltr_event_log_kafka_connected") == 0
    for broken in pipes:
        for fd in list(broken.open):
            broken.close(fd)


@pytest.mark.slow
def test_an_abandoned_kafka_writer_reports_spilling_not_its_last_state(tmp_path: Path) -> None:
    """A real writer process for Kafka (an unused port: it never connects), let go as a dead
    one is: /ltr/health's Kafka state must not stay whatever it last reported."""
    settings = Settings.from_env(
        {
            "LTR_HOME": str(tmp_path),
            "LTR_IMPRESSION_LOG": "kafka",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        }
    )
    sink = ProcessSink(settings, ServingMetrics(), LogCounts())
    sink.abandon()
    status = sink.kafka_status()
    assert status is not None and status.state == "spilling" and status.in_flight == 0
    assert status.last_error is not None and "kept dying" in status.last_error
