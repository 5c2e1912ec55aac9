"""The event log's writer process: the impression log's expansion, encoding and sink run in a
child process, so they never hold the serving process's GIL.

Why: an answered 100-candidate /rank becomes 100 `match_recommendation` events (ids hashed,
features, propensities, JSON, Kafka records). In the serving process that work, on any thread,
competes with the request path for the one GIL: /rank kept about a fifth of its throughput with
the log on (docs/benchmarks.md, "impression log"). Here the serving process only hands each
record over as one msgpack frame (the request body as received, the shown order, scores and
policy), and the child (`python -m ltr_serving.log_process`) parses the body again with the
same `ltr_core.codec.parse_request`, expands the events with the same `impression_data` and
writes them through the same sinks (`writing_event_log`: files, or Kafka spilling to files).

Guarantees, as with the in-process log:

- /rank never waits: `EventLog.submit` still only queues (a full queue drops and counts); the
  event log's worker thread writes the frames to the child's stdin (a pipe), and blocks only
  itself when the child is behind.
- Nothing handed over is lost: the child writes everything it read before it exits; it exits
  at the end of its input only (it ignores SIGINT and SIGTERM, which a terminal or a process
  group may send it alongside the server), so a SIGTERM'd server (whose lifespan closes the
  pipe after draining its queue) or a killed one (the pipe closes with it) leaves the child to
  flush or spill everything and complete its files. A killed server's end of the report pipe
  is closed as well: the child then drops its reports (`_Reports`) and still exits with 0.
- A child that dies (killed, out of memory) is started again: the child confirms each frame
  once its sink has taken it (`done` in its reports), the serving process keeps the frames not
  confirmed yet and hands them to the new child (a frame the dead one had written is written
  twice, with the same event ids, which the pipeline deduplicates), and completes the file the
  dead one left open (`complete_orphaned_files`). A child that keeps dying
  (`MAX_RESTARTS` within `RESTART_WINDOW_S`) is given up: the serving process writes every
  record to its own spill files from then on (slower, nothing lost). With Kafka, a frame is
  confirmed once each of its records is settled: acknowledged by Kafka or spilled (`_Progress`),
  so what a dead child's producer still held is sent again by the next.
- /feedback learns whether its events were written (`submit(..., on_done=...)`): the child
  reports at once after a feedback frame, and a frame whose write failed is reported as failed.
- /metrics and /ltr/health keep their meaning: the child reports its counters and its sink's
  state on its stdout every `REPORT_S` and at exit; the serving process adds them to its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import IO, Any, Protocol

import msgspec

from ltr_core.codec import Exploration, Interleaved, parse_served
from ltr_core.settings import Settings
from ltr_core.vocabulary import ImpressionLog
from ltr_serving.impressions import (
    EventLog,
    EventSink,
    FeedbackRecord,
    FileSink,
    ImpressionRecord,
    Line,
    LogCounts,
    Record,
    WriteFailed,
    complete_orphaned_files,
    write_record,
)
from ltr_serving.kafka_sink import KafkaSink, KafkaSinkStatus
from ltr_serving.metrics import ServingMetrics

log = logging.getLogger("ltr_serving.log_process")

REPORT_S = 0.25  # how often the child reports its counters
_FEEDBACK_POLL_S = 0.005  # how often while a feedback frame waits for Kafka to settle it
MAX_RESTARTS = 3  # writer deaths within RESTART_WINDOW_S before the serving process gives it up
RESTART_WINDOW_S = 60.0
_TICK_S = 1.0  # how often the child ticks its sink (file rotation by age) when idle
_LENGTH = struct.Struct("<I")
_PIPE_BYTES = 1 << 20  # the pipe's buffer (Linux allows 1 MiB to anyone by default)

# The counters the child reports, as (metric, label) -> the serving process's metric.
_COUNTERS = (
    ("ltr_events_logged_total", "impression"),
    ("ltr_events_logged_total", "feedback"),
    ("ltr_events_failed_total", "impression"),
    ("ltr_events_failed_total", "feedback"),
    ("ltr_events_written_to_file_total", None),
    ("ltr_events_sent_to_kafka_total", None),
    ("ltr_events_spilled_total", None),
)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def encode_record(record: Record) -> bytes:
    """One record as a frame: its length, then msgpack."""
    if isinstance(record, FeedbackRecord):
        payload: tuple[Any, ...] = (
            "f",
            [(day, line.data, line.key, line.at_ms) for day, line in record.events],
        )
    else:
        if record.body is None:
            raise ValueError("an impression record for the writer process needs its body")
        drafted = record.interleaving
        exploration = record.exploration
        payload = (
            "i",
            record.body,
            record.request.fast,
            record.request.explain,
            record.request_id,
            record.policy,
            record.shown,
            record.scores,
            record.version,
            record.at,
            (exploration.rate, exploration.max_position) if exploration else None,
            record.interleave_rate,
            (list(drafted.teams), drafted.live_order, drafted.candidate_order) if drafted else None,
            record.candidate_version,
        )
    data = _encoder.encode(payload)
    return _LENGTH.pack(len(data)) + data


def decode_record(data: bytes) -> Record:
    """A frame's payload (without its length) as the record the serving process queued."""
    payload = _decoder.decode(data)
    if payload[0] == "f":
        return FeedbackRecord(
            [(day, Line(line, key, at_ms, "feedback")) for day, line, key, at_ms in payload[1]]
        )
    (
        _,
        body,
        fast,
        explain,
        request_id,
        policy,
        shown,
        scores,
        version,
        at,
        exploration,
        interleave_rate,
        drafted,
        candidate_version,
    ) = payload
    return ImpressionRecord(
        parse_served(body, fast, explain),
        request_id,
        policy,
        shown,
        scores,
        version,
        at,
        Exploration(*exploration) if exploration else None,
        interleave_rate,
        Interleaved(tuple(drafted[0]), drafted[1], drafted[2]) if drafted else None,
        candidate_version,
    )


# --- the serving process's side -------------------------------------------------------------------


class ProcessSink:
    """The event log's sink in the serving process: hands records to the writer process.

    `PipeEventLog` writes frames to `stdin_fd` and calls `tick` and `close`; a reader thread
    applies the child's reports to the serving process's counters, `counts` and health."""

    def __init__(self, settings: Settings, metrics: ServingMetrics, counts: LogCounts) -> None:
        self.kind: str = settings.serving.impression_log  # file | kafka: the child writes to
        self.settings = settings
        self.metrics = metrics
        self.counts = counts
        self.timeout_s = 6 * settings.serving.impression_kafka_timeout_s + 30
        self._reported: dict[tuple[str, str | None], float] = {}
        self._closing = False
        self._abandoned = False  # found gone and let go: its last report no longer holds
        self._abandoned_at = datetime.now(UTC)
        self._kafka: KafkaSinkStatus | None = None
        # called with each report's (frames done, indices of the failed ones among them)
        self.on_progress: Callable[[int, list[int]], None] | None = None
        self._lock = threading.Lock()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "ltr_serving.log_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # a signal to the server's process group is not for it
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._stdin: IO[bytes] = self._process.stdin
        with contextlib.suppress(OSError):  # a bigger pipe: fewer waits when the child lags
            fcntl.fcntl(self._stdin.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        self._write(pickle.dumps(settings))
        self.stdin_fd = self._stdin.fileno()  # `PipeEventLog` writes frames to it directly
        self._reader = threading.Thread(
            target=self._read_reports,
            args=(self._process.stdout,),
            name="ltr-event-log-reports",
            daemon=True,
        )
        self._reader.start()

    def _write(self, payload: bytes) -> None:
        self._stdin.write(_LENGTH.pack(len(payload)) + payload)
        self._stdin.flush()

    def exited(self) -> int | None:
        """The writer process's exit code when it is gone before its input ended, else None."""
        return None if self._closing else self._process.poll()

    def abandon(self) -> None:
        """Let go of a writer found gone: close its input, reap it (killed first if it still
        runs), without waiting for its reports (its reader thread ends with its output), and
        complete the file it left open, so the ingest reads what it wrote and confirmed."""
        self._closing = True
        self._abandoned = True
        self._abandoned_at = datetime.now(UTC)
        self.on_progress = None
        with contextlib.suppress(OSError, ValueError):
            self._stdin.close()
        if self._process.poll() is None:
            self._process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(5)
        try:
            complete_orphaned_files(self.settings.serving_log_dir)
        except OSError as exc:
            log.error("could not complete the files of the writer process that died: %s", exc)

    def close(self) -> None:
        """End the child's input; wait until it has written everything and exited."""
        self._closing = True
        with contextlib.suppress(OSError, ValueError):
            self._stdin.close()
        try:
            self._process.wait(self.timeout_s)
        except subprocess.TimeoutExpired:
            log.error("the event log's writer process did not finish in time; killing it")
            self._process.kill()
            self._process.wait()
        self._reader.join(10)
        if self._process.returncode != 0:
            raise RuntimeError(
                f"the event log's writer process exited with {self._process.returncode}"
            )

    def kafka_status(self) -> KafkaSinkStatus | None:
        """The child's Kafka sink as last reported (None with LTR_IMPRESSION_LOG=file); once
        the writer is abandoned and none replaced it (`PipeEventLog` gave up), nothing reaches
        Kafka: spilling, from then on."""
        if self.kind != "kafka":
            return None
        with self._lock:
            if self._abandoned:
                last = self._kafka
                kafka = self.settings.kafka
                return KafkaSinkStatus(
                    state="spilling",
                    topic=kafka.topic if kafka else "",
                    bootstrap_servers=kafka.bootstrap_servers if kafka else "",
                    since=self._abandoned_at,
                    sent=last.sent if last else 0,
                    spilled=last.spilled if last else 0,
                    lost=last.lost if last else 0,
                    in_flight=0,
                    last_error="the event log's writer processes kept dying: the server writes "
                    "every record to its own spill files",
                    last_error_at=self._abandoned_at,
                )
            if self._kafka is not None:
                return self._kafka
        kafka = self.settings.kafka
        return KafkaSinkStatus(
            state="connecting",
            topic=kafka.topic if kafka else "",
            bootstrap_servers=kafka.bootstrap_servers if kafka else "",
            since=datetime.now(UTC),
            sent=0,
            spilled=0,
            lost=0,
            in_flight=0,
            last_error=None,
            last_error_at=None,
        )

    def _read_reports(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            try:
                self._apply(msgspec.json.decode(line))
            except Exception:
                log.exception("could not apply a report of the event log's writer process")

    def _apply(self, report: dict[str, Any]) -> None:
        if self._abandoned:  # a late report of a writer let go: it describes nothing now
            return
        metrics = self.metrics
        targets = {
            "ltr_events_logged_total": metrics.events_logged,
            "ltr_events_failed_total": metrics.events_failed,
            "ltr_events_written_to_file_total": metrics.events_file,
            "ltr_events_sent_to_kafka_total": metrics.events_kafka_sent,
            "ltr_events_spilled_total": metrics.events_spilled,
        }
        counts = self.counts
        for name, label in _COUNTERS:
            value = float(report["counters"].get(f"{name}|{label or ''}", 0.0))
            delta = value - self._reported.get((name, label), 0.0)
            if delta <= 0:
                continue
            self._reported[name, label] = value
            counter = targets[name]
            (counter.labels(label) if label else counter).inc(delta)
            if name == "ltr_events_logged_total" and label:
                counts.logged[label] += int(delta)
            elif name == "ltr_events_failed_total":
                counts.failed += int(delta)
        metrics.kafka_connected.set(report["connected"])
        if report["last_error"]:
            counts.last_error = report["last_error"]
            counts.last_error_at = datetime.fromisoformat(report["last_error_at"])
        kafka = report["kafka"]
        if kafka is not None:
            status = msgspec.convert(kafka, KafkaSinkStatus, strict=False)
            with self._lock:
                self._kafka = status
        on_progress = self.on_progress
        if on_progress is not None:
            on_progress(report["done"], report["failed_frames"])


class WriterProcess(Protocol):
    """What `PipeEventLog` needs of the writer process (`ProcessSink`)."""

    kind: str
    stdin_fd: int  # the write end of the pipe to the writer's input
    # set by `PipeEventLog`; the writer calls it with (frames done, failed indices among them)
    on_progress: Callable[[int, list[int]], None] | None

    def exited(self) -> int | None:
        """The exit code of a writer gone before its input ended, else None."""

    def abandon(self) -> None:
        """Let go of a writer found gone, without waiting for it."""

    def close(self) -> None:
        """End the writer's input and wait for it to finish."""


class PipeEventLog:
    """The serving process's event log when the writer process does the work (`RecordLog`).

    `submit` encodes the record as a frame and writes it to the writer's pipe at once, on the
    calling thread, with a non-blocking write.
    Only when the pipe is full (the writer is behind) do frames wait, in a backlog of at most
    `capacity` records (LTR_IMPRESSION_QUEUE), which a flusher thread writes as the writer
    reads; past it, a record's events are spilled to a file by this process itself (`_spill`):
    the queue is full, so they spill, and nothing is dropped. Why not `EventLog`'s queue and
    worker thread: a hand-off to another thread per request costs the serving process GIL
    switches (measured in docs/benchmarks.md, "impression log").

    Every frame stays in `_unconfirmed` until the writer reports it done, so a writer that dies
    is replaced (`start_writer`) and the new one gets them again (module docstring)."""

    def __init__(
        self,
        start_writer: Callable[[], WriterProcess],
        capacity: int,
        *,
        spill: FileSink,
        requested: ImpressionLog,
        metrics: ServingMetrics,
        counts: LogCounts,
    ) -> None:
        self.spill = spill  # where records go when the backlog is full (`_spill`)
        self.capacity = capacity
        self.requested = requested
        self.counts = counts
        self._metrics = metrics
        self._start_writer = start_writer
        self._lock = threading.Lock()
        self._waiting = threading.Condition(self._lock)
        # frames (or the unwritten rest of one) in order, with the record's kind and size
        self._backlog: deque[tuple[memoryview, str, int]] = deque()
        # frames handed to the current writer and not confirmed yet, with their number, the
        # record's kind and size (the frame, not the record, is kept: it is what the backlog
        # holds already, and a record is decoded from it again only to spill it here)
        self._unconfirmed: deque[tuple[int, memoryview, str, int]] = deque()
        self._on_done: dict[int, Callable[[bool], None]] = {}  # frame number -> its caller
        self._next = 0  # the next frame's number
        self._first = 0  # the number of the current writer's first frame
        self._deaths: deque[float] = deque()  # when writers died, within RESTART_WINDOW_S
        self._given_up = False  # writers kept dying: every record is spilled here
        self._closing = False
        self._thread: threading.Thread | None = None
        self.sink = self._attach(start_writer())

    @property
    def depth(self) -> int:
        return len(self._backlog)

    def submit(self, record: Record, on_done: Callable[[bool], None] | None = None) -> bool:
        """Hand the record over without blocking; False when it failed (and was counted).
        `on_done(written)` is called once the record's events were written or failed (from
        another thread; at once when the record was spilled or refused here)."""
        frame = memoryview(encode_record(record))
        with self._lock:
            if self._closing:  # too late: the writer's input is closed
                self._count_failed(record.kind, record.size)
                return _done(on_done, False)
            if self._given_up or (self._backlog and len(self._backlog) >= self.capacity):
                return _done(on_done, self._spill(record))
            number = self._next
            self._next += 1
            self._unconfirmed.append((number, frame, record.kind, record.size))
            if on_done is not None:
                self._on_done[number] = on_done
            if self._backlog:  # frames are waiting: this one goes behind them
                self._backlog.append((frame, record.kind, record.size))
                return True
            written = self._write(frame)
            if 0 <= written < len(frame):  # (-1: the writer was replaced; it has the frame)
                self._backlog.append((frame[written:], record.kind, record.size))
                self._waiting.notify()
            return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ltr-event-log-pipe", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Write the backlog (waiting for the writer to read it), then end the writer's input
        and wait for it to finish (`ProcessSink.close`)."""
        with self._lock:
            self._closing = True
            self._waiting.notify()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout_s)
            if thread.is_alive():
                log.error("the event log's pipe did not drain in time")
        else:
            self._drain_all()
        try:
            self.sink.close()
        except Exception as exc:
            self.counts.error(exc)
        with self._lock:
            self._fd = -1  # never write to the number again: the OS may reuse it
            # the writer has exited and its last report confirmed what it wrote; what it did
            # not (it died on the way, or the pipe did not drain in time) is written here
            self._spill_unconfirmed(list(self._unconfirmed))
            self._unconfirmed.clear()
            try:
                self.spill.close()
            except Exception as exc:
                self.counts.error(exc)

    def _attach(self, writer: WriterProcess) -> WriterProcess:
        """Make `writer` the one frames go to (under the lock, or before any thread runs)."""
        self._fd = writer.stdin_fd
        os.set_blocking(self._fd, False)
        self._first = self._next
        first = self._first
        writer.on_progress = lambda done, failed: self._confirmed(first, done, failed)
        return writer

    def _confirmed(self, first: int, done: int, failed: list[int]) -> None:
        """A writer's report: its first `done` frames are written, but those in `failed`.
        Reports of a writer replaced since (another `first`) are ignored: its frames went to
        the new one."""
        with self._lock:
            if first != self._first:
                return
            failed_numbers = {first + index for index in failed}
            queue = self._unconfirmed
            while queue and queue[0][0] < first + done:
                number = queue.popleft()[0]
                _done(self._on_done.pop(number, None), number not in failed_numbers)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._backlog and not self._closing:
                    self._waiting.wait(1.0)
                    self._tick()
                if not self._backlog:
                    return
            self._flush_some()

    def _drain_all(self) -> None:
        while self._backlog:
            self._flush_some()

    def _flush_some(self) -> None:
        """Wait (without the lock) until the pipe takes data, then write the backlog's head."""
        with contextlib.suppress(OSError, ValueError):
            select.select([], [self._fd], [], 1.0)
        with self._lock:
            if not self._backlog:
                return
            frame, kind, size = self._backlog[0]
            written = self._write(frame)
            if written < 0:  # the writer was replaced: the backlog holds its frames again
                return
            if written < len(frame):
                self._backlog[0] = (frame[written:], kind, size)
            else:
                self._backlog.popleft()
            self._tick()

    def _write(self, frame: memoryview) -> int:
        """Bytes written (0 when the pipe is full). The pipe gone: the writer is replaced, its
        unconfirmed frames (this one included) queued for the new one, and -1 returned."""
        try:
            return os.write(self._fd, frame)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self._replace_writer(f"its pipe failed: {type(exc).__name__}: {exc}")
            return -1

    def _replace_writer(self, why: str) -> None:
        """Under the lock: start a new writer and queue every unconfirmed frame for it, in
        order; a writer that keeps dying is given up and its frames spilled here."""
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] > RESTART_WINDOW_S:
            self._deaths.popleft()
        pending = list(self._unconfirmed)
        self._unconfirmed.clear()
        self._backlog.clear()
        self.sink.abandon()
        message = f"the event log's writer process is gone ({why})"
        writer = None
        if self._closing:
            message += " while the service stops"
        elif len(self._deaths) <= MAX_RESTARTS:
            try:
                writer = self._attach(self._start_writer())
            except Exception as exc:
                message += f"; starting another failed: {type(exc).__name__}: {exc}"
        if writer is None:
            self._given_up = True
            self._metrics.kafka_connected.set(0)  # nothing reaches Kafka from here on
            self.counts.error(RuntimeError(f"{message}; spilling every record to files here"))
            self._spill_unconfirmed(pending)
            return
        self._metrics.event_writer_restarts.inc()
        self.counts.writer_restarts += 1
        self.counts.error(
            RuntimeError(f"{message}; started another, {len(pending)} record(s) handed to it")
        )
        self.sink = writer
        for number, frame, kind, size in pending:  # renumbered from the new writer's first
            renumbered = self._next
            self._next += 1
            self._unconfirmed.append((renumbered, frame, kind, size))
            callback = self._on_done.pop(number, None)
            if callback is not None:
                self._on_done[renumbered] = callback
            self._backlog.append((frame, kind, size))
        self._waiting.notify()

    def _spill_unconfirmed(self, frames: list[tuple[int, memoryview, str, int]]) -> None:
        """Under the lock: write frames no writer confirmed to this process's spill file, and
        tell their callers how it went."""
        for number, frame, _, _ in frames:
            _done(self._on_done.pop(number, None), self._spill(_record_of(frame)))

    def _spill(self, record: Record) -> bool:
        """The backlog is full (the writer is behind) or writers keep dying: write the
        record's events to this process's own spill file, on the calling thread, under the
        lock. It costs the request the expansion of its events, so the service slows only
        while its writer is behind, and nothing is dropped. False (failed and counted) when
        the file fails too."""
        written = record.size
        try:
            write_record(self.spill, record)
        except WriteFailed as exc:
            written = exc.written
            self._count_failed(record.kind, record.size - written)
            self.counts.error(exc.error)
        if written:
            self.counts.logged[record.kind] += written
            self._metrics.events_logged.labels(record.kind).inc(written)
            self._metrics.events_spilled.inc(written)
        return written == record.size

    def _tick(self) -> None:
        """Called under the lock (the spill file is written under it too)."""
        try:
            self.spill.tick(time.time())
        except Exception as exc:
            self.counts.error(exc)
        if self._given_up or self._closing:
            return
        code = self.sink.exited()
        if code is not None:
            self._replace_writer(f"exited with {code}")

    def _count_failed(self, kind: str, size: int) -> None:
        self.counts.failed += size
        self._metrics.events_failed.labels(kind).inc(size)


def _record_of(frame: memoryview) -> Record:
    """The record a whole frame (its length first) was encoded from."""
    return decode_record(bytes(frame[_LENGTH.size :]))


def _done(on_done: Callable[[bool], None] | None, written: bool) -> bool:
    if on_done is not None:
        on_done(written)
    return written


def writing_event_log(
    settings: Settings,
    metrics: ServingMetrics,
    counts: LogCounts,
    sink: EventSink | None = None,
) -> EventLog:
    """The log that writes the events itself: through `sink` (tests), else JSONL files under
    LTR_SERVING_LOG_DIR, or Kafka spilling to them (LTR_IMPRESSION_LOG=kafka; it starts
    connecting at once, in the background). What the writer process runs; defined here, not
    beside `ltr_serving.app.build_event_log`, so the writer never imports the web app."""
    requested = settings.serving.impression_log
    if sink is None:
        files = FileSink(
            settings.serving_log_dir,
            max_age_s=settings.serving.log_rotate_s,
            written=metrics.events_file,
        )
        sink = files
        if requested == "kafka":
            if settings.kafka is None:  # Settings refuses this; a hand-built one may not
                raise ValueError("LTR_IMPRESSION_LOG=kafka needs KAFKA_BOOTSTRAP_SERVERS")
            sink = KafkaSink(
                settings.kafka,
                files,
                timeout_s=settings.serving.impression_kafka_timeout_s,
                retry_s=settings.serving.impression_kafka_retry_s,
                sent=metrics.events_kafka_sent,
                spilled=metrics.events_spilled,
                lost=metrics.events_failed,
                connected=metrics.kafka_connected,
            )
    events = EventLog(
        sink,
        settings.serving.impression_queue,
        requested=requested,
        logged=metrics.events_logged,
        dropped=metrics.events_dropped,
        failed=metrics.events_failed,
        counts=counts,
    )
    metrics.event_queue_depth.set_function(lambda: events.depth)
    return events


# --- the child ------------------------------------------------------------------------------------


def _frames(fd: int, idle_s: float) -> Iterator[bytes | None]:
    """The frames on `fd` until its end (a frame cut short by a dying writer is left out), and
    None after `idle_s` without input: the reader's cue to tick."""
    buffer = bytearray()
    while True:
        ready, _, _ = select.select([fd], [], [], idle_s)
        if not ready:
            yield None
            continue
        chunk = os.read(fd, _PIPE_BYTES)
        if not chunk:
            return
        buffer += chunk
        start, end = 0, len(buffer)
        while end - start >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(buffer, start)
            stop = start + _LENGTH.size + size
            if stop > end:
                break
            yield bytes(buffer[start + _LENGTH.size : stop])
            start = stop
        del buffer[:start]


class _Progress:
    """What the child has done with the frames it read, for the serving process to confirm
    them (`PipeEventLog._confirmed`): how many, and which of them failed since the last report.
    The lock also keeps the two threads' reports whole on stdout.

    A file sink has written a frame's lines when `write_now` returns. The Kafka sink has only
    taken them: a frame is done once every line taken up to its last is settled (sent and
    acknowledged, spilled, or lost and counted; `KafkaSink.settled_lines`), so a writer that
    dies with records in its producer leaves their frames unconfirmed, and the serving process
    hands them to the next writer."""

    def __init__(self, sink: object, counts: LogCounts | None = None) -> None:
        self.lock = threading.Lock()
        self.done = 0
        self.failed: list[int] = []
        self._kafka = sink if isinstance(sink, KafkaSink) else None  # else: written = done
        self._counts = counts  # where a frame that lost lines is recorded (health degrades)
        # frames taken but not settled: (the sink's lines taken after it, failed, feedback)
        self._waiting: deque[tuple[int, bool, bool]] = deque()
        self._first_line = 0  # the sink's number of the first line of the oldest frame waiting
        self.feedback_waiting = 0  # feedback frames among them: their requests wait

    def frame_written(self, failed: bool, feedback: bool = False) -> None:
        with self.lock:
            if self._kafka is None:
                self._finish(failed)
                return
            self._waiting.append((self._kafka.written_lines(), failed, feedback))
            self.feedback_waiting += feedback

    def advance(self) -> None:
        """Under the lock: the frames whose lines are all settled are done."""
        if self._kafka is None:
            return
        upto = self._kafka.settled_lines()
        settled = 0
        while settled < len(self._waiting) and self._waiting[settled][0] <= upto:
            settled += 1
        if not settled:
            return
        # lines neither sent nor spilled (the spill file failed too): their frames failed
        lost = self._kafka.lost_before(self._waiting[settled - 1][0])
        if lost and self._counts is not None:
            self._counts.last_error = f"{len(lost)} events lost: {self._kafka.last_error}"
            self._counts.last_error_at = datetime.now(UTC)
        start = self._first_line
        for _ in range(settled):
            end, failed, feedback = self._waiting.popleft()
            self.feedback_waiting -= feedback
            self._finish(failed or any(start <= number < end for number in lost))
            start = end
        self._first_line = start

    def _finish(self, failed: bool) -> None:
        if failed:
            self.failed.append(self.done)
        self.done += 1


class _Reports:
    """The child's stdout, where its reports go: a pipe the serving process reads. A serving
    process killed outright (SIGKILL) closes its end while the child still has input to write:
    the first report that finds the pipe closed logs once that the server is gone, and every
    report after it is dropped, so the child still writes all it read, completes its files and
    exits with 0 (its reports had no reader left)."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.gone = False

    def send(self, data: bytes) -> None:
        if self.gone:
            return
        try:
            self._out.write(data)
            self._out.flush()
        except BrokenPipeError:
            self.gone = True
            # what the buffer still holds would fail again when Python flushes it at exit:
            # the descriptor leads nowhere from now on
            with contextlib.suppress(OSError):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, self._out.fileno())
                os.close(null)
            log.warning(
                "the serving process is gone (its end of the report pipe is closed): writing "
                "the rest of the input without reporting"
            )


def _report(events: EventLog, metrics: ServingMetrics, progress: _Progress, out: _Reports) -> None:
    registry = metrics.registry
    sink = events.sink
    counts = events.counts
    with progress.lock:
        progress.advance()
        counters = {}
        for name, label in _COUNTERS:
            labels = {"kind": label} if label else {}
            counters[f"{name}|{label or ''}"] = registry.get_sample_value(name, labels) or 0.0
        report = {
            "counters": counters,
            "connected": registry.get_sample_value("ltr_event_log_kafka_connected") or 0.0,
            "last_error": counts.last_error,
            "last_error_at": counts.last_error_at.isoformat() if counts.last_error_at else None,
            "kafka": sink.status() if hasattr(sink, "status") else None,
            "done": progress.done,
            "failed_frames": progress.failed,
        }
        progress.failed = []
        out.send(msgspec.json.encode(report) + b"\n")


def main() -> int:
    """The writer process: settings, then frames on stdin until its end; reports on stdout.

    One thread does the work (read a frame, expand it, write it to the sink), so nothing is
    handed between threads per record; the pipe from the serving process is the queue. A
    reporter thread sends the counters every `REPORT_S`."""
    from ltr_serving.logs import configure_process_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # it ends with its input, not with signals
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_process_logging()  # aiokafka's and asyncio's lines too: JSON on stderr
    stdout = _Reports(sys.stdout.buffer)
    frames = _frames(sys.stdin.buffer.fileno(), _TICK_S)
    first = next((frame for frame in frames if frame is not None), None)
    if first is None:
        return 0
    settings: Settings = pickle.loads(first)
    if settings.serving.impression_log == "off":  # the serving process starts no writer
        return 0
    metrics = ServingMetrics()
    events = writing_event_log(settings, metrics, LogCounts())
    done = threading.Event()
    wake = threading.Event()  # a feedback frame waits for Kafka: report it promptly
    progress = _Progress(events.sink, events.counts)

    def report_forever() -> None:
        while not done.is_set():
            wake.wait(_FEEDBACK_POLL_S if progress.feedback_waiting else REPORT_S)
            wake.clear()
            if not done.is_set():
                _report(events, metrics, progress, stdout)

    reporter = threading.Thread(target=report_forever, name="ltr-log-reports", daemon=True)
    reporter.start()
    ticked = time.monotonic()
    try:
        for frame in frames:
            if frame is not None:
                try:
                    record = decode_record(frame)
                except Exception as exc:  # a frame the serving process encoded: cannot happen
                    log.exception("an event log frame could not be decoded")
                    events.counts.last_error = f"{type(exc).__name__}: {exc}"
                    progress.frame_written(failed=True)
                    continue
                failed_before = events.counts.failed
                events.write_now(record)
                feedback = record.kind == "feedback"  # its /feedback request waits for this
                progress.frame_written(events.counts.failed > failed_before, feedback)
                if feedback:
                    wake.set()
            now = time.monotonic()
            if frame is None or now - ticked >= _TICK_S:
                events.tick()
                ticked = now
    finally:
        events.close()
        done.set()
        wake.set()  # the reporter may be waiting out REPORT_S: the final report is below
        reporter.join()
        _report(events, metrics, progress, stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
