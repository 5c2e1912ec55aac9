"""Sensors that have nothing to do because configuration is missing say so on the tick."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    SensorDefinition,
    build_sensor_context,
)

from ltr_assets.definitions import defs
from ltr_assets.defs.sensors import (
    notify_run_failure,
    notify_run_success,
    reload_after_online_decision_sensor,
    reload_serving_sensor,
)
from tests.support.dagster_results import a_success_and_a_failure_over_an_empty_day
from tests.support.http_receiver import http_receiver
from tests.support.registry_writer import VersionWriter
from tests.support.serving import weights_for


def _tick(sensor: SensorDefinition, instance: DagsterInstance, cursor: str | None = None):
    """One evaluation as the daemon does it, with the Definitions' resources."""
    context = build_sensor_context(
        instance=instance,
        cursor=cursor,
        repository_def=defs.get_repository_def(),
        resources=defs.resources,
    )
    return sensor.evaluate_tick(context)


def test_reload_sensor_names_the_missing_serving_url(ltr_home: Path) -> None:
    instance = DagsterInstance.ephemeral()
    instance.report_runless_asset_event(
        AssetMaterialization(asset_key=AssetKey("published_weights"), partition="2026-11-02")
    )
    tick = _tick(reload_serving_sensor, instance)
    assert not tick.run_requests
    assert tick.skip_message is not None and "LTR_SERVING_URL is not set" in tick.skip_message


def test_reload_sensor_names_the_missing_reload_token(
    ltr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ltr_home unsets LTR_RELOAD_TOKEN: with a URL but no token, /reload would refuse the
    request, so the tick skips and names the variable instead of failing."""
    monkeypatch.setenv("LTR_SERVING_URL", "http://127.0.0.1:9")  # never reached
    instance = DagsterInstance.ephemeral()
    instance.report_runless_asset_event(
        AssetMaterialization(asset_key=AssetKey("published_weights"), partition="2026-11-02")
    )
    tick = _tick(reload_serving_sensor, instance)
    assert tick.skip_message is not None and "LTR_RELOAD_TOKEN is not set" in tick.skip_message


def test_reload_sensor_asks_no_reload_after_a_refusal(ltr_home: Path) -> None:
    """A refused night's record ("published": False) changed nothing serving loads: no reload
    is requested, and the tick says why (it would otherwise name the missing URL)."""
    instance = DagsterInstance.ephemeral()
    instance.report_runless_asset_event(
        AssetMaterialization(
            asset_key=AssetKey("published_weights"),
            partition="2026-11-02",
            metadata={
                "outcome": "not published: gate refused: min_samples: 3 vs 100",
                "published": False,
            },
        )  # fmt: skip
    )
    tick = _tick(reload_serving_sensor, instance)
    assert not tick.run_requests
    assert tick.skip_message is not None and "gate refused" in tick.skip_message
    assert "LTR_SERVING_URL" not in tick.skip_message


def test_notification_sensors_name_the_missing_webhook(
    ltr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ltr_home unsets NOTIFY_WEBHOOK_URL. A run of raw_events over an empty audit log, the day
    allowed to be empty, succeeds and a daily run over it fails (no data to train on): each
    sensor skips, naming the variable."""
    instance = DagsterInstance.ephemeral()
    cursors = {s.name: _tick(s, instance).cursor for s in (notify_run_success, notify_run_failure)}
    ok, failed = a_success_and_a_failure_over_an_empty_day(instance, monkeypatch)
    for sensor, run_id in ((notify_run_success, ok.run_id), (notify_run_failure, failed.run_id)):
        tick = _tick(sensor, instance, cursors[sensor.name])
        assert not tick.run_requests
        assert tick.skip_message is not None, sensor.name
        assert "NOTIFY_WEBHOOK_URL is not set" in tick.skip_message
        assert run_id[:8] in tick.skip_message


def _record(instance: DagsterInstance, partition: str, published: bool) -> None:
    outcome = "published v" if published else "not published: gate refused: ndcg_at_5"
    instance.report_runless_asset_event(
        AssetMaterialization(
            asset_key=AssetKey("published_weights"),
            partition=partition,
            metadata={"outcome": outcome, "published": published},
        )
    )


def test_a_publication_followed_by_a_refusal_before_the_next_tick_still_reloads(
    ltr_home: Path,
) -> None:
    """Ticks coalesce events: when a night publishes and the next is refused before the sensor
    ticks (a backfill, a quick re-run), the tick still asks for a reload (here it names the
    missing URL, the step before the POST); refusals alone since the last tick do not."""
    instance = DagsterInstance.ephemeral()
    _record(instance, "2026-11-02", published=True)
    first = _tick(reload_serving_sensor, instance)
    assert first.skip_message is not None and "LTR_SERVING_URL is not set" in first.skip_message

    _record(instance, "2026-11-03", published=True)
    _record(instance, "2026-11-04", published=False)
    second = _tick(reload_serving_sensor, instance, first.cursor)
    assert second.skip_message is not None and "LTR_SERVING_URL is not set" in second.skip_message

    _record(instance, "2026-11-05", published=False)
    _record(instance, "2026-11-06", published=False)
    third = _tick(reload_serving_sensor, instance, second.cursor)
    assert third.skip_message is not None and "published nothing" in third.skip_message


def test_a_candidate_the_reloaded_service_refused_is_told_not_reported_as_reloaded(
    ltr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/reload answers 200 with the candidate refused (gated for another scorer, say): the
    tick says so and the operator is notified, as for a refused live version."""
    reply = {
        "version": "20261101_000000",
        "candidate_state": "refused",
        "candidate_version": "20261102_000000",
        "candidate_error": "gated for the model scorer, this replica runs weights",
    }
    VersionWriter(ltr_home / "registry").publish(weights_for(1), "model", {}, "2026-11-01")
    instance = DagsterInstance.ephemeral()
    instance.report_runless_asset_event(
        AssetMaterialization(asset_key=AssetKey("online_comparison"), partition="2026-11-03")
    )
    with http_receiver(reply=reply) as serving, http_receiver() as webhook:
        monkeypatch.setenv("LTR_SERVING_URL", serving.url)
        monkeypatch.setenv("LTR_RELOAD_TOKEN", "t" * 20)
        monkeypatch.setenv("NOTIFY_WEBHOOK_URL", webhook.url)
        tick = _tick(reload_after_online_decision_sensor, instance)
    assert len(serving.messages) == 1
    assert tick.skip_message is not None and "refused the candidate" in tick.skip_message
    assert "gated for the model scorer" in tick.skip_message
    assert [m["text"][:9] for m in webhook.messages] == [":warning:"]
    assert "20261102_000000" in webhook.messages[0]["text"]


def test_no_reload_is_asked_after_an_online_decision_while_nothing_is_published(
    ltr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """online_comparison runs every night, also before the first publication: asking serving
    to reload then would be refused (no latest) and notified as a refused artifact."""
    instance = DagsterInstance.ephemeral()
    instance.report_runless_asset_event(
        AssetMaterialization(asset_key=AssetKey("online_comparison"), partition="2026-11-01")
    )
    with http_receiver(status=409) as serving, http_receiver() as webhook:
        monkeypatch.setenv("LTR_SERVING_URL", serving.url)
        monkeypatch.setenv("LTR_RELOAD_TOKEN", "t" * 20)
        monkeypatch.setenv("NOTIFY_WEBHOOK_URL", webhook.url)
        tick = _tick(reload_after_online_decision_sensor, instance)
    assert serving.messages == [] and webhook.messages == []
    assert tick.skip_message is not None and "nothing is published yet" in tick.skip_message
