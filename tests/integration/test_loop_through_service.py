"""The demo's loop through the real ranking service (`ltr serve` as a process, over HTTP), on a
few days: v2.8 into the audit log until the first publication, the service from then on, its
log read by raw_events, and a reload after every publication."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from dagster import DagsterInstance

from ltr_assets.defs.launch import LOCATION_NAME
from ltr_assets.defs.sensors import OUTCOME_TAG, REASON_TAG
from ltr_assets.demo import DemoLoop
from ltr_assets.lake.paths import lake_from_settings, read_frame
from ltr_assets.simulation.simulator import PLATFORM_VERSION, Simulator, SimulatorConfig
from ltr_core.settings import Settings
from tests.conftest import START

DAYS = 5
EXPLORE_RATE = 0.2  # plenty of swapped requests in a few days


def _raw_events_metadata(result: Any) -> dict[str, Any]:
    for event in result.all_events:
        if event.event_type_value != "ASSET_MATERIALIZATION":
            continue
        materialization = event.event_specific_data.materialization
        if materialization.asset_key.to_user_string() == "raw_events":
            return {k: v.value for k, v in materialization.metadata.items()}
    raise AssertionError("raw_events was not materialized")


def _logged(folder: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*/*.jsonl")):
        events.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return events


def test_days_after_the_first_publication_are_served_by_the_service(
    ltr_home: Path, small_data_gate: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.from_env()
    simulator = Simulator(SimulatorConfig(start=START, days=DAYS, seed=3, requests_per_day=300))
    events_file = ltr_home / "events" / "audit.jsonl"
    events_file.write_text("")
    instance = DagsterInstance.ephemeral()
    loop = DemoLoop(settings, simulator, events_file, 3, instance, EXPLORE_RATE)
    latest_before, latest_after = {}, {}
    try:
        rows = []
        for i in range(DAYS):
            day = START + timedelta(days=i)
            latest_before[day] = loop.registry.latest_version()
            rows.append(loop.run_day(day))
            latest_after[day] = loop.registry.latest_version()
        assert loop.service is not None
        health = loop.service.client.health()
    finally:
        loop.close()
    # the nights' runs were launched from the code location, daily and refresh runs alike, and
    # every daily run carries its outcome and the reason (tests/integration/test_demo_runs.py)
    runs = instance.get_runs()
    assert {r.job_name for r in runs} == {"ltr_daily_job", "ltr_label_refresh_job"}
    assert len(runs) == 2 * DAYS - 1
    for run in runs:
        assert run.remote_job_origin is not None and run.job_code_origin is not None
        assert run.remote_job_origin.location_name == LOCATION_NAME
        assert run.is_success, run.tags.get(REASON_TAG)  # a refused night succeeds too
        if run.job_name == "ltr_daily_job":
            outcome = run.tags[OUTCOME_TAG]
            assert outcome in ("published", "gate_refused"), run.tags.get(REASON_TAG)
            assert run.tags[REASON_TAG].startswith(outcome.replace("_", " "))
            # the demo's report says the same of the night
            (row,) = [r for r in rows if r.day.isoformat() == run.tags["dagster/partition"]]
            assert row.outcome == outcome
    # the report's failed checks include those published_weights records into the run itself:
    # live_version_age fails while nothing is live (and the default age limit holds after)
    assert latest_after[START] is None  # the first night is refused (small_data_gate)
    for row in rows:
        assert ("live_version_age" in row.failed) == (latest_after[row.day] is None), row
    # uvicorn shuts down gracefully, then re-raises the signal: -15 is a clean SIGTERM exit
    assert loop.service.process is not None and loop.service.process.returncode in (0, -15)

    # v2.8 until the first publication, then the version published the night before each day
    served = [r for r in rows if r.served is not None]
    assert len(served) >= 2, [(r.day, r.shown_by, r.failed) for r in rows]
    for row in rows:
        if latest_before[row.day] is None:
            assert row.served is None and row.shown_by == PLATFORM_VERSION
        else:
            assert row.served is not None
            assert dict(row.served.versions) == {latest_before[row.day]: 300}
            assert row.shown_by == latest_before[row.day]
    versions = [r.shown_by for r in served]
    assert len(set(versions)) >= 2, f"no reload between served days: {versions}"

    # what the service logged: impressions with the served version and policy, swaps, feedback
    logged = _logged(settings.serving_log_dir)
    impressions = [e for e in logged if e["event_type"] == "match_recommendation"]
    feedback = [e for e in logged if e["event_type"] == "offer_feedback"]
    days = [r.served for r in served if r.served is not None]
    assert len(impressions) == sum(d.impressions for d in days)
    assert len(feedback) == sum(d.feedback for d in days) > 0
    assert health["event_log"]["logged_feedback"] == len(feedback)
    by_day = {r.day.isoformat(): r.shown_by for r in served}
    for event in impressions:
        assert event["algorithm_version"] == by_day[event["timestamp"][:10]]
        assert event["policy"] in ("deterministic", "swap")
        assert 0.0 < event["propensity"] <= 1.0
    swapped = {e["request_id"] for e in impressions if e["policy"] == "swap"}
    assert len(swapped) == sum(d.swapped for d in days) > 0
    moved = [
        e
        for e in impressions
        if e["policy"] == "swap" and e["deterministic_rank"] != e["rank_position"]
    ]
    assert moved

    # nothing of a served day went to the audit log; raw_events read it from the serving log
    audit_days = Counter(
        json.loads(line)["timestamp"][:10]
        for line in events_file.read_text().splitlines()
        if '"match_recommendation"' in line
    )
    lake = lake_from_settings(settings)
    for row in served:
        assert audit_days[row.day.isoformat()] == 0
        metadata = _raw_events_metadata(loop.results[row.day])
        assert metadata["read_from_serving_log"] > 0
        assert metadata["recommendations"] == row.served.impressions  # type: ignore[union-attr]
        assert metadata["quarantined"] == 0
        frame = read_frame(lake.raw_events(row.day))
        shown = frame[frame["event_type"] == "match_recommendation"]
        assert set(shown["algorithm_version"]) == {row.shown_by}
        assert set(shown["policy"]) <= {"deterministic", "swap"}
        assert (shown["policy"] == "swap").any()
        assert (frame["event_type"] == "offer_feedback").any()
        assert pd.api.types.is_numeric_dtype(shown["propensity"])
