"""Event sources: where the lines of one day come from.

A source yields `SourceRecord`s that belong to one UTC day, each already parsed. The audit-log
file source is the fallback (and the embedded default); the Kafka source comes later on top of the
same record type.
"""

from __future__ import annotations

import functools
import glob
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from ltr_assets.events import EventRow, Rejection, parse_event

# A cheap look at a line's own date, so a day's read does not JSON-decode every other day.
_DATE_HINT = re.compile(rb'"timestamp"\s*:\s*"(\d{4}-\d{2}-\d{2})')
_NAME_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")


class SourceRecord(NamedTuple):
    """A line or message that is not an accepted event (a rejection, or None for a record that
    is not an LTR event), with what is needed to quarantine it."""

    origin: str  # where it came from, e.g. "audit.jsonl:42" or "match_events/2@1017"
    raw: bytes
    outcome: EventRow | Rejection | None


# What a source yields for a day: an accepted event as its bare row (millions a day: no wrapper),
# anything else as a SourceRecord.
DayRecord = EventRow | SourceRecord


def _outcome_day(outcome: EventRow | Rejection | None) -> date | None:
    if isinstance(outcome, EventRow):
        return outcome.timestamp.date()
    if isinstance(outcome, Rejection) and outcome.timestamp is not None:
        return outcome.timestamp.date()
    return None


class AuditLogSource:
    """JSONL files (flat or audit-log envelope) matching a path or glob.

    Each event belongs to the UTC day of its own timestamp. A line whose time cannot be read (bad
    JSON, no timestamp) belongs to the day of the nearest readable line before it in the same file
    (after it, at the head of a file; the file's own day when no line has a time), so it is
    quarantined exactly once, in one partition.
    """

    name = "audit_log"
    unavailable_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def files(self) -> list[Path]:
        return [Path(p) for p in sorted(glob.glob(self.pattern)) if Path(p).is_file()]

    def read_day(self, day: date) -> Iterator[DayRecord]:
        for path in self.files():
            yield from self._read_file(path, day)

    def _read_file(self, path: Path, day: date) -> Iterator[DayRecord]:
        # An offset can move a time across midnight, never by two days: lines hinted at another
        # day than these are skipped without decoding.
        near = {day - timedelta(days=1), day, day + timedelta(days=1)}
        last: date | None = None  # the day of the last line whose day is known
        undated: list[SourceRecord] = []  # lines waiting for a neighbour's day
        name = path.name
        same_day = b'"timestamp":"' + day.isoformat().encode()  # compact JSON: decode, no regex
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                line = line.strip()
                if not line:
                    continue
                hinted = None if same_day in line else _hinted_day(line)
                if hinted is not None and hinted not in near:
                    last = hinted
                    if undated:
                        yield from _flush(undated, last, day)
                    continue
                outcome = parse_event(line)
                if type(outcome) is EventRow:
                    own = outcome.timestamp.date()
                    last = own
                    if undated:
                        yield from _flush(undated, own, day)
                    if own == day:
                        yield outcome
                    continue
                record = SourceRecord(f"{name}:{number}", line, outcome)
                own = _outcome_day(outcome)
                if own is None:
                    if last is None:
                        undated.append(record)
                    elif last == day:
                        yield record
                    continue
                last = own
                if undated:
                    yield from _flush(undated, own, day)
                if own == day:
                    yield record
        if undated:
            # A file with no readable time at all: its lines go to the file's own day.
            yield from _flush(undated, _file_day(path), day)


@functools.lru_cache(maxsize=4096)
def _date(text: bytes) -> date | None:
    try:
        return date.fromisoformat(text.decode())
    except ValueError:
        return None


def _hinted_day(line: bytes) -> date | None:
    """The line's date read without decoding the JSON, when it is unambiguous and valid."""
    match = _DATE_HINT.search(line)
    if match is None or line.count(b'"timestamp"') != 1:
        return None
    return _date(match.group(1))


def _flush(
    undated: list[SourceRecord], neighbour: date | None, day: date
) -> Iterator[SourceRecord]:
    if neighbour == day:
        yield from undated
    undated.clear()


def _file_day(path: Path) -> date:
    """The date in the file name if there is one, else the UTC date of its last modification."""
    match = _NAME_DATE.search(path.name)
    if match:
        try:
            return date.fromisoformat(match.group(1))
        except ValueError:
            pass
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).date()
