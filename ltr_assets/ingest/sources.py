"""Event sources: where the lines of one day come from.

A source yields the records of one UTC day, each already parsed: an accepted event as its bare
row, anything else as a `SourceRecord`. Two sources yield them: the Kafka topic
(`ltr_assets.ingest.kafka.KafkaDaySource`, used when KAFKA_BOOTSTRAP_SERVERS is set) and the
audit-log
files here (`AuditLogSource`), which are the fallback when Kafka is unusable and the only source
when it is not configured. Beside whichever of them is read, the ranking service's own log
(`ServingLogSource`, LTR_SERVING_LOG_DIR) adds what the service wrote to files; the ingest keeps
one copy of an event that arrived both ways (`ltr_assets.ingest.day.ingest_with_fallback`).
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import functools
import glob
import itertools
import logging
import math
import os
import re
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, NamedTuple

import orjson

from ltr_core.events import EventRow, Rejection, parse_event
from ltr_core.settings import EventTimeBounds

# A cheap look at a line's own date, so a day's read does not JSON-decode every other day
# (`_line_stamp`: only where the key found is sure to be the line's own).
_KEY = b'"timestamp"'
_OPEN = ord("{")
_BRACKET = re.compile(rb"[{}\[\]]")
_DATE_HINT = re.compile(rb'"timestamp"\s*:\s*"(\d{4}-\d{2}-\d{2})')
_NAME_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_EPOCH_HINT = re.compile(rb'"timestamp"\s*:\s*(-?\d{1,16}(?:\.\d+)?)\s*[,}]')
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
log = logging.getLogger("ltr.ingest")
_EPOCH_MS_THRESHOLD = 1e11  # as in events.parse_timestamp: above, epoch milliseconds


class SourceError(ValueError):
    """A source set up so that it can hold no event at all (a folder where files are expected):
    a configuration to fix, not a day without events."""


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


# The schema's defaults (LTR_MAX_CLOCK_SKEW_HOURS, LTR_MAX_EVENT_AGE_DAYS), for sources built
# without settings (tests, benchmarks); the pipeline passes the settings' values.
DEFAULT_MAX_CLOCK_SKEW = EventTimeBounds().max_clock_skew
DEFAULT_MAX_EVENT_AGE = EventTimeBounds().max_event_age
BEFORE_START = "before_start"
FUTURE = "future_timestamp"
MISFILED = "misfiled"
OLD = "old_timestamp"
# Lines whose dates make a file's clock (`LineClock`): more than twice the lines of one
# recommendation list, which are written together and may all carry one wrong clock.
CLOCK_LINES = 101


def future_rejection(when: datetime, horizon: datetime, why: str) -> Rejection:
    """An event stamped past what its source can hold: quarantined, counted where it arrived."""
    return Rejection(
        f"timestamp {when.isoformat()} is after {horizon.isoformat()} ({why}): a skewed clock",
        FUTURE,
    )


def old_rejection(when: datetime, clock: date | datetime, age: timedelta, what: str) -> Rejection:
    """An event stamped implausibly long before its source's clock where it arrived (a clock
    reset to 1970, say): quarantined, counted where it arrived, not in a day that never runs."""
    return Rejection(
        f"timestamp {when.isoformat()} is more than {age.days} days (LTR_MAX_EVENT_AGE_DAYS) "
        f"before {clock.isoformat()} ({what}): a wrong clock",
        OLD,
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
    partition. So does an event whose time no right clock gives, quarantined where it arrived
    instead of in a day that has not come or will never run:

    - stamped more than `max_clock_skew` after the end of the day the file was last modified (no
      line can have been written later): `future_timestamp`;
    - stamped more than `max_event_age` before the file's clock where it stands (`LineClock`:
      the median date of the lines before it): `old_timestamp`. The bound follows the file's own
      dates, not today's, so a backfill of an old day reads its old lines as they are;
    - stamped before `first_day` (LTR_START_DATE, the first partition), a day no read takes:
      the read of `first_day` takes such lines too, an event among them as `before_start`.

    Reading one day of a many-day file, most lines belong to other days. A cheap look at the
    line (`_line_stamp`) lets such a line be skipped without decoding it, but only when the
    outcome cannot differ from a full parse: the line has no backslash (no escaped key can hide
    the real timestamp) and one literal "timestamp" key, the object's own (no bracket before
    it), whose date is two or more days from the day read, and the nearest dated line before it
    is known not to be of that day. Whatever the full parse would say (an event of another day,
    a rejection, a future or old event), the line is then not of this day, and the neighbour
    for the lines after it stays "not this day". The file's clock is made from every line,
    skipped or not, so it is the same whichever day is read.
    """

    name = "audit_log"
    unavailable_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(
        self,
        pattern: str,
        max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
        max_event_age: timedelta = DEFAULT_MAX_EVENT_AGE,
        first_day: date | None = None,
    ) -> None:
        self.pattern = pattern
        self.max_clock_skew = max_clock_skew
        self.max_event_age = max_event_age
        self.first_day = first_day
        # Files found but never read, each with why (a symbolic link, not a regular file):
        # each is logged once, as a warning, when first found.
        self.skipped: dict[str, str] = {}

    def files(self) -> list[Path]:
        """The files the pattern matches (folders it matches are not read). A pattern that is a
        folder is refused: its files would be `folder/*.jsonl`, and reading nothing from it
        would pass for a day without events.

        A pattern without wildcards is the operator's own path and is followed, a symbolic link
        included. What a glob finds is not: a match that is, or lies under a folder that is, a
        symbolic link below the pattern's fixed part, or that is not a regular file (a FIFO, a
        device), is skipped (`skipped`), never opened."""
        if Path(self.pattern).is_dir():
            raise SourceError(
                f"the audit log {self.pattern!r} is a folder, not a file or a glob of files "
                f"(its JSONL files would be {str(Path(self.pattern) / '*.jsonl')!r})"
            )
        if glob.escape(self.pattern) == self.pattern:  # no wildcard: the configured path
            return [Path(self.pattern)] if Path(self.pattern).is_file() else []
        fixed = _fixed_depth(self.pattern)
        files: list[Path] = []
        for match in sorted(glob.glob(self.pattern)):
            path = Path(match)
            planted = _linked_folder(path, fixed)
            why = _irregular(path) if planted is None else f"{str(planted)!r} is a symbolic link"
            if why is None:
                files.append(path)
            elif why is not _NOT_A_FILE:  # a real folder matched is not read, as documented
                self._skip(path, why)
        return files

    def _skip(self, path: Path, why: str) -> None:
        """Record (and log, the first time) a file found but not read."""
        if str(path) not in self.skipped:
            self.skipped[str(path)] = why
            log.warning("%s: skipped %s, never read: %s", self.name, path, why)

    def describe(self) -> str:
        """The files, for an error saying that none of them held a record of a day."""
        files = self.files()
        if files:
            return f"the audit log {self.pattern!r} ({len(files)} files)"
        folders = sum(1 for p in glob.glob(self.pattern) if Path(p).is_dir())
        only = f" (only {folders} folders)" if folders else ""
        return f"the audit log {self.pattern!r}: no file matches it{only}"

    def read_day(self, day: date) -> Iterator[DayRecord]:
        for path in self.day_files(day):
            yield from self._read_file(path, day)

    def day_files(self, day: date) -> list[Path]:
        """The files that may hold lines of `day`: every file the pattern matches."""
        return self.files()

    def origin(self, path: Path) -> str:
        """How a line's origin names its file in the quarantine."""
        return path.name

    def file_day(self, path: Path) -> date:
        """The day of a file's lines when none of them has a readable time."""
        return _file_day(path)

    def strays_of(self, path: Path, day: date) -> Callable[[date], bool] | None:
        """For a file whose lines no day's read would take unless the read of `day` counts
        them (see ServingLogSource), which of its days are such strays; None: no strays here."""
        return None

    def takes_earlier(self, path: Path, day: date) -> bool:
        """Whether the read of `day` takes the file's lines of the days before it too: the read
        of the first partition, since no read takes an earlier day."""
        return day == self.first_day

    def follows(self, path: Path) -> bool:
        """Whether `path` may be opened through a symbolic link: only the configured path
        itself, a pattern without wildcards."""
        return glob.escape(self.pattern) == self.pattern and str(path) == self.pattern

    def _read_file(self, path: Path, day: date) -> Iterator[DayRecord]:
        with _open_regular(path, self.follows(path)) as opened:
            if isinstance(opened, str):
                self._skip(path, opened)  # swapped for a link or a FIFO since it was listed
                return
            yield from self._read_handle(opened, path, day)

    def _read_handle(self, handle: BinaryIO, path: Path, day: date) -> Iterator[DayRecord]:
        written = datetime.fromtimestamp(os.fstat(handle.fileno()).st_mtime, tz=UTC).date()
        horizon = source_horizon(written, self.max_clock_skew)
        name = self.origin(path)
        why = f"{name} was last written on {written}"
        stray = self.strays_of(path, day)
        takes_earlier = self.takes_earlier(path, day)

        def here(own: date) -> bool:
            return own == day or (stray is not None and stray(own)) or (takes_earlier and own < day)

        last: date | None = None  # the day of the nearest line before whose time was read
        undated: list[SourceRecord] = []  # head-of-file lines waiting for a neighbour's day
        same_day = b'"timestamp":"' + day.isoformat().encode()  # compact JSON: decode, no regex
        lines = _stamped_lines(handle)
        head = _head(lines)
        clock = LineClock([stamp for *_, stamp in head if stamp is not None])
        for number, line, iso, stamp in itertools.chain(head, lines):
            clock_day = clock.day()  # the clock where this line arrives, before it
            if stamp is not None:
                clock.push(stamp)
            if (
                iso is not None
                and stray is None
                and not takes_earlier
                and last is not None
                and last != day
                and same_day not in line
                and abs((iso - day).days) >= 2
            ):
                continue  # not this day's, whatever a full parse says (see above)
            outcome = parse_event(line)
            if type(outcome) is EventRow:
                wrong = self._wrong_time(outcome.timestamp, horizon, why, clock_day, name)
                if wrong is not None:
                    outcome = wrong
                else:
                    event_day = outcome.timestamp.date()
                    last = event_day
                    if undated:
                        yield from _flush(undated, here(event_day))
                    if event_day == day:
                        yield outcome
                    elif takes_earlier and event_day < day:
                        why_not = before_start_rejection(outcome.timestamp, day)
                        yield SourceRecord(f"{name}:{number}", line, why_not)
                    elif here(event_day):  # a stray this read counts
                        yield SourceRecord(f"{name}:{number}", line, _misfiled(outcome, name))
                    continue
            elif isinstance(outcome, Rejection) and outcome.timestamp is not None:
                wrong = self._wrong_time(outcome.timestamp, horizon, why, clock_day, name)
                outcome = outcome if wrong is None else wrong
            record = SourceRecord(f"{name}:{number}", line, outcome)
            own = _outcome_day(outcome)
            if own is None:
                if last is None:
                    undated.append(record)
                elif here(last):
                    yield record
                continue
            last = own
            if undated:
                yield from _flush(undated, here(own))
            if here(own):
                yield record
        if undated:
            # A file with no readable time at all: its lines go to the file's own day.
            yield from _flush(undated, here(self.file_day(path)))

    def _wrong_time(
        self, when: datetime, horizon: datetime, why: str, clock_day: int | None, name: str
    ) -> Rejection | None:
        """Why no right clock gives `when` here, or None."""
        if when > horizon:
            return future_rejection(when, horizon, why)
        if clock_day is not None and clock_day - when.toordinal() > self.max_event_age.days:
            what = f"the date of most lines before it in {name}"
            return old_rejection(when, date.fromordinal(clock_day), self.max_event_age, what)
        return None


class ServingLogSource(AuditLogSource):
    """What the ranking service logged itself (LTR_SERVING_LOG_DIR): one folder per UTC day,
    `YYYY-MM-DD/`, of complete JSONL files `*.jsonl` (a file still being written is
    `*.jsonl.part` and is not read). It is read beside the main source (Kafka or the audit log),
    never instead of it: the service's events may also have reached Kafka, and the ingest keeps
    one copy per event id (their ids are deterministic).

    A day's events are those of its folder and of the next day's (an event stamped just before
    midnight may be written just after it), each attributed to the UTC day of its own timestamp
    as in the audit log. A line of folder F stamped neither F nor the day before (a file copied
    or restored into the wrong folder) is therefore read by no day as an event: the read of F
    quarantines it as `misfiled`, so a line is counted in exactly one partition. A folder that
    does not exist gives nothing: a day the service logged nothing is not an error of this source
    (the main source's own rule for an empty day applies to what both give)."""

    name = "serving_log"

    def __init__(
        self,
        folder: Path,
        max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
        max_event_age: timedelta = DEFAULT_MAX_EVENT_AGE,
        first_day: date | None = None,
    ) -> None:
        pattern = str(Path(folder) / "*" / "*.jsonl")
        super().__init__(pattern, max_clock_skew, max_event_age, first_day)
        self.folder = Path(folder)

    def day_files(self, day: date) -> list[Path]:
        files: list[Path] = []
        for folder_day in (day, day + timedelta(days=1)):
            files.extend(self._folder_files(self.folder / folder_day.isoformat()))
        return files

    def files(self) -> list[Path]:
        try:
            folders = sorted(self.folder.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [path for folder in folders for path in self._folder_files(folder)]

    def _folder_files(self, folder: Path) -> list[Path]:
        """The `*.jsonl` regular files of one day's folder. The folder (LTR_SERVING_LOG_DIR) is
        the operator's; nothing inside it is followed: a day folder or a file that is a symbolic
        link, or a file that is not a regular one (a FIFO, a device, a folder), is skipped
        (`skipped`), never opened."""
        why = _irregular(folder, folder=True)
        if why is _NOT_A_FILE:  # missing, or a plain file beside the day folders
            return []
        if why is not None:  # nothing under it is listed or read
            self._skip(folder, f"the day folder is {why}")
            return []
        files: list[Path] = []
        for name in _names(folder):
            path = folder / name
            why = _irregular(path)
            if why is None:
                files.append(path)
            else:
                self._skip(path, why if why is not _NOT_A_FILE else "a folder")
        return files

    def follows(self, path: Path) -> bool:
        return False

    def origin(self, path: Path) -> str:
        return f"{path.parent.name}/{path.name}"

    def takes_earlier(self, path: Path, day: date) -> bool:
        """Only from the first day's own folder: the next day's folder's read counts its lines
        of days before the first as strays (`misfiled`) already."""
        return day == self.first_day and path.parent.name == day.isoformat()

    def strays_of(self, path: Path, day: date) -> Callable[[date], bool] | None:
        if path.parent.name != day.isoformat():
            return None  # the next day's folder: only its lines of `day` are read here
        earliest = day - timedelta(days=1)
        return lambda own: not earliest <= own <= day

    def file_day(self, path: Path) -> date:
        try:
            return date.fromisoformat(path.parent.name)
        except ValueError:
            return _file_day(path)

    def describe(self) -> str:
        return f"the serving log {str(self.folder)!r} ({len(self.files())} files)"

    def describe_day(self, day: date) -> str:
        """The folders a read of `day` looks in (its own and the next day's), for an error
        saying that neither held a record of it: the files of other days are no evidence."""
        folders = " and ".join(f"{(day + timedelta(days=n)).isoformat()}/" for n in (0, 1))
        files = len(self.day_files(day))
        return f"the serving log's folders {folders} under {str(self.folder)!r} ({files} files)"


_NOT_A_FILE = "a folder, or nothing"  # what `_irregular` says of a path not to be read silently


def _irregular(path: Path, folder: bool = False) -> str | None:
    """None when `path` itself (not followed) is a regular file (with `folder`: a folder);
    `_NOT_A_FILE` when it is a folder (with `folder`: a file) or does not exist; else why it
    is not to be read: a symbolic link, a FIFO, a socket or a device."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return _NOT_A_FILE
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode) if folder else stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return _NOT_A_FILE
    return _kind(mode)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _names(folder: Path) -> list[str]:
    """The sorted `*.jsonl` names in `folder` (not hidden ones, as a glob would have it)."""
    with os.scandir(folder) as entries:
        names = [entry.name for entry in entries]
    return sorted(n for n in names if n.endswith(".jsonl") and not n.startswith("."))


def _fixed_depth(pattern: str) -> int:
    """How many leading parts of `pattern` have no wildcard: the operator's own path."""
    parts = Path(pattern).parts
    return next((i for i, part in enumerate(parts) if glob.escape(part) != part), len(parts))


def _linked_folder(path: Path, fixed: int) -> Path | None:
    """The first folder of `path` below its pattern's `fixed` parts that is a symbolic link."""
    parts = path.parts
    for depth in range(max(fixed, 1), len(parts) - 1):
        folder = Path(*parts[: depth + 1])
        if folder.is_symlink():
            return folder
    return None


@contextlib.contextmanager
def _open_regular(path: Path, follow: bool) -> Iterator[BinaryIO | str]:
    """`path` open for reading if it is a regular file, else why not. Without `follow`, a
    symbolic link is not followed (O_NOFOLLOW); nothing waits on a FIFO (O_NONBLOCK): what was
    listed as a regular file and has been swapped since is never read."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if not follow and exc.errno in (errno.ELOOP, errno.EMLINK):
            yield "a symbolic link"
            return
        raise
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        yield _kind(mode) if not stat.S_ISDIR(mode) else "a folder"
        return
    with os.fdopen(fd, "rb") as handle:
        yield handle


# A non-blank line: its number, its bytes, its ISO date hint and its stamp (a date ordinal).
_Line = tuple[int, bytes, date | None, int | None]
HEAD_LINES = 10_000  # at most this many lines are read ahead for the head's clock


def _stamped_lines(handle: Iterable[bytes]) -> Iterator[_Line]:
    for number, raw in enumerate(handle, start=1):
        line = raw.strip()
        if not line:
            continue
        iso, stamp = _line_stamp(line)
        yield number, line, iso, stamp


def _line_stamp(line: bytes) -> tuple[date | None, int | None]:
    """The line's stamp (the date of its own timestamp, as an ordinal; None: none), and that
    date again when it was read as an ISO date without decoding the line (None otherwise: the
    line is never skipped unparsed, see AuditLogSource).

    Its own timestamp is the one `parse_event` reads: the top-level "timestamp" key, else, in
    the audit-log envelope, the context's. It is read without decoding the line when that is
    sure to be it: the line has no backslash (every key is then literal and every quote a
    string's), one literal "timestamp" key, and no bracket before it but the object's own
    opening one (so the key is the object's own, not a nested object's). Any other line with a
    "timestamp" in it is decoded: a key in a nested object (a client's extra field, say) never
    stamps it."""
    if b"\\" not in line:
        first = line.find(_KEY)
        if first < 0:
            return None, None  # no key is "timestamp": none can be, unescaped
        if (
            line[0] == _OPEN
            and _BRACKET.search(line, 1, first) is None
            and line.find(_KEY, first + len(_KEY)) < 0
        ):
            match = _DATE_HINT.match(line, first)
            if match is not None:
                return _iso_stamp(match.group(1))
            epoch = _EPOCH_HINT.match(line, first)
            if epoch is not None:
                when = _epoch_day(float(epoch.group(1)))
                return None, None if when is None else when.toordinal()
    return None, _parsed_stamp(line)


def _parsed_stamp(line: bytes) -> int | None:
    """The stamp of a line decoded: its own timestamp's date as `_line_stamp` reads it."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    value = obj.get("timestamp")
    if value is None and "event_type" not in obj and "message" in obj:
        context = obj.get("context")
        value = context.get("timestamp") if type(context) is dict else None
    when: date | None = None
    if type(value) is str:
        match = _ISO_DAY.match(value)
        when = None if match is None else _date(match.group(0).encode())
    elif isinstance(value, int | float) and type(value) is not bool and math.isfinite(value):
        when = _epoch_day(float(value))
    return None if when is None else when.toordinal()


def _head(lines: Iterator[_Line]) -> list[_Line]:
    """The lines up to the CLOCK_LINES-th stamped one (or HEAD_LINES lines, or the end)."""
    head: list[_Line] = []
    stamps = 0
    for item in lines:
        head.append(item)
        if item[3] is not None:
            stamps += 1
        if stamps == CLOCK_LINES or len(head) == HEAD_LINES:
            break
    return head


class LineClock:
    """A file's clock where each line arrives: the median of the stamps of the CLOCK_LINES
    stamped lines before it, or, before there are that many, of the file's first CLOCK_LINES.
    A line's stamp is the date of its own timestamp (`_line_stamp`: the top-level "timestamp"
    key, else the audit-log context's; an ISO date, or epoch seconds or milliseconds), read the
    same way whichever lines a read skips, so every read of the file has the same clock. A
    "timestamp" key nested anywhere else in a line (a client's extra field) stamps nothing.
    Fewer than half of the lines stamped by a wrong clock (a whole recommendation list, say)
    cannot move it."""

    def __init__(self, head: list[int]) -> None:
        self._head = sorted(head)[(len(head) - 1) // 2] if head else None
        self._recent: deque[int] = deque()
        self._sorted: list[int] = []

    def push(self, stamp: int) -> None:
        self._recent.append(stamp)
        bisect.insort(self._sorted, stamp)
        if len(self._recent) > CLOCK_LINES:
            gone = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, gone)]

    def day(self) -> int | None:
        """The clock's date as an ordinal; None for a file with no stamp at all."""
        if len(self._recent) < CLOCK_LINES:
            return self._head
        return self._sorted[(CLOCK_LINES - 1) // 2]


@functools.lru_cache(maxsize=4096)
def _date(text: bytes) -> date | None:
    try:
        return date.fromisoformat(text.decode())
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def _iso_stamp(text: bytes) -> tuple[date | None, int | None]:
    """`_line_stamp`'s answer for an ISO date read from the line's text."""
    iso = _date(text)
    return iso, None if iso is None else iso.toordinal()


def _epoch_day(value: float) -> date | None:
    """The UTC date of epoch seconds, or milliseconds past the threshold; None: out of range."""
    seconds = value / 1000.0 if abs(value) > _EPOCH_MS_THRESHOLD else value
    try:
        return (_EPOCH + timedelta(seconds=seconds)).date()
    except OverflowError:
        return None


def _flush(undated: list[SourceRecord], here: bool) -> Iterator[SourceRecord]:
    """The waiting undated lines, yielded if their neighbour's day is read here."""
    if here:
        yield from undated
    undated.clear()


def _misfiled(row: EventRow, name: str) -> Rejection:
    when = row.timestamp
    return Rejection(
        f"timestamp {when.isoformat()} is not of the day of its folder {name!r} or the day "
        "before: no day's read would take it (a file copied or restored into the wrong folder?)",
        MISFILED,
        when,
    )


def before_start_rejection(when: datetime, first: date) -> Rejection:
    """An event of a day before the first partition, counted by the read that reaches it."""
    return Rejection(
        f"timestamp {when.isoformat()} is before the first partition {first} "
        "(LTR_START_DATE): no partition holds its day",
        BEFORE_START,
        when,
    )


def _file_day(path: Path) -> date:
    """The date in the file name if there is one, else the UTC date of its last modification."""
    match = _NAME_DATE.search(path.name)
    if match:
        try:
            return date.fromisoformat(match.group(1))
        except ValueError:
            pass
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).date()
