"""The publication gate's decisions on given figures: intervals, not points."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ltr_assets.gate.evaluation import (
    GATE_NAMES,
    Baseline,
    Evaluation,
    GateResult,
    RequestLatency,
    decide_gate,
    failing_check_lines,
    gate_line,
    round_floats,
)
from ltr_assets.learning.click_signal import ClickSignal
from ltr_assets.metrics.fairness import FairnessReport, ValueFairness
from ltr_assets.metrics.ranking import CounterfactualReport, Interval, NdcgReport, PairedReport
from ltr_core.codec import LatencyReport
from ltr_core.features import FEATURES
from ltr_core.settings import GateThresholds

SIGNAL = ClickSignal(z=21.8, gain_per_list=0.49, lists=1120, clicks=1900)


def _paired(difference: float, low: float) -> PairedReport:
    return PairedReport(5, 0.8, 0.8 - difference, difference, Interval(low, low + 0.06), 500)


def _evaluation(
    ndcg5: float,
    low: float | None = None,
    gap: float = 0.01,
    p95: float = 0.1,
    samples: int = 500,
    vs_logged: PairedReport | None = None,
) -> Evaluation:
    female = ValueFairness(
        "gender", "F", 400, False, 0.5, 0.5 - gap, -gap, Interval(-gap - 0.01, -gap + 0.01),
        1 - 2 * gap, Interval(1 - 3 * gap, 1 - gap), 1.0, True, "", gap + 0.01 <= 0.05,
    )  # fmt: skip
    rare = ValueFairness(
        "pcd", "true", 12, True, 0.05, 0.01, -0.04, Interval(-0.05, -0.03), 0.2,
        Interval(0.1, 0.3), 0.2, False, "in 12 test and validation lists, fewer than 30",
    )  # fmt: skip
    fairness = FairnessReport(5, ("gender", "pcd"), {"gender": 0.92, "pcd": 0.8}, [female, rare])
    low = ndcg5 - 0.03 if low is None else low
    return Evaluation(
        scorer="weights",
        counterfactual={
            5: CounterfactualReport(5, ndcg5, Interval(low, ndcg5 + 0.03), 540, 500, 0.3)
        },
        model_based={5: CounterfactualReport(5, ndcg5, Interval(low, ndcg5 + 0.03), 540, 500, 0.3)},
        logged_ndcg={5: NdcgReport(5, 0.7, samples, 40, Interval(0.68, 0.72))},
        vs_logged=vs_logged or _paired(0.05, 0.02),
        fairness=fairness,
        latency=RequestLatency(
            LatencyReport(1000, p95 / 4, p95 / 2, p95, p95 / 4, p95 / 2, p95),
            LatencyReport(1000, p95 / 2, p95, p95, p95 / 2, p95, p95),
            1000,
        ),
        samples=samples,
        test_groups=samples + 40,
    )


def _failed(
    evaluation: Evaluation, baseline: Baseline | None = None, signal: ClickSignal = SIGNAL
) -> list[str]:
    results = decide_gate(evaluation, GateThresholds(), baseline or Baseline.none(), signal)
    assert [r.name for r in results] == list(GATE_NAMES)
    return [r.name for r in results if not r.passed]


def test_every_check_passes_on_good_figures_and_lists_ungated_values() -> None:
    results = decide_gate(_evaluation(0.77), GateThresholds(), Baseline.none(), SIGNAL)
    assert all(r.passed for r in results)
    ndcg = results[0]
    assert ndcg.name == "ndcg_at_5" and ndcg.details["model_share"] == 0.3
    assert "30% of it from rows past the largest IPS weight" in ndcg.description
    fairness = results[1]
    assert fairness.details["not_gated"] == {
        "pcd=true": "in 12 test and validation lists, fewer than 30"
    }
    assert "no live version yet" in results[-1].description


def test_latency_is_gated_on_the_worse_of_the_data_sizes_and_the_maximum() -> None:
    slow_at_max = _evaluation(0.77)
    slow_at_max = Evaluation(
        **{
            **slow_at_max.__dict__,
            "latency": RequestLatency(
                LatencyReport(1000, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0),
                LatencyReport(1000, 9.0, 16.0, 20.0, 9.0, 16.0, 20.0),
                1000,
            ),
        }
    )
    results = decide_gate(slow_at_max, GateThresholds(), Baseline.none(), SIGNAL)
    latency = next(r for r in results if r.name == "latency_p95")
    assert not latency.passed and latency.value == 16.0
    assert "1000 candidates" in latency.description


def test_latency_is_gated_on_cpu_time_not_on_a_busy_machine_s_wall_clock() -> None:
    """A re-run beside other work measured 13.5 ms p95 wall-clock against the 15 ms limit for a
    path that costs ~1.5 ms: the gate compares the CPU time, and reports the wall-clock."""
    busy = Evaluation(
        **{
            **_evaluation(0.77).__dict__,
            "latency": RequestLatency(
                LatencyReport(1000, 9.0, 31.0, 40.0, 0.9, 1.4, 1.8),
                LatencyReport(1000, 12.0, 45.0, 60.0, 1.2, 1.9, 2.5),
                1000,
            ),
        }
    )
    latency = next(r for r in decide_gate(busy, GateThresholds(), Baseline.none(), SIGNAL)
                   if r.name == "latency_p95")  # fmt: skip
    assert latency.passed and latency.value == 1.9
    assert "Wall-clock p95 (counts waiting for a core): 31.00 ms and 45.00 ms" in (
        latency.description
    )


def test_the_request_path_timer_measures_cpu_time_beside_wall_clock() -> None:
    """A scorer that waits (as a request waits for a busy core) costs wall-clock, not CPU."""
    import time

    from ltr_core.codec import time_request_path_groups
    from ltr_core.scoring import WeightsScorer

    class Waiting(WeightsScorer):
        def score(self, matrix: np.ndarray) -> np.ndarray:
            time.sleep(0.005)
            return super().score(matrix)

    weights = dict.fromkeys(FEATURES, 1 / len(FEATURES))
    report = time_request_path_groups(Waiting(weights), [10], 100, n=20, warmup=2).worst
    assert report.p50_ms >= 5.0 and report.cpu_p95_ms < 2.0


def test_each_threshold_fails_its_own_check() -> None:
    assert _failed(_evaluation(0.60)) == ["ndcg_at_5"]
    assert _failed(_evaluation(0.77, gap=0.08)) == ["fairness_gap"]
    assert _failed(_evaluation(0.77, p95=20.0)) == ["latency_p95"]
    assert _failed(_evaluation(0.77, samples=99)) == ["min_samples"]
    assert _failed(_evaluation(0.77), signal=replace(SIGNAL, z=2.9)) == ["click_signal"]


def test_clicks_without_signal_are_refused_with_the_likely_causes() -> None:
    noise = ClickSignal(z=0.14, gain_per_list=0.0006, lists=1120, clicks=1750)
    result = decide_gate(_evaluation(0.77), GateThresholds(), Baseline.none(), noise)[4]
    assert (result.name, result.passed, result.value, result.threshold) == (
        "click_signal", False, 0.14, 3.0
    )  # fmt: skip
    assert "z = 0.14: must be ≥ 3.0" in result.description
    assert "do not depend on which lawyers were shown" in result.description
    assert result.details["lists"] == 1120
    passing = GateThresholds(click_signal_min_z=0.1)
    assert decide_gate(_evaluation(0.77), passing, Baseline.none(), noise)[4].passed


def test_the_ndcg_floor_is_decided_on_the_lower_bound_not_the_estimate() -> None:
    assert _failed(_evaluation(0.70, low=0.64)) == ["ndcg_at_5"]
    assert _failed(_evaluation(0.70, low=0.66)) == []


def test_a_first_publication_is_compared_with_the_logged_order() -> None:
    worse_than_shown = _evaluation(0.77, vs_logged=_paired(-0.01, -0.03))
    assert _failed(worse_than_shown) == ["no_regression"]
    assert _failed(_evaluation(0.77, vs_logged=_paired(0.0, -0.019))) == []


def test_no_regression_uses_the_lower_bound_of_the_paired_difference_with_live() -> None:
    slightly_worse_point = Baseline("20261125_021500", "ok", paired=_paired(-0.01, -0.015))
    assert _failed(_evaluation(0.77), slightly_worse_point) == []
    uncertain = Baseline("20261125_021500", "ok", paired=_paired(0.0, -0.03))
    results = decide_gate(_evaluation(0.77), GateThresholds(), uncertain, SIGNAL)
    assert not results[-1].passed and "20261125_021500" in results[-1].description
    assert results[-1].value == -0.03 and results[-1].threshold == -0.02


def test_an_unreadable_live_version_fails_with_the_reason() -> None:
    broken = Baseline("20261125_021500", "unreadable", "RegistryError: checksum mismatch")
    results = decide_gate(_evaluation(0.9), GateThresholds(), broken, SIGNAL)
    assert not results[-1].passed
    assert "unreadable" in results[-1].description and "checksum" in results[-1].description


def test_gate_line_names_each_failing_check_with_its_rounded_figures() -> None:
    passed = GateResult("ndcg_at_5", True, 0.71234567, 0.65, "", {})
    samples = GateResult("min_samples", False, 12.0, 50.0, "", {})
    latency = GateResult("latency_p95", False, 31.123456789, 25.0, "", {})
    assert gate_line([passed]) == "PASSED"
    assert gate_line([passed, samples, latency]) == (
        "FAILED: min_samples: 12 vs 50; latency_p95: 31.1235 vs 25"
    )
    assert gate_line([GateResult("fairness_gap", False, float("nan"), 0.1, "", {})]) == (
        "FAILED: fairness_gap: n/a vs 0.1"
    )


def test_round_floats_reaches_into_nested_metadata() -> None:
    assert round_floats({"a": 0.019411499999999988, "b": [1.123456, {"c": 2}], "d": "x"}) == {
        "a": 0.0194,
        "b": [1.1235, {"c": 2}],
        "d": "x",
    }


def test_a_fairness_refusal_names_the_criterion_that_failed() -> None:
    """A value inside the |Δ| limit can fail on its exposure ratio: the check's figure (and so
    a refusal's reason line) is then the ratio's upper bound against its floor, not a |Δ| that
    reads as inside the limit."""

    def value(difference: Interval, ratio: Interval) -> ValueFairness:
        passed = max(abs(difference.low), abs(difference.high)) <= 0.05 and ratio.high >= 0.8
        return ValueFairness(
            "ethnicity", "indigena", 300, False, 0.1, 0.07, -0.03, difference, 0.6, ratio,
            1.0, True, "", passed,
        )  # fmt: skip

    def result(v: ValueFairness) -> GateResult:
        evaluation = _evaluation(0.9)
        report = FairnessReport(5, ("ethnicity",), {"ethnicity": 0.9}, [v])
        evaluation = replace(evaluation, fairness=report)
        return decide_gate(evaluation, GateThresholds(), Baseline.none(), SIGNAL)[1]

    on_ratio = result(value(Interval(-0.0388, -0.0183), Interval(0.479, 0.744)))
    assert not on_ratio.passed and on_ratio.details["failed_on"] == "exposure_ratio"
    assert failing_check_lines([on_ratio]) == ["fairness_gap: 0.744 vs 0.8"]
    on_difference = result(value(Interval(-0.09, -0.02), Interval(0.5, 0.7)))
    assert on_difference.details["failed_on"] == "difference"
    assert failing_check_lines([on_difference]) == ["fairness_gap: 0.09 vs 0.05"]
    fine = result(value(Interval(-0.02, 0.01), Interval(0.9, 1.1)))
    assert fine.passed and (fine.value, fine.threshold) == (0.02, 0.05)


def test_a_gate_checks_details_are_typed_metadata_not_python_text() -> None:
    """The UI shows a dict detail as JSON, not as Python's repr ("{'gender': 0.9164}")."""
    from dagster import BoolMetadataValue, IntMetadataValue, JsonMetadataValue, TextMetadataValue

    from ltr_assets.defs.checks import gate_check_result
    from ltr_assets.gate.evaluation import GateResult

    details = {"coverage": {"gender": 0.916449}, "lists": 417, "clipped": True, "worst": "g=F"}
    result = gate_check_result(GateResult("fairness_coverage", True, 0.9, 0.5, "ok", details))
    metadata = dict(result.metadata or {})
    coverage = metadata["coverage"]
    assert isinstance(coverage, JsonMetadataValue) and coverage.data == {"gender": 0.9164}
    assert isinstance(metadata["lists"], IntMetadataValue) and metadata["lists"].value == 417
    assert isinstance(metadata["clipped"], BoolMetadataValue)
    assert isinstance(metadata["worst"], TextMetadataValue)


def test_weights_far_below_the_model_warn_and_say_what_would_serve_it() -> None:
    """An outside review's case: the weights could not express a negative effect; on the test
    lists the model beat them by 0.059 [0.028, 0.088] (by its truth about 0.05), while the gate
    passed the weights against the logged order."""
    from ltr_assets.gate.evaluation import scorer_fidelity_result
    from ltr_assets.metrics.ranking import Interval, PairedReport

    def paired(difference: float, low: float, high: float) -> PairedReport:
        return PairedReport(5, 0.9, 0.9 - difference, difference, Interval(low, high), 490)

    far = scorer_fidelity_result("distilled_nnls", paired(0.0587, 0.0278, 0.0881), 0.02)
    assert (far.name, far.passed, far.value, far.threshold) == (
        "scorer_fidelity",
        False,
        0.0587,
        0.02,
    )
    assert far.description.startswith(
        "on the 490 test lists the LightGBM model trained beside the published weights "
        "(distilled_nnls) scores +0.0587 counterfactual nDCG@5 against them (95% CI "
        "+0.0278…+0.0881): better by more than LTR_REGRESSION_MARGIN 0.02."
    )
    assert "LTR_SCORER=model serves the model" in far.description
    # better, but not shown better by more than the margin (the demo's nights): no warning
    near = scorer_fidelity_result("pairwise_logistic", paired(0.0165, -0.0037, 0.0387), 0.02)
    assert near.passed and "not shown better by more than" in near.description
    assert not scorer_fidelity_result("x", paired(0.05, 0.021, 0.08), 0.02).passed
    assert scorer_fidelity_result("x", paired(0.05, 0.02, 0.08), 0.02).passed
    served = scorer_fidelity_result("distilled_nnls", None, 0.02)  # LTR_SCORER=model
    assert served.passed and "itself is served" in served.description
    nan = float("nan")
    assert scorer_fidelity_result("x", paired(nan, nan, nan), 0.02).passed


def test_the_model_card_shows_a_failing_warning_with_its_reason() -> None:
    from ltr_assets.gate.model_card import render_model_card
    from ltr_assets.gate.summary import CandidateSummary
    from tests.unit.test_model_card import _summary

    data = _summary()
    data["warnings"] = [
        {
            "name": "scorer_fidelity",
            "passed": False,
            "value": 0.0689,
            "threshold": 0.02,
            "description": "the published weights score 0.8282, +0.0689 below the model",
            "details": {},
        }
    ]
    card = render_model_card(CandidateSummary.from_json(data), "20261103_021500")
    assert "| scorer_fidelity (warning) | **WARN** | 0.0689 | 0.0200 |" in card
    assert "Warning, scorer_fidelity: the published weights score 0.8282, +0.0689 below" in card
