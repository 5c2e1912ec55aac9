"""Parse and validate one event line in either envelope of the contract.

`parse_event` turns a raw line (flat envelope or the platform's audit-log line) into a flat row
for the lake, a `Rejection` with a human-readable reason (to be quarantined), or `None` for an
audit-log record that is not an LTR event (ignored, counted, never quarantined).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ltr_assets.schema import (
    ACTION_GRADES,
    ATTRIBUTE_COLUMNS,
    EVENT_TYPES,
    FEATURE_COLUMNS,
    FEATURES,
    PROTECTED_ATTRIBUTES,
    RECOMMENDATION,
)

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
)

_EPOCH_MS_THRESHOLD = 1e11  # numbers above this are epoch milliseconds, below epoch seconds


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
    if isinstance(value, bool) or value is None:
        raise _Invalid("bad_timestamp", f"timestamp {value!r} is not a time")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise _Invalid("bad_timestamp", f"timestamp {value!r} is not finite")
        seconds = value / 1000.0 if abs(value) > _EPOCH_MS_THRESHOLD else float(value)
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise _Invalid("bad_timestamp", f"timestamp {value!r} is out of range") from None
    if not isinstance(value, str):
        raise _Invalid("bad_timestamp", f"timestamp {value!r} is not a string")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _Invalid("bad_timestamp", f"timestamp {value!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def derive_event_id(obj: dict[str, Any]) -> str:
    """A deterministic id from the content, so that re-reading a line deduplicates."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return "d-" + hashlib.sha256(canonical.encode()).hexdigest()[:24]


def _identifier(fields: dict[str, Any], *names: str, required: bool) -> str | None:
    for name in names:
        value = fields.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _Invalid("bad_id", f"{names[0]} {value!r} must be a string")
        text = str(value).strip()
        if text:
            return text
    if required:
        raise _Invalid("missing_id", f"missing {names[0]}")
    return None


def _features(raw: Any) -> dict[str, float | None]:
    if not isinstance(raw, dict):
        raise _Invalid("missing_features", "missing features object")
    row: dict[str, float | None] = {}
    known = 0
    for code, column in zip(FEATURES, FEATURE_COLUMNS, strict=True):
        value = raw.get(code)
        if value is None:
            row[column] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid("bad_feature", f"feature {code}={value!r} is not a number")
        number = float(value)
        if not math.isfinite(number):
            raise _Invalid("bad_feature", f"feature {code}={value!r} is not finite")
        if not 0.0 <= number <= 1.0:
            raise _Invalid("bad_feature", f"feature {code}={value!r} is outside [0, 1]")
        row[column] = number
        known += 1
    if known == 0:
        raise _Invalid("missing_features", "no known feature in features object")
    return row


def _groups(raw: Any) -> dict[str, str | None]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _Invalid("bad_field", "lawyer_groups must be an object")
    row: dict[str, str | None] = {}
    for attribute, column in zip(PROTECTED_ATTRIBUTES, ATTRIBUTE_COLUMNS, strict=True):
        value = raw.get(attribute)
        if value is None or value == "":
            row[column] = None
        elif isinstance(value, bool):
            row[column] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            row[column] = str(value)
        else:
            raise _Invalid("bad_field", f"lawyer_groups.{attribute} {value!r} is not a scalar")
    return row


def _optional_number(fields: dict[str, Any], name: str) -> float | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Invalid("bad_field", f"{name} {value!r} is not a finite number")
    return float(value)


def _optional_text(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    return None if value is None else str(value)


def _row(event_type: str, fields: dict[str, Any], when: datetime, event_id: str) -> dict:
    row: dict[str, Any] = {
        "event_id": event_id,
        "event_type": event_type,
        "timestamp": when,
        "request_id": _identifier(fields, "request_id", required=False),
        "case_id": _identifier(fields, "case_id", "case", required=True),
        "lawyer_id": _identifier(fields, "lawyer_id", "lawyer", required=True),
        "rank_position": None,
        "score": None,
        "algorithm_version": None,
        "preset": None,
        "action": None,
    }
    if event_type == RECOMMENDATION:
        position = fields.get("rank_position")
        if position is not None:
            if isinstance(position, bool) or not isinstance(position, int) or position < 1:
                raise _Invalid("bad_field", f"rank_position {position!r} is not a positive integer")
            row["rank_position"] = position
        row["score"] = _optional_number(fields, "score")
        row["algorithm_version"] = _optional_text(fields, "algorithm_version")
        row["preset"] = _optional_text(fields, "preset")
        features = fields.get("features")
        if features is None and isinstance(fields.get("scores"), dict):
            features = fields["scores"].get("features")
        row.update(_features(features))
        row.update(_groups(fields.get("lawyer_groups")))
    else:
        action = fields.get("action")
        if action not in ACTION_GRADES:
            raise _Invalid(
                "bad_action", f"action {action!r} is not one of {', '.join(ACTION_GRADES)}"
            )
        row["action"] = action
        row.update(dict.fromkeys(FEATURE_COLUMNS))
        row.update(dict.fromkeys(ATTRIBUTE_COLUMNS))
    return row


def parse_event(line: str | bytes) -> dict[str, Any] | Rejection | None:
    """Validate one line. Returns a row, a Rejection (quarantine), or None (not an LTR event)."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return Rejection(f"invalid JSON: {exc}", "invalid_json")
    if not isinstance(obj, dict):
        return Rejection(f"not a JSON object but {type(obj).__name__}", "not_an_object")

    when: datetime | None = None
    try:
        if "event_type" in obj:
            event_type = obj["event_type"]
            fields = obj
        elif "message" in obj:
            event_type = obj["message"]
            if event_type not in EVENT_TYPES:
                return None  # another kind of audit-log record
            context = obj.get("context")
            if not isinstance(context, dict):
                raise _Invalid("bad_envelope", "audit-log record has no context object")
            fields = context
        else:
            raise _Invalid("bad_envelope", "neither event_type nor message: unknown envelope")
        if event_type not in EVENT_TYPES:
            raise _Invalid("unknown_event_type", f"unknown event_type {event_type!r}")
        raw_time = obj.get("timestamp", fields.get("timestamp"))
        if raw_time is None:
            raise _Invalid("bad_timestamp", "missing timestamp")
        when = parse_timestamp(raw_time)
        event_id = _identifier(fields, "event_id", required=False) or derive_event_id(obj)
        return _row(event_type, fields, when, event_id)
    except _Invalid as exc:
        return Rejection(str(exc), exc.kind, when)
