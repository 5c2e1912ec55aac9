"""Sensors: tell the ranking service to reload after a publication; notify on run outcomes.

The reload sensor asks the service to load whatever `latest` points at, never a partition named
in the event (asset sensors coalesce events between ticks). Run-status sensors watch every job of
the location, so backfills (which may run as asset jobs) notify too.

Every skip reason also goes to the tick's log (`_skip`): the UI's tick list shows a skipped
tick as "0 runs requested" with its reason only on hover, and its "View logs" button opens
these lines.
"""

import logging
from dataclasses import dataclass, replace

from dagster import (
    AddDynamicPartitionsRequest,
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    DeleteDynamicPartitionsRequest,
    EventLogEntry,
    RunFailureSensorContext,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset_sensor,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)
from dagster._core.events import JobFailureData
from dagster._core.execution.plan.objects import ErrorSource
from dagster._core.storage.tags import PARTITION_NAME_TAG

from ltr_assets.defs.checks import FALLBACK_CHECK, S3_CHECK
from ltr_assets.defs.jobs import ltr_daily_job, ltr_rollback_job
from ltr_assets.defs.partitions import REGISTRY_VERSIONS, registry_versions
from ltr_assets.defs.resources import LtrResource
from ltr_assets.gate.evaluation import check_line
from ltr_assets.notify import Delivery, failure_text, notify, request_reload, undelivered
from ltr_core.settings import Settings, bearer_tokens
from ltr_core.vocabulary import GateOutcome

# gate_refused | published (ltr_daily_job runs) | crashed | canceled (runs of every job)
OUTCOME_TAG = "ltr/outcome"
# Beside it, the one line an operator needs in the runs list (Dagster runs have no description):
# "gate refused: min_samples: 42 vs 100", "crashed: ltr_model: <error>",
# "published <version> (live)".
REASON_TAG = "ltr/reason"
REASON_MAX_CHARS = 200
PUBLISHED_ASSET = "published_weights"
COMPARISON_ASSET = "online_comparison"  # moves the live version (promote) before publishing
# The jobs whose successful runs carry the two tags (published or refused); a failed or canceled
# run of any job of the location carries them too (a crashed label refresh or rollback).
TAGGED_JOBS = frozenset({ltr_daily_job.name})


def carries_outcome(run: DagsterRun) -> bool:
    """Whether a finished run is tagged with its outcome (TAGGED_JOBS)."""
    failed = run.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
    return failed or run.job_name in TAGGED_JOBS


# How many of published_weights' records since the last tick the reload sensor reads to find a
# publication; past that many it reloads without looking (a reload that moves nothing is harmless).
RECORDS_PER_TICK = 100


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run amounted to, and why (the failing checks, or the error)."""

    outcome: GateOutcome  # "succeeded": nothing was published
    detail: str  # published: the version; gate_refused: the checks; crashed: the errors
    reason: str = ""  # the one line for REASON_TAG ("" when succeeded)
    live: str = ""  # the version live after the run, when its publication record says
    kept_candidate: str = ""  # gate_refused: an earlier build of the night, still the candidate
    warnings: tuple[str, ...] = ()  # a successful run's checks that failed and need acting on


def failing_blocking_checks(instance: DagsterInstance, run_id: str) -> list[str]:
    """`<check>: <value> vs <threshold>` for every blocking check that failed the run (ERROR
    severity; the gate's checks fail with WARN and leave the run successful); a check with no
    figures (online_decision's: a decision that could not be applied) says its description."""
    failing = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        event = entry.dagster_event
        data = event.event_specific_data if event else None
        if (
            isinstance(data, AssetCheckEvaluation)
            and not data.passed
            and data.blocking
            and data.severity == AssetCheckSeverity.ERROR
        ):
            # the check's metadata values (`gate_check_result`): a float, or the text "n/a"
            value, threshold = (
                getattr(data.metadata.get(key), "value", None) for key in ("value", "threshold")
            )
            if value is None and threshold is None:
                failing.append(f"{data.check_name}: {_one_line(data.description or 'failed')}")
            else:
                failing.append(check_line(data.check_name, value, threshold))
    return failing


def _step_errors(instance: DagsterInstance, run_id: str, checks_named: bool = False) -> list[str]:
    """`<step>: <error message>` for every step that failed in the run; with `checks_named`,
    not the steps a blocking check failed (their failing checks are named already)."""
    errors = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event else None
        # the exception the step's code raised, not Dagster's "Error occurred while executing"
        # wrappers around it, nor what that exception was raised from (`raise … from exc`)
        while error is not None and error.cause is not None and _dagster_wrapper(error.cls_name):
            error = error.cause
        if checks_named and error is not None and error.cls_name == "DagsterAssetCheckFailedError":
            continue
        message = _without_module(error.message.strip()) if error is not None else entry.message
        errors.append(f"{event.step_key if event else '?'}: {message}")
    return errors


_STEP_ENDS = (
    DagsterEventType.STEP_SUCCESS,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.STEP_SKIPPED,
)


def _steps_in_progress(instance: DagsterInstance, run_id: str) -> list[str]:
    """The steps a run was in when it was failed or canceled from outside: those that started
    and never ended (a killed worker), and those whose failure came from the interruption (a
    terminated run's worker interrupts its step before the run is marked canceled: Dagster
    logs that failure as an interrupt, or, when a library swallowed the signal, as whatever it
    raised instead, after the run's cancel request). One read of the run's event log."""
    kinds = {DagsterEventType.STEP_START, DagsterEventType.RUN_CANCELING, *_STEP_ENDS}
    started: list[str] = []
    ended: set[str] = set()
    canceling = False
    for entry in instance.all_logs(run_id, of_type=kinds):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.RUN_CANCELING:
            canceling = True
        elif not entry.step_key:
            continue
        elif event.event_type == DagsterEventType.STEP_START:
            started.append(entry.step_key)
        elif not _interrupted(event, canceling):
            ended.add(entry.step_key)
    return [step for step in started if step not in ended]


def _interrupted(event: DagsterEvent, canceling: bool) -> bool:
    """Whether a step's end is its interruption: an interrupt, or a failure once the run was
    being canceled."""
    if event.event_type != DagsterEventType.STEP_FAILURE:
        return False
    return canceling or getattr(event.event_specific_data, "error_source", None) == (
        ErrorSource.INTERRUPT
    )


def _failed_outside_steps(instance: DagsterInstance, run_id: str) -> list[str]:
    """`<step>: interrupted: <why the run failed>` for the steps a run was in when it was
    failed from outside (its worker killed, marked failed by run monitoring), or `run: <why>`
    when it failed before any step: no step failure names them, and "run FAILURE" alone
    would not say where it stopped, nor why."""
    failures = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
    why = _one_line(failures[-1].message) if failures and failures[-1].message else ""
    if failures:  # "an exception was thrown during execution": the database's, say so
        why = _database_failure(failures[-1]) or why
    running = _steps_in_progress(instance, run_id)
    interrupted = [f"{step}: interrupted: {why or 'the run failed'}" for step in running]
    return interrupted or ([f"run: {why}"] if why else [])


# What the instance's storage raises when its database fails (SQLAlchemy's, psycopg2's and
# dagster-postgres's classes, by name: the event log keeps errors as names and messages).
_DATABASE_ERRORS = {"OperationalError", "InterfaceError", "DagsterPostgresException"}


def _database_failure(entry: EventLogEntry) -> str:
    """`the Dagster instance's database failed: <its error>` when the run failed because its
    instance's database did (Dagster records that failure itself once the database answers
    again), else ""."""
    event = entry.dagster_event
    data = event.event_specific_data if event else None
    error = data.error if isinstance(data, JobFailureData) else None
    found = None
    while error is not None:  # the innermost database error says the most (host, port, why)
        if error.cls_name in _DATABASE_ERRORS:
            found = error
        error = error.cause or error.context
    if found is None:
        return ""
    return _one_line(f"the Dagster instance's database failed: {found.message}")


def _canceled(instance: DagsterInstance, run: DagsterRun) -> RunOutcome:
    """A canceled run: where it stopped, and, for the daily job, whether it published first
    (published_weights is the last asset, so a cancel after it leaves the night published: the
    record's outcome says as what, "published <v> (the candidate)"). A cancel inside
    published_weights may come after the registry's write and before the record: the reason
    then says the registry tells, not that nothing was published."""
    running = _steps_in_progress(instance, run.run_id)
    where = f"in {', '.join(running)}" if running else "before or between steps"
    reason = f"canceled {where}"
    if run.job_name in TAGGED_JOBS:
        record = publication_record(instance, run.run_id)
        if record and record.get("published"):
            outcome = str(record.get("outcome") or f"published {record.get('version')}")
            reason += f" after it {outcome}"
        elif PUBLISHED_ASSET in running:  # stopped after the registry's write, or before it
            reason += (
                f"; {PUBLISHED_ASSET} recorded nothing: `ltr registry list` shows if it published"
            )
        else:
            reason += "; nothing of the night's was published"
    decided = decided_in_run(instance, run.run_id)
    return RunOutcome("canceled", where, _one_line(reason, f"; {decided}" if decided else ""))


_WRAPPERS = {"Failure", "RetryRequested", "RetryRequestedFromPolicy"}


def _dagster_wrapper(cls_name: str | None) -> bool:
    """Dagster's wrappers: its errors, the `Failure` the assets raise `from` the error they
    name, and a retry policy's "Exceeded max_retries" around the step's last error."""
    return bool(cls_name) and (str(cls_name).startswith("Dagster") or cls_name in _WRAPPERS)


def _without_module(message: str) -> str:
    """`EmptyDay: no record …` for Python's `ltr_assets.ingest.day.EmptyDay: no record …` (and
    `EmptyDay` for a bare `ltr_assets.ingest.day.EmptyDay`): the runs list shows the reason's
    first few dozen characters, which a module path filled."""
    head, sep, rest = message.partition(": ")
    if "." in head and " " not in head:
        head = head.rsplit(".", 1)[1]
    return head + sep + rest.lstrip()  # a message that starts on its second line: from there


def publication_record(instance: DagsterInstance, run_id: str) -> dict[str, object] | None:
    """The metadata of published_weights' materialization in the run (its publication record:
    `published`, `version`, `outcome`, ...), None if it did not materialize."""
    return materialization_metadata(instance, run_id, PUBLISHED_ASSET)


def materialization_metadata(
    instance: DagsterInstance, run_id: str, asset: str
) -> dict[str, object] | None:
    """The metadata of `asset`'s materialization in the run (its values), None if it did not
    materialize."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is not None and materialization.asset_key == AssetKey(asset):
            return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
    return None


def decided_in_run(instance: DagsterInstance, run_id: str) -> str:
    """What the run's online_comparison did to the registry's pointers before the run failed
    or was canceled ("" when it moved nothing): a promotion changed the live version, so
    "nothing was published" would not be true of the run."""
    record = materialization_metadata(instance, run_id, COMPARISON_ASSET) or {}
    moved, candidate, live = (record.get(k) for k in ("pointer_moved", "candidate", "live"))
    if moved == "promoted":
        return f"earlier, {COMPARISON_ASSET} promoted {candidate} to live (over {live})"
    if moved == "retired":
        return f"earlier, {COMPARISON_ASSET} retired the candidate {candidate}"
    return ""


def _one_line(text: str, tail: str = "") -> str:
    """The first line of `text`, cut to REASON_MAX_CHARS: a tag value the runs list shows.
    `tail` (one line) ends it whole: `text` is cut to make room for it."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    room = REASON_MAX_CHARS - len(tail)
    if len(line) > room:
        line = line[: max(room - 1, 0)] + "…"
    return (line + tail)[:REASON_MAX_CHARS]


def _successful_outcome(instance: DagsterInstance, run: DagsterRun) -> RunOutcome:
    """A successful run's outcome by published_weights' record."""
    record = publication_record(instance, run.run_id)
    if record is None:
        return RunOutcome("succeeded", "")
    if record.get("published") is False:
        recorded = record.get("refused_checks")  # the gate's failing checks, as refused
        detail = "; ".join(str(c) for c in recorded) if isinstance(recorded, list) else ""
        live = str(record.get("live_version") or "")
        kept = str(record.get("kept_candidate") or "")
        return RunOutcome("gate_refused", detail, _one_line(f"gate refused: {detail}"), live, kept)
    version = str(record.get("version") or "")
    # the record's outcome says what the version became: "published <v> (live)",
    # "(the candidate)" or "(kept, not live)"; a bare "published <v>" hid the last two
    recorded_outcome = str(record.get("outcome") or "")
    line = recorded_outcome if recorded_outcome.startswith(f"published {version}") else ""
    return RunOutcome("published", version, _one_line(line or f"published {version}".strip()))


def run_warnings(instance: DagsterInstance, run: DagsterRun) -> dict[str, str]:
    """What a successful run left undone that someone has to act on, by check name: raw_events
    read without Kafka (its `source_fallback` failed: the day lacks the events only Kafka holds,
    the ranking service's among them, until it is ingested again), the S3 mirror not updated
    (`s3_published` failed: replicas reading S3 keep the old version)."""
    day = run.tags.get(PARTITION_NAME_TAG, "the day")
    warnings: dict[str, str] = {}
    for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        event = entry.dagster_event
        data = event.event_specific_data if event else None
        if not isinstance(data, AssetCheckEvaluation) or data.passed:
            continue
        if data.check_name == FALLBACK_CHECK:
            warnings[FALLBACK_CHECK] = (
                f"Kafka was not read, so {day} lacks the events only Kafka holds: re-run it "
                "once Kafka is back"
            )
        elif data.check_name == S3_CHECK:
            warnings[S3_CHECK] = (
                "the S3 mirror was not updated (replicas reading S3 keep the old version): "
                "`ltr registry sync` once S3 answers"
            )
    return warnings


def run_outcome(instance: DagsterInstance, run: DagsterRun) -> RunOutcome:
    """A successful run is `published` or `gate_refused` by published_weights' record (a
    refused gate is a successful run: its checks fail with WARN severity and published_weights
    records "not published"), `succeeded` when it did not run. A failed run is a crash: a
    step failed, or a blocking check with ERROR severity (online_decision, when a decision
    could not be applied: someone has to promote or retire by hand), named in the reason. A
    canceled run is `canceled`, with the steps it was in. A crashed or canceled run whose
    online_comparison promoted or retired the candidate first says so (`decided_in_run`)."""
    if run.status == DagsterRunStatus.CANCELED:
        return _canceled(instance, run)
    if run.status == DagsterRunStatus.SUCCESS:
        outcome = _successful_outcome(instance, run)
        warnings = run_warnings(instance, run)
        if not warnings:
            return outcome
        # the reason leads with what the run did; what it left undone follows
        told = "; ".join([outcome.reason or outcome.outcome, *warnings.values()])
        return replace(outcome, reason=_one_line(told), warnings=tuple(warnings))
    checks = failing_blocking_checks(instance, run.run_id)
    errors = checks + _step_errors(instance, run.run_id, checks_named=bool(checks))
    errors = errors or _failed_outside_steps(instance, run.run_id)
    first = errors[0] if errors else f"run {run.status.value}"
    # a promotion before the crash changed the live version: said whatever the error's length
    decided = decided_in_run(instance, run.run_id)
    tail = f"; {decided}" if decided else ""
    detail = "; ".join(errors) or f"run {run.status.value}"
    return RunOutcome("crashed", detail + tail, _one_line(f"crashed: {first}", tail))


def tag_run_outcome(instance: DagsterInstance, run: DagsterRun) -> RunOutcome:
    """Tags a finished run with OUTCOME_TAG and REASON_TAG (none when it succeeded without
    publishing). Idempotent: the sensors and the demo's launcher may both tag a run.

    A re-execution starts with its parent's tags (Dagster copies them), so a re-run of a
    crashed night that then succeeds without publishing (one step re-executed) would still
    read `crashed`: its inherited tags are replaced by `succeeded`."""
    outcome = run_outcome(instance, run)
    if outcome.outcome != "succeeded":
        tags = {OUTCOME_TAG: outcome.outcome, REASON_TAG: outcome.reason}
        instance.add_run_tags(run.run_id, tags)
    elif OUTCOME_TAG in run.tags:
        reason = "succeeded without publishing (the tags its parent run had do not apply)"
        instance.add_run_tags(run.run_id, {OUTCOME_TAG: "succeeded", REASON_TAG: reason})
    return outcome


def _with_delivery(reason: str, told: Delivery | None) -> str:
    """A skip reason, with the notification's failure when it was not delivered."""
    failure = undelivered(told)
    return f"{reason}; {failure}" if failure else reason


def _deliver(ltr: LtrResource, text: str) -> None:
    """Post a run notification; raise when it was not delivered, so the sensor's tick shows
    the failure (with the message) instead of a success that told nobody."""
    failure = undelivered(notify(ltr.settings().notify_webhook_url.get_secret_value(), text))
    if failure:
        raise RuntimeError(f"{failure}. The message: {text}")


def _skip(log: logging.Logger, reason: str) -> SkipReason:
    """A skip whose reason is also written to the tick's log, where the tick list's "View logs"
    shows it (the list itself shows the reason only on hover)."""
    log.info(reason)
    return SkipReason(reason)


def _reload_outcome(settings: Settings, after: str, log: logging.Logger) -> SkipReason:
    """POST /reload. A refused artifact (409), or a candidate the reloaded service refused (200,
    `candidate_state` refused), is final: notify once and move on (the old version serves,
    alone). The service down or erroring: fail this tick, so the next one retries and
    the UI shows it; the service's own poller is the fallback."""
    if not settings.serving.url:
        return _skip(
            log,
            f"LTR_SERVING_URL is not set: no reload requested after {after}; the service's own "
            "poller (WEIGHTS_POLL_SECONDS) loads whatever latest and the candidate point at",
        )
    tokens = bearer_tokens(settings.serving.reload_token)  # the first: the newest
    token = tokens[0] if tokens else ""
    if not token:
        return _skip(
            log,
            f"LTR_RELOAD_TOKEN is not set: no reload requested after {after} (the service "
            "refuses /reload without it); the service's own poller (WEIGHTS_POLL_SECONDS) "
            "loads whatever latest and the candidate point at",
        )
    delivery = request_reload(settings.serving.url, token)
    if delivery.ok:
        answer = delivery.answer if isinstance(delivery.answer, dict) else {}
        if answer.get("candidate_state") == "refused":  # the live version serves alone
            error = answer.get("candidate_error")
            told = notify(
                settings.notify_webhook_url.get_secret_value(),
                f":warning: the ranking service reloaded after {after} but refused the canary "
                f"candidate {answer.get('candidate_version')}: {error}. The live version serves "
                "alone and the online comparison cannot collect evidence; retire the candidate "
                "or set a servable one.",
            )
            reason = f"serving reloaded after {after} but refused the candidate: {error}"
            return _skip(log, _with_delivery(reason, told))
        return _skip(log, f"serving reloaded after {after}")
    if delivery.status == 409:
        told = notify(
            settings.notify_webhook_url.get_secret_value(),
            f":warning: the ranking service refused the new artifact after {after}: "
            f"{delivery.error}. The previous version keeps serving.",
        )
        return _skip(log, _with_delivery(f"serving refused the artifact: {delivery.error}", told))
    raise RuntimeError(
        f"reload request failed after {delivery.attempts} attempts: {delivery.error}"
    )


@asset_sensor(
    asset_key=AssetKey(PUBLISHED_ASSET),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="After published_weights materializes, POST /reload to LTR_SERVING_URL.",
    required_resource_keys={"ltr"},  # a resource parameter breaks evaluate_tick in 1.13
)
def reload_serving_sensor(
    context: SensorEvaluationContext, asset_event: EventLogEntry
) -> SkipReason:
    ltr: LtrResource = context.resources.ltr
    published = _publications_since(context, asset_event)
    if not published:
        return _skip(
            context.log,
            f"run {asset_event.run_id[:8]} published nothing (gate refused), nor did any run "
            "since the last tick: no reload needed",
        )
    return _reload_outcome(
        ltr.settings(), f"publication in run {published[0].run_id[:8]}", context.log
    )


def _publications_since(
    context: SensorEvaluationContext, newest: EventLogEntry
) -> list[EventLogEntry]:
    """published_weights' records since the sensor's last tick that published, newest first.
    Ticks coalesce: a publication followed by a refusal before the next tick must still reload.
    The first tick (no cursor) looks at the newest record only."""
    cursor = context.cursor
    if not cursor or not cursor.isdigit():
        return [newest] if _published(newest) else []
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(PUBLISHED_ASSET), after_storage_id=int(cursor)),
        limit=RECORDS_PER_TICK,
        ascending=False,
    ).records
    if len(records) >= RECORDS_PER_TICK:
        return [newest]  # too many to read: reload rather than risk missing one
    return [r.event_log_entry for r in records if _published(r.event_log_entry)]


def _published(event: EventLogEntry) -> bool:
    """Whether a published_weights record moved something serving loads (a refusal says
    `published: False`; records without the flag count as publications)."""
    materialization = event.asset_materialization
    flag = materialization.metadata.get("published") if materialization else None
    return getattr(flag, "value", True) is not False


@asset_sensor(
    asset_key=AssetKey("online_comparison"),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="After online_comparison materializes (a promotion moves latest, a retirement "
    "clears the candidate), POST /reload to LTR_SERVING_URL. Every materialization asks: events "
    "between ticks coalesce, and a reload with nothing moved keeps the same versions.",
    required_resource_keys={"ltr"},
)
def reload_after_online_decision_sensor(
    context: SensorEvaluationContext, asset_event: EventLogEntry
) -> SkipReason:
    ltr: LtrResource = context.resources.ltr
    after = f"online decision in run {asset_event.run_id[:8]}"
    if ltr.registry().latest_version() is None:  # the nights before the first publication
        return _skip(context.log, f"nothing is published yet: no reload after {after}")
    return _reload_outcome(ltr.settings(), after, context.log)


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[ltr_rollback_job],
    default_status=DefaultSensorStatus.RUNNING,
    description="After a rollback run succeeds, POST /reload to LTR_SERVING_URL.",
)
def reload_after_rollback_sensor(context: RunStatusSensorContext, ltr: LtrResource) -> SkipReason:
    return _reload_outcome(
        ltr.settings(), f"rollback run {context.dagster_run.run_id[:8]}", context.log
    )


def _notify_skip(ltr: LtrResource, context: RunStatusSensorContext) -> SkipReason | None:
    """Without a webhook there is nobody to tell: say so on the tick, as its skip reason and in
    its log."""
    if ltr.settings().notify_webhook_url.get_secret_value():
        return None
    run = context.dagster_run
    return _skip(
        context.log,
        f"NOTIFY_WEBHOOK_URL is not set: run {run.run_id[:8]} of {run.job_name} "
        f"({run.status.value}) was not notified",
    )


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    default_status=DefaultSensorStatus.RUNNING,
    description="Posts run successes to NOTIFY_WEBHOOK_URL; a night whose gate refused its "
    "candidate (a successful run that published nothing) as a refusal, with the failing checks.",
)
def notify_run_success(context: RunStatusSensorContext, ltr: LtrResource) -> SkipReason | None:
    if skipped := _notify_skip(ltr, context):
        return skipped
    run = context.dagster_run
    partition = run.tags.get("dagster/partition", "-")
    outcome = run_outcome(context.instance, run)
    if outcome.outcome == "gate_refused":  # a successful run that published nothing
        text = failure_text(
            run.job_name,
            partition,
            run.run_id,
            True,
            outcome.detail,
            live=outcome.live,
            kept_candidate=outcome.kept_candidate,
        )
    else:
        text = f":white_check_mark: {run.job_name} [{partition}] succeeded (run {run.run_id[:8]})"
    _deliver(ltr, text)
    return None


@run_failure_sensor(
    default_status=DefaultSensorStatus.RUNNING,
    description="Posts run failures (a crash, or an online decision that could not be applied) "
    "to NOTIFY_WEBHOOK_URL.",
)
def notify_run_failure(context: RunFailureSensorContext, ltr: LtrResource) -> SkipReason | None:
    if skipped := _notify_skip(ltr, context):
        return skipped
    run = context.dagster_run
    outcome = run_outcome(context.instance, run)
    detail = outcome.detail
    if outcome.outcome == "crashed" and detail.startswith("run "):  # no step failed: say why
        detail = (context.failure_event.message if context.failure_event else None) or detail
    _deliver(
        ltr,
        failure_text(
            run.job_name,
            run.tags.get("dagster/partition", "-"),
            run.run_id,
            gate_refused=outcome.outcome == "gate_refused",
            detail=detail or "failed",
        ),
    )
    return None


@run_status_sensor(
    run_status=DagsterRunStatus.CANCELED,
    default_status=DefaultSensorStatus.RUNNING,
    description="Posts canceled runs to NOTIFY_WEBHOOK_URL, with the steps they were in and "
    "whether the night published before the cancel.",
)
def notify_run_canceled(context: RunStatusSensorContext, ltr: LtrResource) -> SkipReason | None:
    if skipped := _notify_skip(ltr, context):
        return skipped
    run = context.dagster_run
    outcome = run_outcome(context.instance, run)
    partition = run.tags.get("dagster/partition", "-")
    _deliver(
        ltr,
        f":octagonal_sign: {run.job_name} [{partition}] (run {run.run_id[:8]}) "
        f"{outcome.reason or 'canceled'}",
    )
    return None


def _tag(context: RunStatusSensorContext) -> SkipReason | None:
    run = context.dagster_run
    if tag_run_outcome(context.instance, run).outcome == "succeeded":
        return _skip(
            context.log, f"run {run.run_id[:8]} succeeded without publishing: no outcome tag"
        )
    return None


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[ltr_daily_job],
    default_status=DefaultSensorStatus.RUNNING,
    description="Tags a successful ltr_daily_job run by published_weights' record: "
    "ltr/outcome=published (ltr/reason=published <version>) or ltr/outcome=gate_refused "
    "(ltr/reason=gate refused: <failing checks>; nothing of the night's is published).",
)
def tag_published_runs(context: RunStatusSensorContext) -> SkipReason | None:
    return _tag(context)


@run_failure_sensor(
    default_status=DefaultSensorStatus.RUNNING,
    description="Tags a failed run (of any job: the nightly one, a label refresh, a rollback) "
    "ltr/outcome=crashed and ltr/reason with the one-line why (the step and its error, or the "
    "failing check: online_decision could not apply its decision).",
)
def tag_failed_runs(context: RunFailureSensorContext) -> SkipReason | None:
    return _tag(context)


@run_status_sensor(
    run_status=DagsterRunStatus.CANCELED,
    default_status=DefaultSensorStatus.RUNNING,
    description="Tags a canceled run (of any job) ltr/outcome=canceled and ltr/reason with the "
    "steps it was in (a canceled re-execution no longer shows its parent's tags).",
)
def tag_canceled_runs(context: RunStatusSensorContext) -> SkipReason | None:
    return _tag(context)


@sensor(
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Keeps ltr_rollback_job's partitions (the UI's rollback pick-list) equal to the "
    "registry's versions: adds published ones, removes pruned ones. Its cursor is the registry "
    "as it last saw it (how many versions, the newest).",
)
def registry_versions_sensor(
    context: SensorEvaluationContext, ltr: LtrResource
) -> SensorResult | SkipReason:
    versions = ltr.registry().versions()
    present = set(versions)
    known = set(context.instance.get_dynamic_partitions(REGISTRY_VERSIONS))
    added, removed = sorted(present - known), sorted(known - present)
    seen = registry_seen(versions)
    if not added and not removed:
        context.update_cursor(seen)
        return _skip(
            context.log, f"the rollback pick-list holds the registry's {len(present)} versions"
        )
    requests: list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest] = []
    if added:
        requests.append(registry_versions.build_add_request(added))
    if removed:
        requests.append(registry_versions.build_delete_request(removed))
    context.log.info(
        f"rollback pick-list: +{added} -{removed} (last seen {context.cursor or 'never'})"
    )
    return SensorResult(dynamic_partitions_requests=requests, cursor=seen)


def registry_seen(versions: list[str]) -> str:
    """registry_versions_sensor's cursor: the registry's versions as the sensor last saw them,
    in the few words the tick list's Cursor column shows (the sensor reads the registry and the
    pick-list each tick, so nothing depends on it but the next change's log line)."""
    if not versions:
        return "registry: no versions"
    count = f"{len(versions)} version" + ("s" if len(versions) > 1 else "")
    return f"registry: {count}, newest {versions[-1]}"


SENSORS = [
    reload_serving_sensor,
    reload_after_online_decision_sensor,
    reload_after_rollback_sensor,
    notify_run_success,
    notify_run_failure,
    notify_run_canceled,
    tag_published_runs,
    tag_failed_runs,
    tag_canceled_runs,
    registry_versions_sensor,
]
