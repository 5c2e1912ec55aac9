"""raw_events: validate a day's records, quarantine the bad ones, deduplicate, write Parquet."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ltr_assets import atomic
from ltr_assets.events import EVENT_COLUMNS, EventRow
from ltr_assets.lake import Lake, LakePath
from ltr_assets.schema import ATTRIBUTE_COLUMNS, FEATURE_COLUMNS
from ltr_assets.sources import DayRecord

log = logging.getLogger("ltr.ingest")
MAX_LISTED_CONFLICTS = 20


class DaySource(Protocol):
    name: str
    # What means "this source cannot be read now" (as opposed to a bug, which must surface).
    unavailable_errors: tuple[type[BaseException], ...]

    def read_day(self, day: date) -> Iterable[DayRecord]: ...


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
]
RAW_EVENTS_SCHEMA = pa.schema(_RAW_EVENTS_FIELDS)
assert tuple(RAW_EVENTS_SCHEMA.names) == EVENT_COLUMNS


@dataclass
class IngestReport:
    day: date
    source: str
    read: int = 0
    accepted: int = 0
    duplicates: int = 0  # exact copies of an event already read (same id, same content)
    conflicts: int = 0  # copies of an event id with other content, dropped (see ingest_day)
    conflicting_ids: list[str] = field(default_factory=list)  # the first few, for the check
    quarantined: int = 0
    ignored: int = 0
    recommendations: int = 0
    feedback: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    parquet_path: LakePath | None = None
    quarantine_path: LakePath | None = None

    @property
    def accounted(self) -> int:
        """Every record read is exactly one of these: equals `read`."""
        return self.accepted + self.duplicates + self.conflicts + self.quarantined + self.ignored

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


def events_table(rows: Sequence[EventRow]) -> pa.Table:
    """Rows -> an Arrow table in lake order: sorted by (timestamp, event_id)."""
    columns = list(zip(*rows, strict=True)) or [()] * len(EVENT_COLUMNS)  # transposed in C
    table = pa.Table.from_arrays(
        [
            pa.array(column, type=f.type)
            for column, f in zip(columns, RAW_EVENTS_SCHEMA, strict=True)
        ],
        schema=RAW_EVENTS_SCHEMA,
    )
    order = pc.sort_indices(table, [("timestamp", "ascending"), ("event_id", "ascending")])
    if np.array_equal(order.to_numpy(), np.arange(len(table))):
        return table  # already in order, as a time-ordered log mostly is
    return table.take(order)


def content_digest(row: EventRow) -> bytes:
    """A digest of an accepted event's content, the same in every process and run."""
    return hashlib.sha256(orjson.dumps(tuple(row))).digest()


class _Deduplicator:
    """Keeps one copy per event id, the same whatever order the copies come in.

    Copies with the same content are exact duplicates. Copies with other content are conflicts:
    the kept one is the earliest timestamp, then the smallest content digest. Per id, with c
    copies of k different contents, c - k are counted as duplicates and k - 1 as conflicts, so
    the counts do not depend on the order either (Kafka's partitions interleave freely)."""

    def __init__(self) -> None:
        self.rows: dict[str, EventRow] = {}
        self.duplicates = 0
        self.conflicts = 0
        self._digests: dict[str, tuple[bytes, set[bytes]]] = {}  # ids seen with other content

    def add(self, row: EventRow) -> None:
        event_id = row.event_id
        kept = self.rows.get(event_id)
        if kept is None:
            self.rows[event_id] = row
            return
        if row == kept:
            self.duplicates += 1
            return
        kept_digest, seen = self._digests.get(event_id) or (content_digest(kept), set())
        seen.add(kept_digest)
        digest = content_digest(row)
        if digest in seen:
            self.duplicates += 1
        else:
            seen.add(digest)
            self.conflicts += 1
        if (row.timestamp, digest) < (kept.timestamp, kept_digest):
            self.rows[event_id], kept_digest = row, digest
        self._digests[event_id] = (kept_digest, seen)

    @property
    def conflicting_ids(self) -> list[str]:
        return sorted(self._digests)


def ingest_day(records: Iterable[DayRecord], day: date, lake: Lake, source: str) -> IngestReport:
    """Write the day's accepted events (sorted, one copy per event id) and its quarantine."""
    report = IngestReport(day=day, source=source)
    unique = _Deduplicator()
    quarantine_lines: list[str] = []
    read = 0
    with gc_paused():
        for record in records:
            read += 1
            if type(record) is EventRow:
                unique.add(record)
                continue
            outcome = record.outcome
            if outcome is None:
                report.ignored += 1
            else:
                report.quarantined += 1
                report.reasons[outcome.kind] += 1
                quarantine_lines.append(
                    json.dumps(
                        {
                            "reason": outcome.reason,
                            "kind": outcome.kind,
                            "origin": record.origin,
                            "raw": record.raw.decode("utf-8", errors="replace"),
                        },
                        ensure_ascii=False,
                    )
                )
        report.read, report.duplicates, report.conflicts = read, unique.duplicates, unique.conflicts
        report.conflicting_ids = unique.conflicting_ids[:MAX_LISTED_CONFLICTS]
        table = events_table(list(unique.rows.values()))
    report.accepted = table.num_rows
    report.feedback = report.accepted - table.column("action").null_count
    report.recommendations = report.accepted - report.feedback
    report.parquet_path = lake.raw_events(day)
    atomic.write_parquet(report.parquet_path, table)
    report.quarantine_path = lake.quarantine(day)
    atomic.write_text(report.quarantine_path, "".join(line + "\n" for line in quarantine_lines))
    return report


@dataclass(frozen=True)
class SourceChoice:
    name: str  # the source actually read
    fallback_reason: str  # why the primary source was not used; "" when it was


def read_day_with_fallback(
    primary: DaySource | None, fallback: DaySource, day: date
) -> tuple[list[DayRecord], SourceChoice]:
    """Read the day from the primary source (Kafka) when one is configured; when it cannot be
    read, from the fallback (the audit-log files), saying why. Nothing partial is kept."""
    if primary is not None:
        try:
            return list(primary.read_day(day)), SourceChoice(primary.name, "")
        except primary.unavailable_errors as exc:  # the source is down, not the data wrong
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("falling back to %s for %s: %s", fallback.name, day, reason)
            return list(fallback.read_day(day)), SourceChoice(fallback.name, reason)
    return list(fallback.read_day(day)), SourceChoice(fallback.name, "")
