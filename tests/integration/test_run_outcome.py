"""The ltr/outcome and ltr/reason tags and the notifications tell a gate refusal from a crash,
on real Dagster runs of ltr_daily_job evaluated by the run-status sensors against the instance.
A refusal is a successful run whose published_weights records "not published: gate refused"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    Failure,
    MaterializeResult,
    RetryPolicy,
    asset,
    asset_check,
    build_run_status_sensor_context,
    define_asset_job,
    materialize,
)
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.errors import DagsterExecutionInterruptedError

from ltr_assets.definitions import defs
from ltr_assets.defs.sensors import (
    OUTCOME_TAG,
    REASON_TAG,
    failing_blocking_checks,
    notify_run_canceled,
    notify_run_failure,
    notify_run_success,
    run_outcome,
    tag_canceled_runs,
    tag_failed_runs,
    tag_published_runs,
)
from ltr_core.settings import Settings
from tests.conftest import write_simulated_events
from tests.support.dagster_results import run_by_id, run_materialization_metadata
from tests.support.http_receiver import http_receiver


def _context(instance: DagsterInstance, result: Any, sensor: str) -> Any:
    kind = "PIPELINE_SUCCESS" if result.success else "PIPELINE_FAILURE"
    event = next(e for e in result.all_events if e.event_type_value == kind)
    context = build_run_status_sensor_context(
        sensor_name=sensor,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=run_by_id(instance, result.run_id),
        resources=defs.resources,
    )
    return context if result.success else context.for_run_failure()


def _tag(instance: DagsterInstance, result: Any) -> tuple[str | None, str]:
    """(ltr/outcome, ltr/reason) once the tagging sensor has evaluated the run; twice, as when
    both the demo's launcher and the daemon's sensor tag a run: the tags stay the same."""
    tags = []
    for _ in range(2):
        if result.success:
            tag_published_runs(_context(instance, result, tag_published_runs.name))
        else:
            tag_failed_runs(_context(instance, result, tag_failed_runs.name))
        run = run_by_id(instance, result.run_id)
        tags.append((run.tags.get(OUTCOME_TAG), run.tags.get(REASON_TAG, "")))
    assert tags[0] == tags[1]
    return tags[0]


def _metadata(instance: DagsterInstance, result: Any, asset: str) -> dict[str, Any]:
    return run_materialization_metadata(instance, result.run_id, asset)


def _model_metadata(instance: DagsterInstance, result: Any) -> dict[str, Any]:
    """ltr_model's materialization metadata in the run."""
    return _metadata(instance, result, "ltr_model")


def test_refused_published_and_crashed_runs_are_tagged_and_notified_apart(
    ltr_home: Path, monkeypatch: pytest.MonkeyPatch, small_data_gate: None
) -> None:
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=3)
    job = defs.resolve_job_def("ltr_daily_job")
    instance = DagsterInstance.ephemeral()

    # Day 1 alone fails min_samples: a gate refusal, not a crash, and not a failed run.
    refused = job.execute_in_process(
        partition_key="2026-11-01", instance=instance, raise_on_error=False
    )
    assert refused.success
    outcome, reason = _tag(instance, refused)
    assert outcome == "gate_refused" and reason.startswith("gate refused: min_samples: ")
    record = _metadata(instance, refused, "published_weights")
    assert next(iter(record)) == "outcome"
    assert record["outcome"].startswith("not published: gate refused: min_samples: ")
    assert record["published"] is False and "version" not in record
    assert record["live_version"] == ""  # nothing was ever published
    meta = _model_metadata(instance, refused)
    assert next(iter(meta)) == "gate"  # the first entry the UI shows
    assert meta["gate"].startswith("FAILED: min_samples: ")
    floats = [v for v in meta.values() if isinstance(v, float)]
    assert floats and all(v == round(v, 4) for v in floats)

    # Day 2 passes and publishes.
    published = job.execute_in_process(partition_key="2026-11-02", instance=instance)
    assert published.success
    outcome, reason = _tag(instance, published)
    record = _metadata(instance, published, "published_weights")
    version = record["version"]
    assert outcome == "published" and reason == f"published {version} (live)"
    assert record["outcome"] == f"published {version} (live)" and record["published"] is True
    assert record["live_version"] == version  # the first version goes live
    assert _model_metadata(instance, published)["gate"] == "PASSED"

    # Day 3 with day 2's feature matrix corrupted in the lake: training cannot read its
    # window, the ltr_model step raises, and that is a crash.
    (ltr_home / "lake" / "feature_matrix" / "2026-11-02.parquet").write_bytes(b"not parquet")
    crashed = job.execute_in_process(
        partition_key="2026-11-03", instance=instance, raise_on_error=False
    )
    assert not crashed.success
    outcome, reason = _tag(instance, crashed)
    assert outcome == "crashed" and reason.startswith("crashed: ltr_model: ")
    error_class = reason.split(": ")[2]  # the exception's class, without its module path
    assert error_class.isidentifier(), reason
    assert "\n" not in reason and len(reason) <= 200

    # A re-execution starts with its parent's tags: one that succeeds without publishing (a
    # step re-run alone) must not keep reading "crashed".
    rerun = defs.resolve_job_def("ltr_label_refresh_job").execute_in_process(
        partition_key="2026-11-01",
        instance=instance,
        tags={OUTCOME_TAG: outcome, REASON_TAG: reason},
    )
    assert rerun.success
    assert _tag(instance, rerun) == (
        "succeeded",
        "succeeded without publishing (the tags its parent run had do not apply)",
    )

    with http_receiver() as receiver:
        monkeypatch.setenv("NOTIFY_WEBHOOK_URL", receiver.url)
        notify_run_success(_context(instance, refused, notify_run_success.name))
        notify_run_failure(_context(instance, crashed, notify_run_failure.name))
        notify_run_success(_context(instance, published, notify_run_success.name))
    refusal, crash, success = (m["text"] for m in receiver.messages)
    assert success.startswith(":white_check_mark: ltr_daily_job [2026-11-02] succeeded")
    assert "ltr_daily_job [2026-11-01]" in refusal and "gate refused: min_samples: " in refusal
    assert "Nothing was published" in refusal and "stays live" not in refusal
    assert "ltr_daily_job [2026-11-03]" in crash and " crashed: ltr_model: " in crash
    assert "gate refused" not in crash


def test_a_window_without_any_click_is_refused_on_min_samples_not_crashed(
    ltr_home: Path, small_data_gate: None
) -> None:
    """A feedback outage (or a new deployment) leaves lists and no click: nothing to learn the
    curve or relevance from. The night is a refusal naming it, not a crash; once feedback is
    back the same partition trains and the refusal record is gone."""
    events = ltr_home / "events" / "audit.jsonl"
    write_simulated_events(events, days=1)
    lines = events.read_text().splitlines(keepends=True)
    events.write_text("".join(line for line in lines if '"offer_feedback"' not in line))
    job = defs.resolve_job_def("ltr_daily_job")
    instance = DagsterInstance.ephemeral()

    refused = job.execute_in_process(
        partition_key="2026-11-01", instance=instance, raise_on_error=False
    )
    assert refused.success
    outcome, reason = _tag(instance, refused)
    assert (outcome, reason) == ("gate_refused", "gate refused: min_samples: 0 vs 100")
    meta = _model_metadata(instance, refused)
    assert meta["gate"] == "FAILED: min_samples: 0 vs 100" and meta["trained"] is False
    assert "hold no click or other positive feedback" in meta["reason"]
    record = _metadata(instance, refused, "published_weights")
    assert record["outcome"] == "not published: gate refused: min_samples: 0 vs 100"
    refusal = Settings.from_env().data_dir / "candidates" / "2026-11-01" / "refused.json"
    assert "no click" in json.loads(refusal.read_text())["reason"]
    checks = {e.asset_check_key.name: e for e in refused.get_asset_check_evaluations()}
    assert not checks["min_samples"].passed
    assert (checks["ndcg_at_5"].description or "").startswith("not evaluated: nothing was trained")
    # the day itself says why: lists shown, no feedback at all
    assert not checks["feedback_present"].passed
    assert (checks["feedback_present"].description or "").startswith(
        "no feedback at all on this day"
    )

    # feedback arrives late (the label refresh's case): the day trains
    write_simulated_events(events, days=1)
    trained = job.execute_in_process(
        partition_key="2026-11-01", instance=instance, raise_on_error=False
    )
    assert trained.success
    assert _model_metadata(instance, trained).get("trained", True) is True
    feedback = next(
        e
        for e in trained.get_asset_check_evaluations()
        if e.asset_check_key.name == "feedback_present"
    )
    assert feedback.passed
    assert not refusal.exists() and (refusal.parent / "candidate.json").exists()


def test_a_failing_check_without_figures_is_named_by_its_description() -> None:
    """online_decision fails with ERROR when its decision cannot be applied, with no value or
    threshold: the run's reason line carries its description, not "None vs None"."""

    @asset
    def comparison() -> None:
        return None

    @asset_check(asset=comparison, blocking=True)
    def online_decision() -> AssetCheckResult:
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.ERROR,
            description="the decision (promote) could not be applied: unsigned\npromote by hand",
            metadata={"decision": "promote"},
        )

    @asset
    def model() -> None:  # fails in the same run: its error must not be hidden by the check's
        raise DayMissing("reading the day failed after 5 attempts") from ConnectionRefusedError(
            111, "Connection refused"
        )

    instance = DagsterInstance.ephemeral()
    result = materialize(
        [comparison, online_decision, model], instance=instance, raise_on_error=False
    )
    assert failing_blocking_checks(instance, result.run_id) == [
        "online_decision: the decision (promote) could not be applied: unsigned"
    ]
    # the run failed: a crash someone has to act on, not a refusal (whose runbook says the run
    # succeeds and nothing needs doing), and the notification says so
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    outcome = run_outcome(instance, run)
    assert (outcome.outcome, outcome.reason) == (
        "crashed",
        "crashed: online_decision: the decision (promote) could not be applied: unsigned",
    )
    # the step's own exception, by its class without the module path, not the one it was
    # raised from
    assert outcome.detail.endswith("; model: DayMissing: reading the day failed after 5 attempts")


class DayMissing(Exception):
    """An exception of the test's own module (its name comes with the module path)."""


def test_a_crash_without_a_message_is_named_by_its_class() -> None:
    @asset
    def model() -> None:
        raise DayMissing

    instance = DagsterInstance.ephemeral()
    result = materialize([model], instance=instance, raise_on_error=False)
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    assert run_outcome(instance, run).reason == "crashed: model: DayMissing"


def test_a_crash_is_named_by_the_error_a_failure_was_raised_from() -> None:
    """raw_events raises Failure(description=f"raw_events[D]: {exc}") from the ingest's error:
    the reason names that error's class (the runbook's "EmptyDay: no record of D …"), and a
    message that starts on its second line is read from there."""

    @asset
    def raw() -> None:
        error = DayMissing("no record of 2026-11-02 from the audit log")
        raise Failure(description=f"raw[2026-11-02]: {error}") from error

    @asset
    def model() -> None:
        raise ValueError("\nthe window has no list")

    instance = DagsterInstance.ephemeral()
    result = materialize([raw, model], instance=instance, raise_on_error=False)
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    outcome = run_outcome(instance, run)
    assert outcome.reason == (
        "crashed: model: ValueError: the window has no list"
        if outcome.detail.startswith("model")
        else "crashed: raw: DayMissing: no record of 2026-11-02 from the audit log"
    )
    assert "raw: DayMissing: no record of 2026-11-02 from the audit log" in outcome.detail
    assert "model: ValueError: the window has no list" in outcome.detail


def test_a_step_that_ran_out_of_retries_is_named_by_its_last_error() -> None:
    """A retry policy's final failure is "Exceeded max_retries of 1" around the step's own
    error; the reason names that error."""

    @asset(retry_policy=RetryPolicy(max_retries=1))
    def raw() -> None:
        raise DayMissing("no record of 2026-11-02 from the audit log")

    instance = DagsterInstance.ephemeral()
    result = materialize([raw], instance=instance, raise_on_error=False)
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    assert run_outcome(instance, run).reason == (
        "crashed: raw: DayMissing: no record of 2026-11-02 from the audit log"
    )


def test_a_run_failed_before_any_step_says_why() -> None:
    """Run monitoring (or a launcher) fails a run that never started a step: the reason is
    its failure message, not "run FAILURE"."""

    @asset
    def model() -> None:
        return None

    instance = DagsterInstance.ephemeral()
    job = define_asset_job("probe").resolve(asset_graph=AssetGraph.from_assets([model]))
    run = instance.create_run_for_job(job, status=DagsterRunStatus.STARTING)
    instance.report_run_failed(run, message="the run worker never started")
    failed = instance.get_run_by_id(run.run_id)
    assert failed is not None and failed.status == DagsterRunStatus.FAILURE
    assert run_outcome(instance, failed).reason == "crashed: run: the run worker never started"


@asset(key="model")
def _model_before_cancel() -> None:
    return None


@asset(key="published", deps=["model"])
def _published_when_canceled() -> None:
    """Canceled while it runs: the operator asks, Dagster interrupts the step; or, when the
    interrupt came inside a library that swallows it (DuckDB), the step fails with that
    library's own error ("Query interrupted") after the cancel request."""
    context = AssetExecutionContext.get()
    context.instance.report_run_canceling(context.run)
    if context.run.tags.get("swallowed") == "yes":
        raise RuntimeError("Query interrupted")
    raise DagsterExecutionInterruptedError()


@asset(key="published_weights", deps=["model"])
def _published_weights_canceled() -> None:
    """Canceled inside published_weights, before its record: it may have published already."""
    context = AssetExecutionContext.get()
    context.instance.report_run_canceling(context.run)
    raise DagsterExecutionInterruptedError()


@asset(key="published_weights")
def _published_weights_record() -> MaterializeResult[None]:
    """What published_weights records when it publishes (its publication record)."""
    version = "20261102_021500"
    return MaterializeResult(
        metadata={
            "outcome": f"published {version} (the candidate)",
            "published": True,
            "version": version,
        }
    )


@asset(key="after_publication", deps=["published_weights"])
def _canceled_after_publication() -> None:
    context = AssetExecutionContext.get()
    context.instance.report_run_canceling(context.run)
    raise DagsterExecutionInterruptedError()


def test_a_run_canceled_after_publishing_says_what_it_published() -> None:
    instance = DagsterInstance.ephemeral()
    graph = AssetGraph.from_assets([_published_weights_record, _canceled_after_publication])
    job = define_asset_job("ltr_daily_job").resolve(asset_graph=graph)
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.status == DagsterRunStatus.CANCELED
    assert run_outcome(instance, run).reason == (
        "canceled in after_publication after it published 20261102_021500 (the candidate)"
    )


def _canceled_run(
    instance: DagsterInstance,
    tags: dict[str, str],
    *,
    in_step: bool,
    job: str = "ltr_daily_job",
    second: Any = _published_when_canceled,
) -> Any:
    """A run of a two-step job named `job` canceled by the operator: with `in_step`, while
    its `second` step runs (`_published_when_canceled`), as a termination from the UI does;
    else before any step started."""
    graph = AssetGraph.from_assets([_model_before_cancel, second])
    resolved = define_asset_job(job).resolve(asset_graph=graph)
    if in_step:
        run_id = resolved.execute_in_process(
            instance=instance, tags=tags, raise_on_error=False
        ).run_id
    else:
        run = instance.create_run_for_job(resolved, status=DagsterRunStatus.STARTED, tags=tags)
        instance.report_run_canceled(run, message="canceled by the operator")
        run_id = run.run_id
    canceled = instance.get_run_by_id(run_id)
    assert canceled is not None and canceled.status == DagsterRunStatus.CANCELED
    return canceled


def _canceled_event(instance: DagsterInstance, run_id: str) -> DagsterEvent:
    event = instance.all_logs(run_id, of_type=DagsterEventType.RUN_CANCELED)[-1].dagster_event
    assert event is not None
    return event


def test_a_canceled_run_is_tagged_canceled_with_the_step_it_was_in() -> None:
    """A canceled re-execution of a crashed night starts with its parent's `crashed` tags;
    the tags then say it was canceled, and where, instead of the parent's crash."""
    instance = DagsterInstance.ephemeral()
    parent_tags = {OUTCOME_TAG: "crashed", REASON_TAG: "crashed: model: ValueError: no list"}
    run = _canceled_run(instance, parent_tags, in_step=True)
    swallowed = _canceled_run(instance, {"swallowed": "yes"}, in_step=True)
    context = build_run_status_sensor_context(
        sensor_name=tag_canceled_runs.name,
        dagster_event=_canceled_event(instance, run.run_id),
        dagster_instance=instance,
        dagster_run=run,
    )
    assert tag_canceled_runs(context) is None
    tags = run_by_id(instance, run.run_id).tags
    assert (tags[OUTCOME_TAG], tags[REASON_TAG]) == (
        "canceled",
        "canceled in published; nothing of the night's was published",
    )
    # the step failed with the error a library raised for the swallowed interrupt, after the
    # cancel request: it is still where the run stopped
    assert run_outcome(instance, swallowed).reason == (
        "canceled in published; nothing of the night's was published"
    )


def test_a_run_canceled_inside_published_weights_does_not_claim_nothing_was_published() -> None:
    """Without its record, published_weights may still have written the registry: the reason
    sends the operator there."""
    instance = DagsterInstance.ephemeral()
    run = _canceled_run(instance, {}, in_step=True, second=_published_weights_canceled)
    assert run_outcome(instance, run).reason == (
        "canceled in published_weights; published_weights recorded nothing: "
        "`ltr registry list` shows if it published"
    )


def test_a_run_canceled_before_any_step_is_notified(monkeypatch: pytest.MonkeyPatch) -> None:
    instance = DagsterInstance.ephemeral()
    run = _canceled_run(
        instance, {"dagster/partition": "2026-11-02"}, in_step=False, job="ltr_label_refresh_job"
    )
    with http_receiver() as receiver:
        monkeypatch.setenv("NOTIFY_WEBHOOK_URL", receiver.url)
        context = build_run_status_sensor_context(
            sensor_name=notify_run_canceled.name,
            dagster_event=_canceled_event(instance, run.run_id),
            dagster_instance=instance,
            dagster_run=run,
            resources=defs.resources,
        )
        assert notify_run_canceled(context) is None
    assert [m["text"] for m in receiver.messages] == [
        f":octagonal_sign: ltr_label_refresh_job [2026-11-02] (run {run.run_id[:8]}) "
        "canceled before or between steps"  # a job that publishes nothing says nothing of it
    ]


def test_a_night_read_without_kafka_says_what_it_lacks_and_what_to_do() -> None:
    """raw_events fell back to the files (its WARN check source_fallback failed): the run
    succeeds, and its reason says the day lacks what only Kafka holds, and to re-run it."""
    from dagster import DailyPartitionsDefinition

    days = DailyPartitionsDefinition(start_date="2026-11-01")

    @asset(partitions_def=days)
    def raw_events() -> None:
        return None

    @asset_check(asset=raw_events, name="source_fallback")
    def fell_back() -> AssetCheckResult:
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.WARN,
            description="read from audit_log because Kafka failed: cannot reach Kafka",
        )

    instance = DagsterInstance.ephemeral()
    result = materialize([raw_events, fell_back], instance=instance, partition_key="2026-11-03")
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and result.success
    outcome = run_outcome(instance, run)
    assert outcome.outcome == "succeeded" and outcome.warnings == ("source_fallback",)
    assert outcome.reason == (
        "succeeded; Kafka was not read, so 2026-11-03 lacks the events only Kafka holds: "
        "re-run it once Kafka is back"
    )


def test_a_version_the_s3_mirror_did_not_get_says_so() -> None:
    """published_weights published locally, and the S3 upload failed (its WARN check
    s3_published): the run succeeds and its reason says the replicas reading S3 keep the old
    version until a sync."""

    @asset
    def published_weights() -> None:
        return None

    @asset_check(asset=published_weights, name="s3_published")
    def mirrored() -> AssetCheckResult:
        return AssetCheckResult(
            passed=False, severity=AssetCheckSeverity.WARN, description="S3 publish failed: 503"
        )

    instance = DagsterInstance.ephemeral()
    result = materialize([published_weights, mirrored], instance=instance)
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and result.success
    outcome = run_outcome(instance, run)
    assert outcome.warnings == ("s3_published",)
    assert outcome.reason == (
        "published; the S3 mirror was not updated (replicas reading S3 keep the old version): "
        "`ltr registry sync` once S3 answers"
    )


def test_ltr_night_fails_a_night_the_s3_mirror_missed_not_one_read_without_kafka() -> None:
    from ltr_assets.defs.launch import NightReport
    from ltr_assets.defs.sensors import RunOutcome

    def night(*warnings: str) -> NightReport:
        return NightReport("2026-11-03", "run", RunOutcome("published", "v", warnings=warnings))

    assert night().ok and night("source_fallback").ok  # done, with a day to re-run
    assert not night("s3_published").ok  # exit 1: replicas reading S3 did not get it


def test_a_run_whose_database_failed_under_it_says_so() -> None:
    """The instance's database dropped while a step ran and came back: Dagster records the run's
    failure itself ("an exception was thrown during execution"); the reason names the database
    and its innermost error, not only that the step was interrupted."""
    import sys

    import sqlalchemy.exc
    from dagster._core.events import JobFailureData, RunFailureReason
    from dagster._utils.error import serializable_error_info_from_exc_info
    from dagster_postgres.utils import DagsterPostgresException

    @asset
    def model() -> None:
        return None

    instance = DagsterInstance.ephemeral()
    job = define_asset_job("probe").resolve(asset_graph=AssetGraph.from_assets([model]))
    run = instance.create_run_for_job(job, status=DagsterRunStatus.STARTED)
    refused = "connection to server at 127.0.0.1, port 39432 failed: Connection refused"
    try:
        try:
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(refused))
        except sqlalchemy.exc.OperationalError as exc:
            raise DagsterPostgresException("too many retries for DB connection") from exc
    except DagsterPostgresException:
        error = serializable_error_info_from_exc_info(sys.exc_info())
    instance.report_run_failed(
        run,
        message=f'Execution of run for "{run.job_name}" failed. An exception was thrown during '
        "execution.",
        job_failure_data=JobFailureData(error=error, failure_reason=RunFailureReason.RUN_EXCEPTION),
    )
    failed = instance.get_run_by_id(run.run_id)
    assert failed is not None
    reason = run_outcome(instance, failed).reason
    assert reason.startswith("crashed: run: the Dagster instance's database failed: ")
    assert refused in reason


def test_a_night_that_promoted_then_crashed_says_the_live_version_changed() -> None:
    """online_comparison promoted the candidate, then published_weights failed (a full disk):
    "nothing was published" is not the run's story, and the reason says the promotion,
    however long the error, as the notification does."""

    @asset(key="online_comparison")
    def comparison() -> MaterializeResult[None]:
        return MaterializeResult(
            metadata={
                "pointer_moved": "promoted",
                "candidate": "20261127_021500",
                "live": "20261126_021500",
            }
        )

    @asset(key="published_weights", deps=["online_comparison"])
    def published() -> None:
        raise OSError(28, "No space left on device " + "x" * 200)

    instance = DagsterInstance.ephemeral()
    result = materialize([comparison, published], instance=instance, raise_on_error=False)
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and not result.success
    outcome = run_outcome(instance, run)
    said = "; earlier, online_comparison promoted 20261127_021500 to live (over 20261126_021500)"
    assert outcome.reason.startswith(
        "crashed: published_weights: OSError: [Errno 28] No space left on device"
    )
    assert outcome.reason.endswith(said) and len(outcome.reason) <= 200
    assert outcome.detail.endswith(said)
