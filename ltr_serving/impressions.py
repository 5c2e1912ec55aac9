"""The impression and feedback log: what /rank showed and what /feedback received, as events in
the flat envelope the pipeline's ingest reads (`ltr_core.events`).

The request path never waits on it. /rank hands one compact `ImpressionRecord` (the parsed
request, the shown order and scores, the version, the policy, the time) to the app's
`RecordLog`, which is, in a running service, `ltr_serving.log_process.PipeEventLog`: the record
goes as one frame to the writer process, which expands each into one `match_recommendation`
event per shown candidate (ids, features, groups, propensities; `impression_data`) and writes
the lines to an `EventSink` (`EventLog.write_now`). `EventLog` is the same log in one process:
a bounded queue (LTR_IMPRESSION_QUEUE; full, a record is dropped and counted) and a worker
thread that drains it, for a sink handed to `create_app` (tests).

Sinks are a small protocol (`EventSink`). Each event reaches the sink as a `Line`: its JSON
line, its Kafka record key (the request id) and its time. `FileSink` (LTR_IMPRESSION_LOG=file)
writes JSONL under LTR_SERVING_LOG_DIR, one folder per UTC day of the event time,
`<host>-<pid>-<seq>.jsonl`, written as `.jsonl.part` and renamed when rotated (size, age, another
day) or closed, so a reader only ever sees complete files; a service starting completes the
`.part` files that killed processes of its host left (`complete_orphaned_files`), so what they
wrote is read too. `ltr_serving.kafka_sink.KafkaSink`
(LTR_IMPRESSION_LOG=kafka) produces the events to KAFKA_TOPIC and spills to a `FileSink` what
Kafka does not take in time.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import queue
import socket
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol

import msgspec
import orjson
from prometheus_client import Counter

from ltr_core.codec import (
    Exploration,
    Interleaved,
    ParsedRequest,
    attributes_dict,
    feature_structs,
)
from ltr_core.exploration import plan_exploration
from ltr_core.features import RECOMMENDATION
from ltr_core.interleaving import position_probabilities
from ltr_core.rank_api import IMPRESSION_ID_PREFIX
from ltr_core.vocabulary import ImpressionLog, LoggingPolicy

log = logging.getLogger("ltr_serving.impressions")

DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_FILE_AGE_S = 300.0
_TICK_S = 1.0  # how often an idle worker looks at the open file's age
_BATCH = 256  # records taken off the queue per write
MAX_OPEN_DAYS = 4  # serving-log files open at once, one per day (`FileSink`)


def impression_event_id(request_id: str, lawyer_id: str) -> str:
    """Deterministic: the same request and lawyer always give the same id (ingest dedups).
    `imp-`, 24 hex digits of the request id's sha256, `-`, the lawyer id: unique per (request,
    lawyer), with one hash per request rather than one per candidate (the cost measured in
    docs/benchmarks.md, "impression log")."""
    return request_prefix(request_id) + lawyer_id


def request_prefix(request_id: str) -> str:
    """The part of a request's impression event ids that all its candidates share."""
    return IMPRESSION_ID_PREFIX + hashlib.sha256(request_id.encode()).hexdigest()[:24] + "-"


def iso_z(at: float) -> str:
    """Epoch seconds as ISO 8601 in UTC with a Z."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds")[:-6] + "Z"


class Line(NamedTuple):
    """One event as the sinks take it."""

    data: bytes  # the event's JSON, one line with its newline
    key: bytes | None  # its Kafka record key: the request id (one list stays in one partition)
    at_ms: int  # its time in epoch milliseconds: the Kafka record timestamp
    kind: str  # impression | feedback (what the counters are labelled with)


@dataclass(slots=True)
class ImpressionRecord:
    """What the request path hands over: built in a few hundred ns, expanded by the worker."""

    request: ParsedRequest
    request_id: str
    policy: LoggingPolicy
    shown: list[int]  # indices into request.ids, in shown order
    scores: list[float]  # their scores, in shown order
    version: str
    at: float  # epoch seconds, the service's clock (or X-LTR-Clock under LTR_SIMULATED_CLOCK)
    exploration: Exploration | None
    # LTR_INTERLEAVE_RATE while a candidate was loaded, else 0: the share of requests the
    # exploration policy did not serve, which its swap propensities are conditional on
    interleave_rate: float = 0.0
    interleaving: Interleaved | None = None  # policy "interleaved": teams and both rankings
    candidate_version: str | None = None  # the candidate's version, for its team's rows
    # the /rank body as received: what the writer process parses again (`log_process`)
    body: bytes | None = None

    kind = "impression"

    @property
    def size(self) -> int:
        return len(self.shown)

    def lines(self) -> list[tuple[str, Line]]:
        ((day, lines),) = self.by_day()
        return [(day, line) for line in lines]

    def by_day(self) -> list[tuple[str, list[Line]]]:
        """The lines, all on the day of the record's time. Built in C (`tuple.__new__` over
        `zip`, no Python frame per line: a hundred `Line(...)` calls cost more than the
        encoding)."""
        key, at_ms = self.request_id.encode(), int(self.at * 1000)
        parts = zip(impression_lines(self), repeat(key), repeat(at_ms), repeat("impression"))
        return [(day_of(self.at), list(map(tuple.__new__, repeat(Line), parts)))]


@dataclass(slots=True)
class FeedbackRecord:
    """Validated `offer_feedback` events, each as (UTC day of its time, its line)."""

    events: list[tuple[str, Line]]

    kind = "feedback"

    @property
    def size(self) -> int:
        return len(self.events)

    def lines(self) -> list[tuple[str, Line]]:
        return self.events

    def by_day(self) -> list[tuple[str, list[Line]]]:
        days: dict[str, list[Line]] = {}
        for day, line in self.events:
            days.setdefault(day, []).append(line)
        return list(days.items())


Record = ImpressionRecord | FeedbackRecord


def day_of(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).date().isoformat()


def impression_events(record: ImpressionRecord) -> list[dict[str, Any]]:
    """The record's events as dicts (what `impression_data` encodes, decoded again)."""
    return [orjson.loads(line) for line in impression_lines(record)]


def impression_lines(record: ImpressionRecord) -> list[bytes]:
    """The record's events, one JSON line each (with its newline)."""
    return impression_data(record).splitlines(keepends=True)


# A `match_recommendation` event's fields in the log's order (the features are the codec's
# feature struct or the body's text, `msgspec.Raw`): the exploration policy's rows (`_Shown`),
# and an interleaved request's, which add the team that picked the candidate (`_Drafted`).
_FIELDS: list[tuple[str, Any]] = [
    ("event_id", str),
    ("event_type", str),
    ("timestamp", str),
    ("request_id", str),
    ("case_id", str),
    ("lawyer_id", str),
    ("rank_position", int),
    ("features", Any),
    ("lawyer_groups", dict[str, Any] | None),
    ("score", float),
    ("algorithm_version", str | None),
    ("policy", str),
]
_TAIL: list[tuple[str, Any]] = [("propensity", float), ("deterministic_rank", int)]
_Shown = msgspec.defstruct("_Shown", [*_FIELDS, *_TAIL], gc=False)
_Drafted = msgspec.defstruct("_Drafted", [*_FIELDS, ("team", str), *_TAIL], gc=False)
_encoder = msgspec.json.Encoder()


def impression_data(record: ImpressionRecord) -> bytes:
    """One `match_recommendation` event per shown candidate, as JSON lines, with the exact
    propensity (under the exploration policy, given the deterministic order) of it being shown
    where it was.

    An interleaved request's rows carry policy "interleaved", the `team` that picked each
    candidate, `algorithm_version` naming that team's version (the live or the candidate
    one), the exact team-draft propensity (`ltr_core.interleaving.position_probabilities`,
    computed here off the request path) and, as `deterministic_rank`, the live ranking's rank.

    Built in bulk: the parts every event of the request shares are made once, the
    per-candidate ones by `map` over msgspec structs (no Python frame per candidate), and the
    lines encoded by one `encode_lines` call."""
    request = record.request
    shown = record.shown
    n = len(shown)
    request_id = record.request_id
    ids = request.ids
    lawyer_ids = [ids[i] for i in shown]
    event_ids = list(map(request_prefix(request_id).__add__, lawyer_ids))
    raw = request.raw_features  # the writer process: the features' text from the body
    features = (
        [raw[i] for i in shown] if raw is not None else feature_structs(request.matrix[shown])
    )
    attributes = request.attributes
    groups: Any = (
        list(map(attributes_dict, map(attributes.__getitem__, shown)))
        if attributes and attributes.count(None) < len(attributes)  # any candidate has some
        else repeat(None)
    )
    shared = (
        repeat(RECOMMENDATION),
        repeat(iso_z(record.at)),
        repeat(request_id),
        repeat(request.case_id),
    )
    drafted = record.interleaving
    if drafted is None:
        exploration = record.exploration
        plan = plan_exploration(
            request_id,
            n,
            explore_rate=exploration.rate if exploration else 0.0,
            interleave_rate=record.interleave_rate,
            max_position=exploration.max_position if exploration else 10,
        )
        if plan.policy != record.policy:  # the settings are fixed per process: cannot happen
            raise RuntimeError(f"request {request_id!r}: the plan disagrees with the path")
        events: list[Any] = list(
            map(
                _Shown,
                event_ids,
                *shared,
                lawyer_ids,
                range(1, n + 1),
                features,
                groups,
                record.scores,
                repeat(record.version),
                repeat(plan.policy),
                plan.propensities,
                plan.ranks,
            )
        )
        return _encoder.encode_lines(events)
    if len(drafted.teams) != n:
        raise ValueError(f"{len(drafted.teams)} teams for {n} shown candidates")
    table = position_probabilities(drafted.live_order, drafted.candidate_order, top_k=n)
    live_rank = {index: rank for rank, index in enumerate(drafted.live_order, start=1)}
    versions = {"live": record.version, "candidate": record.candidate_version}
    events = list(
        map(
            _Drafted,
            event_ids,
            *shared,
            lawyer_ids,
            range(1, n + 1),
            features,
            groups,
            record.scores,
            [versions[team] for team in drafted.teams],
            repeat("interleaved"),
            drafted.teams,
            [table[p][i] for p, i in enumerate(shown)],
            [live_rank[i] for i in shown],
        )
    )
    return _encoder.encode_lines(events)


class WriteFailed(Exception):
    """A record's write failed after `written` of its events were written (a feedback batch
    spans days, written one day at a time): the counters count each part as what it was."""

    def __init__(self, written: int, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.written = written
        self.error = error


def write_record(sink: EventSink, record: Record) -> None:
    """Write a record's events to a sink; a file takes an impression's lines as encoded, in one
    piece (no split into `Line`s it does not need). Raises `WriteFailed`."""
    written = 0
    try:
        if isinstance(record, ImpressionRecord) and isinstance(sink, FileSink):
            sink.write_data(day_of(record.at), impression_data(record), record.size)
            return
        for day, lines in record.by_day():
            sink.write(day, lines)
            written += len(lines)
    except Exception as exc:
        raise WriteFailed(written, exc) from exc


# --- sinks ---------------------------------------------------------------------------------------


class EventSink(Protocol):
    """Where the worker writes lines. Called from the worker thread only."""

    kind: str

    def write(self, day: str, lines: Sequence[Line]) -> None:
        """Write events that fall on UTC `day` (YYYY-MM-DD)."""

    def tick(self, now: float) -> None:
        """Called at least once a second: rotate what is due."""

    def close(self) -> None:
        """Flush and finish everything (after this, readers see complete output)."""


@dataclass
class _OpenFile:
    day: str
    part: Path
    final: Path
    handle: IO[bytes]
    opened: float
    size: int = 0


class FileSink:
    """JSONL files, `<dir>/<YYYY-MM-DD>/<host>-<pid>-<seq>.jsonl`, written as `.jsonl.part`
    and renamed (after fsync) when rotated or closed: at `max_bytes`, at `max_age_s`, and at
    close. One file is open per day, at most `MAX_OPEN_DAYS` (past it, the file of the day
    written least lately is completed: today's, written all the time, stays open):
    feedback for yesterday interleaved with today's impressions is normal, and a file per
    alternation would make thousands of files and fsyncs. A name that exists already (a
    restarted container keeps its pid) is skipped.

    A failed write (a full disk) is cut back off its file, which stays open and ends in whole
    lines (`_undo`): the failed events are counted as failed by the caller and are nowhere
    else, a full disk makes no file per failed write, and writing goes on in the same file once
    there is space. A file no write ever reached is deleted, not completed empty."""

    kind = "file"

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = DEFAULT_MAX_FILE_BYTES,
        max_age_s: float = DEFAULT_MAX_FILE_AGE_S,
        written: Counter | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.written = written
        self.prefix = f"{socket.gethostname()}-{os.getpid()}"
        self.files_completed = 0
        self._seq = 0
        self._open: dict[str, _OpenFile] = {}  # by day, the day written least lately first

    def write(self, day: str, lines: Sequence[Line]) -> None:
        self.write_data(day, b"".join(line.data for line in lines), len(lines))

    def write_data(self, day: str, data: bytes, count: int) -> None:
        """Write `count` events that are already JSON lines, `data`, all of UTC `day`."""
        current = self._open.pop(day, None)
        if current is not None:
            self._open[day] = current  # used now: completed last past the limit
        else:
            if len(self._open) >= MAX_OPEN_DAYS:
                self._finish(next(iter(self._open)))  # the day written least lately
            current = self._start(day)
        try:
            _write_all(current.handle, data)
        except BaseException:
            self._undo(day, current)
            raise
        current.size += len(data)
        if self.written is not None:
            self.written.inc(count)
        if current.size >= self.max_bytes:
            self._finish(day)

    @property
    def open_days(self) -> list[str]:
        """The days with a file open, the day written least lately first."""
        return list(self._open)

    def tick(self, now: float) -> None:
        moment = time.monotonic()
        for day, current in list(self._open.items()):
            if moment - current.opened >= self.max_age_s:
                self._finish(day)

    def close(self) -> None:
        for day in list(self._open):
            self._finish(day)

    def _start(self, day: str) -> _OpenFile:
        folder = self.directory / day
        folder.mkdir(parents=True, exist_ok=True)
        if folder.is_symlink():  # the ingest reads no linked day folder: written there, lost
            raise OSError(
                errno.ELOOP,
                f"{folder} is a symbolic link, which the ingest does not read: nothing of {day} "
                "is written there (remove the link)",
            )
        while True:
            self._seq += 1
            final = folder / f"{self.prefix}-{self._seq:06d}.jsonl"
            part = final.with_name(final.name + ".part")
            if final.exists() or part.exists():
                continue
            # Locked before it has its .part name, so `complete_orphaned_files` never finds
            # the .part of a live writer unlocked.
            fresh = final.with_name(f".{final.name}.new")
            try:
                # unbuffered: a failed write leaves nothing behind in a buffer (`_undo`)
                handle = open(fresh, "xb", buffering=0)  # noqa: SIM115 - closed by _finish
            except FileExistsError:
                continue
            fcntl.flock(handle, fcntl.LOCK_EX)
            if part.exists():  # taken meanwhile (a name is never reused)
                handle.close()
                fresh.unlink(missing_ok=True)
                continue
            try:
                os.replace(fresh, part)
            except BaseException:  # (a full disk): leave no locked `.new` file behind
                handle.close()
                fresh.unlink(missing_ok=True)
                raise
            opened = self._open[day] = _OpenFile(day, part, final, handle, time.monotonic())
            return opened

    def _undo(self, day: str, current: _OpenFile) -> None:
        """A write failed, maybe part-way (a full disk): cut the file back to its last whole
        line and keep it open, so the failed events (counted as failed by the caller) are not
        in it, the next write goes to the same file (a full disk makes no file per failed
        write) and writing goes on there once space returns. If the file cannot be cut back,
        it may end in a torn line: `_cut_off`."""
        try:
            current.handle.truncate(current.size)  # frees space; needs none
            current.handle.seek(current.size)
        except BaseException:
            self._cut_off(day)
            raise

    def _cut_off(self, day: str) -> None:
        """A failed write left a file that could not be cut back to its last whole line: no
        later event goes after its torn line. Completed as it stands, if it can be (the ingest
        quarantines the torn line, counted); else left as `.part`, for
        `complete_orphaned_files`."""
        current = self._open.pop(day, None)
        if current is None:
            return
        with contextlib.suppress(OSError):
            current.handle.close()
        if _dropped_if_empty(current):
            return
        with contextlib.suppress(OSError):
            os.replace(current.part, current.final)
            self.files_completed += 1

    def _finish(self, day: str) -> None:
        current = self._open.pop(day, None)
        if current is None:
            return
        if _dropped_if_empty(current):
            return
        try:
            os.fsync(current.handle.fileno())
        finally:
            current.handle.close()
        os.replace(current.part, current.final)
        self.files_completed += 1


def _dropped_if_empty(current: _OpenFile) -> bool:
    """Close and delete a file no write reached (every one failed: a full disk), instead of
    completing it: no empty file for the ingest to list. Whether it was."""
    if current.size:
        return False
    with contextlib.suppress(OSError):
        current.handle.close()
        current.part.unlink(missing_ok=True)
    return True


def _write_all(handle: IO[bytes], data: bytes) -> None:
    """Write all of `data` to an unbuffered file (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        written = handle.write(view)
        view = view[written or 0 :]


def complete_orphaned_files(directory: Path) -> list[Path]:
    """Rename to `.jsonl` the `.jsonl.part` files of this host that no process is writing any
    more (its writer killed by SIGKILL, the OOM killer, a power loss), and return the new
    names. Their lines were written and flushed, but the ingest reads complete files only, so
    without this they would never be read. A writer holds an exclusive `flock` on its open
    file from before the file has its `.part` name (`FileSink._start`), so a `.part` whose lock
    can be taken has no writer: that holds across processes and containers sharing the folder
    on one machine, whatever their pids. An empty one is deleted. A torn last line (the
    writer killed mid-write) stays as it is: the ingest
    quarantines it (`invalid_json`), counted rather than lost unseen. Files named for other
    hosts (a folder shared between machines, where locks may not be shared) are left alone.

    Only regular files are touched: a `.part` name that is a symlink, a directory, a FIFO or a
    device (no writer makes one: someone else put it there), or a file this process may not
    open, rename or delete, is left as it is and named in one warning. It never blocks (a FIFO
    is not opened to wait for a writer) and never raises for such a file, so a service starts
    whatever the folder holds."""
    prefix = f"{socket.gethostname()}-"
    completed: list[Path] = []
    skipped: dict[str, str] = {}  # file -> why it was left alone
    for part in sorted(Path(directory).glob(f"*/{prefix}*.jsonl.part")):
        if part.parent.is_symlink():  # a day folder linked elsewhere: the ingest skips it too
            skipped[str(part)] = "its day folder is a symbolic link"
            continue
        try:
            final = _complete_orphan(part)
        except _NotRegular as exc:
            skipped[str(part)] = str(exc)
            continue
        except (BlockingIOError, FileNotFoundError):
            continue  # being written, or completed by another process meanwhile
        except OSError as exc:  # not ours to read or rename (another user's 0600 file)
            skipped[str(part)] = f"{type(exc).__name__}: {exc.strerror or exc}"
            continue
        if final is not None:
            completed.append(final)
    if skipped:
        log.warning(
            "left alone files in the serving-log folder that are not regular files this "
            "process can complete; remove or fix them",
            extra={"skipped": skipped},
        )
    if completed:
        days = sorted({p.parent.name for p in completed})
        log.warning(
            "completed files that killed processes left; re-run raw_events for their days "
            "if it ran already",
            extra={"files": [str(p) for p in completed], "days": days},
        )
    return completed


class _NotRegular(Exception):
    """A `.part` name that is not a regular file (a symlink, a directory, a FIFO, a device)."""


def _complete_orphan(part: Path) -> Path | None:
    """Complete one `.part` file no writer holds: its complete name, or None when it was left
    (a complete file has its name) or deleted (empty). BlockingIOError: a writer holds it;
    `_NotRegular`; OSError: it could not be opened, renamed or deleted."""
    final = part.with_name(part.name[: -len(".part")])
    mode = os.lstat(part).st_mode  # decided before opening: a device is never opened
    if not stat.S_ISREG(mode):
        raise _NotRegular(_kind(mode))
    # non-blocking and not through a link: what replaced the file since lstat cannot hang this
    fd = os.open(part, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _NotRegular(_kind(info.st_mode))
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: a live writer
        if os.path.lexists(final):
            return None  # never replace a complete file
        if info.st_size == 0:  # nothing in it (a full disk)
            part.unlink()
            return None
        os.replace(part, final)
    return final


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


# --- the queue and its worker ---------------------------------------------------------------------


@dataclass
class LogCounts:
    logged: dict[str, int] = field(default_factory=lambda: {"impression": 0, "feedback": 0})
    dropped: int = 0  # events whose record found the queue full
    failed: int = 0  # events the sink could not write
    writer_restarts: int = 0  # writer processes found gone and replaced
    last_error: str | None = None
    last_error_at: datetime | None = None

    def error(self, exc: BaseException) -> None:
        """Record and log a write that failed (health shows the last one)."""
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.last_error_at = datetime.now(UTC)
        log.error("event log write failed", extra={"error": self.last_error})


class _Stop:
    pass


_STOP = _Stop()


class Named(Protocol):
    """A sink as /ltr/health names it."""

    @property
    def kind(self) -> str: ...


class RecordLog(Protocol):
    """What the app, /rank, /feedback and /ltr/health use of an event log: `EventLog` (the
    sinks in this process) or `ltr_serving.log_process.PipeEventLog` (the writer process)."""

    requested: ImpressionLog
    capacity: int
    counts: LogCounts

    @property
    def sink(self) -> Named: ...

    @property
    def depth(self) -> int:
        """Records waiting (queued, or waiting for the writer process's pipe)."""

    def submit(self, record: Record, on_done: Callable[[bool], None] | None = None) -> bool:
        """Hand the record over without blocking; False when it was dropped or failed (and
        counted). `on_done(written)`, when given, is called once the record's events were
        written or failed, from another thread or at once."""

    def start(self) -> None: ...

    def stop(self, timeout_s: float = 30.0) -> None:
        """Write everything handed over, then close the sink."""


class EventLog:
    """The bounded queue (`submit` never blocks) and the worker thread that drains it."""

    def __init__(
        self,
        sink: EventSink,
        capacity: int,
        *,
        requested: ImpressionLog = "file",
        logged: Counter | None = None,
        dropped: Counter | None = None,
        failed: Counter | None = None,
        counts: LogCounts | None = None,
    ) -> None:
        self.sink = sink
        self.capacity = capacity
        self.requested = requested
        self.counts = counts or LogCounts()
        self._queue: queue.Queue[Record | _Stop] = queue.Queue(capacity)
        self._on_done: dict[int, Callable[[bool], None]] = {}  # id(record) -> its caller
        self._logged = logged
        self._dropped = dropped
        self._failed = failed
        self._thread: threading.Thread | None = None

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, record: Record, on_done: Callable[[bool], None] | None = None) -> bool:
        """Queue the record; False (dropped and counted) when the queue is full. `on_done`:
        see `RecordLog.submit`."""
        if on_done is not None:
            self._on_done[id(record)] = on_done  # while queued, no other record has its id
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._on_done.pop(id(record), None)
            self.counts.dropped += record.size
            if self._dropped is not None:
                self._dropped.labels(record.kind).inc(record.size)
            if on_done is not None:
                on_done(False)
            return False
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ltr-event-log", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Drain what is queued, stop the worker, close the sink (readers see whole files)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=timeout_s)
            except queue.Full:
                log.error("event log worker did not drain the queue; stopping without it")
            thread.join(timeout_s)
            if thread.is_alive():
                log.error("event log worker did not stop in time")
                return  # it still owns the sink; closing it under the worker would race
        self._close_sink()

    def write_now(self, record: Record) -> None:
        """Write the record on the calling thread, with no queue (the writer process, whose
        input pipe is its queue; `ltr_serving.log_process`)."""
        self._write_all([record])

    def tick(self) -> None:
        """What the worker does at least once a second (for `write_now` callers)."""
        self._tick()

    def close(self) -> None:
        """Close the sink (for `write_now` callers; `stop` does it for the worker)."""
        self._close_sink()

    def _close_sink(self) -> None:
        try:
            self.sink.close()
        except Exception as exc:
            self.counts.error(exc)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=_TICK_S)
            except queue.Empty:
                self._tick()
                continue
            batch: list[Record] = []
            stop = False
            while True:
                if isinstance(item, _Stop):
                    stop = True
                    break
                batch.append(item)
                if len(batch) >= _BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._write_all(batch)
            self._tick()
            if stop:
                rest: list[Record] = []
                while True:  # whatever raced in after the stop is written too
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if not isinstance(item, _Stop):
                        rest.append(item)
                self._write_all(rest)
                return

    def _write_all(self, batch: list[Record]) -> None:
        for record in batch:
            self._write(record)

    def _tick(self) -> None:
        try:
            self.sink.tick(time.time())
        except Exception as exc:
            self.counts.error(exc)

    def _count(self, kind: str, logged: int, failed: int) -> None:
        self.counts.logged[kind] += logged
        self.counts.failed += failed
        if self._logged is not None and logged:
            self._logged.labels(kind).inc(logged)
        if self._failed is not None and failed:
            self._failed.labels(kind).inc(failed)

    def _write(self, record: Record) -> None:
        on_done = self._on_done.pop(id(record), None) if self._on_done else None
        try:
            write_record(self.sink, record)
        except WriteFailed as exc:
            self._count(record.kind, exc.written, record.size - exc.written)
            self.counts.error(exc.error)
            if on_done is not None:
                on_done(False)
            return
        self._count(record.kind, record.size, 0)
        if on_done is not None:
            on_done(True)
