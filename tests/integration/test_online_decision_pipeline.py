"""online_comparison through the real Definitions: its check promotes (latest moves, and the
reload sensor then reloads a live app), retires (candidate cleared, latest kept, the night's
publication not blocked) or keeps collecting (nothing moves); the daily job orders it before
published_weights."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    build_sensor_context,
)

from ltr_assets.definitions import defs
from ltr_assets.defs.online import ONLINE_CHECK
from ltr_assets.defs.sensors import reload_after_online_decision_sensor
from ltr_assets.registry.local import LocalRegistry
from ltr_core.settings import Settings
from tests.support.serving import Publisher, RunningServer, weights_for

DAY = date(2026, 11, 26)  # the day after the candidate's partition (tests.support.serving)


def _write_day(
    settings: Settings,
    pair: tuple[str, str],
    wins: int,
    losses: int,
    day: date = DAY,
    late: tuple[str, ...] = (),
) -> None:
    """raw_events[day] with interleaved requests of (live, candidate): `wins` clicked on the
    candidate's pick, `losses` on live's; and a click after midnight on the candidate's pick of
    each request of the day before named in `late`."""
    live, candidate = pair
    rows: list[dict[str, Any]] = [
        {
            "event_type": "offer_feedback",
            "request_id": rid,
            "lawyer_id": "b",
            "algorithm_version": None,
            "action": "click",
            "policy": None,
            "team": None,
        }
        for rid in late
    ]
    for i in range(wins + losses):
        rid = f"r-{day}-{i}"
        for lawyer, team in (("a", "live"), ("b", "candidate")):
            rows.append(
                {
                    "event_type": "match_recommendation",
                    "request_id": rid,
                    "lawyer_id": lawyer,
                    "algorithm_version": live if team == "live" else candidate,
                    "action": None,
                    "policy": "interleaved",
                    "team": team,
                }
            )
        clicked = "b" if i < wins else "a"
        rows.append(
            {
                "event_type": "offer_feedback",
                "request_id": rid,
                "lawyer_id": clicked,
                "algorithm_version": None,
                "action": "click",
                "policy": None,
                "team": None,
            }
        )
    path = Path(settings.data_dir) / "raw_events" / f"{day}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)


def _run(instance: DagsterInstance, day: date = DAY) -> Any:
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        partition_key=day.isoformat(),
        instance=instance,
        asset_selection=[AssetKey("online_comparison")],
        raise_on_error=False,
    )


def _check(result: Any) -> Any:
    (evaluation,) = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name == ONLINE_CHECK
    ]
    return evaluation


def _metadata(result: Any) -> dict[str, Any]:
    (materialization,) = result.asset_materializations_for_node("online_comparison")
    return {k: v.value for k, v in materialization.metadata.items()}


@pytest.fixture
def pair(publisher: Publisher) -> tuple[str, str]:
    live = publisher.publish(weights_for(1))
    candidate = publisher.publish(weights_for(2), candidate=True)
    return live, candidate


def test_the_daily_job_decides_before_it_publishes() -> None:
    graph = defs.resolve_asset_graph()
    assert AssetKey("online_comparison") in graph.get(AssetKey("published_weights")).parent_keys
    job = defs.resolve_job_def("ltr_daily_job")
    assert "online_comparison" in {node.name for node in job.graph.node_defs}


def test_a_promotion_moves_latest_and_the_sensor_reloads_serving(
    pair: tuple[str, str],
    serving_env: Callable[..., Settings],
    start_server: Callable[[], RunningServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live, candidate = pair
    settings = serving_env()
    server = start_server()
    monkeypatch.setenv("LTR_SERVING_URL", server.url)
    with server.client() as client:
        health = client.get("/ltr/health").json()
    assert health["version"] == live and health["candidate"]["version"] == candidate
    _write_day(settings, pair, wins=150, losses=90)
    instance = DagsterInstance.ephemeral()
    result = _run(instance)
    assert result.success
    check = _check(result)
    assert check.passed and "promoted" in check.description
    meta = _metadata(result)
    assert (meta["decision"], meta["candidate"], meta["live"]) == ("promote", candidate, live)
    assert (meta["requests"], meta["wins"], meta["losses"], meta["days_collecting"]) == (
        240,
        150,
        90,
        1,
    )
    registry = LocalRegistry(settings.registry_dir)
    assert registry.latest_version() == candidate and registry.candidate() is None
    assert (registry.pointer() or {})["promoted"]["evidence"]["wins"] == 150
    # the poller is off: only the sensor tells the service
    with server.client() as client:
        assert client.get("/ltr/health").json()["version"] == live
    context = build_sensor_context(
        instance=instance, repository_def=defs.get_repository_def(), resources=defs.resources
    )
    outcome = reload_after_online_decision_sensor.evaluate_tick(context)
    assert "serving reloaded" in str(outcome.skip_message)
    with server.client() as client:
        health = client.get("/ltr/health").json()
    assert health["version"] == candidate and health["candidate"]["version"] is None


def test_a_retirement_clears_the_candidate_warns_and_does_not_fail_the_run(
    pair: tuple[str, str], serving_env: Callable[..., Settings]
) -> None:
    live, candidate = pair
    settings = serving_env()
    _write_day(settings, pair, wins=40, losses=90)
    result = _run(DagsterInstance.ephemeral())
    assert result.success  # a retirement is a decision, not a crash
    check = _check(result)
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert "retired" in check.description
    registry = LocalRegistry(settings.registry_dir)
    assert registry.latest_version() == live and registry.candidate() is None
    assert registry.history()[-1]["action"] == "retired"
    assert registry.history()[-1]["evidence"]["candidate"] == candidate


def test_keep_collecting_changes_nothing(
    pair: tuple[str, str], serving_env: Callable[..., Settings]
) -> None:
    live, candidate = pair
    settings = serving_env()
    _write_day(settings, pair, wins=30, losses=25)  # too few requests to decide
    result = _run(DagsterInstance.ephemeral())
    assert result.success and _check(result).passed
    assert _metadata(result)["decision"] == "collect"
    registry = LocalRegistry(settings.registry_dir)
    assert registry.latest_version() == live and registry.candidate_version() == candidate
    assert registry.history() == []


def test_the_next_night_says_how_the_late_clicks_changed_the_day_before(
    pair: tuple[str, str], serving_env: Callable[..., Settings]
) -> None:
    """Clicks after midnight on DAY's lists are in raw_events[DAY+1]: DAY+1's comparison counts
    DAY again, and its metadata says by how much (else the accumulated counts grow by more than
    the day's own, unexplained)."""
    settings = serving_env()
    _write_day(settings, pair, wins=10, losses=10)
    instance = DagsterInstance.ephemeral()
    first = _metadata(_run(instance))
    assert (first["wins"], first["losses"]) == (10, 10)
    assert "previous_day_recount" not in first  # the candidate's first day
    next_day = DAY + timedelta(days=1)
    # 3 of DAY's lists that live won get a later click on the candidate's pick too: ties now
    late = tuple(f"r-{DAY}-{i}" for i in (10, 11, 12))
    _write_day(settings, pair, wins=4, losses=2, day=next_day, late=late)
    second = _metadata(_run(instance, next_day))
    assert second["previous_day_recount"] == (
        f"{DAY}: wins / losses / ties 10 / 10 / 0 → 10 / 7 / 3 (clicks after its midnight)"
    )
    assert (second["wins"], second["losses"], second["ties"]) == (14, 9, 3)
