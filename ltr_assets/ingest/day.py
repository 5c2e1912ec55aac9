"""raw_events: validate a day's records, quarantine the bad ones, deduplicate, write Parquet."""

from __future__ import annotations

import base64
import contextlib
import gc
import hashlib
import itertools
import json
import logging
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Protocol

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ltr_assets.ingest.interruptions import interruptions_passed_on
from ltr_assets.ingest.sources import DayRecord, ServingLogSource, SourceRecord
from ltr_assets.lake import atomic
from ltr_assets.lake.paths import Lake, LakePath
from ltr_core.events import EVENT_COLUMNS, LOGGING_POLICY_COLUMNS, EventRow, Rejection
from ltr_core.features import ATTRIBUTE_COLUMNS, FEATURE_COLUMNS

log = logging.getLogger("ltr.ingest")
MAX_LISTED_CONFLICTS = 20
# Accepted rows held in memory at most: a day with more is spilled to disk in runs of this
# many. A day that fits takes the in-memory path, which is faster than spilling
# (docs/benchmarks.md, ingest); a million rows keeps a day of 1 M events there.
DEFAULT_CHUNK_ROWS = 1_000_000
DEFAULT_MERGE_MEMORY = "2GB"  # DuckDB's memory for merging the runs; it spills past it
MERGE_BATCH_ROWS = 100_000


class DaySource(Protocol):
    name: str
    # What means "this source cannot be read now" (as opposed to a bug, which must surface).
    unavailable_errors: tuple[type[BaseException], ...]

    def read_day(self, day: date) -> Iterable[DayRecord]: ...

    def describe(self) -> str:
        """Where the records come from (a path, a topic), for an error naming it."""
        ...


_RAW_EVENTS_FIELDS: list[tuple[str, pa.DataType]] = [
    ("event_id", pa.string()),
    ("event_type", pa.string()),
    ("timestamp", pa.timestamp("us", tz="UTC")),
    ("request_id", pa.string()),
    ("case_id", pa.string()),
    ("lawyer_id", pa.string()),
    ("rank_position", pa.int32()),
    ("score", pa.float64()),
    ("algorithm_version", pa.string()),
    ("preset", pa.string()),
    ("action", pa.string()),
    *[(column, pa.float64()) for column in FEATURE_COLUMNS],
    *[(column, pa.string()) for column in ATTRIBUTE_COLUMNS],
    # LOGGING_POLICY_COLUMNS: null for feedback and for impressions logged without them
    ("policy", pa.string()),
    ("propensity", pa.float64()),
    ("deterministic_rank", pa.int32()),
    ("team", pa.string()),
]
RAW_EVENTS_SCHEMA = pa.schema(_RAW_EVENTS_FIELDS)
assert tuple(RAW_EVENTS_SCHEMA.names) == EVENT_COLUMNS


@dataclass
class IngestReport:
    day: date
    source: str
    read: int = 0
    accepted: int = 0
    duplicates: int = 0  # copies of an event already read (same id and content, any timestamp)
    conflicts: int = 0  # copies of an event id with other content, dropped (see ingest_day)
    conflicting_ids: list[str] = field(default_factory=list)  # the first few, for the check
    # of `conflicts`, the copies that also differ in how they were shown (SHOWN_COLUMNS)
    shown_differently: int = 0
    shown_differently_ids: list[str] = field(default_factory=list)  # the first few
    quarantined: int = 0
    ignored: int = 0
    serving_log_read: int = 0  # of `read`, the records read from the serving log
    recommendations: int = 0
    feedback: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    parquet_path: LakePath | None = None
    quarantine_path: LakePath | None = None

    @property
    def quarantine_ratio(self) -> float:
        considered = self.read - self.ignored
        return self.quarantined / considered if considered else 0.0


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Millions of short-lived rows make the cyclic GC run over and over for nothing (none of
    them forms a cycle); pausing it roughly halves the ingest time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _unsorted_table(rows: Sequence[EventRow]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) or [()] * len(EVENT_COLUMNS)  # transposed in C
    return pa.Table.from_arrays(
        [
            pa.array(column, type=f.type)
            for column, f in zip(columns, RAW_EVENTS_SCHEMA, strict=True)
        ],
        schema=RAW_EVENTS_SCHEMA,
    )


def events_table(rows: Sequence[EventRow]) -> pa.Table:
    """Rows -> an Arrow table in lake order: sorted by (timestamp, event_id)."""
    table = _unsorted_table(rows)
    order = pc.sort_indices(table, [("timestamp", "ascending"), ("event_id", "ascending")])
    if np.array_equal(order.to_numpy(), np.arange(len(table))):
        return table  # already in order, as a time-ordered log mostly is
    return table.take(order)


def write_events(
    path: LakePath,
    tables: Iterable[pa.Table | pa.RecordBatch],
    together: atomic.Together | None = None,
) -> tuple[int, int]:
    """Write rows already in lake order to `path` atomically (`atomic.write_parquet_stream`:
    the same rows give the same bytes from the in-memory and the spilled path, and the same
    bytes `pq.write_table` gave when a day was written whole). Returns (rows, feedback rows).
    `together`: put in place with the day's quarantine (`atomic.replaced_together`)."""
    feedback = 0

    def counted() -> Iterator[pa.Table | pa.RecordBatch]:
        nonlocal feedback
        for piece in tables:
            feedback += piece.num_rows - piece.column("action").null_count
            yield piece

    rows = atomic.write_parquet_stream(path, RAW_EVENTS_SCHEMA, counted(), together)
    return rows, feedback


_TIMESTAMP = EVENT_COLUMNS.index("timestamp")
# What says how an impression was shown and how learning reads a click on it: copies of one
# event id that differ here were shown differently (a click credited to either position).
SHOWN_COLUMNS: tuple[str, ...] = ("rank_position", *LOGGING_POLICY_COLUMNS)
_SHOWN = tuple(EVENT_COLUMNS.index(column) for column in SHOWN_COLUMNS)


def content_digest(row: EventRow) -> bytes:
    """A digest of an accepted event's content other than its timestamp, the same in every
    process and run. Copies of an event id with the same content are duplicates whatever their
    times: a retry answered again (by another replica, say) logs the same event later."""
    return hashlib.sha256(orjson.dumps(row[:_TIMESTAMP] + row[_TIMESTAMP + 1 :])).digest()


def _shown(row: EventRow) -> tuple[object, ...]:
    return tuple(row[i] for i in _SHOWN)


@dataclass
class _Copies:
    """The copies of one event id that are not all the same row."""

    kept_digest: bytes
    contents: set[bytes]  # content digests (`content_digest`: the timestamp aside)
    shown: set[tuple[object, ...]]  # the SHOWN_COLUMNS values


class _Deduplicator:
    """Keeps one copy per event id, the same whatever order the copies come in.

    Copies with the same content (`content_digest`: the timestamp aside) are duplicates; copies
    with other content are conflicts. The kept one is the earliest timestamp, then the smallest
    content digest. Per id, with c copies of k different contents, c - k are counted as
    duplicates and k - 1 as conflicts, so the counts do not depend on the order either (Kafka's
    partitions interleave freely); of the conflicts, with s different SHOWN_COLUMNS values,
    s - 1 are counted as shown differently."""

    def __init__(self) -> None:
        self.rows: dict[str, EventRow] = {}
        self.duplicates = 0
        self.conflicts = 0
        self.shown_differently = 0
        self._copies: dict[str, _Copies] = {}  # ids seen with another row

    def add(self, row: EventRow) -> None:
        event_id = row.event_id
        kept = self.rows.get(event_id)
        if kept is None:
            self.rows[event_id] = row
            return
        if row == kept:
            self.duplicates += 1
            return
        copies = self._copies.get(event_id)
        if copies is None:
            kept_digest = content_digest(kept)
            copies = _Copies(kept_digest, {kept_digest}, {_shown(kept)})
            self._copies[event_id] = copies
        digest = content_digest(row)
        if digest in copies.contents:
            self.duplicates += 1
        else:
            copies.contents.add(digest)
            self.conflicts += 1
            shown = _shown(row)
            if shown not in copies.shown:
                copies.shown.add(shown)
                self.shown_differently += 1
        if (row.timestamp, digest) < (kept.timestamp, copies.kept_digest):
            self.rows[event_id], copies.kept_digest = row, digest

    @property
    def conflicting_ids(self) -> list[str]:
        return sorted(i for i, copies in self._copies.items() if len(copies.contents) > 1)

    @property
    def shown_differently_ids(self) -> list[str]:
        return sorted(i for i, copies in self._copies.items() if len(copies.shown) > 1)


def _quarantine_line(record: SourceRecord, outcome: Rejection) -> str:
    """The quarantine's JSON line. `raw` is the record as text; a record that is not UTF-8
    also keeps its exact bytes (`raw_base64`), since the text then has replacement characters
    and could not be replayed as it came."""
    entry = {"reason": outcome.reason, "kind": outcome.kind, "origin": record.origin}
    try:
        entry["raw"] = record.raw.decode("utf-8")
    except UnicodeDecodeError:
        entry["raw"] = record.raw.decode("utf-8", errors="replace")
        entry["raw_base64"] = base64.b64encode(record.raw).decode("ascii")
    return json.dumps(entry, ensure_ascii=False) + "\n"


class _Spill:
    """The accepted rows of a day too large to hold: written in runs of at most `chunk_rows`
    rows, each row with its content digest (`content_digest`), as Parquet files in a work folder
    (beside the output on a local lake, in the system's temp folder for a lake on S3); DuckDB
    then deduplicates and sorts them, spilling to that folder past `memory_limit`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder  # `atomic.scratch_folder`: removed by its owner
        self.runs: list[Path] = []

    def add(self, rows: Sequence[EventRow]) -> None:
        table = _unsorted_table(rows).append_column(
            "digest", pa.array([content_digest(row) for row in rows], type=pa.binary())
        )
        run = self.folder / f"run-{len(self.runs):05d}.parquet"
        pq.write_table(table, run, compression="snappy")
        self.runs.append(run)

    @contextlib.contextmanager
    def merged(self, memory_limit: str) -> Iterator[tuple[pa.RecordBatchReader, _MergeCounts]]:
        """One copy per event id, the same one `_Deduplicator` keeps, in lake order, as a
        stream of batches; and the duplicate and conflict counts."""
        with interruptions_passed_on():
            yield from self._merged(memory_limit)

    def _merged(self, memory_limit: str) -> Iterator[tuple[pa.RecordBatchReader, _MergeCounts]]:
        spill = self.folder / "duckdb"
        con = duckdb.connect(
            config={
                "memory_limit": memory_limit,
                "temp_directory": str(spill),
                "preserve_insertion_order": False,
            }
        )
        try:
            con.execute("SET TimeZone = 'UTC'")
            files = ", ".join("'" + str(run).replace("'", "''") + "'" for run in self.runs)
            con.execute(f"CREATE VIEW runs AS SELECT * FROM read_parquet([{files}])")
            con.execute(
                "CREATE TEMP TABLE multi AS "
                "SELECT event_id FROM runs GROUP BY event_id HAVING count(*) > 1"
            )
            # Per id with several copies: c copies of k contents showing s ways; the kept copy
            # is the earliest timestamp, then the smallest digest (as in _Deduplicator).
            shown = ", ".join(f'"{c}"' for c in SHOWN_COLUMNS)
            con.execute(
                f"""CREATE TEMP TABLE resolved AS
                SELECT event_id, count(*) AS copies, count(DISTINCT digest) AS contents,
                       count(DISTINCT row({shown})) AS shown,
                       min(timestamp) AS keep_time,
                       first(digest ORDER BY timestamp, digest) AS keep_digest
                FROM runs SEMI JOIN multi USING (event_id) GROUP BY event_id"""
            )
            found = con.execute(
                "SELECT coalesce(sum(copies - contents), 0), coalesce(sum(contents - 1), 0), "
                "coalesce(sum(shown - 1), 0) FROM resolved"
            ).fetchall()  # to the end: this DuckDB refuses new work while a result is unread
            first_ids = (
                "SELECT event_id FROM resolved WHERE {} > 1 ORDER BY event_id "
                f"LIMIT {MAX_LISTED_CONFLICTS}"
            )
            listed = con.execute(first_ids.format("contents")).fetchall()
            shown_listed = con.execute(first_ids.format("shown")).fetchall()
            if len(found) != 1:  # an aggregate without GROUP BY always returns one row
                raise RuntimeError("the duplicate count query did not return one row")
            totals = found[0]
            counts = _MergeCounts(
                int(totals[0]),
                int(totals[1]),
                [str(r[0]) for r in listed],
                int(totals[2]),
                [str(r[0]) for r in shown_listed],
            )
            columns = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
            reader = con.sql(
                f"""SELECT {columns} FROM (
                    SELECT * FROM runs ANTI JOIN multi USING (event_id)
                    UNION ALL
                    SELECT DISTINCT ON (r.event_id) r.* FROM runs r JOIN resolved k
                      ON r.event_id = k.event_id AND r.timestamp = k.keep_time
                     AND r.digest = k.keep_digest)
                ORDER BY timestamp, event_id"""
            ).to_arrow_reader(MERGE_BATCH_ROWS)
            yield reader, counts
        finally:
            con.close()


@dataclass(frozen=True)
class _MergeCounts:
    duplicates: int
    conflicts: int
    conflicting_ids: list[str]
    shown_differently: int
    shown_differently_ids: list[str]


def ingest_day(
    records: Iterable[DayRecord],
    day: date,
    lake: Lake,
    source: str,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    memory_limit: str = DEFAULT_MERGE_MEMORY,
    only_ignored: Callable[[int], EmptyDay] | None = None,
) -> IngestReport:
    """Write the day's accepted events (sorted, one copy per event id) and its quarantine.
    When every record read was ignored (none is an LTR event) and `only_ignored` is given, it
    is raised with their count before anything is written.

    Memory is bounded whatever the day's size: quarantined lines go straight to a temporary
    file, and accepted rows are held only up to `chunk_rows`. A day that fits is deduplicated
    and sorted in memory (`_Deduplicator`); a larger one is written in runs of `chunk_rows`
    rows and merged by DuckDB (`_Spill`), which keeps the same copies, counts the same
    duplicates and conflicts, and hands the rows on in the same order, so both paths write the
    same bytes (`write_events`). Nothing is visible before both files are complete (written
    and fsynced, or uploaded whole to S3): they are then put in place one right after the other
    (`atomic.replaced_together`), so only a failure between those two steps (a rename, an S3
    copy) can leave them from different runs; the run then fails, and a re-run mends them."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    report = IngestReport(day=day, source=source)
    report.parquet_path = lake.raw_events(day)
    report.quarantine_path = lake.quarantine(day)
    buffer: list[EventRow] = []
    spill: _Spill | None = None
    read = 0
    with (
        contextlib.ExitStack() as scratch,
        atomic.replaced_together() as together,
        atomic.writing_file(report.quarantine_path, together) as quarantine_tmp,
        quarantine_tmp.open("w", encoding="utf-8", newline="") as quarantine,
    ):
        with gc_paused():
            for record in records:
                read += 1
                if type(record) is EventRow:
                    buffer.append(record)
                    if len(buffer) >= chunk_rows:
                        if spill is None:
                            folder = atomic.scratch_folder(report.parquet_path)
                            spill = _Spill(scratch.enter_context(folder))
                        spill.add(buffer)
                        buffer = []
                    continue
                outcome = record.outcome
                if outcome is None:
                    report.ignored += 1
                else:
                    report.quarantined += 1
                    report.reasons[outcome.kind] += 1
                    quarantine.write(_quarantine_line(record, outcome))
            report.read = read
            if only_ignored is not None and read and report.ignored == read:
                raise only_ignored(read)
            if spill is None:
                unique = _Deduplicator()
                for row in buffer:
                    unique.add(row)
                buffer = []
                report.duplicates, report.conflicts = unique.duplicates, unique.conflicts
                report.conflicting_ids = unique.conflicting_ids[:MAX_LISTED_CONFLICTS]
                report.shown_differently = unique.shown_differently
                report.shown_differently_ids = unique.shown_differently_ids[:MAX_LISTED_CONFLICTS]
                table = events_table(list(unique.rows.values()))
                del unique
                report.accepted, report.feedback = write_events(
                    report.parquet_path, [table], together
                )
                del table
        if spill is not None:
            if buffer:
                spill.add(buffer)
                buffer = []
            with spill.merged(memory_limit) as (batches, counts):
                report.duplicates, report.conflicts = counts.duplicates, counts.conflicts
                report.conflicting_ids = counts.conflicting_ids
                report.shown_differently = counts.shown_differently
                report.shown_differently_ids = counts.shown_differently_ids
                report.accepted, report.feedback = write_events(
                    report.parquet_path, batches, together
                )
    report.recommendations = report.accepted - report.feedback
    return report


@dataclass(frozen=True)
class SourceChoice:
    name: str  # the source actually read
    fallback_reason: str  # why the primary source was not used; "" when it was


class SourceUnavailable(Exception):
    """Reading a source failed with one of its `unavailable_errors` (the cause)."""


class EmptyDay(ValueError):
    """The source gave no LTR event for a day not allowed to be empty (no record at all, or
    only records of other kinds): nothing is written."""


class DayNotOver(ValueError):
    """The day has not ended (UTC): its events are still coming, so nothing is ingested."""


def check_day_over(day: date, now: datetime) -> None:
    """Refuse a day that has not ended at `now`: ingested early, a partial day would be
    trained on, gated and published (a run launched by hand, or a schedule tick previewed for
    a future time and committed), and its partition would miss the rest of its events."""
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
    if now < end:
        raise DayNotOver(
            f"{day} has not ended yet (it ends at {end:%Y-%m-%d %H:%M} UTC, now "
            f"{now.astimezone(UTC):%Y-%m-%d %H:%M} UTC): its events are still coming; run it "
            "after midnight UTC (the nightly schedule runs it at 02:15)"
        )


def _refusing_empty(
    records: Iterable[DayRecord], refusal: Callable[[], EmptyDay]
) -> Generator[DayRecord, None, None]:
    """The records; `refusal()` raised before any is written when there is none. The records'
    own iterator is closed with this one (a Kafka consumer stops at once)."""
    iterator = iter(records)
    try:
        first = next(iterator, None)
        if first is None:
            raise refusal()
        yield first
        yield from iterator
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _guarded(
    records: Iterable[DayRecord], errors: tuple[type[BaseException], ...]
) -> Generator[DayRecord, None, None]:
    """The records, with a failure of the source itself (not of the ingest consuming them)
    raised as SourceUnavailable."""
    try:
        yield from records
    except errors as exc:
        raise SourceUnavailable(f"{type(exc).__name__}: {exc}") from exc


class _Counted:
    """The records of a source, counted as they pass."""

    def __init__(self, records: Iterable[DayRecord]) -> None:
        self.records = records
        self.count = 0

    def __iter__(self) -> Iterator[DayRecord]:
        for record in self.records:
            self.count += 1
            yield record


def ingest_with_fallback(
    primary: DaySource | None,
    fallback: DaySource,
    day: date,
    lake: Lake,
    *,
    serving_log: ServingLogSource | None = None,
    allow_empty: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    memory_limit: str = DEFAULT_MERGE_MEMORY,
) -> tuple[IngestReport, SourceChoice]:
    """Ingest the day from the primary source (Kafka) when one is configured; when it cannot be
    read, from the fallback (the audit-log files), saying why. The day is streamed, so the
    primary may fail part-way through: nothing of that attempt is kept (`ingest_day` writes
    nothing before the end), and the whole day is read again from the fallback.

    The `serving_log` (what the ranking service logged itself, `ServingLogSource`), when given,
    is read after the main source, whichever that is, and ingested with it: an event that
    arrived both ways is kept once (`ingest_day` keeps one copy per event id; the copies count
    as duplicates). `report.serving_log_read` says how many records it gave. A failure to read
    it is not a reason to fall back: it fails the ingest.

    A day for which the sources together give no record at all, or only records that are no
    LTR event (all ignored), raises EmptyDay naming them
    (their paths or topic), and nothing is written, unless `allow_empty`: a path or glob that
    matches nothing would otherwise pass as a day without events, with every check green. A
    primary that is reachable but empty is not a reason to fall back: the error says so."""

    def run(records: Iterable[DayRecord], source: DaySource, instead: str = "") -> IngestReport:
        extra = _Counted(serving_log.read_day(day) if serving_log is not None else ())
        combined: Iterable[DayRecord] = itertools.chain(records, extra)

        def refusal(ignored: int = 0) -> EmptyDay:
            return _empty(source, day, serving_log, ignored=ignored, instead=instead)

        if not allow_empty:
            combined = _refusing_empty(combined, refusal)
        report = ingest_day(
            combined,
            day,
            lake,
            source.name,
            chunk_rows=chunk_rows,
            memory_limit=memory_limit,
            only_ignored=None if allow_empty else refusal,
        )
        report.serving_log_read = extra.count
        return report

    if primary is not None:
        try:
            # closed at once when the ingest stops early, so the consumer is stopped then
            with contextlib.closing(
                _guarded(primary.read_day(day), primary.unavailable_errors)
            ) as records:
                return run(records, primary), SourceChoice(primary.name, "")
        except SourceUnavailable as exc:  # the source is down, not the data wrong
            reason = str(exc)
            log.warning("falling back to %s for %s: %s", fallback.name, day, reason)
            instead = f" (read instead of {primary.describe()}, which failed: {reason})"
            report = run(fallback.read_day(day), fallback, instead)
            return report, SourceChoice(fallback.name, reason)
    return run(fallback.read_day(day), fallback), SourceChoice(fallback.name, "")


def _empty(
    source: DaySource,
    day: date,
    serving_log: ServingLogSource | None,
    *,
    ignored: int = 0,
    instead: str = "",
) -> EmptyDay:
    """The refusal of an empty day, naming the sources; `ignored`: how many records were read,
    none of them an LTR event; `instead`: why the source read is the fallback."""
    where = source.describe()
    if serving_log is not None:
        where += f" nor from {serving_log.describe_day(day)}"
    what = (
        f"no LTR event of {day} from {where}{instead}: its {ignored} records were all ignored "
        "as other kinds of records (none has event_type match_recommendation or offer_feedback "
        "where the envelope puts it; a log shipper's wrapper, the event as a string inside "
        "another record's field, reads so)"
        if ignored
        else f"no record of {day} from {where}{instead}"
    )
    return EmptyDay(
        f"{what}: a source that gives nothing is refused rather than written as an empty day; "
        f"if {day} really had no events, allow it with LTR_ALLOW_EMPTY_DAYS={day}"
    )
