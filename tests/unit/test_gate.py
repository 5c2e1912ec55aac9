"""The publication gate's decisions on given figures."""

from __future__ import annotations

from ltr_assets.config import GateThresholds
from ltr_assets.evaluation import GATE_NAMES, Evaluation, decide_gate
from ltr_assets.metrics import FairnessReport, Interval, LatencyReport, NdcgReport, ValueExposure


def _evaluation(ndcg5: float, gap: float = 0.01, p95: float = 0.1, samples: int = 500):
    per_value = [
        ValueExposure("gender", "F", -gap, 400, True),
        ValueExposure("pcd", "true", -0.30, 12, False),
    ]
    return Evaluation(
        scorer="weights",
        ndcg={5: NdcgReport(5, ndcg5, samples, 40, Interval(ndcg5 - 0.02, ndcg5 + 0.02))},
        fairness=FairnessReport(5, gap, "gender", "F", 400, Interval(0.0, 0.03), per_value),
        latency=LatencyReport(1000, p95 / 2, p95, p95 * 2),
        samples=samples,
        test_groups=samples + 40,
    )


def test_every_check_passes_on_good_figures_and_lists_ungated_values() -> None:
    results = decide_gate(_evaluation(0.77), GateThresholds(), None, "")
    assert [r.name for r in results] == list(GATE_NAMES)
    assert all(r.passed for r in results)
    fairness = results[1]
    assert (
        "not gated" in fairness.description and "pcd=true -0.300 (12 lists)" in fairness.description
    )


def test_each_threshold_fails_its_own_check() -> None:
    cases = {
        "ndcg_at_5": _evaluation(0.60),
        "fairness_gap": _evaluation(0.77, gap=0.08),
        "latency_p95": _evaluation(0.77, p95=20.0),
        "min_samples": _evaluation(0.77, samples=99),
    }
    for name, evaluation in cases.items():
        failed = [
            r.name for r in decide_gate(evaluation, GateThresholds(), None, "") if not r.passed
        ]
        assert failed == [name]


def test_no_regression_compares_with_the_live_version_on_the_same_groups() -> None:
    live = _evaluation(0.80)
    ok = decide_gate(_evaluation(0.785), GateThresholds(), live, "v1")[-1]
    worse = decide_gate(_evaluation(0.77), GateThresholds(), live, "v1")[-1]
    assert ok.passed and not worse.passed
    assert worse.threshold == 0.80 - 0.02 and "v1" in worse.description
