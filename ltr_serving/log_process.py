"""The event log's writer process: the impression log's expansion, encoding and sink run in a
child process, so they never hold the serving process's GIL.

Why: an answered 100-candidate /rank becomes 100 `match_recommendation` events (ids hashed,
features, propensities, JSON, Kafka records). In the serving process that work, on any thread,
competes with the request path for the one GIL: /rank kept about a fifth of its throughput with
the log on (docs/benchmarks.md, "impression log"). Here the serving process only hands each
record over as one msgpack frame (the request body as received, the shown order, scores and
policy), and the child (`python -m ltr_serving.log_process`) parses the body again with the
same `ltr_core.codec.parse_request`, expands the events with the same `impression_data` and
writes them through the same sinks (`build_event_log`: files, or Kafka spilling to files).

Guarantees, as with the in-process log:

- /rank never waits: `EventLog.submit` still only queues (a full queue drops and counts); the
  event log's worker thread writes the frames to the child's stdin (a pipe), and blocks only
  itself when the child is behind.
- Nothing handed over is lost: the child writes everything it read before it exits; it exits
  at the end of its input only (it ignores SIGINT and SIGTERM, which a terminal or a process
  group may send it alongside the server), so a SIGTERM'd server (whose lifespan closes the
  pipe after draining its queue) or a killed one (the pipe closes with it) leaves the child to
  flush or spill everything and complete its files.
- /metrics and /ltr/health keep their meaning: the child reports its counters and its sink's
  state on its stdout every `REPORT_S` and at exit; the serving process adds them to its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import pickle
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import IO, Any

import msgspec

from ltr_core.codec import Exploration, Interleaved, parse_served
from ltr_core.settings import Settings
from ltr_serving.impressions import (
    EventLog,
    FeedbackRecord,
    ImpressionRecord,
    Line,
    LogCounts,
    Record,
)
from ltr_serving.kafka_sink import KafkaSinkStatus
from ltr_serving.metrics import ServingMetrics

log = logging.getLogger("ltr_serving.log_process")

REPORT_S = 0.25  # how often the child reports its counters
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

    `write_records`, `tick` and `close` run on the event log's worker thread; a reader thread
    applies the child's reports to the serving process's counters, `counts` and health."""

    def __init__(self, settings: Settings, metrics: ServingMetrics, counts: LogCounts) -> None:
        self.kind: str = settings.serving.impression_log  # file | kafka: the child writes to
        self.settings = settings
        self.metrics = metrics
        self.counts = counts
        self.timeout_s = 6 * settings.serving.impression_kafka_timeout_s + 30
        self._reported: dict[tuple[str, str | None], float] = {}
        self._closing = False
        self._kafka: KafkaSinkStatus | None = None
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

    def write_records(self, records: Sequence[Record]) -> None:
        """Frames of the records, in one write (blocks while the child's pipe is full)."""
        self._stdin.write(b"".join(map(encode_record, records)))
        self._stdin.flush()

    def tick(self, now: float) -> None:
        """A writer process gone before its input ended: an error (writes fail from now on,
        counted as failed)."""
        code = self._process.poll()
        if code is not None and not self._closing:
            raise RuntimeError(f"the event log's writer process exited with {code}")

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
        """The child's Kafka sink as last reported (None with LTR_IMPRESSION_LOG=file)."""
        if self.kind != "kafka":
            return None
        with self._lock:
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


# --- the child ------------------------------------------------------------------------------------


def _read_frame(stream: IO[bytes]) -> bytes | None:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return data


def _report(events: EventLog, metrics: ServingMetrics, out: IO[bytes]) -> None:
    registry = metrics.registry
    counters = {}
    for name, label in _COUNTERS:
        labels = {"kind": label} if label else {}
        counters[f"{name}|{label or ''}"] = registry.get_sample_value(name, labels) or 0.0
    sink = events.sink
    status = sink.status() if hasattr(sink, "status") else None
    counts = events.counts
    report = {
        "counters": counters,
        "connected": registry.get_sample_value("ltr_event_log_kafka_connected") or 0.0,
        "last_error": counts.last_error,
        "last_error_at": counts.last_error_at.isoformat() if counts.last_error_at else None,
        "kafka": status,
    }
    out.write(msgspec.json.encode(report) + b"\n")
    out.flush()


def main() -> int:
    """The writer process: settings, then frames on stdin until its end; reports on stdout."""
    from ltr_serving.app import build_event_log  # the sinks the in-process log uses
    from ltr_serving.logs import configure_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # it ends with its input, not with signals
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    first = _read_frame(stdin)
    if first is None:
        return 0
    settings: Settings = pickle.loads(first)
    metrics = ServingMetrics()
    events = build_event_log(settings, metrics, in_process=True)
    if events is None:
        return 0
    events.start()
    done = threading.Event()

    def report_forever() -> None:
        while not done.wait(REPORT_S):
            _report(events, metrics, stdout)

    reporter = threading.Thread(target=report_forever, name="ltr-log-reports", daemon=True)
    reporter.start()
    try:
        while (frame := _read_frame(stdin)) is not None:
            try:
                record = decode_record(frame)
            except Exception as exc:  # a frame the serving process encoded: cannot happen
                log.exception("an event log frame could not be decoded")
                events.counts.last_error = f"{type(exc).__name__}: {exc}"
                continue
            events.put(record)
    finally:
        events.stop()
        done.set()
        reporter.join()
        _report(events, metrics, stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
