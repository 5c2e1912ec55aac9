"""Evaluate a scorer on the test lists, and decide the publication gate on intervals.

Every quality figure the gate reads is counterfactual (`ltr_assets.metrics.ranking`):
what users would
experience under the scorer's ranking, estimated from clicks corrected for position bias. The
gate decides on 95% intervals, not points: the lower bound of the counterfactual nDCG@5 must
clear LTR_NDCG_MIN, and the lower bound of the paired difference with the platform's logged
order (always) and with the live version (when one exists) must not fall below
−LTR_REGRESSION_MARGIN. The nDCG on logged labels is reported beside it as a diagnostic only:
it rewards imitating the order the clicks were collected under.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ltr_assets.learning.click_signal import ClickSignal
from ltr_assets.learning.dataset import Split
from ltr_assets.metrics.fairness import FairnessReport, RankedLists, fairness_report
from ltr_assets.metrics.ranking import (
    CounterfactualEvaluator,
    CounterfactualReport,
    Interval,
    NdcgReport,
    PairedReport,
    ndcg_at_k,
    samples,
)
from ltr_core.codec import LatencyReport
from ltr_core.scoring import Scorer
from ltr_core.settings import GateThresholds
from ltr_core.vocabulary import BaselineStatus, ScorerName

REPORTED_K = (1, 3, 5, 10)
GATED_K = 5
LATENCY_QUERIES = 1000


@dataclass(frozen=True)
class RequestLatency:
    """The real request path timed in-process (JSON bytes → validation → the serving scorer →
    response bytes) at the test lists' sizes and at LTR_MAX_CANDIDATES; `worst` is gated."""

    at_data_sizes: LatencyReport
    at_max_candidates: LatencyReport
    max_candidates: int

    @property
    def worst(self) -> LatencyReport:
        return max(self.at_data_sizes, self.at_max_candidates, key=lambda r: r.cpu_p95_ms)

    @classmethod
    def untimed(cls) -> RequestLatency:
        nan = float("nan")
        return cls(LatencyReport(0, nan, nan, nan), LatencyReport(0, nan, nan, nan), 0)


def time_requests(scorer: Scorer, test: Split, max_candidates: int) -> RequestLatency:
    # The request path is serving's own code (FastAPI-free), so the gate times exactly it.
    from ltr_core.codec import time_request_path_groups

    groups = time_request_path_groups(
        scorer, [int(s) for s in test.group_sizes], max_candidates, n=LATENCY_QUERIES
    ).groups
    return RequestLatency(groups[0].report, groups[1].report, max_candidates)


def logged_order_scores(split: Split) -> np.ndarray:
    """Scores that reproduce the platform's logged order (rank 1 highest)."""
    return -split.positions.astype(np.float64)


@dataclass(frozen=True)
class Evaluation:
    scorer: ScorerName
    counterfactual: dict[int, CounterfactualReport]  # k -> what users would experience
    model_based: dict[int, CounterfactualReport]  # k -> the click model's estimate (diagnostic)
    logged_ndcg: dict[int, NdcgReport]  # k -> nDCG on logged labels (diagnostic)
    vs_logged: PairedReport  # candidate − the platform's logged order, nDCG@5
    fairness: FairnessReport
    latency: RequestLatency
    samples: int
    test_groups: int

    @property
    def ndcg5(self) -> CounterfactualReport:
        return self.counterfactual[GATED_K]


@dataclass(frozen=True)
class FairnessInputs:
    """What the fairness measures need beside the scorer: each test row's debiased relevance
    (merit), and the validation lists to pool rare values with."""

    test_merit: np.ndarray
    valid: Split | None = None
    valid_merit: np.ndarray | None = None


def gate_fairness_report(
    lists: RankedLists,
    thresholds: GateThresholds,
    pool: RankedLists | None = None,
    test_draws: np.ndarray | None = None,
) -> FairnessReport:
    """The fairness report of one ranking under the gate's limits (LTR_FAIRNESS_MAX,
    LTR_FAIRNESS_MIN_RATIO, LTR_FAIRNESS_MIN_GROUPS, LTR_FAIRNESS_MIN_COVERAGE) and attributes."""
    return fairness_report(
        lists,
        thresholds.fairness_attributes,
        pool=pool,
        max_difference=thresholds.fairness_max,
        min_ratio=thresholds.fairness_min_ratio,
        min_lists=thresholds.fairness_min_groups,
        min_coverage=thresholds.fairness_min_coverage,
        test_draws=test_draws,
    )


def evaluate(
    scorer: Scorer,
    test: Split,
    judge: CounterfactualEvaluator,
    fairness: FairnessInputs,
    thresholds: GateThresholds,
    *,
    max_candidates: int,
    time_it: bool = True,
) -> Evaluation:
    """All gate figures of `scorer` on the test lists; latency is timed at the list sizes of
    the test lists and at `max_candidates` (LTR_MAX_CANDIDATES)."""
    scores = scorer.score(test.X)
    latency = time_requests(scorer, test, max_candidates) if time_it else RequestLatency.untimed()
    pool = None
    if fairness.valid is not None and fairness.valid_merit is not None:
        pool = RankedLists(
            scorer.score(fairness.valid.X),
            fairness.valid.group_sizes,
            fairness.valid.attributes(),
            fairness.valid_merit,
        )
    return Evaluation(
        scorer=scorer.kind,
        counterfactual={k: judge.ndcg(scores, k) for k in REPORTED_K},
        model_based={k: judge.model_based_ndcg(scores, k) for k in REPORTED_K},
        logged_ndcg={k: ndcg_at_k(test.y, scores, test.group_sizes, k) for k in REPORTED_K},
        vs_logged=judge.paired(scores, logged_order_scores(test), GATED_K),
        fairness=gate_fairness_report(
            RankedLists(scores, test.group_sizes, test.attributes(), fairness.test_merit),
            thresholds,
            pool=pool,
            test_draws=judge.draws,  # the same resamples of the test lists (seed 0, 1,000)
        ),
        latency=latency,
        samples=samples(test.y, test.group_sizes),
        test_groups=test.groups,
    )


@dataclass(frozen=True)
class Baseline:
    """The version a candidate must not regress against, as the gate found it."""

    version: str  # "" when none is published
    status: BaselineStatus
    error: str = ""
    paired: PairedReport | None = None  # candidate − baseline, nDCG@5 on the test lists
    # What the compared version is to an operator: "live" in the nightly case; in a backfill
    # (the live version was trained for a later day) "baseline (published for D or before)".
    label: str = "live"

    @classmethod
    def none(cls) -> Baseline:
        return cls("", "none")


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    value: float
    threshold: float
    description: str
    details: dict[str, Any]


GATE_NAMES = (
    "ndcg_at_5",
    "fairness_gap",
    "latency_p95",
    "min_samples",
    "click_signal",
    "no_regression",
)
FAIRNESS_COVERAGE_NAME = "fairness_coverage"  # the gate's WARN-only companion check
SCORER_FIDELITY_NAME = "scorer_fidelity"  # WARN: the served weights against the model


def _ci(interval: Interval) -> str:
    clipped = ", clipped to the metric's range" if interval.clipped else ""
    return f"95% CI {interval.low:.4f}…{interval.high:.4f}{clipped}"


def _ndcg_result(candidate: Evaluation, thresholds: GateThresholds) -> GateResult:
    report = candidate.ndcg5
    lower = report.interval.low
    passed = bool(np.isfinite(lower) and lower >= thresholds.ndcg_min)
    return GateResult(
        "ndcg_at_5",
        passed,
        lower,
        thresholds.ndcg_min,
        f"counterfactual nDCG@5 {report.value:.4f} ({_ci(report.interval)}, "
        f"{report.lists} lists, {report.lists_with_clicks} with clicks; "
        f"{report.model_share:.0%} of it from rows past the largest IPS weight, graded by the "
        f"click model): the lower bound must be ≥ {thresholds.ndcg_min}. Diagnostics: the "
        f"click model's own estimate "
        f"{candidate.model_based[GATED_K].value:.4f}; nDCG@5 on logged labels (biased towards "
        f"the logged order) {candidate.logged_ndcg[GATED_K].value:.4f}",
        {
            "estimate": report.value,
            "upper": report.interval.high,
            "lists": report.lists,
            "lists_with_clicks": report.lists_with_clicks,
            "model_share": report.model_share,
            "logged_label_ndcg@5": candidate.logged_ndcg[GATED_K].value,
            "model_based_ndcg@5": candidate.model_based[GATED_K].value,
        },
    )


def _regression_result(
    candidate: Evaluation, thresholds: GateThresholds, baseline: Baseline
) -> GateResult:
    margin = thresholds.regression_margin
    logged = candidate.vs_logged
    vs_logged_ok = bool(np.isfinite(logged.interval.low) and logged.interval.low >= -margin)
    parts = [f"vs the platform's logged order: {logged.difference:+.4f} ({_ci(logged.interval)})"]
    details: dict[str, Any] = {
        "vs_logged_difference": logged.difference,
        "vs_logged_lower": logged.interval.low,
        "logged_order_ndcg@5": logged.baseline,
        "baseline_version": baseline.version,
        "baseline_status": baseline.status,
        "compared_with": baseline.label if baseline.version else "",
    }
    lowest = logged.interval.low
    passed = vs_logged_ok
    if baseline.status == "unreadable":
        passed = False
        parts.append(
            f"the {baseline.label} version {baseline.version} is unreadable: {baseline.error}"
        )
    elif baseline.status == "ok" and baseline.paired is not None:
        live = baseline.paired
        live_ok = bool(np.isfinite(live.interval.low) and live.interval.low >= -margin)
        passed = passed and live_ok
        lowest = min(lowest, live.interval.low)
        parts.append(
            f"vs {baseline.label} {baseline.version}: {live.difference:+.4f} ({_ci(live.interval)})"
        )
        details.update(
            {
                "vs_live_difference": live.difference,
                "vs_live_lower": live.interval.low,
                "live_ndcg@5": live.baseline,
            }
        )
    else:
        parts.append("no live version yet")
    return GateResult(
        "no_regression",
        passed,
        lowest,
        -margin,
        "paired counterfactual nDCG@5 differences on the same test lists, "
        + "; ".join(parts)
        + f": each lower bound must be ≥ −{margin}",
        details,
    )


def _fairness_result(fair: FairnessReport) -> GateResult:
    """The ERROR check: every gated value's intervals within the limits; no attribute known at
    all fails (missing data is not fairness) unless the operator configured none."""
    limits = (
        f"upper bound of |Δ_exp@5| ≤ {fair.max_difference} and upper bound of the exposure "
        f"ratio ≥ {fair.min_ratio}"
    )
    details: dict[str, Any] = {
        "gated_values": len(fair.gated),
        "failing_values": [v.name for v in fair.failing],
        "not_gated": {v.name: v.why_not for v in fair.unjudged},
        "coverage": fair.coverage,
        # The per-value table (value, lists, shares, Δ, ratio, intervals, gated or why not);
        # the check's metadata shows it as Markdown.
        "per_value_table_md": fair.table(),
    }
    if not fair.attributes:
        return GateResult(
            "fairness_gap", True, 0.0, fair.max_difference,
            "fairness is not gated: LTR_FAIRNESS_ATTRIBUTES is set to an empty list", details,
        )  # fmt: skip
    if fair.nothing_known:
        return GateResult(
            "fairness_gap", False, float("nan"), fair.max_difference,
            f"no test candidate has a known value of any protected attribute "
            f"({', '.join(fair.attributes)}): fairness cannot be judged, so it is not assumed. "
            "Send lawyer_groups with the events, or set LTR_FAIRNESS_ATTRIBUTES to an empty "
            "list to turn the check off on purpose",
            details,
        )  # fmt: skip
    worst = fair.worst
    if worst is None:
        return GateResult(
            "fairness_gap", True, 0.0, fair.max_difference,
            f"no attribute value is in {fair.min_lists} lists, even pooled with validation: "
            "nothing to gate (fairness_coverage warns)", details,
        )  # fmt: skip
    failing = fair.failing

    def describe(v: Any) -> str:
        return (
            f"{v.name}: Δ {v.difference:+.4f} [{v.difference_ci.low:+.4f}, "
            f"{v.difference_ci.high:+.4f}], ratio {v.ratio:.3f} [{v.ratio_ci.low:.3f}, "
            f"{v.ratio_ci.high:.3f}] in {v.lists} lists"
        )

    named = failing or [worst]
    details.update(
        {
            "worst_value": worst.name,
            "worst_upper_abs_difference": worst.worst_abs_difference,
            "worst_ratio_upper": worst.ratio_ci.high,
        }
    )
    # The figure the check shows (and a refusal names) is the criterion that failed: the
    # exposure ratio's upper bound against its floor when no failing value breaks the |Δ|
    # limit (a |Δ| inside its limit would read as a refusal for no reason), else |Δ|.
    on_difference = [v for v in failing if v.worst_abs_difference > fair.max_difference]
    value, threshold = worst.worst_abs_difference, fair.max_difference
    if failing and not on_difference:
        value, threshold = min(v.ratio_ci.high for v in failing), fair.min_ratio
    elif on_difference:
        value = max(v.worst_abs_difference for v in on_difference)
    details["failed_on"] = (
        "" if not failing else "difference" if on_difference else "exposure_ratio"
    )
    return GateResult(
        "fairness_gap",
        not failing,
        value,
        threshold,
        ("FAILING " if failing else "worst ")
        + "; ".join(describe(v) for v in named)
        + f". Every gated value needs {limits} ({len(fair.gated)} values gated)",
        details,
    )


def scorer_fidelity_result(
    weights_method: str, model_vs_weights: PairedReport | None, margin: float
) -> GateResult:
    """The WARN check on what the weights scorer gives up. The published weights are linear,
    non-negative and sum to 1, so they cannot express every ranking the LightGBM model learns
    (an effect that lowers relevance, an interaction, a threshold). The gate judges the served
    scorer against the logged order and live, so it can pass weights that the model beside them
    beats by far; this says so when, on the same test lists and by the gate's own estimator,
    the lower bound of (model − weights) is above `margin` (LTR_REGRESSION_MARGIN).

    `model_vs_weights`: that paired comparison; None when the model itself is served. Why the
    test lists and not the validation figures training records: the model was early-stopped on
    the validation lists, which favours it (docs/methodology.md, "Published weights")."""
    if model_vs_weights is None:
        return GateResult(
            SCORER_FIDELITY_NAME,
            True,
            0.0,
            margin,
            "the LightGBM model itself is served (LTR_SCORER=model): nothing is given up",
            {},
        )
    paired = model_vs_weights
    low, high = paired.interval.low, paired.interval.high
    figures = (
        f"on the {paired.lists} test lists the LightGBM model trained beside the published "
        f"weights ({weights_method}) scores {paired.difference:+.4f} counterfactual nDCG@5 "
        f"against them (95% CI {low:+.4f}…{high:+.4f})"
    )
    details = {"model_minus_weights": paired.difference, "ci_low": low, "ci_high": high}
    shown_better = low > margin
    if not math.isfinite(paired.difference):
        description = "not compared: no list with a positive label"
    elif shown_better:
        description = figures + (
            f": better by more than LTR_REGRESSION_MARGIN {margin:g}. Linear non-negative "
            "weights cannot express what the model learned; LTR_SCORER=model serves the model "
            "(the gate then judges the model)"
        )
    else:
        description = figures + f": not shown better by more than LTR_REGRESSION_MARGIN {margin:g}"
    return GateResult(
        SCORER_FIDELITY_NAME, not shown_better, paired.difference, margin, description, details
    )


def fairness_coverage_result(fair: FairnessReport) -> GateResult:
    """The WARN check: attributes mostly unknown, and values too rare to judge."""
    problems = []
    for attribute, share in fair.low_coverage.items():
        problems.append(
            f"{attribute} known for {share:.0%} of candidates (< {fair.min_coverage:.0%})"
        )
    unjudged = fair.unjudged
    if unjudged:
        problems.append(
            "not judged (too few lists): " + ", ".join(f"{v.name} ({v.lists})" for v in unjudged)
        )
    coverage = ", ".join(f"{a} {c:.0%}" for a, c in fair.coverage.items()) or "none configured"
    return GateResult(
        FAIRNESS_COVERAGE_NAME,
        not problems,
        min(fair.coverage.values(), default=1.0),
        fair.min_coverage,
        ("; ".join(problems) + ". " if problems else "")
        + f"Coverage (candidates with a known value): {coverage}",
        {
            "coverage": fair.coverage,
            "not_judged": [v.name for v in unjudged],
            "intersections": [f"{v.name} ratio {v.ratio:.3f}" for v in fair.intersections],
        },
    )


def _latency_result(candidate: Evaluation, thresholds: GateThresholds) -> GateResult:
    """Gated on CPU time per request: what the code costs, not how busy the machine was (a
    nightly run beside other work must not be refused for that); wall-clock beside it."""
    latency = candidate.latency
    worst = latency.worst
    data, top = latency.at_data_sizes, latency.at_max_candidates
    return GateResult(
        "latency_p95",
        bool(worst.cpu_p95_ms < thresholds.latency_p95_ms),
        worst.cpu_p95_ms,
        thresholds.latency_p95_ms,
        f"p95 CPU time of the /rank request path in-process (JSON body → validation → "
        f"{candidate.scorer} scorer → response) {data.cpu_p95_ms:.2f} ms at the test lists' "
        f"sizes, {top.cpu_p95_ms:.2f} ms at {latency.max_candidates} candidates "
        f"(LTR_MAX_CANDIDATES), {data.queries} requests each: the worse must be < "
        f"{thresholds.latency_p95_ms} ms. Wall-clock p95 (counts waiting for a core): "
        f"{data.p95_ms:.2f} ms and {top.p95_ms:.2f} ms",
        {
            "cpu_p95_ms_at_data_sizes": data.cpu_p95_ms,
            "cpu_p95_ms_at_max_candidates": top.cpu_p95_ms,
            "p95_ms_at_data_sizes": data.p95_ms,
            "p99_ms_at_data_sizes": data.p99_ms,
            "p95_ms_at_max_candidates": top.p95_ms,
            "p99_ms_at_max_candidates": top.p99_ms,
            "max_candidates": latency.max_candidates,
        },
    )


def _figure(value: object) -> str:
    """A gate figure as an operator reads it: 4 decimals at most, "n/a" when not finite;
    anything not a number (a check's "n/a" metadata) as it is."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return str(value)
    if not np.isfinite(value):
        return "n/a"
    return f"{round(float(value), 4):g}"


def check_line(name: str, value: object, threshold: object) -> str:
    """`<check>: <value> vs <threshold>`: how a failing check is named to an operator, on
    ltr_model's `gate` entry, in the model card and in the run-failure notification."""
    return f"{name}: {_figure(value)} vs {_figure(threshold)}"


def round_floats(value: Any, places: int = 4) -> Any:
    """Floats rounded to `places` (non-finite ones kept) inside dicts, lists and tuples: what an
    operator reads should say 0.0194, not 0.019411499999999988."""
    if isinstance(value, float):
        return round(value, places) if np.isfinite(value) else value
    if isinstance(value, np.floating):
        return round_floats(float(value), places)
    if isinstance(value, dict):
        return {k: round_floats(v, places) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [round_floats(v, places) for v in value]
    return value


def failing_check_lines(gate: Sequence[GateResult]) -> list[str]:
    """`<check>: <value> vs <threshold>` for each failing check, in the gate's order."""
    return [check_line(g.name, g.value, g.threshold) for g in gate if not g.passed]


def gate_line(gate: Sequence[GateResult]) -> str:
    """`PASSED`, or `FAILED: <check>: <value> vs <threshold>; ...` for each failing check: the
    one line that tells an operator why a day was not published, first on ltr_model."""
    failing = failing_check_lines(gate)
    return "FAILED: " + "; ".join(failing) if failing else "PASSED"


def _signal_result(signal: ClickSignal, thresholds: GateThresholds) -> GateResult:
    minimum = thresholds.click_signal_min_z
    passed = bool(np.isfinite(signal.z) and signal.z >= minimum)
    why = (
        ""
        if passed
        else ": the clicks do not depend on which lawyers were shown (random clicks, bots, or "
        "feedback joined to the wrong candidates?), so no ranking can be learned or judged "
        "from them"
    )
    return GateResult(
        "click_signal",
        passed,
        signal.z,
        minimum,
        f"the click model's relevance predicts the clicks of the {signal.lists} test lists "
        f"better than position alone by {signal.gain_per_list:.4f} nats per list, "
        f"z = {signal.z:.2f}: must be ≥ {minimum}{why}",
        {
            "z": signal.z,
            "gain_per_list": signal.gain_per_list,
            "lists": signal.lists,
            "clicks": signal.clicks,
        },
    )


def decide_gate(
    candidate: Evaluation, thresholds: GateThresholds, baseline: Baseline, signal: ClickSignal
) -> list[GateResult]:
    """One result per gate check, in GATE_NAMES order. `signal` is the click model's on the
    test lists (`ltr_assets.learning.click_signal`)."""
    return [
        _ndcg_result(candidate, thresholds),
        _fairness_result(candidate.fairness),
        _latency_result(candidate, thresholds),
        GateResult(
            "min_samples",
            candidate.samples >= thresholds.min_samples,
            float(candidate.samples),
            float(thresholds.min_samples),
            f"{candidate.samples} test groups with a positive label must be ≥ "
            f"{thresholds.min_samples}",
            {"test_groups": candidate.test_groups},
        ),
        _signal_result(signal, thresholds),
        _regression_result(candidate, thresholds, baseline),
    ]
