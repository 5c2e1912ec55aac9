"""Event sources: where the lines of one day come from.

A source yields the records of one UTC day, each already parsed: an accepted event as its bare
row, anything else as a `SourceRecord`. Two sources yield them: the Kafka topic
(`ltr_assets.kafka.KafkaDaySource`, used when KAFKA_BOOTSTRAP_SERVERS is set) and the audit-log
files here (`AuditLogSource`), which are the fallback when Kafka is unusable and the only source
when it is not configured.
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
    outcome: Rejection | None


# What a source yields for a day: an accepted event as its bare row (millions a day: no wrapper),
# anything else as a SourceRecord.
DayRecord = EventRow | SourceRecord


def _outcome_day(outcome: EventRow | Rejection | None) -> date | None:
    if isinstance(outcome, EventRow):
        return outcome.timestamp.date()
    if isinstance(outcome, Rejection) and outcome.timestamp is not None:
        return outcome.timestamp.date()
    return None


DEFAULT_MAX_CLOCK_SKEW = timedelta(hours=24)
FUTURE = "future_timestamp"


def future_rejection(when: datetime, horizon: datetime, why: str) -> Rejection:
    """An event stamped past what its source can hold: quarantined, counted where it arrived."""
    return Rejection(
        f"timestamp {when.isoformat()} is after {horizon.isoformat()} ({why}): a skewed clock",
        FUTURE,
    )


def source_horizon(last_day: date, skew: timedelta) -> datetime:
    """The latest trustworthy event time of a source whose newest possible day is `last_day`."""
    return datetime(last_day.year, last_day.month, last_day.day, tzinfo=UTC) + timedelta(1) + skew


class AuditLogSource:
    """JSONL files (flat or audit-log envelope) matching a path or glob.

    Each event belongs to the UTC day of its own timestamp. A line whose time cannot be read (bad
    JSON, no timestamp, an unknown type, a record that is not an LTR event) belongs to the day of
    the nearest line before it in the same file whose time was read (after it, at the head of a
    file; the file's own day when no line has a time), so it is counted exactly once, in one
    partition. So does an event stamped more than `max_clock_skew` after the end of the day the
    file was last modified (no line can have been written later): its clock was wrong, it is
    quarantined as `future_timestamp` where it arrived, instead of waiting for a day that has not
    come.

    Reading one day of a many-day file, most lines belong to other days. A cheap look at the
    line (`_hinted_day`) lets such a line be skipped without decoding it, but only when the
    outcome cannot differ from a full parse: the line has no backslash (no escaped key can hide
    the real timestamp) and one literal "timestamp" key whose date is two or more days from the
    day read, and the nearest dated line before it is known not to be of that day. Whatever the
    full parse would say (an event of another day, a rejection, a line without a readable time
    that follows that neighbour, a future event), the line is then not of this day, and the
    neighbour for the lines after it stays "not this day". Any other line is parsed.
    """

    name = "audit_log"
    unavailable_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, pattern: str, max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW) -> None:
        self.pattern = pattern
        self.max_clock_skew = max_clock_skew

    def files(self) -> list[Path]:
        return [Path(p) for p in sorted(glob.glob(self.pattern)) if Path(p).is_file()]

    def read_day(self, day: date) -> Iterator[DayRecord]:
        for path in self.files():
            yield from self._read_file(path, day)

    def _read_file(self, path: Path, day: date) -> Iterator[DayRecord]:
        written = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).date()
        horizon = source_horizon(written, self.max_clock_skew)
        why = f"{path.name} was last written on {written}"
        last: date | None = None  # the day of the nearest line before whose time was read
        undated: list[SourceRecord] = []  # head-of-file lines waiting for a neighbour's day
        name = path.name
        same_day = b'"timestamp":"' + day.isoformat().encode()  # compact JSON: decode, no regex
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                line = line.strip()
                if not line:
                    continue
                if last is not None and last != day and same_day not in line:
                    hinted = _hinted_day(line)
                    if hinted is not None and abs((hinted - day).days) >= 2:
                        continue  # not this day's, whatever a full parse says (see above)
                outcome = parse_event(line)
                if type(outcome) is EventRow:
                    if outcome.timestamp > horizon:
                        outcome = future_rejection(outcome.timestamp, horizon, why)
                    else:
                        event_day = outcome.timestamp.date()
                        last = event_day
                        if undated:
                            yield from _flush(undated, event_day, day)
                        if event_day == day:
                            yield outcome
                        continue
                elif (
                    isinstance(outcome, Rejection)
                    and outcome.timestamp is not None
                    and outcome.timestamp > horizon
                ):
                    outcome = future_rejection(outcome.timestamp, horizon, why)
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
    """The date of the line's only "timestamp" key, read without decoding the JSON; None when
    the line has a backslash (an escaped key could be the real one) or not exactly one key."""
    if b"\\" in line or line.count(b'"timestamp"') != 1:
        return None
    match = _DATE_HINT.search(line)
    if match is None:
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
