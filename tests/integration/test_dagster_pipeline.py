"""Real Dagster runs of ltr_daily_job through the Definitions object the UI loads."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    MarkdownMetadataValue,
    build_schedule_context,
)

from ltr_assets.definitions import build_definitions, defs
from ltr_assets.defs.schedules import CATCH_UP_DAYS, ltr_daily_schedule
from ltr_assets.registry.local import LocalRegistry
from ltr_core.settings import Settings
from tests.conftest import write_simulated_events
from tests.support.dagster_results import (
    check_metadata,
    check_results,
    materialization_metadata,
    run_materialization_metadata,
)

GATE = {"ndcg_at_5", "fairness_gap", "latency_p95", "min_samples", "click_signal", "no_regression"}


def _materialized(result) -> set[str]:
    return {
        e.event_specific_data.materialization.asset_key.to_user_string()
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    }


def _count_environment_reads(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Every Settings.from_env() call from now on, recorded."""
    reads: list[Settings] = []
    read = Settings.from_env.__func__  # type: ignore[attr-defined]  # the classmethod's function

    def counted(cls: type[Settings], env: Mapping[str, str] | None = None) -> Settings:
        reads.append(read(cls, env))
        return reads[-1]

    monkeypatch.setattr(Settings, "from_env", classmethod(counted))
    return reads


def test_definitions_hold_every_asset_check_job_schedule_and_sensor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("S3_BUCKET", raising=False)
    repo = build_definitions().get_repository_def()
    assets = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    assert assets == {
        "raw_events",
        "online_comparison",
        "feature_matrix",
        "ltr_model",
        "published_weights",
    }
    checks = {(k.asset_key.to_user_string(), k.name) for k in repo.asset_graph.asset_check_keys}
    assert checks == {("ltr_model", name) for name in GATE} | {
        ("raw_events", "quarantine_ratio"),
        ("raw_events", "source_fallback"),
        ("raw_events", "duplicate_conflicts"),
        ("feature_matrix", "feedback_present"),
        ("ltr_model", "fairness_coverage"),
        ("ltr_model", "scorer_fidelity"),
        ("published_weights", "retention"),
        ("published_weights", "live_version_age"),
        ("online_comparison", "online_decision"),
    }
    # S3 configured when the location loads: published_weights has its S3 check too.
    monkeypatch.setenv("S3_BUCKET", "ltr-models")
    with_s3 = build_definitions().get_repository_def().asset_graph.asset_check_keys
    assert {(k.asset_key.to_user_string(), k.name) for k in with_s3} - checks == {
        ("published_weights", "s3_published")
    }
    for key in GATE:
        spec = next(s for s in defs.resolve_assets_def("ltr_model").check_specs if s.name == key)
        assert spec.blocking
    assert {"ltr_daily_job", "ltr_label_refresh_job", "ltr_rollback_job"} <= set(repo.job_names)
    assert {s.name for s in repo.schedule_defs} == {"ltr_daily_schedule"}
    assert ltr_daily_schedule.cron_schedule == "15 2 * * *"
    assert {s.name for s in repo.sensor_defs} == {
        "reload_serving_sensor",
        "reload_after_rollback_sensor",
        "reload_after_online_decision_sensor",
        "notify_run_success",
        "notify_run_failure",
        "notify_run_canceled",
        "tag_published_runs",
        "tag_failed_runs",
        "tag_canceled_runs",
        "registry_versions_sensor",
        "ltr_label_refresh_sensor",
        "ltr_automation_sensor",
    }
    job = defs.resolve_job_def("ltr_daily_job")
    assert job.tags["ltr/pipeline"] == "daily"


def test_the_scheduler_runs_yesterday_and_catches_up_missed_nights_once() -> None:
    """Through Dagster's own scheduler, as the daemon ticks at 02:15: ltr_daily_job for D, and
    before it the nights of the CATCH_UP_DAYS before D that have no publication record, no run
    of ltr_daily_job (queued by a backfill, say) and no backfill asking for them (Dagster's
    scheduler itself evaluates only the latest missed tick). Nothing else: the label refresh of
    D-1 is its sensor's (a refresh asked for by this schedule's `RunRequest(job_name=...)` had
    run as a whole ltr_daily_job of D-1, the scheduler running every request of a schedule as
    that schedule's job)."""
    import dagster._daemon  # noqa: F401  (imported first: the scheduler's imports are circular)
    from dagster import DagsterRunStatus
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._core.test_utils import create_run_for_test, instance_for_test
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._scheduler.scheduler import launch_scheduled_runs

    queued = {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}
    target = ModuleTarget(
        module_name="ltr_assets.definitions",
        attribute=None,
        working_directory=str(Path(__file__).resolve().parents[2]),
        location_name="ltr_assets.definitions",
    )
    log = logging.getLogger("test_scheduler")
    now = datetime.now(UTC)
    tick = datetime.combine(now.date() + timedelta(days=1), time(2, 15), UTC)
    day = tick.date() - timedelta(days=1)

    def nights(*offsets: int) -> list[tuple[str, str]]:
        return [("ltr_daily_job", (day + timedelta(days=n)).isoformat()) for n in offsets]

    with (
        instance_for_test(overrides={"run_coordinator": queued}) as instance,
        WorkspaceProcessContext(instance, target) as workspace,
    ):
        times: dict[Any, Any] = {}

        def runs_until(end: datetime) -> list[tuple[str, str]]:
            before = {run.run_id for run in instance.get_runs()}
            list(launch_scheduled_runs(workspace, log, end_datetime_utc=end, iteration_times=times))
            made = [run for run in instance.get_runs() if run.run_id not in before]
            return [(r.job_name, str(r.tags.get("dagster/partition"))) for r in reversed(made)]

        assert runs_until(now) == []
        # D-3 has its publication record (a night run by hand): not run again
        record = AssetMaterialization("published_weights", partition=nights(-3)[0][1])
        instance.report_runless_asset_event(record)
        assert runs_until(tick + timedelta(seconds=30)) == nights(-2, -1, 0)
        # the daemon down over three ticks, the operator having queued one night and asked for
        # a backfill of the next (no run of it yet): the third night, then the fourth's
        night_1, night_2 = nights(1, 2)
        create_run_for_test(
            instance,
            job_name="ltr_daily_job",
            status=DagsterRunStatus.NOT_STARTED,  # made, not yet queued or started
            tags={"dagster/partition": night_1[1]},
        )
        location = workspace.create_request_context().get_code_location("ltr_assets.definitions")
        (repository,) = location.get_repositories().values()
        partition_set = repository.get_partition_set("ltr_daily_job_partition_set")
        instance.add_backfill(
            PartitionBackfill(
                backfill_id="backfill-of-night-2",
                partition_set_origin=partition_set.get_remote_origin(),
                status=BulkActionStatus.REQUESTED,
                partition_names=[night_2[1]],
                from_failure=False,
                reexecution_steps=None,
                tags={},
                backfill_timestamp=now.timestamp(),
            )
        )
        assert runs_until(tick + timedelta(days=4, seconds=30)) == nights(3, 4)
        assert runs_until(tick + timedelta(days=4, seconds=60)) == []


def test_the_schedule_asks_for_its_own_day_last() -> None:
    # an old tick, and tomorrow's (the UI's "Test schedule"): each asks for its own day, after
    # the nights before it that have no publication record (none has, in a new instance)
    tomorrow = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), time(2, 15), UTC)
    from dagster._core.test_utils import instance_for_test

    for when in (datetime(2026, 11, 26, 2, 15, tzinfo=UTC), tomorrow):
        # both closed: an open schedule context keeps the instance's storage current after
        # the instance is gone, and later code locations in this process then fail on it
        with (
            instance_for_test() as instance,
            build_schedule_context(
                instance=instance,
                scheduled_execution_time=when,
                repository_def=defs.get_repository_def(),
            ) as context,
        ):
            requests = list(ltr_daily_schedule.evaluate_tick(context).run_requests or [])
        day = when.date() - timedelta(days=1)
        expected = [(day - timedelta(days=n)).isoformat() for n in range(CATCH_UP_DAYS, -1, -1)]
        assert [r.partition_key for r in requests] == expected
        assert {r.job_name for r in requests} == {None}  # the schedule's job, ltr_daily_job


def test_the_catch_up_leaves_nights_an_asset_backfill_or_an_asset_launch_has() -> None:
    """Launched from the asset graph (an asset backfill, an asset page), a night runs as
    `__ASSET_JOB`: a night such a run publishes, or an unfinished asset backfill asks for, is
    not caught up (it ran twice, trained and published twice)."""
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._core.test_utils import create_run_for_test, instance_for_test

    when = datetime(2026, 11, 26, 2, 15, tzinfo=UTC)  # its own day 11-25; nights 11-22..11-24
    repository = defs.get_repository_def()
    night_assets = ("raw_events", "online_comparison", "feature_matrix", "ltr_model")
    with instance_for_test() as instance:
        create_run_for_test(  # ingestion alone publishes nothing: not the night's run
            instance,
            job_name="__ASSET_JOB",
            asset_selection={AssetKey("raw_events")},
            tags={"dagster/partition": "2026-11-22"},
        )
        create_run_for_test(
            instance,
            job_name="__ASSET_JOB",
            asset_selection={AssetKey("raw_events"), AssetKey("published_weights")},
            tags={"dagster/partition": "2026-11-23"},
        )
        backfill = PartitionBackfill.from_asset_partitions(
            backfill_id="asset-backfill",
            asset_graph=repository.asset_graph,
            partition_names=["2026-11-24"],
            # the night's assets, as the UI's backfill of the graph has them
            asset_selection=[AssetKey(a) for a in (*night_assets, "published_weights")],
            backfill_timestamp=when.timestamp(),
            tags={},
            dynamic_partitions_store=instance,
            all_partitions=False,
            title=None,
            description=None,
            run_config=None,
        )
        assert backfill.status == BulkActionStatus.REQUESTED
        assert backfill.asset_backfill_data is not None
        target = backfill.asset_backfill_data.target_subset.partitions_subsets_by_asset_key
        # what it publishes: its night, and maybe neighbours Dagster reaches through the
        # matrix's next-day input and the training window, never the ingestion-only night
        reached = set(target[AssetKey("published_weights")].get_partition_keys())
        assert "2026-11-24" in reached and "2026-11-22" not in reached, reached
        instance.add_backfill(backfill)
        with build_schedule_context(
            instance=instance, scheduled_execution_time=when, repository_def=repository
        ) as context:
            requests = list(ltr_daily_schedule.evaluate_tick(context).run_requests or [])
    assert [r.partition_key for r in requests] == ["2026-11-22", "2026-11-25"]


def test_daily_runs_publish_and_a_failing_gate_blocks_publication(
    ltr_home: Path, monkeypatch: pytest.MonkeyPatch, small_data_gate: None
) -> None:
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=3)
    job = defs.resolve_job_def("ltr_daily_job")
    instance = DagsterInstance.ephemeral()
    registry = LocalRegistry(ltr_home / "registry", ltr_home / "models" / "ltr_weights.json")

    # Day 1 alone: too few test groups, so the samples gate fails and nothing is published.
    first = job.execute_in_process(
        partition_key="2026-11-01", instance=instance, raise_on_error=False
    )
    checks = check_results(first)
    assert set(checks) == GATE | {
        "quarantine_ratio",
        "source_fallback",
        "duplicate_conflicts",
        "feedback_present",
        "online_decision",
        "fairness_coverage",
        "scorer_fidelity",
    }
    assert checks["min_samples"] is False
    assert first.success  # a refusal is the gate's decision, not a failed run
    refusal = run_materialization_metadata(instance, first.run_id, "published_weights")
    assert refusal["outcome"].startswith("not published: gate refused: min_samples: ")
    assert registry.latest_version() is None

    # Day 2: a two-day window passes every check and is published. The run reads the
    # environment once (the resource's setup), and all four assets share those settings.
    reads = _count_environment_reads(monkeypatch)
    second = job.execute_in_process(partition_key="2026-11-02", instance=instance)
    assert second.success
    assert len(reads) == 1
    second_checks = check_results(second)
    # The simulator leaves orientation mostly unknown, so the WARN coverage check says so.
    assert second_checks.pop("fairness_coverage") is False
    assert all(second_checks.values()), second_checks
    # The fairness check carries its per-value table, rendered by the UI as Markdown.
    table = check_metadata(second, "fairness_gap")["per_value_table"]
    assert isinstance(table, MarkdownMetadataValue)
    assert table.md_str is not None
    assert "| gender=F |" in table.md_str and "exposure ratio [95% CI]" in table.md_str
    assert _materialized(second) == {
        "raw_events",
        "online_comparison",
        "feature_matrix",
        "ltr_model",
        "published_weights",
    }
    version = registry.latest_version()
    assert version is not None
    folder = ltr_home / "registry" / "versions" / version
    assert {p.name for p in folder.iterdir()} == {
        "ltr_weights.json",
        "model.txt",
        "metadata.json",
        "model_card.md",
    }
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["partition"] == "2026-11-02" and metadata["gate_passed"] is True
    assert metadata["training_window"]["present"] == ["2026-11-01", "2026-11-02"]
    live = json.loads((ltr_home / "models" / "ltr_weights.json").read_text())
    assert abs(sum(live.values()) - 1.0) < 1e-12 and min(live.values()) >= 0
    assert registry.verify(version) == []
    record = instance.get_latest_materialization_event(AssetKey("published_weights"))
    assert materialization_metadata(record)["version"] == version
    # The examination curve per position, in position order when listed in text order (the UI)
    model = run_materialization_metadata(instance, second.run_id, "ltr_model")
    positions = list(model["propensity"])
    assert len(positions) >= 10 and sorted(positions) == positions
    assert (
        positions[:2] == ["position 01", "position 02"]
        and model["propensity"]["position 01"][0] == 1.0
    )

    # Day 3 with an impossible nDCG threshold: the gate blocks, latest stays where it was.
    monkeypatch.setenv("LTR_NDCG_MIN", "0.99")
    third = job.execute_in_process(
        partition_key="2026-11-03", instance=instance, raise_on_error=False
    )
    assert third.success
    assert check_results(third)["ndcg_at_5"] is False
    refusal = run_materialization_metadata(instance, third.run_id, "published_weights")
    assert refusal["published"] is False and refusal["outcome"].startswith(
        "not published: gate refused: ndcg_at_5: "
    )
    assert refusal["live_version"] == version  # what is live, named on the refusal too
    assert registry.latest_version() == version
    assert registry.versions() == [version]
    assert json.loads((ltr_home / "models" / "ltr_weights.json").read_text()) == live


def test_label_refresh_adds_the_feedback_that_came_after_midnight(ltr_home: Path) -> None:
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=2)
    instance = DagsterInstance.ephemeral()
    daily = defs.resolve_job_def("ltr_daily_job")
    refresh = defs.resolve_job_def("ltr_label_refresh_job")
    key = AssetKey("feature_matrix")

    def matrix_metadata() -> dict[str, Any]:
        event = instance.get_latest_materialization_event(key)
        return materialization_metadata(event)

    daily.execute_in_process(partition_key="2026-11-01", instance=instance, raise_on_error=False)
    nightly = matrix_metadata()
    assert nightly["next_day_present"] is False and nightly["late_feedback_matched"] == 0

    daily.execute_in_process(partition_key="2026-11-02", instance=instance, raise_on_error=False)
    result = refresh.execute_in_process(partition_key="2026-11-01", instance=instance)
    assert result.success
    refreshed = matrix_metadata()
    assert refreshed["next_day_present"] is True
    assert refreshed["late_feedback_matched"] > 0
    assert refreshed["feedback_matched"] == (
        nightly["feedback_matched"] + refreshed["late_feedback_matched"]
    )


def test_conflicting_duplicates_warn_and_are_counted_apart(ltr_home: Path) -> None:
    log = ltr_home / "events" / "audit.jsonl"
    write_simulated_events(log, days=1, envelope="flat")
    events = [json.loads(line) for line in log.read_text().splitlines()]
    copies = [{**e, "score": 0.123} for e in events[:3] if e.get("score") is not None]
    exact = events[5]
    # a retry's copy (a later time, nothing else) is a duplicate; another position, a conflict
    # shown differently
    later = datetime.fromisoformat(events[6]["timestamp"]) + timedelta(seconds=1)
    retried = {**events[6], "timestamp": later.isoformat()}
    moved = next(e for e in events[7:] if e.get("rank_position") is not None)
    copies.append({**moved, "rank_position": moved["rank_position"] + 1})
    with log.open("a") as handle:
        handle.writelines(json.dumps(e) + "\n" for e in [*copies, exact, retried])
    job = defs.resolve_job_def("ltr_daily_job")
    instance = DagsterInstance.ephemeral()
    result = job.execute_in_process(
        partition_key="2026-11-01", instance=instance, asset_selection=[AssetKey("raw_events")]
    )
    assert result.success
    assert check_results(result)["duplicate_conflicts"] is False  # a WARN: the run goes on
    event = instance.get_latest_materialization_event(AssetKey("raw_events"))
    meta = materialization_metadata(event)
    assert (meta["duplicates"], meta["duplicate_conflicts"]) == (2, len(copies))
    assert meta["conflicting_event_ids"] == sorted(e["event_id"] for e in copies)
    assert meta["conflicts_shown_differently"] == 1
    assert meta["shown_differently_event_ids"] == [moved["event_id"]]
    check = check_metadata(result, "duplicate_conflicts")
    assert (check["conflicts_shown_differently"].value, check["duplicates"].value) == (1, 2)
