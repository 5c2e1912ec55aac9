"""Asset checks: the publication gate on ltr_model and the quarantine warning on raw_events.

They are declared inline (`check_specs`) so each is partitioned like its asset, and the asset
returns their results with its materialization. Gate checks are blocking with ERROR severity: a
failure stops published_weights in the same run and the previous version stays live.
"""

from __future__ import annotations

import math

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue

from ltr_assets.evaluation import GATE_NAMES, GateResult
from ltr_assets.ingest import IngestReport, SourceChoice

GATE_DESCRIPTIONS = {
    "ndcg_at_5": "Test-split nDCG@5 of the scorer serving will run ≥ LTR_NDCG_MIN (0.65).",
    "fairness_gap": "Largest top-5 exposure gap over protected attribute values ≤ "
    "LTR_FAIRNESS_MAX (0.05).",
    "latency_p95": "p95 time to score one query's candidates < LTR_LATENCY_P95_MS (15 ms).",
    "min_samples": "Test groups with a positive label ≥ LTR_MIN_SAMPLES (100).",
    "no_regression": "nDCG@5 not worse than the live version on the same test groups by more "
    "than LTR_REGRESSION_MARGIN (0.02).",
}
QUARANTINE_CHECK = "quarantine_ratio"
FALLBACK_CHECK = "source_fallback"
CONFLICTS_CHECK = "duplicate_conflicts"


def gate_check_specs(asset: str) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec(name, asset=asset, blocking=True, description=GATE_DESCRIPTIONS[name])
        for name in GATE_NAMES
    ]


def quarantine_check_spec(asset: str) -> AssetCheckSpec:
    return AssetCheckSpec(
        QUARANTINE_CHECK,
        asset=asset,
        description="Warns when the share of quarantined events exceeds "
        "LTR_QUARANTINE_WARN_RATIO (0.05).",
    )


def _number(value: float) -> MetadataValue:
    return MetadataValue.float(float(value)) if math.isfinite(value) else MetadataValue.text("n/a")


def gate_check_result(result: GateResult) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=result.name,
        passed=result.passed,
        severity=AssetCheckSeverity.ERROR,
        description=result.description,
        metadata={
            "value": _number(result.value),
            "threshold": _number(result.threshold),
            **{k: MetadataValue.text(str(v)) for k, v in result.details.items()},
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
            "quarantine_ratio": ratio,
            "quarantined": report.quarantined,
            "reasons": MetadataValue.json(dict(report.reasons)),
        },
    )


def conflicts_check_spec(asset: str) -> AssetCheckSpec:
    return AssetCheckSpec(
        CONFLICTS_CHECK,
        asset=asset,
        description="Warns when copies of an event id came with different content (one copy "
        "is kept: the earliest timestamp, then the smallest content hash).",
    )


def conflicts_check_result(report: IngestReport) -> AssetCheckResult:
    listed = ", ".join(report.conflicting_ids)
    return AssetCheckResult(
        check_name=CONFLICTS_CHECK,
        passed=report.conflicts == 0,
        severity=AssetCheckSeverity.WARN,
        description="no event id came with conflicting content"
        if report.conflicts == 0
        else f"{report.conflicts} conflicting copies dropped; kept the earliest (then smallest "
        f"content hash) of each; event ids: {listed}",
        metadata={
            "duplicate_conflicts": report.conflicts,
            "exact_duplicates": report.duplicates,
            "conflicting_event_ids": MetadataValue.json(report.conflicting_ids),
        },
    )


def fallback_check_spec(asset: str) -> AssetCheckSpec:
    return AssetCheckSpec(
        FALLBACK_CHECK,
        asset=asset,
        description="Warns when Kafka is configured but could not be read, so the day came "
        "from the audit-log files.",
    )


def fallback_check_result(choice: SourceChoice) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=FALLBACK_CHECK,
        passed=not choice.fallback_reason,
        severity=AssetCheckSeverity.WARN,
        description=f"read from {choice.name}"
        + (f" because Kafka failed: {choice.fallback_reason}" if choice.fallback_reason else ""),
        metadata={"source": choice.name, "fallback_reason": choice.fallback_reason},
    )


S3_CHECK = "s3_published"


def s3_check_spec(asset: str) -> AssetCheckSpec:
    return AssetCheckSpec(
        S3_CHECK,
        asset=asset,
        description="Warns when the version could not be published to S3/MinIO (the local "
        "registry stands; the next publish or `ltr registry sync` catches up).",
    )


def s3_check_result(published: bool | None, error: str) -> AssetCheckResult:
    if published is None:
        description = "S3 is not configured (S3_BUCKET unset): local registry only"
    elif published:
        description = "published to S3 and verified; S3 latest.json agrees with the local latest"
    else:
        description = f"S3 publish failed: {error}"
    return AssetCheckResult(
        check_name=S3_CHECK,
        passed=published is not False,
        severity=AssetCheckSeverity.WARN,
        description=description,
    )
