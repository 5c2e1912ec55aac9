"""online_comparison: the canary candidate against the live version, decided day by day.

Thin wiring over `ltr_assets.online.comparison`. The asset counts day D's interleaved requests,
sums the candidate's days, decides with `ltr_assets.online.decision.decide`, moves the
registry's pointers accordingly (the evidence recorded in the move) and notifies. Its check,
`online_decision`, reports the decision; it is declared inline (`check_specs`, partitioned
like the asset) and blocking, and what each outcome looks like is chosen to tell the truth:

- promote, keep collecting, no candidate: passed. Nothing is wrong.
- a re-run (backfill) of a day whose candidate the registry has decided since: what the day
  compared and what became of the candidate, decided again by no one; failed with WARN when
  the candidate was retired on that day, as the night itself reported, else passed.
- serving interleaved a candidate the registry had decided (more than `STALE_GRACE` after the
  decision), with no candidate now or beside the current one: failed with WARN severity.
  Serving is not following the registry (its reload failed or is off), which nothing else on
  this asset would show.
- a day of the candidate's span not in the lake while LTR_CANARY_MAX_DAYS is past: collecting
  (the timeout does not retire on evidence nobody has seen), failed with WARN severity, so a
  canary held past its limit is seen; the reason names the day and what to do.
- retire: failed with WARN severity. The candidate lost (or could not win in time); the UI
  shows it in yellow. WARN does not block: that night's published_weights still publishes its
  own gated version as the next candidate, and the run succeeds.
- the decision could not be applied (the candidate changed under the comparison, or cannot be
  promoted): failed with ERROR severity, which blocks published_weights for D. A new candidate
  must not replace one whose decision was lost; an operator decides (`ltr registry promote|
  retire`).

published_weights[D] depends on this asset, so in ltr_daily_job the decision on the current
candidate is taken before that night's version can replace it. The reload sensor watches this
asset too: a promotion or retirement changes what serving must load.
"""

from datetime import date
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from ltr_assets.defs.checks import partitioned_check_spec
from ltr_assets.defs.concurrency import PIPELINE_POOL
from ltr_assets.defs.partitions import daily_partitions
from ltr_assets.defs.resources import LtrResource
from ltr_assets.gate.charts import markdown_image
from ltr_assets.lake.paths import Lake
from ltr_assets.notify import notify, undelivered
from ltr_assets.online.charts import win_share_chart
from ltr_assets.online.comparison import (
    Applied,
    Comparison,
    Thresholds,
    apply,
    compare,
    share_by_day,
)
from ltr_assets.online.decision import Decision, InterleavingCounts
from ltr_core.artifacts.format import RegistryError

GROUP = "ltr"
ONLINE_CHECK = "online_decision"
ASSET = "online_comparison"


def _round(value: float | None) -> float | str:
    return "n/a" if value is None else round(value, 4)


def _day_counts(day: InterleavingCounts) -> dict[str, Any]:
    """The day's own evidence, as the UI shows it."""
    return {
        "day_clicked_requests": day.clicked_requests,
        "day_requests": day.requests,
        "day_wins_losses_ties": MetadataValue.text(f"{day.wins} / {day.losses} / {day.ties}"),
    }


def comparison_metadata(
    comparison: Comparison, applied: Applied | None, lake: Lake, margin: float
) -> dict[str, Any]:
    """The day's row in the UI: the pair, the day's and the accumulated evidence (with its
    chart over the candidate's days), the decision."""
    meta: dict[str, Any] = {
        "decision": comparison.decision.value if comparison.decision else comparison.status,
        "reason": comparison.explanation,
        "candidate": comparison.pair.candidate if comparison.pair else "",
        "live": comparison.pair.live if comparison.pair else "",
        "candidate_partition": comparison.candidate_partition,
    }
    if comparison.stale_requests:
        meta["day_stale_requests"] = comparison.stale_requests
    if comparison.outcome is None and comparison.today is not None:  # decided before
        meta.update(_day_counts(comparison.today.counts))
    if comparison.outcome is None or comparison.total is None or comparison.today is None:
        return meta
    ev = comparison.outcome.evidence
    meta.update(
        {
            "days_collecting": comparison.days_collecting,
            "timed_out": comparison.outcome.timed_out,
            "clicked_requests": ev.clicked,
            "requests": ev.requests,
            "wins": ev.wins,
            "losses": ev.losses,
            "ties": ev.ties,
            "win_share": _round(ev.share),
            "win_share_95ci": MetadataValue.text(f"{ev.low:.4f}–{ev.high:.4f}"),
            "live_ctr": _round(ev.live_ctr),
            "candidate_ctr": _round(ev.candidate_ctr),
            **_day_counts(comparison.today.counts),
            "day_interleaved_requests": comparison.today.interleaved_requests,
            "day_other_pair_requests": comparison.today.other_pairs,
            "day_one_team_requests": comparison.today.one_team,
            "days_with_evidence": MetadataValue.json(
                [d.isoformat() for d in comparison.days_with_evidence]
            ),
            "pointer_moved": applied.action if applied else "none",
        }
    )
    if comparison.missing_days:  # days of the span not in the lake: the decision waits
        meta["missing_days"] = MetadataValue.json([d.isoformat() for d in comparison.missing_days])
    if comparison.recount is not None:  # why the accumulated counts grew by more than D's own
        meta["previous_day_recount"] = MetadataValue.text(comparison.recount.summary())
    if comparison.pair is not None and comparison.days_with_evidence:
        path = share_by_day(lake, comparison.pair, comparison.days_with_evidence)
        meta["win_share_chart"] = MetadataValue.md(markdown_image(win_share_chart(path, margin)))
    if applied is not None and applied.s3_synced is not None:
        meta["s3_synced"] = applied.s3_synced
        meta["s3_error"] = applied.s3_error
        meta["s3_pointers_changed"] = MetadataValue.json(applied.s3_pointers_changed)
    return meta


def decision_check_result(
    comparison: Comparison, applied: Applied | None, error: str = ""
) -> AssetCheckResult:
    """The check's verdict on the day (module docstring)."""
    decision = comparison.decision
    metadata = {"decision": decision.value if decision else comparison.status}
    if error:
        return AssetCheckResult(
            check_name=ONLINE_CHECK,
            passed=False,
            severity=AssetCheckSeverity.ERROR,
            description=f"the decision ({metadata['decision']}) could not be applied: {error}. "
            "Nothing is published over this candidate until an operator promotes or retires it.",
            metadata=metadata,
        )
    if decision is Decision.RETIRE or comparison.retired_on_day:
        return AssetCheckResult(
            check_name=ONLINE_CHECK,
            passed=False,
            severity=AssetCheckSeverity.WARN,
            description=f"candidate retired, latest unchanged: {comparison.explanation}",
            metadata=metadata,
        )
    if comparison.timeout_held:  # collecting past the limit: someone has to see it
        return AssetCheckResult(
            check_name=ONLINE_CHECK,
            passed=False,
            severity=AssetCheckSeverity.WARN,
            description=comparison.explanation,
            metadata={
                **metadata,
                "missing_days": [d.isoformat() for d in comparison.missing_days],
            },
        )
    prefix = "candidate promoted to latest: " if decision is Decision.PROMOTE else ""
    if comparison.stale_requests:
        return AssetCheckResult(
            check_name=ONLINE_CHECK,
            passed=False,
            severity=AssetCheckSeverity.WARN,
            description=prefix + comparison.explanation,
            metadata={**metadata, "stale_requests": comparison.stale_requests},
        )
    return AssetCheckResult(
        check_name=ONLINE_CHECK,
        passed=True,
        severity=AssetCheckSeverity.WARN,
        description=prefix + comparison.explanation,
        metadata=metadata,
    )


def _notification(comparison: Comparison, applied: Applied) -> str:
    pair = comparison.pair
    assert pair is not None
    if applied.action == "promoted":
        return (
            f":rocket: LTR candidate {pair.candidate} promoted over {pair.live} after "
            f"{comparison.days_collecting} day(s) of interleaving: {comparison.explanation}"
        )
    return (
        f":wastebasket: LTR candidate {pair.candidate} retired; {pair.live} stays live: "
        f"{comparison.explanation}"
    )


@asset(
    name=ASSET,
    partitions_def=daily_partitions,
    group_name=GROUP,
    pool=PIPELINE_POOL,
    deps=["raw_events"],
    check_specs=[
        partitioned_check_spec(
            ONLINE_CHECK,
            ASSET,
            blocking=True,
            description="Applies the online decision rule to the canary candidate's "
            "interleaving evidence so far: promote when at least LTR_INTERLEAVE_MIN_REQUESTS "
            "clicked requests, LTR_INTERLEAVE_MIN_EVIDENCE of them where the two rankings "
            "differ, put the lower 95% bound of its win share at 0.5 − "
            "LTR_INTERLEAVE_MARGIN or above; retire when the upper bound is below 0.5, or "
            "after LTR_CANARY_MAX_DAYS without a decision; otherwise keep collecting. Passes "
            "on promote, collect and no candidate; warns on a retirement, and on collecting "
            "past LTR_CANARY_MAX_DAYS while a day of the candidate's is not in the lake; fails "
            "(blocking the night's publication) only when the decision could not be applied.",
        )
    ],
    description="Day D's interleaved requests of the live version and the canary candidate "
    "(raw_events[D]): each clicked request's winner by team credit, the day's counts (stored "
    "in the lake), the candidate's win share with its 95% interval over all its days, "
    "per-team click-through, and the decision (the registry's pointers moved accordingly).",
    kinds={"json"},
)
def online_comparison(context: AssetExecutionContext, ltr: LtrResource) -> MaterializeResult:
    settings = ltr.settings()
    registry = ltr.registry()
    day = date.fromisoformat(context.partition_key)
    comparison = compare(ltr.lake(), registry, day, Thresholds.from_settings(settings))
    applied: Applied | None = None
    error = ""
    try:
        applied = apply(comparison, registry, ltr.mirror(), settings.scorer)
    except RegistryError as exc:
        error = str(exc)
        context.log.error(f"online_comparison[{day}]: {error}")
    context.log.info(f"online_comparison[{day}]: {comparison.explanation}")
    if applied is not None and applied.moved:
        told = notify(
            settings.notify_webhook_url.get_secret_value(), _notification(comparison, applied)
        )
        if failure := undelivered(told):
            context.log.warning(failure)
        if applied.s3_synced is False:
            context.log.warning(f"S3 pointers not moved: {applied.s3_error}")
    return MaterializeResult(
        metadata=comparison_metadata(comparison, applied, ltr.lake(), settings.interleave_margin),
        check_results=[decision_check_result(comparison, applied, error)],
    )
