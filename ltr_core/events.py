"""Parse and validate one event line in either envelope of the contract.

`parse_event` turns a raw line (flat envelope or the platform's audit-log line) into a flat row
for the lake, a `Rejection` with a human-readable reason (to be quarantined), or `None` for an
audit-log record that is not an LTR event (ignored, counted, never quarantined).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import namedtuple
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, final

import orjson

from ltr_core.features import (
    ACTION_GRADES,
    ATTRIBUTE_COLUMNS,
    EVENT_TYPES,
    FEATURE_COLUMNS,
    FEATURES,
    PROTECTED_ATTRIBUTES,
    RECOMMENDATION,
)
from ltr_core.vocabulary import INTERLEAVING_TEAMS, LOGGING_POLICIES

# What the ranking service logs of its logging policy with each impression (all optional, null
# for older events and for feedback): the branch that served the request, the probability of this
# candidate at this position under that policy, its rank in the deterministic order, and its
# interleaving team. Last in lake order, so partitions written before them read unchanged.
LOGGING_POLICY_COLUMNS: tuple[str, ...] = ("policy", "propensity", "deterministic_rank", "team")

# Columns of a validated event row, in lake order.
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "event_type",
    "timestamp",
    "request_id",
    "case_id",
    "lawyer_id",
    "rank_position",
    "score",
    "algorithm_version",
    "preset",
    "action",
    *FEATURE_COLUMNS,
    *ATTRIBUTE_COLUMNS,
    *LOGGING_POLICY_COLUMNS,
)

# The nightly schedule reads UTC day D this long after D ends (02:15 UTC on D+1; the cron of
# `ltr_assets.defs.schedules` is built from it). An event of D that reaches a source after that
# is read by no scheduled run: `/feedback` refuses it (`late_event`).
NIGHTLY_READ_AFTER = timedelta(hours=2, minutes=15)


def nightly_read_at(day: date) -> datetime:
    """When the nightly schedule reads UTC day `day`: `NIGHTLY_READ_AFTER` past its end."""
    return (
        datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1) + NIGHTLY_READ_AFTER
    )


_EPOCH_MS_THRESHOLD = 1e11  # numbers above this are epoch milliseconds, below epoch seconds
_ZERO = timedelta(0)
# The longest list a position can come from: the most candidates the service can be set to
# rank (LTR_MAX_CANDIDATES' limit). Past it a position is not a list's; the learning code
# sizes arrays by the positions it sees.
_MAX_RANK_POSITION = 100_000
_NO_FEATURES: list[float | None] = [None] * len(FEATURES)
_NO_GROUPS: list[str | None] = [None] * len(PROTECTED_ATTRIBUTES)
_NO_POLICY: tuple[None, ...] = (None,) * len(LOGGING_POLICY_COLUMNS)

# One validated event, a tuple in EVENT_COLUMNS order (a tuple, not a dict: a day has millions).
if TYPE_CHECKING:
    # The checker's view of the namedtuple built below from EVENT_COLUMNS (its fields are not
    # literal, so mypy cannot see them): the fields that code reads by name. Final, so that
    # `type(x) is EventRow` narrows both ways.
    @final
    class EventRow(tuple[Any, ...]):
        event_id: str
        event_type: str
        timestamp: datetime

else:
    EventRow = namedtuple("EventRow", EVENT_COLUMNS)
_new_row = functools.partial(tuple.__new__, EventRow)  # skips namedtuple's slower __new__


@dataclass(frozen=True)
class Rejection:
    """Why a line cannot be accepted; `timestamp` is set when the line's own time was readable."""

    reason: str
    kind: str
    timestamp: datetime | None = None


class _Invalid(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 (with Z or an offset; naive means UTC) or epoch seconds/milliseconds -> UTC."""
    if type(value) is str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _Invalid("bad_timestamp", f"timestamp {value!r} is not ISO 8601") from None
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        if parsed.utcoffset() == _ZERO:
            return parsed
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise _Invalid("bad_timestamp", f"timestamp {value!r} is out of range") from None
    if type(value) in (int, float):
        if not math.isfinite(value):
            raise _Invalid("bad_timestamp", f"timestamp {value!r} is not finite")
        seconds = value / 1000.0 if abs(value) > _EPOCH_MS_THRESHOLD else float(value)
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise _Invalid("bad_timestamp", f"timestamp {value!r} is out of range") from None
    raise _Invalid("bad_timestamp", f"timestamp {value!r} is not a time")


def derive_event_id(obj: dict[str, Any]) -> str:
    """A deterministic id from the content, so that re-reading a line deduplicates."""
    canonical = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    return "d-" + hashlib.sha256(canonical).hexdigest()[:24]


def id_text(value: Any) -> str | None:
    """An id as the ingest reads it: text with its surrounding spaces removed (blank: none), or
    an integer; None for anything else (which `_identifier` refuses)."""
    if type(value) is str:
        return value.strip() or None
    if type(value) is int:
        return str(value)
    return None


def _identifier(value: Any, name: str, required: bool) -> str | None:
    text = id_text(value)
    if text is not None:
        return text
    if type(value) is float:  # a fraction, or an integer past 64 bits (read as a float)
        raise _Invalid(
            "bad_id", f"{name} is a number that is no 64-bit integer: send ids as strings"
        )
    if value is not None and type(value) is not str:
        raise _Invalid("bad_id", f"{name} {value!r:.80} must be a string or an integer")
    if required:
        raise _Invalid("missing_id", f"missing {name}")
    return None


def _features(raw: Any) -> list[float | None]:
    if type(raw) is not dict:
        raise _Invalid("missing_features", "missing features object")
    values: list[float | None] = []
    known = 0
    for code in FEATURES:
        value: Any = raw.get(code)
        kind = type(value)
        if kind is float or kind is int:
            if not 0.0 <= value <= 1.0:  # also false for NaN
                if not math.isfinite(value):
                    raise _Invalid("bad_feature", f"feature {code}={value!r} is not finite")
                raise _Invalid("bad_feature", f"feature {code}={value!r} is outside [0, 1]")
            values.append(value + 0.0)  # -0.0 becomes 0.0: one value, one copy (dedup)
            known += 1
        elif value is None:
            values.append(None)
        else:
            raise _Invalid("bad_feature", f"feature {code}={value!r} is not a number")
    if known == 0:
        raise _Invalid("missing_features", "no known feature in features object")
    return values


def _groups(raw: Any) -> list[str | None]:
    if raw is None:
        return _NO_GROUPS
    if type(raw) is not dict:
        raise _Invalid("bad_field", "lawyer_groups must be an object")
    values: list[str | None] = []
    for attribute in PROTECTED_ATTRIBUTES:
        value: Any = raw.get(attribute)
        kind = type(value)
        if kind is str:
            values.append(value or None)
        elif value is None:
            values.append(None)
        elif kind is bool:
            values.append("true" if value else "false")
        elif kind is int or kind is float:
            values.append(str(value))
        else:
            raise _Invalid("bad_field", f"lawyer_groups.{attribute} {value!r} is not a scalar")
    return values


def _optional_number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value):
        raise _Invalid("bad_field", f"{name} {value!r} is not a finite number")
    return float(value) + 0.0  # -0.0 becomes 0.0, as for features


def _optional_text(value: Any, name: str) -> str | None:
    """Text (a number or a boolean as Python writes it); an object or a list is refused, where
    it was stored as its Python repr."""
    if value is None:
        return None
    if type(value) in (dict, list):
        raise _Invalid("bad_field", f"{name} {orjson.dumps(value)[:80]!r} is not text")
    return str(value)


def _logging_policy(fields: dict[str, Any]) -> tuple[Any, ...]:
    """policy, propensity, deterministic_rank, team (`LOGGING_POLICY_COLUMNS`), each optional."""
    policy = fields.get("policy")
    propensity = fields.get("propensity")
    rank = fields.get("deterministic_rank")
    team = fields.get("team")
    if policy is None and propensity is None and rank is None and team is None:
        return _NO_POLICY
    if policy is not None and (type(policy) is not str or policy not in LOGGING_POLICIES):
        raise _Invalid(
            "bad_field", f"policy {policy!r} is not one of {', '.join(LOGGING_POLICIES)}"
        )
    if propensity is not None:
        if type(propensity) not in (int, float) or not 0.0 < propensity <= 1.0:  # NaN too
            raise _Invalid("bad_field", f"propensity {propensity!r} is not a number in (0, 1]")
        propensity = float(propensity)
    if rank is not None and (type(rank) is not int or not 1 <= rank <= _MAX_RANK_POSITION):
        raise _Invalid(
            "bad_field",
            f"deterministic_rank {rank!r} is not a position in a list "
            f"(an integer from 1 to {_MAX_RANK_POSITION:,})",
        )
    if team is not None and (type(team) is not str or team not in INTERLEAVING_TEAMS):
        raise _Invalid("bad_field", f"team {team!r} is not one of {', '.join(INTERLEAVING_TEAMS)}")
    return (policy, propensity, rank, team)


def _row(event_type: str, fields: dict[str, Any], when: datetime, event_id: str) -> EventRow:
    case_id = fields.get("case_id")
    lawyer_id = fields.get("lawyer_id")
    head = (
        event_id,
        event_type,
        when,
        _identifier(fields.get("request_id"), "request_id", False),
        _identifier(fields.get("case") if case_id is None else case_id, "case_id", True),
        _identifier(fields.get("lawyer") if lawyer_id is None else lawyer_id, "lawyer_id", True),
    )
    if event_type == RECOMMENDATION:
        position = fields.get("rank_position")
        if position is not None and (
            type(position) is not int or not 1 <= position <= _MAX_RANK_POSITION
        ):
            raise _Invalid(
                "bad_field",
                f"rank_position {position!r} is not a position in a list "
                f"(an integer from 1 to {_MAX_RANK_POSITION:,})",
            )
        features = fields.get("features")
        if features is None:
            scores = fields.get("scores")
            if type(scores) is dict:
                features = scores.get("features")
        return _new_row(
            (
                *head,
                position,
                _optional_number(fields.get("score"), "score"),
                _optional_text(fields.get("algorithm_version"), "algorithm_version"),
                _optional_text(fields.get("preset"), "preset"),
                None,
                *_features(features),
                *_groups(fields.get("lawyer_groups")),
                *_logging_policy(fields),
            )
        )
    action = fields.get("action")
    if type(action) is not str or action not in ACTION_GRADES:
        raise _Invalid("bad_action", f"action {action!r} is not one of {', '.join(ACTION_GRADES)}")
    return _new_row(
        (*head, None, None, None, None, action, *_NO_FEATURES, *_NO_GROUPS, *_NO_POLICY)
    )


def parse_event(line: str | bytes) -> EventRow | Rejection | None:
    """Validate one line. Returns a row, a Rejection (quarantine), or None (not an LTR event).

    Never raises: an input that trips a case the validation did not foresee is quarantined as
    "unexpected" with the error, so one odd event can never stop a day's ingest."""
    try:
        return _parse_event(line)
    except Exception as exc:  # deliberately broad: the day must go on, the event is kept
        return Rejection(f"unexpected {type(exc).__name__}: {exc}", "unexpected")


def _parse_event(line: str | bytes) -> EventRow | Rejection | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        if isinstance(line, bytes):  # orjson names bad UTF-8 "surrogates not allowed"
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:
                byte = line[bad.start : bad.start + 1].hex()
                return Rejection(
                    f"invalid JSON: not UTF-8 (byte 0x{byte} at offset {bad.start}; another "
                    "encoding, such as Latin-1?)",
                    "invalid_json",
                )
        return Rejection(f"invalid JSON: {exc}", "invalid_json")
    if type(obj) is not dict:
        return Rejection(f"not a JSON object but {type(obj).__name__}", "not_an_object")

    when: datetime | None = None
    fields: Any
    try:
        if "event_type" in obj:
            event_type = obj["event_type"]
            fields = obj
        elif "message" in obj:
            event_type = obj["message"]
            if event_type not in EVENT_TYPES:
                return None  # another kind of audit-log record
            fields = obj.get("context")
            if type(fields) is not dict:
                raise _Invalid("bad_envelope", "audit-log record has no context object")
        else:
            raise _Invalid("bad_envelope", "neither event_type nor message: unknown envelope")
        if event_type not in EVENT_TYPES:
            raise _Invalid("unknown_event_type", f"unknown event_type {event_type!r}")
        raw_time = obj.get("timestamp")
        if raw_time is None:
            raw_time = fields.get("timestamp")
            if raw_time is None:
                raise _Invalid("bad_timestamp", "missing timestamp")
        when = parse_timestamp(raw_time)
        event_id = _identifier(fields.get("event_id"), "event_id", False)
        return _row(event_type, fields, when, event_id or derive_event_id(obj))
    except _Invalid as exc:
        return Rejection(str(exc), exc.kind, when)
