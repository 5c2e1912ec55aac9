"""feature_matrix: query groups, graded labels, matching rules, late feedback."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ltr_assets.ingest.day import ingest_day
from ltr_assets.ingest.matrix import build_feature_matrix
from ltr_assets.ingest.sources import AuditLogSource
from ltr_assets.lake.paths import Lake
from ltr_assets.simulation.simulator import list_id
from tests.support.ingest import local
from tests.unit.test_events import FLAT

D = date(2026, 11, 25)


def shown(request: str | None, case: str, lawyer: str, time: str, position: int) -> dict[str, Any]:
    return {
        **FLAT,
        "event_id": f"s-{request}-{lawyer}-{time}",
        "request_id": request,
        "case_id": case,
        "lawyer_id": lawyer,
        "timestamp": time,
        "rank_position": position,
    }


def feedback(request: str | None, case: str, lawyer: str, time: str, action: str) -> dict[str, Any]:
    return {
        "event_id": f"f-{lawyer}-{action}-{time}",
        "event_type": "offer_feedback",
        "timestamp": time,
        "request_id": request,
        "case_id": case,
        "lawyer_id": lawyer,
        "action": action,
    }


def _matrix(
    tmp_path: Path, events: list[dict[str, Any]], days: list[date]
) -> dict[date, pd.DataFrame]:
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(e) for e in events))
    lake = Lake(tmp_path / "lake")
    source = AuditLogSource(str(tmp_path / "e.jsonl"))
    for day in days:
        ingest_day(source.read_day(day), day, lake, "f")
    out = {}
    for day in days:
        build_feature_matrix(lake, day, feedback_window_hours=24)
        out[day] = pd.read_parquet(local(lake.feature_matrix(day)))
    return out


def _list(group_id: str) -> str:
    """A list id as the tests name it: its request id, or `case@day` for a list without one
    (the matrix's id is the JSON array of those parts)."""
    parts = json.loads(group_id)
    if parts[0] is not None:
        assert len(parts) == 1
        return str(parts[0])
    assert len(parts) == 3
    return f"{parts[1]}@{parts[2]}"


def _labels(frame: pd.DataFrame) -> dict[tuple[str, str], int]:
    return {
        (_list(g), lw): int(lab) for g, lw, lab in frame[["group_id", "lawyer_id", "label"]].values
    }


def test_strongest_feedback_wins_and_declines_are_zero(tmp_path: Path) -> None:
    t = "2026-11-25T10:00:00Z"
    events = [
        shown("r1", "c1", lawyer, t, i) for i, lawyer in enumerate(["a", "b", "c", "d"], 1)
    ] + [
        feedback("r1", "c1", "a", "2026-11-25T10:05:00Z", "click"),
        feedback("r1", "c1", "a", "2026-11-25T11:00:00Z", "contract"),
        feedback("r1", "c1", "b", "2026-11-25T10:06:00Z", "contact"),
        feedback("r1", "c1", "b", "2026-11-25T10:07:00Z", "click"),
        feedback("r1", "c1", "c", "2026-11-25T10:08:00Z", "decline"),
    ]
    frame = _matrix(tmp_path, events, [D])[D]
    assert _labels(frame) == {("r1", "a"): 3, ("r1", "b"): 2, ("r1", "c"): 0, ("r1", "d"): 0}
    assert frame["rank_position"].tolist() == [1, 2, 3, 4]


def test_feedback_without_request_id_goes_to_latest_impression_before_it(tmp_path: Path) -> None:
    events = [
        shown("r1", "c1", "a", "2026-11-25T09:00:00Z", 1),
        shown("r2", "c1", "a", "2026-11-25T12:00:00Z", 2),  # the case shown again later
        shown("r2", "c1", "b", "2026-11-25T12:00:00Z", 1),
        feedback(None, "c1", "a", "2026-11-25T10:00:00Z", "click"),  # -> r1 (r2 is later)
        feedback(None, "c1", "a", "2026-11-25T13:00:00Z", "contact"),  # -> r2
        feedback(None, "c1", "b", "2026-11-25T11:00:00Z", "click"),  # before any b impression
    ]
    labels = _labels(_matrix(tmp_path, events, [D])[D])
    assert labels == {("r1", "a"): 1, ("r2", "a"): 2, ("r2", "b"): 0}


def test_missing_request_id_groups_by_case_and_day(tmp_path: Path) -> None:
    events = [
        shown(None, "c7", lawyer, "2026-11-25T09:00:00Z", i) for i, lawyer in enumerate("ab", 1)
    ]
    frame = _matrix(tmp_path, events, [D])[D]
    assert set(frame["group_id"]) == {'[null,"c7","2026-11-25"]'}


def test_late_feedback_after_midnight_labels_the_previous_day(tmp_path: Path) -> None:
    nxt = date(2026, 11, 26)
    events = [
        shown("r1", "c1", "a", "2026-11-25T23:50:00Z", 1),
        shown("r1", "c1", "b", "2026-11-25T23:50:00Z", 2),
        feedback("r1", "c1", "a", "2026-11-26T00:20:00Z", "contact"),  # late: in raw_events[D+1]
        feedback(None, "c1", "b", "2026-11-26T01:00:00Z", "click"),
        feedback("r1", "c1", "b", "2026-11-27T01:00:00Z", "contract"),  # outside the 24 h window
    ]
    matrices = _matrix(tmp_path, events, [D, nxt])
    assert _labels(matrices[D]) == {("r1", "a"): 2, ("r1", "b"): 1}
    assert matrices[nxt].empty  # D+1 has no impressions of its own


def test_without_the_next_day_late_feedback_is_not_yet_there(tmp_path: Path) -> None:
    events = [
        shown("r1", "c1", "a", "2026-11-25T23:50:00Z", 1),
        feedback("r1", "c1", "a", "2026-11-26T00:20:00Z", "contact"),
    ]
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(e) for e in events))
    lake = Lake(tmp_path / "lake")
    ingest_day(AuditLogSource(str(tmp_path / "e.jsonl")).read_day(D), D, lake, "f")
    report = build_feature_matrix(lake, D, 24)
    assert not report.next_day_present
    assert pd.read_parquet(local(report.path))["label"].tolist() == [0]


def test_missing_raw_events_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="raw_events for 2026-11-25"):
        build_feature_matrix(Lake(tmp_path), D, 24)


def test_days_are_utc_days_whatever_the_host_timezone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    events = [
        shown(None, "c1", "a", "2026-11-25T01:30:00Z", 1),  # 22:30 on the 24th in Sao Paulo
        shown(None, "c1", "b", "2026-11-25T01:30:00Z", 2),
        feedback(None, "c1", "a", "2026-11-25T01:40:00Z", "click"),
    ]
    monkeypatch.setenv("TZ", "America/Sao_Paulo")
    time.tzset()
    try:
        frame = _matrix(tmp_path, events, [D])[D]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert set(map(_list, frame["group_id"])) == {"c1@2026-11-25"}
    assert _labels(frame) == {("c1@2026-11-25", "a"): 1, ("c1@2026-11-25", "b"): 0}


def test_logging_policy_columns_reach_the_matrix(tmp_path: Path) -> None:
    swapped = {
        **shown("r1", "c1", "l1", "2026-11-25T10:00:00Z", 3),
        "policy": "swap",
        "propensity": 0.02,
        "deterministic_rank": 1,
    }
    plain = shown("r1", "c1", "l2", "2026-11-25T10:00:00Z", 2)
    frame = _matrix(tmp_path, [swapped, plain], [D])[D].set_index("lawyer_id")
    assert frame.loc["l1", "policy"] == "swap" and frame.loc["l1", "propensity"] == 0.02
    assert frame.loc["l1", "deterministic_rank"] == 1
    assert frame["policy"].isna()["l2"] and frame["deterministic_rank"].isna()["l2"]


def test_raw_events_written_before_the_logging_policy_columns_still_read(
    tmp_path: Path,
) -> None:
    """A day ingested before the columns existed, beside a next day that has them."""
    next_day = date(2026, 11, 26)
    events = [
        shown("r1", "c1", "l1", "2026-11-25T23:00:00Z", 1),
        feedback("r1", "c1", "l1", "2026-11-26T01:00:00Z", "click"),
    ]
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(e) for e in events))
    lake = Lake(tmp_path / "lake")
    source = AuditLogSource(str(tmp_path / "e.jsonl"))
    for day in (D, next_day):
        ingest_day(source.read_day(day), day, lake, "f")
    old = pq.read_table(local(lake.raw_events(D)))
    pq.write_table(
        old.drop_columns(["policy", "propensity", "deterministic_rank", "team"]),
        local(lake.raw_events(D)),
    )
    build_feature_matrix(lake, D, feedback_window_hours=24)
    frame = pd.read_parquet(local(lake.feature_matrix(D)))
    assert _labels(frame) == {("r1", "l1"): 1}  # the late click from the newer day still joins
    assert frame["policy"].isna().all() and frame["deterministic_rank"].isna().all()


def test_feedback_naming_a_request_finds_an_impression_logged_without_one(tmp_path: Path) -> None:
    """The audit log may omit request_id on impressions while the feedback carries one: the
    feedback falls back to (case, lawyer), among the impressions without a request id only."""
    events = [
        shown(None, "c1", "a", "2026-11-25T09:00:00Z", 1),
        shown(None, "c1", "b", "2026-11-25T09:00:00Z", 2),
        shown("r9", "c2", "a", "2026-11-25T09:30:00Z", 1),
        feedback("r-unknown", "c1", "a", "2026-11-25T10:00:00Z", "contact"),  # -> c1@D
        feedback(None, "c1", "b", "2026-11-25T10:00:00Z", "click"),  # as before
        feedback("r9", "c2", "a", "2026-11-25T10:00:00Z", "click"),  # by its request id, once
        feedback("r-other", "c2", "a", "2026-11-25T10:30:00Z", "contract"),  # r9 has an id
    ]
    frame = _matrix(tmp_path, events, [D])[D]
    assert _labels(frame) == {("c1@2026-11-25", "a"): 2, ("c1@2026-11-25", "b"): 1, ("r9", "a"): 1}
    assert frame["n_feedback"].tolist() == [1, 1, 1]


def test_feedback_on_a_day_without_any_list_warns(tmp_path: Path) -> None:
    """A day of feedback whose impressions never arrived read "0 of 0 lists have positive
    feedback" and passed."""
    from ltr_assets.defs.checks import feedback_check_result

    events = [
        feedback("r1", "c1", "a", "2026-11-25T10:05:00Z", "click"),
        feedback("r2", "c2", "b", "2026-11-25T11:05:00Z", "contact"),
    ]
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(e) for e in events))
    lake = Lake(tmp_path / "lake")
    ingest_day(AuditLogSource(str(tmp_path / "e.jsonl")).read_day(D), D, lake, "f")
    result = feedback_check_result(build_feature_matrix(lake, D, 24))
    assert not result.passed
    assert result.description is not None
    assert result.description.startswith("2 feedback events on this day but no recommendation")
    shown_day = [shown("r1", "c1", "a", "2026-11-25T10:00:00Z", 1), *events]
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(e) for e in shown_day))
    ingest_day(AuditLogSource(str(tmp_path / "e.jsonl")).read_day(D), D, lake, "f")
    assert feedback_check_result(build_feature_matrix(lake, D, 24)).passed


def test_one_feedback_event_id_on_both_sides_of_midnight_counts_once(tmp_path: Path) -> None:
    """Each day's ingest keeps one copy of an event id, so a copy stamped before midnight and
    one after are both in the raw events the matrix reads: the earliest counts, once."""
    nxt = date(2026, 11, 26)
    click = feedback("r1", "c1", "a", "2026-11-25T23:59:58Z", "click")
    contract = {**feedback("r1", "c1", "a", "2026-11-26T00:00:03Z", "contract")}
    contract["event_id"] = click["event_id"]
    events = [shown("r1", "c1", "a", "2026-11-25T23:50:00Z", 1), click, contract]
    frame = _matrix(tmp_path, events, [D, nxt])[D]
    assert _labels(frame) == {("r1", "a"): 1}
    assert frame["n_feedback"].tolist() == [1]


def test_feedback_naming_yesterdays_request_does_not_fall_back_to_todays_list(
    tmp_path: Path,
) -> None:
    """The fallback is for a request no impression has: one shown the day before has it, and
    the day before's matrix (which reads this day's feedback) labels it. Today's matrix cannot
    see that impression, so it reads the day before's requests too."""
    prev = date(2026, 11, 24)
    events = [
        shown("R1", "c1", "a", "2026-11-24T23:50:00Z", 1),
        shown(None, "c1", "a", "2026-11-25T00:10:00Z", 1),  # the case again, logged without id
        feedback("R1", "c1", "a", "2026-11-25T00:30:00Z", "click"),
    ]
    matrices = _matrix(tmp_path, events, [prev, D])
    assert _labels(matrices[prev]) == {("R1", "a"): 1}
    assert _labels(matrices[D]) == {("c1@2026-11-25", "a"): 0}


def test_a_request_id_shaped_like_a_fallback_id_is_a_list_of_its_own(tmp_path: Path) -> None:
    """/rank takes any request id, "c-1@2026-12-07" too: it names its own list, never the list
    of case c-1 logged that day without request ids, whose impressions and labels stay whole."""
    day = date(2026, 12, 7)
    events = [
        shown(None, "c-1", "l-1", "2026-12-07T10:00:00Z", 1),
        shown(None, "c-1", "l-2", "2026-12-07T10:00:00Z", 2),
        feedback(None, "c-1", "l-2", "2026-12-07T10:05:00Z", "contract"),
        shown("c-1@2026-12-07", "evil", "l-2", "2026-12-07T09:00:00Z", 1),
        shown("c-1@2026-12-07", "evil", "l-9", "2026-12-07T09:00:00Z", 2),
        # and a request id spelled as the new fallback id itself
        shown('[null,"c-1","2026-12-07"]', "evil", "l-1", "2026-12-07T08:00:00Z", 1),
    ]
    for event in events:
        event["event_id"] += event["case_id"]
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(e) for e in events))
    lake = Lake(tmp_path / "lake")
    ingest_day(AuditLogSource(str(tmp_path / "e.jsonl")).read_day(day), day, lake, "f")
    report = build_feature_matrix(lake, day, feedback_window_hours=24)
    frame = pd.read_parquet(local(lake.feature_matrix(day)))
    lists = {
        group: sorted(zip(rows["lawyer_id"], rows["rank_position"], rows["label"], strict=True))
        for group, rows in frame.groupby("group_id")
    }
    assert sorted(lists.values()) == [
        [("l-1", 1, 0)],  # the request spelled as the fallback id
        [("l-1", 1, 0), ("l-2", 2, 3)],  # case c-1's list, its contract labelled
        [("l-2", 1, 0), ("l-9", 2, 0)],  # the request "c-1@2026-12-07"
    ]
    assert (report.groups, report.feedback_matched) == (3, 1)
    assert set(lists) == {
        '[null,"c-1","2026-12-07"]',
        '["c-1@2026-12-07"]',
        '["[null,\\"c-1\\",\\"2026-12-07\\"]"]',
    }


def test_the_simulators_list_ids_are_the_matrixs(tmp_path: Path) -> None:
    """`logged_frame` (the simulator's matrix, made directly) names a list as DuckDB does."""
    request = 'r-ção "1"/\\x'
    frame = _matrix(tmp_path, [shown(request, "c1", "a", "2026-11-25T10:00:00Z", 1)], [D])[D]
    assert frame["group_id"].tolist() == [list_id(request)]
