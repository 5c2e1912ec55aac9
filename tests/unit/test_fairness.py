"""Fairness of exposure: the measures, and the gate's decisions on intervals.

Each case the issue found passing by omission, smallness or luck is built here on constructed
lists and must fail; a fair ranking must pass."""

from __future__ import annotations

import numpy as np
import pytest

from ltr_assets.gate.evaluation import _fairness_result as fairness_result
from ltr_assets.gate.evaluation import fairness_coverage_result
from ltr_assets.metrics.fairness import RankedLists, fairness_report, list_shares
from ltr_core.settings import GateThresholds

ATTRIBUTES = GateThresholds().fairness_attributes


def _lists(seed: int, n_lists: int, low: int = 5, high: int = 30, p_f: float = 0.5):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(low, high + 1, n_lists)
    n = int(sizes.sum())
    gender = np.where(rng.random(n) < p_f, "F", "M").astype(object)
    return rng, sizes, gender


def _report(scores, sizes, attributes, merit=None, pool=None, **kw):
    merit = np.ones(len(scores)) if merit is None else merit
    gated = kw.pop("gated", ATTRIBUTES)
    limits = {"max_difference": 0.05, "min_ratio": 0.8, "min_lists": 30, "min_coverage": 0.5}
    return fairness_report(
        RankedLists(scores, sizes, attributes, merit), gated, pool, **(limits | kw)
    )


def test_signed_differences_are_averaged_and_the_ratio_is_exposure_over_candidates() -> None:
    # list 1: F (2 of 6) takes ranks 1-2 of the 5 exposed; list 2: F is ranked 5th and 6th.
    gender = np.array(["F", "F", "M", "M", "M", "M", "M", "M", "M", "M", "F", "F"], dtype=object)
    scores = np.array([6, 5, 4, 3, 2, 1, 6, 5, 4, 3, 2, 1], dtype=float)
    shares = list_shares(scores, [6, 6], {"gender": gender}, np.ones(12))[("gender", "F")]
    d = 1 / np.log2(np.arange(2, 7))
    top2 = d[:2].sum() / d.sum()
    fifth = d[4] / d.sum()
    assert shares.exposure == pytest.approx([top2, fifth])
    assert shares.candidate == pytest.approx([1 / 3, 1 / 3])
    report = _report(scores, [6, 6], {"gender": gender}, min_lists=1, gated=("gender",))
    female = next(v for v in report.values if v.value == "F")
    assert female.difference == pytest.approx((top2 - 1 / 3 + fifth - 1 / 3) / 2)  # signed
    assert female.ratio == pytest.approx(((top2 + fifth) / 2) / (1 / 3))


def test_a_fair_random_ranking_passes_with_both_measures_near_parity() -> None:
    rng, sizes, gender = _lists(1, 1500)
    report = _report(rng.random(len(gender)), sizes, {"gender": gender}, gated=("gender",))
    result = fairness_result(report)
    assert result.passed, result.description
    for v in report.values:
        assert abs(v.difference) < 0.02 and 0.9 < v.ratio < 1.1
        assert v.difference_ci.low < v.difference < v.difference_ci.high


def test_missing_attributes_fail_the_gate_with_the_reason() -> None:
    rng, sizes, gender = _lists(2, 400)
    unknown = {a: [None] * len(gender) for a in ATTRIBUTES}
    report = _report(rng.random(len(gender)), sizes, unknown)
    result = fairness_result(report)
    assert not result.passed and "no test candidate has a known value" in result.description
    assert not fairness_coverage_result(report).passed
    # ... unless the operator turned it off on purpose
    off = _report(rng.random(len(gender)), sizes, unknown, gated=())
    assert fairness_result(off).passed and "empty list" in fairness_result(off).description


def test_low_coverage_warns() -> None:
    rng, sizes, gender = _lists(3, 400)
    mostly_unknown = np.where(rng.random(len(gender)) < 0.7, None, gender)
    report = _report(rng.random(len(gender)), sizes, {"gender": list(mostly_unknown)},
                     gated=("gender",))  # fmt: skip
    warning = fairness_coverage_result(report)
    assert not warning.passed and "gender known for 3" in warning.description


def test_a_rare_minority_ranked_last_is_judged_on_pooled_lists_and_fails() -> None:
    """In 20 test lists alone it would not be gated; with the validation lists it is."""
    rng, sizes, gender = _lists(4, 600)
    group = np.full(len(gender), "no", dtype=object)
    offsets = np.cumsum([0, *sizes])
    for g in range(0, 600, 15):  # one member in every 15th list
        group[offsets[g + 1] - 1] = "yes"
    scores = -np.concatenate([np.arange(s) for s in sizes]).astype(float)  # member last
    test_lists = 300
    cut = offsets[test_lists]
    test = {"pcd": list(group[:cut])}
    valid = RankedLists(scores[cut:], sizes[test_lists:], {"pcd": list(group[cut:])},
                        np.ones(len(gender) - cut))  # fmt: skip
    alone = _report(scores[:cut], sizes[:test_lists], test, gated=("pcd",))
    assert [v.gated for v in alone.values if v.value == "yes"] == [False]
    pooled = _report(scores[:cut], sizes[:test_lists], test, pool=valid, gated=("pcd",))
    member = next(v for v in pooled.values if v.value == "yes")
    assert member.pooled and member.gated and member.lists == 40
    result = fairness_result(pooled)
    assert not result.passed and "pcd=yes" in result.description


def test_a_value_too_rare_even_pooled_is_named_by_the_coverage_warning() -> None:
    rng, sizes, gender = _lists(5, 200)
    group = np.full(len(gender), "no", dtype=object)
    group[:3] = "yes"
    report = _report(rng.random(len(gender)), sizes, {"pcd": list(group)}, gated=("pcd",))
    warning = fairness_coverage_result(report)
    assert not warning.passed and "pcd=yes (1)" in warning.description


def test_a_two_percent_minority_ranked_last_in_long_lists_fails_on_the_ratio() -> None:
    rng, sizes, gender = _lists(6, 600, low=25, high=30)
    minority = np.where(rng.random(len(gender)) < 0.02, "yes", "no").astype(object)
    scores = np.where(minority == "yes", -1.0, rng.random(len(gender)))
    report = _report(scores, sizes, {"pcd": list(minority)}, gated=("pcd",))
    member = next(v for v in report.values if v.value == "yes")
    assert abs(member.difference) < 0.05  # the absolute share difference stays small ...
    assert member.ratio_ci.high < 0.8  # ... the ratio does not
    result = fairness_result(report)
    assert not result.passed and "pcd=yes" in result.description


def test_a_gap_whose_interval_reaches_past_the_limit_fails_even_if_the_point_is_inside() -> None:
    """A moderate bias: the point estimate under 0.05, the upper bound over it."""
    rng, sizes, gender = _lists(7, 250)
    scores = rng.random(len(gender)) - np.where(gender == "F", 0.05, 0.0)
    report = _report(scores, sizes, {"gender": gender}, gated=("gender",))
    female = next(v for v in report.values if v.value == "F")
    assert abs(female.difference) < 0.05 < female.worst_abs_difference
    result = fairness_result(report)
    assert not result.passed and result.details["worst_value"] in ("gender=F", "gender=M")


def test_intersections_are_reported_not_gated() -> None:
    rng, sizes, gender = _lists(8, 1500)
    ethnicity = np.where(rng.random(len(gender)) < 0.3, "preta", "branca").astype(object)
    target = (gender == "F") & (ethnicity == "preta")
    scores = rng.random(len(gender)) - 0.4 * target
    report = _report(scores, sizes, {"gender": gender, "ethnicity": ethnicity},
                     gated=("gender", "ethnicity"))  # fmt: skip
    crossed = {v.name: v for v in report.intersections}
    assert crossed["gender&ethnicity=F&preta"].ratio < 0.8
    assert all(not v.gated for v in crossed.values())
    assert "F&preta" in report.table()
