"""raw_events -> feature_matrix -> ltr_model -> published_weights: thin wiring over the domain.

Each asset reads its inputs from the lake by path, calls one domain function and returns
metadata. Nothing goes through an IO manager, so a rolling window never trips over a partition
that was never materialized.
"""

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    BetaWarning,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    Failure,
    FloatMetadataValue,
    FreshnessPolicy,
    JsonMetadataValue,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
    asset_check,
)
from dagster import AssetDep as Dep
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from ltr_assets.defs.automation import publish_after_passed_gate
from ltr_assets.defs.checks import (
    LIVE_AGE_CHECK,
    LIVE_AGE_CHECK_DESCRIPTION,
    LIVE_AGE_CHECK_KEY,
    RETENTION_CHECK,
    RETENTION_CHECK_DESCRIPTION,
    RETENTION_CHECK_KEY,
    S3_CHECK,
    S3_CHECK_DESCRIPTION,
    S3_CHECK_KEY,
    conflicts_check_result,
    conflicts_check_spec,
    fairness_coverage_spec,
    fallback_check_result,
    fallback_check_spec,
    feedback_check_result,
    feedback_check_spec,
    gate_check_result,
    gate_check_specs,
    live_age_check_result,
    nothing_published_result,
    partitioned_checks_allowed,
    quarantine_check_result,
    quarantine_check_spec,
    recorded_evaluation,
    retention_check_result,
    s3_check_result,
    scorer_fidelity_spec,
    sources_text,
)
from ltr_assets.defs.concurrency import PIPELINE_POOL
from ltr_assets.defs.partitions import daily_partitions
from ltr_assets.defs.resources import LtrResource
from ltr_assets.gate.candidate import (
    PUBLISHED_OUTCOME,
    GateNotPassed,
    Untrainable,
    not_evaluated_results,
    publish_candidate,
    refusal_outcome,
    train_candidate,
)
from ltr_assets.gate.evaluation import gate_line, round_floats
from ltr_assets.gate.model_card import (
    intersections_table,
    live_intersections,
    live_model_card,
    render_model_card,
)
from ltr_assets.gate.nightly import gate_charts
from ltr_assets.gate.summary import CandidateSummary, PropensitySummary
from ltr_assets.gate.versions import list_versions, versions_table
from ltr_assets.ingest.day import DayNotOver, EmptyDay, check_day_over, ingest_with_fallback
from ltr_assets.ingest.matrix import build_feature_matrix
from ltr_assets.ingest.sources import SourceError
from ltr_assets.notify import notify, stays_the_candidate, undelivered
from ltr_assets.registry.local import LocalRegistry, PublishResult
from ltr_assets.registry.publication import PruneReport, live_version_age
from ltr_core.artifacts.format import InvalidPointer
from ltr_core.settings import Settings

GROUP = "ltr"
# Overdue when published_weights did not materialize between midnight UTC (the day closed) and
# 06:00 UTC: the 02:15 schedule normally runs it before 03:00; a crash leaves it overdue, a gate
# refusal does not (its record is a materialization; `live_version_age` tells that one).
PUBLICATION_FRESHNESS = FreshnessPolicy.cron(
    deadline_cron="0 6 * * *", lower_bound_delta=timedelta(hours=6), timezone="UTC"
)


def _rounded(metadata: dict[str, Any]) -> dict[str, Any]:
    """Every float of the metadata (plain values and JSON entries) to 4 places."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, JsonMetadataValue):
            out[key] = MetadataValue.json(round_floats(value.data))
        elif isinstance(value, FloatMetadataValue) and value.value is not None:
            out[key] = MetadataValue.float(round_floats(value.value))
        else:
            out[key] = round_floats(value) if isinstance(value, float) else value
    return out


def _curve_metadata(curve: PropensitySummary) -> dict[str, list[Any]]:
    """position -> [θ, low, high] (None: unbounded), then its source and swapped impressions
    when the curve records them (not for a pinned curve). Positions are zero-padded
    ("position 01"): the UI lists a JSON object's keys in text order."""
    out: dict[str, list[Any]] = {}
    width = len(str(len(curve.examination)))
    for i, (value, low, high) in enumerate(
        zip(curve.examination, curve.low, curve.high, strict=True)
    ):
        row: list[Any] = [value, low, high]
        if curve.sources:
            row += [curve.sources[i], curve.swapped_impressions[i]]
        out[f"position {i + 1:0{width}d}"] = row
    return out


def _day(context: AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


@asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    pool=PIPELINE_POOL,
    check_specs=[
        quarantine_check_spec("raw_events"),
        fallback_check_spec("raw_events"),
        conflicts_check_spec("raw_events"),
    ],
    description="Day D's recommendation and feedback events from Kafka (the audit-log files when "
    "Kafka is not configured or unreachable) and from the ranking service's own log "
    "(LTR_SERVING_LOG_DIR/D), validated and deduplicated by event id (Parquet); malformed "
    "events are quarantined with their reason. A day with no record at all fails, naming the "
    "sources, unless LTR_ALLOW_EMPTY_DAYS allows it.",
    kinds={"parquet"},
)
def raw_events(context: AssetExecutionContext, ltr: LtrResource) -> MaterializeResult:
    settings = ltr.settings()
    day = _day(context)
    allowed = settings.allow_empty_days.allows(day)
    files, serving_log = ltr.file_source(), ltr.serving_log_source()
    try:
        check_day_over(day, datetime.now(UTC))
        report, choice = ingest_with_fallback(
            ltr.kafka_source(),
            files,
            day,
            ltr.lake(),
            serving_log=serving_log,
            allow_empty=allowed,
        )
    except (DayNotOver, EmptyDay, SourceError) as exc:  # nothing written: no day's data
        raise Failure(description=f"raw_events[{day}]: {exc}") from exc
    if report.read == 0:
        context.log.warning(f"raw_events[{day}]: no record read; LTR_ALLOW_EMPTY_DAYS allows it")
    if choice.fallback_reason:
        context.log.warning(
            f"raw_events[{day}]: Kafka unusable, read the audit log instead: "
            f"{choice.fallback_reason}"
        )
    skipped = {**files.skipped, **serving_log.skipped}
    if skipped:
        context.log.warning(
            f"raw_events[{day}]: {len(skipped)} files skipped, never read (symbolic links or "
            f"not regular files): {', '.join(f'{p} ({why})' for p, why in skipped.items())}"
        )
    context.log.info(
        f"raw_events[{day}]: read={report.read} (serving log {report.serving_log_read}) "
        f"accepted={report.accepted} "
        f"duplicates={report.duplicates} conflicts={report.conflicts} "
        f"(shown differently {report.shown_differently}) "
        f"quarantined={report.quarantined} ignored={report.ignored}"
    )
    return MaterializeResult(
        metadata={
            "source": choice.name,
            "read_from": sources_text(choice, report.read, report.serving_log_read),
            "fallback_reason": choice.fallback_reason,
            "empty_allowed": allowed,
            "read": report.read,
            "read_from_serving_log": report.serving_log_read,
            "skipped_files": MetadataValue.json(skipped),
            "accepted": report.accepted,
            "duplicates": report.duplicates,
            "duplicate_conflicts": report.conflicts,
            "conflicting_event_ids": MetadataValue.json(report.conflicting_ids),
            "conflicts_shown_differently": report.shown_differently,
            "shown_differently_event_ids": MetadataValue.json(report.shown_differently_ids),
            "quarantined": report.quarantined,
            "ignored": report.ignored,
            "recommendations": report.recommendations,
            "feedback": report.feedback,
            "quarantine_ratio": round(report.quarantine_ratio, 4),
            "quarantine_reasons": MetadataValue.json(dict(report.reasons)),
            "path": MetadataValue.path(str(report.parquet_path)),
            "quarantine_path": MetadataValue.path(str(report.quarantine_path)),
        },
        check_results=[
            quarantine_check_result(report, settings.quarantine_warn_ratio),
            fallback_check_result(choice, report.read, report.serving_log_read),
            conflicts_check_result(report),
        ],
    )


def _next_day_mapping() -> TimeWindowPartitionMapping:
    """feature_matrix[D] reads raw_events D and D+1 (late feedback is joined from D+1); the
    lineage says so, so a late raw_events[D+1] marks D's matrix as needing a refresh."""
    with warnings.catch_warnings():  # the parameter is marked beta; the behaviour is what we need
        warnings.simplefilter("ignore", BetaWarning)
        return TimeWindowPartitionMapping(
            start_offset=0, end_offset=1, allow_nonexistent_upstream_partitions=True
        )


@asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    pool=PIPELINE_POOL,
    deps=[Dep(raw_events, partition_mapping=_next_day_mapping())],
    check_specs=[feedback_check_spec("feature_matrix")],
    description="Day D's impressions as query groups with graded labels (0 none/decline, "
    "1 click, 2 contact, 3 contract); late feedback from D+1 is joined when D+1 is in the lake.",
    kinds={"duckdb", "parquet"},
)
def feature_matrix(context: AssetExecutionContext, ltr: LtrResource) -> MaterializeResult:
    settings = ltr.settings()
    report = build_feature_matrix(ltr.lake(), _day(context), settings.feedback_window_hours)
    return MaterializeResult(
        metadata={
            "rows": report.rows,
            "groups": report.groups,
            "groups_with_positive": report.groups_with_positive,
            "label_counts": MetadataValue.json({str(k): v for k, v in report.label_counts.items()}),
            "feedback_events": report.feedback_events,
            "feedback_matched": report.feedback_matched,
            "late_feedback_matched": report.late_feedback_matched,
            "next_day_present": report.next_day_present,
            "path": MetadataValue.path(str(report.path)),
        },
        check_results=[feedback_check_result(report)],
    )


def _window_mapping() -> TimeWindowPartitionMapping:
    """Read at code-location load (like the partitions): the window is part of the asset graph,
    so a changed LTR_TRAIN_WINDOW_DAYS takes effect when the location is reloaded."""
    days = Settings.from_env().train_window_days
    with warnings.catch_warnings():  # the parameter is marked beta; the behaviour is what we need
        warnings.simplefilter("ignore", BetaWarning)
        return TimeWindowPartitionMapping(
            start_offset=-(days - 1), end_offset=0, allow_nonexistent_upstream_partitions=True
        )


@asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    pool=PIPELINE_POOL,
    deps=[Dep(AssetKey("feature_matrix"), partition_mapping=_window_mapping())],
    check_specs=[
        *gate_check_specs("ltr_model"),
        fairness_coverage_spec("ltr_model"),
        scorer_fidelity_spec("ltr_model"),
    ],
    description="LightGBM LambdaRank trained on the rolling window ending at D, with its "
    "derived linear weights, evaluated on the newest groups; the gate checks decide publication.",
    kinds={"lightgbm"},
)
def ltr_model(context: AssetExecutionContext, ltr: LtrResource) -> MaterializeResult:
    try:
        report = train_candidate(ltr.lake(), ltr.registry(), _day(context), ltr.settings())
    except Untrainable as untrainable:
        # A window with no click at all (a feedback outage, a new deployment) or too few lists:
        # refused on min_samples; the other checks fail as not evaluated (nothing was trained;
        # every declared check needs a result).
        refused = untrainable.result
        context.log.warning(f"ltr_model[{context.partition_key}]: {refused.description}")
        return MaterializeResult(
            metadata={
                "gate": gate_line([refused]),
                "trained": False,
                "reason": refused.description,
                "samples": int(refused.value),
                "gate_passed": False,
            },
            check_results=[gate_check_result(result) for result in not_evaluated_results(refused)],
        )
    evaluation = report.evaluation
    summary = report.summary
    window = summary.training_window
    ndcg5 = evaluation.ndcg5
    context.log.info(
        f"ltr_model[{report.day}]: counterfactual nDCG@5={ndcg5.value:.4f} "
        f"[{ndcg5.interval.low:.4f}, {ndcg5.interval.high:.4f}] "
        f"vs logged order {evaluation.vs_logged.difference:+.4f} "
        f"fairness failing {[v.name for v in evaluation.fairness.failing]} "
        f"cpu_p95={evaluation.latency.worst.cpu_p95_ms:.3f}ms "
        f"samples={evaluation.samples} gate_passed={report.gate_passed}"
    )
    curve = summary.propensity
    return MaterializeResult(
        metadata=_rounded(
            {
                "gate": gate_line(report.gate),  # first: the UI lists entries in this order
                "scorer": evaluation.scorer,
                "debias": summary.debias.method,
                **{
                    f"counterfactual_ndcg@{k}": round(v.value, 4)
                    for k, v in evaluation.counterfactual.items()
                },
                "counterfactual_ndcg@5_ci": MetadataValue.text(
                    f"{ndcg5.interval.low:.4f}–{ndcg5.interval.high:.4f}"
                ),
                "vs_logged_order_ndcg@5": round(evaluation.vs_logged.difference, 4),
                "logged_label_ndcg@5": round(evaluation.logged_ndcg[5].value, 4),
                "fairness": MetadataValue.md(summary.fairness_table),
                "latency_cpu_p95_ms": round(evaluation.latency.worst.cpu_p95_ms, 4),
                "latency_wall_p95_ms": round(evaluation.latency.worst.p95_ms, 4),
                "samples": evaluation.samples,
                "gate_passed": report.gate_passed,
                "propensity_method": curve.method,
                "propensity": MetadataValue.json(_curve_metadata(curve)),
                "weights_method": summary.weights_method,
                "weights_validation_ndcg@5": MetadataValue.json(
                    {k: round(v, 4) for k, v in summary.weights_validation_ndcg_at_5.items()}
                ),
                "window_days_present": len(window.present),
                "window_days_missing": MetadataValue.json([d.isoformat() for d in window.missing]),
                "groups": MetadataValue.json(asdict(window.groups)),
                "list_ids_on_several_days": window.ids_on_several_days,
                "best_iteration": summary.best_iteration,
                "charts": MetadataValue.md(gate_charts(ltr.lake(), report.day, curve)),
                "model_card": MetadataValue.md(
                    render_model_card(summary, with_intersections=False)
                ),
                "fairness_intersections": MetadataValue.md(
                    intersections_table(summary) or "No intersection was reported."
                ),
                "path": MetadataValue.path(str(report.path)),
            }
        ),
        check_results=[
            *(gate_check_result(result) for result in report.gate),
            *(gate_check_result(result) for result in report.warnings),
        ],
    )


@asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    pool=PIPELINE_POOL,
    # online_comparison[D] first: the current candidate is decided on before D's version can
    # replace it as the candidate.
    deps=[ltr_model, AssetKey("online_comparison")],
    # Its checks are not inline: see publication_checks below and ltr_assets.defs.checks.
    freshness_policy=PUBLICATION_FRESHNESS,
    automation_condition=publish_after_passed_gate(),
    description="The night's publication record (`outcome` first): the gated candidate "
    "published as a new registry version (weights summing to 1.0, model, metadata), or, when "
    "its gate refused it, `not published: gate refused: <checks>` (nothing of the night's goes "
    "live; the record leads with what is live). LTR_ROLLOUT=canary (the default) makes it "
    "the registry's candidate (`candidate.json`, interleaved with the live version by "
    "serving until online_comparison promotes or retires it) unless a candidate is still "
    "being compared (then no pointer moves), except the first version, which goes live; "
    "LTR_ROLLOUT=direct moves `latest` "
    "(and clears a pending candidate). Neither moves for a backfill: a partition older than "
    "latest's or than any other version's, unless it rebuilds the candidate's own night "
    "(which replaces the candidate).",
    kinds={"json"},
)
def published_weights(
    context: AssetExecutionContext, ltr: LtrResource
) -> Iterator[MaterializeResult]:
    """Day D's publication record: `outcome` says what became of D's candidate, `published
    <version>` or `not published: gate refused: <checks>` (a refused night is the gate doing
    its job: the run succeeds, nothing of the night's goes live, and the asset says so rather
    than failing). Both lead with what is live now."""
    settings = ltr.settings()
    registry = ltr.registry()
    try:
        report = publish_candidate(
            ltr.lake(),
            registry,
            _day(context),
            mirror=ltr.mirror(),
            keep=settings.keep_versions,
            rollout=settings.rollout,
            # online_comparison[D] ran first: a candidate still set is still being compared
            # (its decision was "keep collecting"); it keeps its place until promoted or retired.
            replace_candidate=False,
        )
    except GateNotPassed as refused:
        outcome = refusal_outcome(refused.checks)
        kept = _candidate_of_day(registry, context.partition_key)
        if kept:  # a re-run of the candidate's own night, refused: the earlier build stays
            outcome += f"; {stays_the_candidate(kept)}"
        context.log.info(f"published_weights[{context.partition_key}]: {outcome}")
        refused_live = live_metadata(registry)
        yield MaterializeResult(
            metadata={
                "outcome": outcome,
                **refused_live,
                "published": False,
                "partition": context.partition_key,
                "refused_checks": MetadataValue.json(refused.checks),
                "kept_candidate": kept,
            }
        )
        # A refused night leaves the live version one day older: the one check it records.
        _record_checks(
            context,
            {
                LIVE_AGE_CHECK_KEY: _live_age_result(
                    {**refused_live, "kept_candidate": kept},
                    context.partition_key,
                    settings.live_max_age_days,
                    refused.checks,
                    context.instance,
                )
            },
        )
        return
    result = report.local
    context.log.info(
        f"published_weights[{context.partition_key}]: {result.version} {result.reason}"
    )
    if report.s3_published is False:
        context.log.warning(f"S3 publish failed, local version stands: {report.s3_error}")
        told = notify(
            settings.notify_webhook_url.get_secret_value(),
            f":warning: LTR {result.version} published; S3 is not in step with the local "
            f"registry: {report.s3_error}. Replicas reading S3 serve what it holds; the next "
            "publish or `ltr registry sync` tries again.",
        )
        if failure := undelivered(told):
            context.log.warning(failure)
    artifact = registry.load(result.version)
    live = live_metadata(registry)
    mirror = ltr.mirror()
    baseline = CandidateSummary.from_json(artifact.metadata).baseline
    compared = baseline.compared_with(context.partition_key)
    s3 = _s3_status(report.s3_published, report.s3_error)
    yield MaterializeResult(
        metadata={
            "outcome": f"{PUBLISHED_OUTCOME} {result.version} ({_role(result)})",
            # What is live now, first: after a backfill this run's version is not it.
            **live,
            "is_live": result.version == live["live_version"],
            "published": True,
            "version": result.version,
            "version_address": MetadataValue.url(mirror.url(result.version) + "/")
            if mirror is not None
            else MetadataValue.path(str(result.path)),
            "partition": context.partition_key,
            "compared_with": compared,
            "s3": s3,
            **{f"weight_{name}": round(w, 4) for name, w in artifact.weights.items()},
            "latest_moved": result.latest_moved,
            "candidate_set": result.candidate_set,
            "rollout": settings.rollout,
            "previous_latest": result.previous_latest or "",
            "reason": result.reason,
            **(
                {
                    "s3_published": report.s3_published,
                    "s3_error": report.s3_error,
                    "s3_uploaded": MetadataValue.json(report.s3_uploaded),
                    # S3 pointers this night's sync changed (catching up after an outage, say):
                    # `ltr night` asks serving to reload for them too
                    "s3_pointers_changed": MetadataValue.json(report.s3_pointers_changed),
                }
                if report.s3_published is not None
                else {}
            ),
            "pruned_versions": MetadataValue.json(
                report.retention.pruned if report.retention else []
            ),
            # The whole report, read back by the retention check when executed on request.
            "retention": MetadataValue.json(asdict(report.retention) if report.retention else {}),
            "cleaned_leftovers": MetadataValue.json(result.cleaned),
            "gated_scorer": artifact.metadata.get("gated_scorer", ""),
            "weights": MetadataValue.json(round_floats(artifact.weights)),
            "path": MetadataValue.path(str(result.path)),
        },
    )
    results = {
        RETENTION_CHECK_KEY: retention_check_result(report.retention),
        LIVE_AGE_CHECK_KEY: _live_age_result(
            live, context.partition_key, settings.live_max_age_days, [], context.instance
        ),
    }
    if report.s3_published is not None:
        results[S3_CHECK_KEY] = s3_check_result(report.s3_published, report.s3_error)
    _record_checks(context, results)


def _record_checks(
    context: AssetExecutionContext, results: Mapping[AssetCheckKey, AssetCheckResult]
) -> None:
    """Record each check published_weights records itself for its day (`_records_check`),
    after its materialization is stored (the generator resumes once Dagster has logged it):
    the results then read as ones on this materialization."""
    target = _stored_materialization(context)
    for key, check in results.items():
        if _records_check(context, key):
            evaluation = recorded_evaluation(key, check, context.partition_key, target)
            _record_in_run(context, evaluation)


def _stored_materialization(
    context: AssetExecutionContext,
) -> AssetCheckEvaluationTargetMaterializationData | None:
    """This run's materialization of the day, just stored. The evaluations recorded name it as
    their target: Dagster counts a partition's check status only from an evaluation that
    targets the partition's latest materialization (without one the day reads "missing")."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(
            asset_key=LIVE_AGE_CHECK_KEY.asset_key, asset_partitions=[context.partition_key]
        ),
        limit=1,
    ).records
    if not records or records[0].run_id != context.run_id:
        return None
    stored = records[0]
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=stored.storage_id, run_id=stored.run_id, timestamp=stored.timestamp
    )


def _newest_night(instance: DagsterInstance) -> date | None:
    """The newest day published_weights has a record for (a publication or a refusal)."""
    days = instance.get_materialized_partitions(LIVE_AGE_CHECK_KEY.asset_key)
    return max(map(date.fromisoformat, days)) if days else None


def _live_age_result(
    record: Mapping[str, Any],
    partition: str,
    limit: int,
    refused: Sequence[str],
    instance: DagsterInstance,
) -> AssetCheckResult:
    """live_version_age for the day from what its publication record says is live, measured
    at the newest night run when the day is older (a backfill: `live_version_age`)."""
    age = live_version_age(
        date.fromisoformat(partition),
        str(record.get("live_version") or ""),
        str(record.get("live_partition") or ""),
        limit,
        refused,
        newest_night=_newest_night(instance),
        by_rollback_at=str(record.get("live_by_rollback_at") or ""),
        kept_candidate=str(record.get("kept_candidate") or ""),
    )
    return live_age_check_result(age)


def _role(result: PublishResult) -> str:
    """What the published version became: live, the canary candidate, or neither (a backfill
    of a partition older than latest's or than another version's, or a candidate still being
    compared)."""
    if result.latest_moved:
        return "live"
    if result.candidate_set:
        return "the candidate"
    return "kept, not live"


def _candidate_of_day(registry: LocalRegistry, day: str) -> str:
    """The candidate's version when an earlier build of `day` is the candidate, else "": a
    refused re-run of that night leaves it in place (still interleaved, still promotable)."""
    try:
        candidate = registry.candidate() or {}
    except InvalidPointer:
        return ""
    return str(candidate.get("version", "")) if candidate.get("partition") == day else ""


def live_metadata(registry: LocalRegistry) -> dict[str, Any]:
    """What is live now, its model card, and the registry's versions (the rollback
    pick-list's, with their figures): the first entries of every publication record."""
    pointer = registry.pointer() or {}
    rolled_back = "rolled_back" in pointer  # made live by a rollback (its time: moved_at)
    return {
        "live_version": pointer.get("version", ""),
        "live_partition": pointer.get("partition", ""),
        "live_by_rollback_at": str(pointer.get("moved_at", "")) if rolled_back else "",
        "model_card": MetadataValue.md(live_model_card(registry)),
        "fairness_intersections": MetadataValue.md(live_intersections(registry)),
        "registry_versions": MetadataValue.md(versions_table(list_versions(registry)[0])),
    }


def _record_in_run(context: AssetExecutionContext, evaluation: AssetCheckEvaluation) -> None:
    """The evaluation stored as one of this run's events: linked to the run in the UI, and one
    per (run, day), so a day published again (a backfill, a re-run) records its own result.
    A runless record cannot: Dagster keeps one runless result per check and partition and a
    second one violates its unique index."""
    context.instance.report_dagster_event(
        DagsterEvent(
            event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION.value,
            job_name=context.run.job_name,
            event_specific_data=evaluation,
        ),
        run_id=context.run_id,
    )


def _s3_status(published: bool | None, error: str) -> str:
    """The publication's S3 outcome in a word: not configured is not a pass."""
    if published is None:
        return "not configured"
    return "published" if published else f"failed: {error}"


def _records_check(context: AssetExecutionContext, key: AssetCheckKey) -> bool:
    """Whether published_weights records this check itself: unless this run executes it (a
    materialization launched from the UI with its checks runs the check's own step, which reads
    the record). S3 is read at load and at run time from the same environment, so with S3
    configured s3_published is declared."""
    selected = context.run.asset_check_selection
    if selected is None:
        return key not in context.job_def.asset_layer.asset_graph.asset_check_keys
    return key not in selected


def _publication_metadata(context: AssetCheckExecutionContext) -> dict[str, Any]:
    """The metadata published_weights recorded for the check's day (a refusal record says
    `published: false`); a day it never materialized has nothing to check."""
    day = context.partition_key
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=S3_CHECK_KEY.asset_key, asset_partitions=[day]), limit=1
    ).records
    materialization = records[0].asset_materialization if records else None
    if materialization is None:
        raise Failure(description=f"published_weights[{day}] never materialized: nothing to check")
    return {name: value.value for name, value in materialization.metadata.items()}


def _s3_published(context: AssetCheckExecutionContext) -> AssetCheckResult:
    """Executed on request only (ltr_daily_job leaves it out of its plan): reads the S3 outcome
    published_weights recorded for the day."""
    metadata = _publication_metadata(context)
    if metadata.get("published") is False:
        return nothing_published_result(S3_CHECK_KEY, str(metadata.get("outcome", "")))
    published = metadata.get("s3_published")
    if not isinstance(published, bool):
        raise Failure(description=f"published_weights[{context.partition_key}] ran without S3")
    return s3_check_result(published, str(metadata.get("s3_error", "")))


def _retention(context: AssetCheckExecutionContext) -> AssetCheckResult:
    """Executed on request only (ltr_daily_job leaves it out of its plan): reads the retention
    report published_weights recorded for the day."""
    metadata = _publication_metadata(context)
    if metadata.get("published") is False:
        return nothing_published_result(RETENTION_CHECK_KEY, str(metadata.get("outcome", "")))
    recorded = metadata.get("retention")
    if not isinstance(recorded, dict):
        raise Failure(
            description=f"published_weights[{context.partition_key}] recorded no retention report"
        )
    return retention_check_result(PruneReport(**recorded) if recorded else None)


def _live_version_age(context: AssetCheckExecutionContext, ltr: LtrResource) -> AssetCheckResult:
    """Executed on request only (ltr_daily_job leaves it out of its plan): the age of the
    version published_weights recorded as live for the day (a refused day's record names the
    refused checks), against LTR_LIVE_MAX_AGE_DAYS as it is set now."""
    metadata = _publication_metadata(context)
    refused = metadata.get("refused_checks") if metadata.get("published") is False else None
    return _live_age_result(
        metadata,
        context.partition_key,
        ltr.settings().live_max_age_days,
        [str(check) for check in refused] if isinstance(refused, list) else [],
        context.instance,
    )


def _publication_check(
    name: str, description: str, check: Callable[..., AssetCheckResult]
) -> AssetChecksDefinition:
    """A daily check on published_weights that reads back what the asset recorded (`check`
    takes the check's context, and resources by name)."""
    with partitioned_checks_allowed():
        return asset_check(
            asset=published_weights,
            name=name,
            partitions_def=daily_partitions,
            description=description,
        )(check)


s3_published = _publication_check(S3_CHECK, S3_CHECK_DESCRIPTION, _s3_published)
retention = _publication_check(RETENTION_CHECK, RETENTION_CHECK_DESCRIPTION, _retention)
live_version_age_check = _publication_check(
    LIVE_AGE_CHECK, LIVE_AGE_CHECK_DESCRIPTION, _live_version_age
)


def publication_checks() -> list[AssetChecksDefinition]:
    """published_weights' checks, recorded by it rather than planned. Read at code-location
    load, like the partition mapping: with S3_BUCKET unset there is no S3 to check, so no
    s3_published is declared (and published_weights records `s3: not configured`), rather than
    a check that passes."""
    return [
        retention,
        live_version_age_check,
        *([s3_published] if Settings.from_env().s3.bucket else []),
    ]
