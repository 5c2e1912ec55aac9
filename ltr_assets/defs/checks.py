"""Asset checks: the publication gate on ltr_model, the quarantine warning on raw_events, the
publication's S3, retention and live-version-age warnings.

They are declared inline (`check_specs`) with the assets' daily partitions, so each run records
one result per check for its day (no "Skipped" row beside it) and a check's history reads by
day; the asset returns their results with its materialization. Gate checks are blocking
(`all_deps_blocking_checks_passed` keeps automation from publishing after a refusal) and fail
with WARN severity: a refused night is the gate doing its job, not a failure of the platform, so
the run succeeds and published_weights[D] records "not published: gate refused: <reason>"
(publish_candidate refuses a candidate whose gate failed, whatever launched it), and nothing
of the night's goes live. ERROR severity would fail ltr_model's step, the run, and
published_weights[D] with it (Dagster marks a partition planned in a failed run failed), so a
refused night would read as a crash on the lineage and the partitions.

published_weights' checks (`s3_published`, `retention`, `live_version_age`) are the exception:
a check in the run's plan that does not execute is shown as "Execution failed" once the run
fails (and as not run when published_weights records a refusal), so they are kept out of
ltr_daily_job's plan and published_weights records their results itself
(`recorded_evaluation`): `s3_published` and `retention` on the days it publishes,
`live_version_age` on every day it materializes (a refused night too: that is when the live
version gets older); `s3_published` is declared only when S3 is configured.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    MetadataValue,
    PreviewWarning,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from ltr_assets.defs.partitions import daily_partitions
from ltr_assets.gate.evaluation import (
    FAIRNESS_COVERAGE_NAME,
    GATE_NAMES,
    SCORER_FIDELITY_NAME,
    GateResult,
    round_floats,
)
from ltr_assets.ingest.day import IngestReport, SourceChoice
from ltr_assets.ingest.matrix import MatrixReport
from ltr_assets.registry.publication import LiveAge, PruneReport

GATE_DESCRIPTIONS = {
    "ndcg_at_5": "Lower 95% bound of the counterfactual test nDCG@5 (position-bias corrected) of "
    "the scorer serving will run ≥ LTR_NDCG_MIN.",
    "fairness_gap": "For every protected attribute value with enough lists: upper 95% bound of "
    "|Δ_exp@5| ≤ LTR_FAIRNESS_MAX and upper bound of the exposure ratio ≥ "
    "LTR_FAIRNESS_MIN_RATIO; fails when no attribute has a known value.",
    "latency_p95": "p95 of the real /rank request path in-process, at the data's list sizes and "
    "at LTR_MAX_CANDIDATES, < LTR_LATENCY_P95_MS.",
    "min_samples": "Test lists with a positive label ≥ LTR_MIN_SAMPLES.",
    "click_signal": "The clicks depend on who was shown: the click model's relevance predicts "
    "the test lists' clicks better than position alone by ≥ LTR_CLICK_SIGNAL_MIN_Z standard "
    "errors (random clicks, bots or feedback joined to the wrong lawyers fail it).",
    "no_regression": "Lower 95% bound of the paired counterfactual nDCG@5 difference with the "
    "platform's logged order (always) and the live version (when one exists) ≥ "
    "−LTR_REGRESSION_MARGIN; an unreadable live version fails.",
}
FAIRNESS_COVERAGE_CHECK = FAIRNESS_COVERAGE_NAME
QUARANTINE_CHECK = "quarantine_ratio"
FALLBACK_CHECK = "source_fallback"
CONFLICTS_CHECK = "duplicate_conflicts"


@contextmanager
def partitioned_checks_allowed() -> Iterator[None]:
    """Dagster 1.13 marks `partitions_def` on a check as preview; only that warning is
    silenced, where a partitioned check is declared."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="Specifying a partitions_def on an AssetCheckSpec",
            category=PreviewWarning,
        )
        yield


def _spec(name: str, asset: str, **kwargs: Any) -> AssetCheckSpec:
    """A check partitioned like its asset."""
    with partitioned_checks_allowed():
        return AssetCheckSpec(name, asset=asset, partitions_def=daily_partitions, **kwargs)


def partitioned_check_spec(name: str, asset: str, **kwargs: Any) -> AssetCheckSpec:
    """A check partitioned like its (daily) asset, for the assets declared elsewhere."""
    return _spec(name, asset, **kwargs)


def gate_check_specs(asset: str) -> list[AssetCheckSpec]:
    return [
        _spec(name, asset, blocking=True, description=GATE_DESCRIPTIONS[name])
        for name in GATE_NAMES
    ]


def fairness_coverage_spec(asset: str) -> AssetCheckSpec:
    return _spec(
        FAIRNESS_COVERAGE_CHECK,
        asset,
        description="Warns when fewer than LTR_FAIRNESS_MIN_COVERAGE of the candidates carry a "
        "known value of a protected attribute, or a value is in too few lists to be judged.",
    )


def scorer_fidelity_spec(asset: str) -> AssetCheckSpec:
    return _spec(
        SCORER_FIDELITY_NAME,
        asset,
        description="Warns when, on the gate's test lists, the LightGBM model trained beside "
        "the published weights (LTR_SCORER=weights) is shown better than them by more than "
        "LTR_REGRESSION_MARGIN (the lower bound of the paired counterfactual nDCG@5 "
        "difference): linear non-negative weights cannot express what the model learned, and "
        "LTR_SCORER=model would serve the model. Passes when the model is served.",
    )


def quarantine_check_spec(asset: str) -> AssetCheckSpec:
    return _spec(
        QUARANTINE_CHECK,
        asset,
        description="Warns when the share of quarantined events exceeds "
        "LTR_QUARANTINE_WARN_RATIO (default 0.05; each result states the ratio in force).",
    )


def _number(value: float) -> MetadataValue:
    if not math.isfinite(value):
        return MetadataValue.text("n/a")
    return MetadataValue.float(round(float(value), 4))


def _detail(key: str, value: object) -> MetadataValue:
    """A gate result's detail as check metadata: `*_md` entries render as Markdown (shown
    under the name without the suffix)."""
    if key.endswith("_md") and isinstance(value, str):
        return MetadataValue.md(value)
    if isinstance(value, float) and math.isfinite(value):
        return MetadataValue.float(round(value, 4))
    if isinstance(value, bool):
        return MetadataValue.bool(value)
    if isinstance(value, int):
        return MetadataValue.int(value)
    if isinstance(value, dict | list | tuple):  # JSON, not Python's repr ("{'gender': 0.91}")
        return MetadataValue.json(round_floats(value))
    return MetadataValue.text(str(round_floats(value)))


def gate_check_result(result: GateResult) -> AssetCheckResult:
    """A figure computed with the gate as a check result: value, threshold and every detail as
    metadata. A failure is a WARN, of a blocking gate check (module docstring) or of the
    non-blocking fairness_coverage alike; blocking is the spec's, not the result's."""
    return AssetCheckResult(
        check_name=result.name,
        passed=result.passed,
        severity=AssetCheckSeverity.WARN,
        description=result.description,
        metadata={
            "value": _number(result.value),
            "threshold": _number(result.threshold),
            **{k.removesuffix("_md"): _detail(k, v) for k, v in result.details.items()},
        },
    )


def quarantine_check_result(report: IngestReport, warn_ratio: float) -> AssetCheckResult:
    ratio = report.quarantine_ratio
    return AssetCheckResult(
        check_name=QUARANTINE_CHECK,
        passed=ratio <= warn_ratio,
        severity=AssetCheckSeverity.WARN,
        description=f"{report.quarantined} of {report.read - report.ignored} events quarantined "
        f"({ratio:.2%}; warn above {warn_ratio:.2%})",
        metadata={
            "quarantine_ratio": round(ratio, 4),
            "quarantined": report.quarantined,
            "reasons": MetadataValue.json(dict(report.reasons)),
        },
    )


FEEDBACK_CHECK = "feedback_present"


def feedback_check_spec(asset: str) -> AssetCheckSpec:
    return _spec(
        FEEDBACK_CHECK,
        asset,
        description="Warns when a day with recommendation lists has no feedback matched to any "
        "of them: a feedback outage looks like a day of users who never click, and the model "
        "and gate would learn from it as such; and when a day has feedback but no list.",
    )


def feedback_check_result(report: MatrixReport) -> AssetCheckResult:
    """WARN: lists were shown and not one got matched feedback (none arrived, or none joins);
    or feedback came on a day that shows no list at all (the impressions are not arriving)."""
    silent = report.groups > 0 and report.groups_with_positive == 0
    listless = report.groups == 0 and report.feedback_events > 0
    if listless:
        description = (
            f"{report.feedback_events} feedback events on this day but no recommendation list: "
            "are the impressions reaching the pipeline (the platform's match_recommendation "
            "events, the service's impression log)? Feedback for the day before's lists is "
            "counted on that day"
        )
    elif not silent:
        description = (
            f"{report.groups_with_positive} of {report.groups} lists have positive feedback "
            f"({report.feedback_matched} feedback events matched)"
        )
    elif report.feedback_events == 0:
        description = (
            f"no feedback at all on this day for its {report.groups} lists: is feedback reaching "
            "the pipeline (the platform's offer_feedback events, POST /feedback)? Training "
            "windows holding this day learn from it as a day nobody clicked"
        )
    else:
        description = (
            f"{report.feedback_events} feedback events on this day, none matched to its "
            f"{report.groups} lists (by request_id, else case and lawyer): do their ids agree "
            "with the recommendations'?"
        )
    return AssetCheckResult(
        check_name=FEEDBACK_CHECK,
        passed=not (silent or listless),
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "groups": report.groups,
            "groups_with_positive": report.groups_with_positive,
            "feedback_events": report.feedback_events,
            "feedback_matched": report.feedback_matched,
        },
    )


def conflicts_check_spec(asset: str) -> AssetCheckSpec:
    return _spec(
        CONFLICTS_CHECK,
        asset,
        description="Warns when copies of an event id came with different content, the "
        "timestamp aside (one copy is kept: the earliest timestamp, then the smallest content "
        "hash); counts apart those shown differently (another position, policy or team).",
    )


def conflicts_check_result(report: IngestReport) -> AssetCheckResult:
    listed = ", ".join(report.conflicting_ids)
    shown = (
        f"; {report.shown_differently} of them show the lawyer differently (another "
        "rank_position, policy, propensity, deterministic_rank or team: a click may be "
        "credited to a position or team the client did not see), event ids: "
        + ", ".join(report.shown_differently_ids)
        if report.shown_differently
        else ""
    )
    return AssetCheckResult(
        check_name=CONFLICTS_CHECK,
        passed=report.conflicts == 0,
        severity=AssetCheckSeverity.WARN,
        description="no event id came with conflicting content"
        if report.conflicts == 0
        else f"{report.conflicts} conflicting copies dropped; kept the earliest (then smallest "
        f"content hash) of each; event ids: {listed}{shown}",
        metadata={
            "duplicate_conflicts": report.conflicts,
            "duplicates": report.duplicates,
            "conflicting_event_ids": MetadataValue.json(report.conflicting_ids),
            "conflicts_shown_differently": report.shown_differently,
            "shown_differently_event_ids": MetadataValue.json(report.shown_differently_ids),
        },
    )


def fallback_check_spec(asset: str) -> AssetCheckSpec:
    return _spec(
        FALLBACK_CHECK,
        asset,
        description="Warns when Kafka is configured but could not be read, so the day came "
        "from the audit-log files.",
    )


def sources_text(choice: SourceChoice, read: int, serving_log_read: int) -> str:
    """Where the day's records came from: the source read, and the serving log's spill files
    read beside it, with their shares (a day served by the ranking service may come from the
    serving log alone)."""
    if not serving_log_read:
        return choice.name
    return (
        f"{choice.name} ({read - serving_log_read} records) and the serving log "
        f"({serving_log_read})"
    )


def fallback_check_result(
    choice: SourceChoice, read: int = 0, serving_log_read: int = 0
) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=FALLBACK_CHECK,
        passed=not choice.fallback_reason,
        severity=AssetCheckSeverity.WARN,
        description=f"read from {sources_text(choice, read, serving_log_read)}"
        + (f" because Kafka failed: {choice.fallback_reason}" if choice.fallback_reason else ""),
        metadata={"source": choice.name, "fallback_reason": choice.fallback_reason},
    )


S3_CHECK = "s3_published"
S3_CHECK_KEY = AssetCheckKey(AssetKey("published_weights"), S3_CHECK)
S3_CHECK_DESCRIPTION = (
    "Warns when the version could not be published to S3/MinIO (the local registry stands; the "
    "next publish or `ltr registry sync` catches up). Declared only when S3_BUCKET is set; "
    "recorded by published_weights for the day it published, so a day it did not run (a "
    "refused gate) has no result."
)


def s3_check_result(published: bool, error: str) -> AssetCheckResult:
    """The S3 publish of a version as a WARN check result (S3 configured: published or not)."""
    return AssetCheckResult(
        check_name=S3_CHECK,
        asset_key=S3_CHECK_KEY.asset_key,
        passed=published,
        severity=AssetCheckSeverity.WARN,
        description="published to S3 and verified; S3 latest.json agrees with the local latest"
        if published
        else f"S3 publish failed: {error}",
        metadata={"s3_error": error},
    )


def nothing_published_result(key: AssetCheckKey, outcome: str) -> AssetCheckResult:
    """A publication check executed on request for a day whose gate refused its candidate:
    nothing was published, so nothing was uploaded or pruned; the result says so (a run that
    materializes published_weights with its checks selected must not fail on a refusal)."""
    return AssetCheckResult(
        check_name=key.name,
        asset_key=key.asset_key,
        passed=True,
        severity=AssetCheckSeverity.WARN,
        description=f"nothing to check: {outcome}",
        metadata={"published": False},
    )


def recorded_evaluation(
    key: AssetCheckKey,
    result: AssetCheckResult,
    partition: str,
    target: AssetCheckEvaluationTargetMaterializationData | None = None,
) -> AssetCheckEvaluation:
    """A check result as an evaluation published_weights records itself, outside the run's plan,
    for its day, on `target`: the materialization it recorded just before."""
    return AssetCheckEvaluation(
        target_materialization_data=target,
        asset_key=key.asset_key,
        check_name=key.name,
        passed=result.passed,
        metadata=dict(result.metadata or {}),
        severity=result.severity,
        description=result.description,
        partition=partition,
    )


RETENTION_CHECK = "retention"
RETENTION_CHECK_KEY = AssetCheckKey(AssetKey("published_weights"), RETENTION_CHECK)
RETENTION_CHECK_DESCRIPTION = (
    "Warns when retention (LTR_KEEP_VERSIONS) could not delete an old version here or on S3, "
    "or could not reach S3 (the next run that reaches it prunes what S3 kept). "
    "Retention is housekeeping: it never fails a publish. Recorded by published_weights for the "
    "day it published, so a day it did not run (a refused gate) has no result."
)


def retention_check_result(report: PruneReport | None) -> AssetCheckResult:
    if report is None:
        return AssetCheckResult(
            check_name=RETENTION_CHECK,
            asset_key=RETENTION_CHECK_KEY.asset_key,
            passed=True,
            severity=AssetCheckSeverity.WARN,
            description="retention did not run",
        )
    problems = [f"{v}: {why}" for v, why in report.failed.items()]
    problems += [f"{v} (on S3): {why}" for v, why in report.s3_failed.items()]
    if report.s3_skipped:
        problems.insert(0, report.s3_skipped)
    if report.skipped:
        problems.insert(0, f"skipped: {report.skipped}")
    description = (
        f"deleted {len(report.pruned)} old version(s)"
        if report.ok
        else f"retention incomplete ({len(problems)} problem(s)): " + "; ".join(problems[:3])
    )
    return AssetCheckResult(
        check_name=RETENTION_CHECK,
        asset_key=RETENTION_CHECK_KEY.asset_key,
        passed=report.ok,
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "pruned": MetadataValue.json(report.pruned),
            "not_deleted": MetadataValue.json(report.failed),
            "not_deleted_on_s3": MetadataValue.json(report.s3_failed),
            "skipped": report.skipped,
            "s3_skipped": report.s3_skipped,
        },
    )


LIVE_AGE_CHECK = "live_version_age"
LIVE_AGE_CHECK_KEY = AssetCheckKey(AssetKey("published_weights"), LIVE_AGE_CHECK)
LIVE_AGE_CHECK_DESCRIPTION = (
    "Warns when the version live after the day's publication record was trained on a partition "
    "more than LTR_LIVE_MAX_AGE_DAYS days before the day (default 3), or when nothing is live; "
    "a refused night names the gate's failing checks. Freshness cannot tell: it counts "
    "materializations, and a refused night materializes too. Recorded by published_weights "
    "for every day it materializes, published or refused; a backfill of an older day measures "
    "the age at the newest night run, so it cannot silence the warning."
)


def live_age_check_result(age: LiveAge) -> AssetCheckResult:
    """The live version's age for a day as a WARN check result (`live_version_age`)."""
    return AssetCheckResult(
        check_name=LIVE_AGE_CHECK,
        asset_key=LIVE_AGE_CHECK_KEY.asset_key,
        passed=age.passed,
        severity=AssetCheckSeverity.WARN,
        description=age.description,
        metadata={
            "measured_on": str(age.measured_on),
            "live_version": age.live_version,
            "live_partition": age.live_partition,
            "age_days": MetadataValue.int(age.age_days)
            if age.age_days is not None
            else MetadataValue.text("n/a"),
            "limit": age.limit,
        },
    )
