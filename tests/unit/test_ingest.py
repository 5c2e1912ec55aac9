"""raw_events on the file source: validation, quarantine, deduplication, day attribution."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import cast

import pyarrow.parquet as pq

from ltr_assets.ingest.day import content_digest, ingest_day
from ltr_assets.ingest.sources import AuditLogSource
from ltr_assets.lake.paths import Lake
from ltr_core.events import EventRow, parse_event
from tests.support.ingest import accounted, fields, local
from tests.unit.test_events import FEATURES, FLAT

DAY = date(2026, 11, 25)


def _event(i: int, **changes) -> str:
    return json.dumps({**FLAT, "event_id": f"e-{i}", "lawyer_id": f"l-{i}", **changes})


def test_bad_input_is_quarantined_with_reasons_and_counted(tmp_path: Path) -> None:
    lines = [
        _event(1),
        _event(2),
        "{this is not json",  # no readable time: belongs to its neighbour's day (D)
        _event(3, event_type="page_view"),
        _event(4, features={**FEATURES, "Q": 1.5}),
        _event(5, features={**FEATURES, "Q": -0.2}),
        _event(1),  # exact duplicate
        _event(2, score=0.1),  # same id, other content: a conflict
        json.dumps({"timestamp": "2026-11-25T10:00:00Z", "message": "http_request"}),
        _event(6, event_type="offer_feedback", action="contract"),
        _event(7, timestamp="2026-11-26T00:00:01Z"),  # another day
        "",
    ]
    (tmp_path / "audit.jsonl").write_text("\n".join(lines) + "\n")
    lake = Lake(tmp_path / "lake")
    source = AuditLogSource(str(tmp_path / "*.jsonl"))

    report = ingest_day(source.read_day(DAY), DAY, lake, source.name)

    assert (report.read, report.accepted, report.duplicates, report.conflicts) == (10, 3, 1, 1)
    assert (report.quarantined, report.ignored) == (4, 1) and accounted(report) == report.read
    assert report.conflicting_ids == ["e-2"]
    assert report.reasons == {"invalid_json": 1, "unknown_event_type": 1, "bad_feature": 2}
    table = pq.read_table(local(report.parquet_path))
    event_ids = cast(list[str], table.column("event_id").to_pylist())  # a non-null column
    assert sorted(event_ids) == ["e-1", "e-2", "e-6"]
    copies = [parse_event(_event(2)), parse_event(_event(2, score=0.1))]
    rows = [row for row in copies if isinstance(row, EventRow)]
    assert len(rows) == len(copies)
    winner = min(rows, key=content_digest)  # same timestamp: the smaller content hash wins
    assert table.column("score").to_pylist()[1] == fields(winner)["score"]
    quarantine = [json.loads(x) for x in local(report.quarantine_path).read_text().splitlines()]
    assert [q["kind"] for q in quarantine] == [
        "invalid_json",
        "unknown_event_type",
        "bad_feature",
        "bad_feature",
    ]
    assert "Q=1.5 is outside [0, 1]" in quarantine[2]["reason"]
    assert (
        quarantine[0]["raw"] == "{this is not json" and quarantine[0]["origin"] == "audit.jsonl:3"
    )

    next_day = ingest_day(source.read_day(date(2026, 11, 26)), date(2026, 11, 26), lake, "f")
    assert (next_day.accepted, next_day.quarantined) == (1, 0)  # the bad line is not there too


def test_a_line_in_another_encoding_is_quarantined_as_such_with_its_bytes(tmp_path: Path) -> None:
    import base64

    latin1 = _event(8).replace("l-8", "Zoë Müller").encode("latin-1")
    (tmp_path / "audit.jsonl").write_bytes(_event(1).encode() + b"\n" + latin1 + b"\n")
    lake = Lake(tmp_path / "lake")
    source = AuditLogSource(str(tmp_path / "*.jsonl"))
    report = ingest_day(source.read_day(DAY), DAY, lake, source.name)
    assert (report.accepted, report.quarantined) == (1, 1)
    [entry] = [json.loads(x) for x in local(report.quarantine_path).read_text().splitlines()]
    assert entry["kind"] == "invalid_json"
    assert "not UTF-8 (byte 0xeb at offset" in entry["reason"]
    assert "surrogates" not in entry["reason"]
    assert base64.b64decode(entry["raw_base64"]) == latin1  # replayable as it came
    assert "Zo\ufffd M\ufffdller" in entry["raw"]


def test_undatable_lines_at_the_head_follow_the_next_readable_line(tmp_path: Path) -> None:
    lines = ["garbage", _event(1, timestamp="2026-11-24T23:00:00Z"), _event(2)]
    (tmp_path / "a.jsonl").write_text("\n".join(lines))
    source = AuditLogSource(str(tmp_path / "*.jsonl"))
    lake = Lake(tmp_path / "lake")
    before = ingest_day(source.read_day(date(2026, 11, 24)), date(2026, 11, 24), lake, "f")
    day = ingest_day(source.read_day(DAY), DAY, lake, "f")
    assert (before.accepted, before.quarantined) == (1, 1)
    assert (day.accepted, day.quarantined) == (1, 0)


def test_offsets_move_events_across_midnight(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(_event(1, timestamp="2026-11-24T22:30:00-03:00") + "\n")
    source = AuditLogSource(str(tmp_path / "*.jsonl"))
    report = ingest_day(source.read_day(DAY), DAY, Lake(tmp_path / "lake"), "f")
    assert report.accepted == 1


def test_reingesting_gives_identical_parquet(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text("\n".join(_event(i) for i in range(20)))
    source = AuditLogSource(str(tmp_path / "*.jsonl"))
    lake = Lake(tmp_path / "lake")
    first = local(ingest_day(source.read_day(DAY), DAY, lake, "f").parquet_path).read_bytes()
    second = local(ingest_day(source.read_day(DAY), DAY, lake, "f").parquet_path).read_bytes()
    assert first == second
