"""Evaluate a scorer on the test groups, and decide the publication gate."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ltr_assets.config import GateThresholds
from ltr_assets.metrics import (
    FairnessReport,
    LatencyReport,
    NdcgReport,
    fairness_gap,
    ndcg_at_k,
    samples,
    scoring_latency,
)
from ltr_assets.scoring import Scorer
from ltr_assets.training import Split

REPORTED_K = (1, 3, 5, 10)
LATENCY_QUERIES = 1000


@dataclass(frozen=True)
class Evaluation:
    scorer: str
    ndcg: dict[int, NdcgReport]
    fairness: FairnessReport
    latency: LatencyReport
    samples: int
    test_groups: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ndcg"] = {f"ndcg@{k}": asdict(v) for k, v in self.ndcg.items()}
        return out


def evaluate(
    scorer: Scorer, test: Split, time_it: bool = True, fairness_min_groups: int = 30
) -> Evaluation:
    """All gate figures of `scorer` on the test groups (latency: one query at a time)."""
    scores = scorer.score(test.X)
    ndcg = {k: ndcg_at_k(test.y, scores, test.group_sizes, k) for k in REPORTED_K}
    fairness = fairness_gap(
        scores, test.group_sizes, test.attributes(), min_groups=fairness_min_groups
    )
    latency = (
        scoring_latency(scorer.score, test.query_matrices(), n=LATENCY_QUERIES)
        if time_it
        else LatencyReport(0, float("nan"), float("nan"), float("nan"))
    )
    return Evaluation(
        scorer=scorer.kind,
        ndcg=ndcg,
        fairness=fairness,
        latency=latency,
        samples=samples(test.y, test.group_sizes),
        test_groups=test.groups,
    )


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    value: float
    threshold: float
    description: str
    details: dict[str, Any]


GATE_NAMES = ("ndcg_at_5", "fairness_gap", "latency_p95", "min_samples", "no_regression")


def decide_gate(
    candidate: Evaluation, thresholds: GateThresholds, live: Evaluation | None, live_version: str
) -> list[GateResult]:
    """One result per gate check, in GATE_NAMES order."""
    ndcg5 = candidate.ndcg[5]
    fair = candidate.fairness
    ungated = [
        f"{pv.attribute}={pv.value} {pv.mean_difference:+.3f} ({pv.groups} lists)"
        for pv in fair.per_value
        if not pv.gated
    ]
    results = [
        GateResult(
            "ndcg_at_5",
            ndcg5.value >= thresholds.ndcg_min,
            ndcg5.value,
            thresholds.ndcg_min,
            f"nDCG@5 {ndcg5.value:.4f} (95% CI {ndcg5.interval.low:.4f}–{ndcg5.interval.high:.4f}"
            f", {ndcg5.groups_used} groups) must be ≥ {thresholds.ndcg_min}",
            {"groups_used": ndcg5.groups_used, "groups_excluded": ndcg5.groups_excluded},
        ),
        GateResult(
            "fairness_gap",
            fair.gap <= thresholds.fairness_max,
            fair.gap,
            thresholds.fairness_max,
            f"largest exposure gap {fair.gap:.4f} ({fair.attribute}={fair.value}, 95% CI "
            f"{fair.interval.low:.4f}–{fair.interval.high:.4f}, {fair.groups} groups) must be "
            f"≤ {thresholds.fairness_max}"
            + (
                f"; not gated, in fewer than {thresholds.fairness_min_groups} lists: "
                + ", ".join(ungated)
                if ungated
                else ""
            ),
            {
                "attribute": fair.attribute,
                "attribute_value": fair.value,
                "groups": fair.groups,
                "ungated_values": ungated,
            },
        ),
        GateResult(
            "latency_p95",
            candidate.latency.p95_ms < thresholds.latency_p95_ms,
            candidate.latency.p95_ms,
            thresholds.latency_p95_ms,
            f"p95 scoring time per query {candidate.latency.p95_ms:.3f} ms ({candidate.scorer} "
            f"scorer, {candidate.latency.queries} queries) must be < "
            f"{thresholds.latency_p95_ms} ms",
            {"p50_ms": candidate.latency.p50_ms, "p99_ms": candidate.latency.p99_ms},
        ),
        GateResult(
            "min_samples",
            candidate.samples >= thresholds.min_samples,
            float(candidate.samples),
            float(thresholds.min_samples),
            f"{candidate.samples} test groups with a positive label must be ≥ "
            f"{thresholds.min_samples}",
            {"test_groups": candidate.test_groups},
        ),
    ]
    if live is None:
        results.append(
            GateResult(
                "no_regression",
                True,
                ndcg5.value,
                float("nan"),
                "no live version to compare with",
                {},
            )
        )
    else:
        floor = live.ndcg[5].value - thresholds.regression_margin
        results.append(
            GateResult(
                "no_regression",
                ndcg5.value >= floor,
                ndcg5.value,
                floor,
                f"nDCG@5 {ndcg5.value:.4f} vs live {live_version} {live.ndcg[5].value:.4f} on "
                f"the same test groups; may be at most {thresholds.regression_margin} worse",
                {"live_version": live_version, "live_ndcg_at_5": live.ndcg[5].value},
            )
        )
    return results
