"""Parsing both envelopes of the event contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ltr_core.events import EventRow, Rejection, parse_event
from tests.support.ingest import fields

FEATURES = {
    "A": 1.0,
    "S": 0.82,
    "T": 0.6,
    "G": 0.9,
    "Q": 0.7,
    "U": 0.4,
    "R": 0.8,
    "C": 0.5,
    "E": 0.5,
    "P": 1.0,
    "M": 0.3,
}
FLAT = {
    "event_id": "e-1",
    "event_type": "match_recommendation",
    "timestamp": "2026-11-25T14:03:11.123Z",
    "request_id": "r-1",
    "case_id": "c-1",
    "lawyer_id": "l-1",
    "rank_position": 1,
    "features": FEATURES,
    "lawyer_groups": {"gender": "F", "ethnicity": "parda", "pcd": False, "orientation": None},
    "algorithm_version": "v2.8",
    "preset": "balanced",
    "score": 0.83,
}


def test_flat_recommendation() -> None:
    row = parse_event(json.dumps(FLAT))
    assert isinstance(row, EventRow)
    assert row.timestamp == datetime(2026, 11, 25, 14, 3, 11, 123000, tzinfo=UTC)
    f = fields(row)
    assert f["f_A"] == 1.0 and f["f_M"] == 0.3
    assert f["g_gender"] == "F" and f["g_pcd"] == "false" and f["g_orientation"] is None
    assert f["rank_position"] == 1 and f["action"] is None


def test_audit_line_with_aliases_nested_features_and_derived_id() -> None:
    line: dict[str, Any] = {
        "timestamp": "2026-11-25T14:03:11-03:00",
        "level": "INFO",
        "message": "match_recommendation",
        "context": {"case": "c-9", "lawyer": "l-9", "scores": {"features": FEATURES}},
    }
    row = parse_event(json.dumps(line))
    assert isinstance(row, EventRow)
    f = fields(row)
    assert f["case_id"] == "c-9" and f["lawyer_id"] == "l-9" and f["request_id"] is None
    assert row.timestamp == datetime(2026, 11, 25, 17, 3, 11, tzinfo=UTC)
    assert row.event_id.startswith("d-")
    # the same content gives the same id, whatever the key order or spacing
    reordered = json.dumps(dict(reversed(list(line.items()))), indent=1)
    assert fields(parse_event(reordered))["event_id"] == row.event_id
    other = {**line, "context": {**line["context"], "lawyer": "l-10"}}
    assert fields(parse_event(json.dumps(other)))["event_id"] != row.event_id


@pytest.mark.parametrize(
    ("case_id", "said"),
    [
        ("12345678901234567890123", "case_id is a number that is no 64-bit integer"),
        ("1.5", "case_id is a number that is no 64-bit integer"),
        ("true", "case_id True must be a string or an integer"),
    ],
)
def test_an_id_that_is_no_text_nor_integer_is_refused_saying_what_to_send(
    case_id: str, said: str
) -> None:
    """An integer past 64 bits is read as a float: the reason quoted a float the producer
    never sent, and said "must be a string" although integers are taken."""
    line = json.dumps(FLAT).replace(f'"case_id": "{FLAT["case_id"]}"', f'"case_id": {case_id}')
    assert case_id in line
    rejected = parse_event(line)
    assert isinstance(rejected, Rejection) and rejected.kind == "bad_id"
    assert said in rejected.reason and "e+22" not in rejected.reason


def test_other_audit_records_are_ignored_not_rejected() -> None:
    assert parse_event('{"timestamp": "2026-11-25T00:00:00Z", "message": "login"}') is None


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "not_an_object"),
        (json.dumps({**FLAT, "event_type": "page_view"}), "unknown_event_type"),
        (json.dumps({**FLAT, "timestamp": "yesterday"}), "bad_timestamp"),
        (json.dumps({k: v for k, v in FLAT.items() if k != "timestamp"}), "bad_timestamp"),
        (json.dumps({k: v for k, v in FLAT.items() if k != "case_id"}), "missing_id"),
        (json.dumps({**FLAT, "lawyer_id": {"id": 1}}), "bad_id"),
        (json.dumps({**FLAT, "features": {**FEATURES, "T": 1.7}}), "bad_feature"),
        (json.dumps({**FLAT, "features": {**FEATURES, "T": "high"}}), "bad_feature"),
        (
            '{"event_type": "match_recommendation", "timestamp": "2026-11-25T00:00:00Z", '
            '"case_id": "c", "lawyer_id": "l", "features": {"A": NaN}}',
            "invalid_json",  # NaN and Infinity are not JSON
        ),
        (json.dumps({**FLAT, "features": {**FEATURES, "A": True}}), "bad_feature"),
        (json.dumps({**FLAT, "rank_position": 0}), "bad_field"),
        (json.dumps({**FLAT, "rank_position": 99999999999}), "bad_field"),  # beyond int32
        # past the longest list the service can answer (the click model sized arrays by it)
        (json.dumps({**FLAT, "rank_position": 2**31 - 1}), "bad_field"),
        (json.dumps({**FLAT, "rank_position": 100_001}), "bad_field"),
        (json.dumps({**FLAT, "event_type": "offer_feedback", "action": ["click"]}), "bad_action"),
        (json.dumps({**FLAT, "timestamp": "0001-01-01T00:00:00+01:00"}), "bad_timestamp"),
        (json.dumps({**FLAT, "features": None}), "missing_features"),
        (json.dumps({**FLAT, "event_type": "offer_feedback", "action": "like"}), "bad_action"),
        (
            json.dumps({"timestamp": "2026-11-25T00:00:00Z", "message": "offer_feedback"}),
            "bad_envelope",
        ),
        (json.dumps({**FLAT, "algorithm_version": {"v": 1}}), "bad_field"),
        (json.dumps({**FLAT, "preset": ["balanced"]}), "bad_field"),
        (json.dumps({**FLAT, "policy": "random"}), "bad_field"),
        (json.dumps({**FLAT, "policy": 1}), "bad_field"),
        (json.dumps({**FLAT, "propensity": 0}), "bad_field"),
        (json.dumps({**FLAT, "propensity": 1.5}), "bad_field"),
        (json.dumps({**FLAT, "propensity": -0.2}), "bad_field"),
        (json.dumps({**FLAT, "propensity": "0.5"}), "bad_field"),
        (json.dumps({**FLAT, "propensity": True}), "bad_field"),
        (json.dumps({**FLAT, "deterministic_rank": 0}), "bad_field"),
        (json.dumps({**FLAT, "deterministic_rank": 2.0}), "bad_field"),
        (json.dumps({**FLAT, "deterministic_rank": 99999999999}), "bad_field"),
        (json.dumps({**FLAT, "deterministic_rank": 100_001}), "bad_field"),
        (json.dumps({**FLAT, "team": "red"}), "bad_field"),
    ],
)
def test_invalid_events_are_rejected_with_a_reason(line: str, kind: str) -> None:
    outcome = parse_event(line)
    assert isinstance(outcome, Rejection)
    assert outcome.kind == kind
    assert outcome.reason


def test_rejection_keeps_its_own_time_when_readable() -> None:
    outcome = parse_event(json.dumps({**FLAT, "features": {**FEATURES, "A": -0.1}}))
    assert isinstance(outcome, Rejection)
    assert outcome.timestamp == datetime(2026, 11, 25, 14, 3, 11, 123000, tzinfo=UTC)
    assert "outside [0, 1]" in outcome.reason


def test_logging_policy_fields_are_carried() -> None:
    line = {**FLAT, "policy": "swap", "propensity": 0.0125, "deterministic_rank": 4}
    row = fields(parse_event(json.dumps(line)))
    assert (row["policy"], row["propensity"], row["deterministic_rank"], row["team"]) == (
        "swap",
        0.0125,
        4,
        None,
    )
    team = fields(
        parse_event(json.dumps({**FLAT, "policy": "interleaved", "propensity": 1, "team": "live"}))
    )
    assert (team["policy"], team["propensity"], team["team"]) == ("interleaved", 1.0, "live")
    assert type(team["propensity"]) is float


def test_events_without_logging_policy_fields_read_as_before() -> None:
    row = fields(parse_event(json.dumps(FLAT)))
    assert (row["policy"], row["propensity"], row["deterministic_rank"], row["team"]) == (None,) * 4
    # impressions carry the policy; feedback never does
    feedback = {**FLAT, "event_type": "offer_feedback", "action": "click", "policy": "swap"}
    assert (
        fields(parse_event(json.dumps(feedback)))["policy"] is None
    )  # impressions carry the policy


def test_the_rejection_names_the_bad_logging_field() -> None:
    outcome = parse_event(json.dumps({**FLAT, "propensity": 1.5}))
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "propensity 1.5 is not a number in (0, 1]"
