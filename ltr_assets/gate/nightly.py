"""The gate's figures night by night, and their charts: the examination curve with its band, the
counterfactual nDCG@5 per night with its interval and threshold, and each protected value's
exposure ratio per night with its limit.

The nights are read from the candidates ltr_model recorded in the lake (`candidate.json` per
partition), refused nights included: a chart of published versions only would hide why the
refused ones were refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pydantic import ValidationError

from ltr_assets.gate.candidate import CANDIDATE_FILE
from ltr_assets.gate.charts import Chart, Series, Threshold, markdown_image
from ltr_assets.gate.summary import CandidateSummary, PropensitySummary
from ltr_assets.lake.paths import Lake


@dataclass(frozen=True)
class RatioFigure:
    ratio: float
    low: float
    high: float


@dataclass(frozen=True)
class NightFigures:
    """What the gate saw on one night."""

    day: date
    ndcg5: float
    low: float
    high: float
    ndcg_min: float
    gate_passed: bool
    ratios: dict[str, RatioFigure]  # "gender=F" -> the exposure ratio, gated values only
    min_ratio: float


def night_figures(summary: CandidateSummary) -> NightFigures:
    ndcg = summary.metrics.counterfactual[5]
    fairness: dict[str, Any] = summary.metrics.fairness
    ratios = {
        f"{v['attribute']}={v['value']}": RatioFigure(
            float(v["ratio"]), float(v["ratio_ci"]["low"]), float(v["ratio_ci"]["high"])
        )
        for v in fairness.get("values", [])
        if v.get("gated")
    }
    return NightFigures(
        day=summary.partition,
        ndcg5=ndcg.value,
        low=ndcg.interval.low,
        high=ndcg.interval.high,
        ndcg_min=summary.thresholds.ndcg_min,
        gate_passed=summary.gate_passed,
        ratios=ratios,
        min_ratio=float(fairness.get("min_ratio", summary.thresholds.fairness_min_ratio)),
    )


def read_nights(lake: Lake, last: date, nights: int) -> list[NightFigures]:
    """The recorded candidates of the `nights` days ending at `last`, oldest first; days with
    no readable candidate (not trained, or too little data to train) are left out."""
    out = []
    for offset in range(nights - 1, -1, -1):
        day = last - timedelta(days=offset)
        path = lake.candidate(day) / CANDIDATE_FILE
        try:
            summary = CandidateSummary.from_json(json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, ValidationError, KeyError):
            continue
        if 5 in summary.metrics.counterfactual:
            out.append(night_figures(summary))
    return out


def day_label(day: date) -> str:
    return day.strftime("%m-%d")


def ndcg_chart(nights: list[NightFigures]) -> Chart:
    """Counterfactual nDCG@5 per night with its 95% interval; the gate holds the lower bound
    to the threshold (a threshold that moved over the nights shows as the latest one)."""
    refused = [n.ndcg5 if not n.gate_passed else None for n in nights]
    return Chart(
        title="Counterfactual nDCG@5 per night (95% interval)",
        x_labels=[day_label(n.day) for n in nights],
        series=[
            Series(
                "nDCG@5",
                [n.ndcg5 for n in nights],
                [n.low for n in nights],
                [n.high for n in nights],
            ),  # fmt: skip
            Series("refused night", refused, colour="#d62728", markers_only=True),
        ],
        y_label="nDCG@5",
        thresholds=[Threshold(nights[-1].ndcg_min, "LTR_NDCG_MIN")] if nights else [],
    )


def fairness_chart(nights: list[NightFigures]) -> Chart:
    """Each gated protected value's exposure ratio per night with its interval; the gate holds
    the upper bound to the limit."""
    values = sorted({name for n in nights for name in n.ratios})
    series = []
    for name in values:
        figures = [n.ratios.get(name) for n in nights]
        series.append(
            Series(
                name,
                [f.ratio if f else None for f in figures],
                [f.low if f else None for f in figures],
                [f.high if f else None for f in figures],
            )
        )
    return Chart(
        title="Exposure ratio per protected value per night (95% interval)",
        x_labels=[day_label(n.day) for n in nights],
        series=series,
        y_label="exposure ratio",
        y_range=(0.0, 2.0),  # the limit is near 1; a rare value's wide interval is cut at 2
        thresholds=[Threshold(nights[-1].min_ratio, "LTR_FAIRNESS_MIN_RATIO")] if nights else [],
    )


CURVE_POSITIONS = 10  # the positions nDCG@5 and the exploration swaps (k ≤ 10) are about


def curve_chart(curve: PropensitySummary, truth: list[float] | None = None) -> Chart:
    """The examination curve θ_k relative to position 1 with its 95% band, positions 1-10;
    `truth` (the simulator's, in the demo) beside it."""
    n = min(CURVE_POSITIONS, len(curve.examination))
    series = [Series(f"θ ({curve.method})", curve.examination[:n], curve.low[:n], curve.high[:n])]
    if truth is not None:
        series.append(Series("truth (simulator)", truth[:n], dashed=True))
    return Chart(
        title=f"Examination curve, positions 1-{n} (95% band)",
        x_labels=[str(k + 1) for k in range(n)],
        series=series,
        y_label="examination θ_k / θ_1",
        y_range=(0.0, 1.05),
    )


CHART_NIGHTS = 14


def gate_charts(lake: Lake, day: date, curve: PropensitySummary) -> str:
    """ltr_model's charts as Markdown: day D's examination curve, then the gate's nDCG@5 and
    exposure ratios over the nights up to D."""
    nights = read_nights(lake, day, CHART_NIGHTS)
    charts = [curve_chart(curve), ndcg_chart(nights), fairness_chart(nights)]
    return "\n\n".join(markdown_image(chart) for chart in charts)
