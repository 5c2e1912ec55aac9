"""The gate's metrics against LightGBM and against hand-made rankings."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from ltr_assets.metrics.ranking import (
    CounterfactualEvaluator,
    gain_ndcg,
    ndcg_at_k,
    ndcg_per_group,
    samples,
)
from ltr_core.scoring import predict


def _ranking_data(
    rng: np.random.Generator, groups: int
) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    sizes = list(rng.integers(5, 25, groups))
    n = sum(sizes)
    X = rng.random((n, 4))
    labels = np.clip(np.round(X[:, 0] * 3 + rng.normal(0, 0.8, n)), 0, 3)
    start = 0
    for size in sizes:  # every group gets a positive label, as LightGBM scores empty ones 1.0
        if labels[start : start + size].max() == 0:
            labels[start] = 1
        start += size
    return X, labels, sizes


@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_ndcg_equals_lightgbm_own_ndcg(k: int) -> None:
    rng = np.random.default_rng(11)
    X, y, sizes = _ranking_data(rng, 120)
    Xv, yv, sizes_v = _ranking_data(rng, 80)
    train = lgb.Dataset(X, y, group=sizes)
    valid = lgb.Dataset(Xv, yv, group=sizes_v, reference=train)
    params = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "ndcg_eval_at": [k],
        "verbosity": -1,
        "num_leaves": 15,
        "min_data_in_leaf": 2,
        "deterministic": True,
        "seed": 1,
    }
    history: dict[str, Any] = {}
    booster = lgb.train(
        params,
        train,
        num_boost_round=100,
        valid_sets=[valid],
        valid_names=["v"],
        callbacks=[lgb.record_evaluation(history)],
    )
    lightgbm_value = history["v"][f"ndcg@{k}"][-1]
    scores = predict(booster, Xv)
    # LightGBM breaks ties by input order, ours at random: compare on tie-free scores.
    offsets = np.cumsum([0, *sizes_v])
    assert all(len(set(scores[a:b])) == b - a for a, b in zip(offsets, offsets[1:], strict=False))
    ours = ndcg_at_k(yv, scores, sizes_v, k)
    assert ours.value == pytest.approx(lightgbm_value, abs=1e-9)
    assert ours.groups_used == 80 and ours.groups_excluded == 0


def test_ndcg_by_hand_and_groups_without_positive_are_excluded() -> None:
    labels = np.array([0, 3, 1, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.1, 0.5, 0.4, 0.3])
    # group 1 ranks labels [0, 3, 1]: DCG = 7/log2(3) + 1/log2(4); ideal 7 + 1/log2(3)
    expected = (7 / np.log2(3) + 1 / 2) / (7 + 1 / np.log2(3))
    per_group = ndcg_per_group(labels, scores, [3, 3], k=5)
    assert per_group[0] == pytest.approx(expected)
    assert np.isnan(per_group[1])
    report = ndcg_at_k(labels, scores, [3, 3], k=5)
    assert report.value == pytest.approx(expected)
    assert (report.groups_used, report.groups_excluded) == (1, 1)
    assert samples(labels, [3, 3]) == 1


def test_ties_are_broken_at_random_never_by_the_logged_order() -> None:
    """Rows arrive in logged order; a constant scorer must not inherit it."""
    sizes = [10] * 400
    labels = np.tile([3] + [0] * 9, 400)  # the relevant candidate is always shown first
    constant = np.zeros(len(labels))
    report = ndcg_at_k(labels, constant, sizes, k=5)
    # Random order: mean over ranks 1-10 of the discount, 0 past rank 5, is 0.295.
    assert 0.25 < report.value < 0.35
    assert ndcg_at_k(labels, -np.arange(len(labels)), sizes, k=5).value == pytest.approx(1.0)
    again = ndcg_at_k(labels, constant, sizes, k=5)
    assert again.value == report.value  # a fixed seed: the same figure every time


def _logged(seed: int, lists: int = 3000, n: int = 10):
    """Lists with known gains, shown in a fixed order, clicked under a known examination."""
    rng = np.random.default_rng(seed)
    gains = rng.choice([0.0, 1.0, 3.0], size=(lists, n), p=[0.7, 0.2, 0.1])
    theta = 1.0 / np.arange(1, n + 1)
    examined = rng.random((lists, n)) < theta
    labels = np.log2(1.0 + gains * examined)  # 2^label − 1 = the gain where examined
    return gains.ravel(), labels.ravel(), np.tile(theta, lists), [n] * lists


def test_the_counterfactual_dcg_is_unbiased_and_its_difference_is_paired() -> None:
    gains, labels, theta, sizes = _logged(1)
    judge = CounterfactualEvaluator(sizes, labels, theta, completed_gains=gains, max_weight=20.0)
    rng = np.random.default_rng(2)
    a, b = rng.random(len(gains)), gains + rng.random(len(gains))  # b ranks by the truth
    true_a = gain_ndcg(gains, a, sizes)
    report_a, report_b = judge.ndcg(a), judge.ndcg(b)
    # ratio of sums against the mean of per-list ratios: close, not equal
    assert report_a.value == pytest.approx(true_a, abs=0.05)
    assert report_a.interval.low < report_a.value < report_a.interval.high
    assert report_b.value > report_a.value + 0.2
    paired = judge.paired(b, a)
    assert paired.difference == pytest.approx(report_b.value - report_a.value)
    assert paired.interval.low > 0
    # pairing: the interval of the difference is narrower than either value's (with a ranking
    # whose interval stays inside [0, 1]: b's, near 1, is clipped)
    c = 0.3 * gains + rng.random(len(gains))
    report_c, paired_c = judge.ndcg(c), judge.paired(c, a)
    assert not (report_a.interval.clipped or report_c.interval.clipped)
    assert (paired_c.interval.high - paired_c.interval.low) < (
        report_a.interval.high - report_a.interval.low
    ) + (report_c.interval.high - report_c.interval.low)


def test_intervals_span_the_curves_the_logs_do_not_rule_out() -> None:
    gains, labels, theta, sizes = _logged(3)
    flatter = np.sqrt(theta)  # another examination curve, and the gains it would complete
    judge = CounterfactualEvaluator(sizes, labels, theta, completed_gains=gains, max_weight=20.0)
    other = CounterfactualEvaluator(sizes, labels, flatter, completed_gains=gains, max_weight=20.0)
    both = CounterfactualEvaluator(
        sizes,
        labels,
        theta,
        completed_gains=gains,
        max_weight=20.0,
        alternatives=[(flatter, gains)],
    )
    rng = np.random.default_rng(4)
    a, b = rng.random(len(gains)), gains + rng.random(len(gains))
    for scores in (a, b):
        own, alt, spanned = judge.ndcg(scores), other.ndcg(scores), both.ndcg(scores)
        assert (
            alt.value < own.value - 0.02
        )  # a flatter curve gives clicks down the list less weight
        assert spanned.value == own.value  # the estimate stays the fitted curve's
        assert spanned.interval.low == min(own.interval.low, alt.interval.low)
        assert spanned.interval.high == max(own.interval.high, alt.interval.high)
        assert spanned.interval.low < own.interval.low
        model_based = both.model_based_ndcg(scores)
        assert model_based.interval.low == min(
            judge.model_based_ndcg(scores).interval.low, other.model_based_ndcg(scores).interval.low
        )
    paired, paired_alt, paired_both = judge.paired(b, a), other.paired(b, a), both.paired(b, a)
    assert paired_both.difference == paired.difference
    assert paired_both.interval.low == min(paired.interval.low, paired_alt.interval.low)
    assert paired_both.interval.high == max(paired.interval.high, paired_alt.interval.high)


def test_ips_corrects_what_the_logged_labels_get_wrong() -> None:
    """Relevance here is unrelated to the logged order, but clicks pile up at the top because
    the top is examined: nDCG on clicks flatters the logged order; the counterfactual estimate
    does not."""
    gains, labels, theta, sizes = _logged(3)
    judge = CounterfactualEvaluator(sizes, labels, theta, completed_gains=gains, max_weight=20.0)
    logged = -np.tile(np.arange(10), len(sizes)).astype(float)
    true_logged = gain_ndcg(gains, logged, sizes)
    assert judge.ndcg(logged).value == pytest.approx(true_logged, abs=0.05)
    assert ndcg_at_k(labels, logged, sizes).value > true_logged + 0.2
    truth_order = gains + 1e-3 * logged
    assert judge.ndcg(truth_order).value == pytest.approx(1.0, abs=0.05)
    # the model-based second opinion grades with the completed gains: here the true ones
    assert judge.model_based_ndcg(truth_order).value == pytest.approx(1.0, abs=1e-12)
    assert judge.model_based_ndcg(logged).value == pytest.approx(true_logged, abs=0.03)


def test_rows_past_the_largest_ips_weight_are_graded_by_the_model() -> None:
    """SWITCH: rows shown where 1/θ > max_weight (here ranks 6-10, θ < 0.2) take the model's
    completed gain; the others keep IPS. Less variance where the model is right, and a wrong
    model can only move what the switched rows contribute."""
    gains, labels, theta, sizes = _logged(5)
    ips = CounterfactualEvaluator(sizes, labels, theta, completed_gains=gains, max_weight=20.0)
    switched = CounterfactualEvaluator(sizes, labels, theta, completed_gains=gains, max_weight=5.0)
    assert switched.switched.reshape(-1, 10)[0].tolist() == [False] * 5 + [True] * 5
    truth_order = gains + 1e-3 * np.random.default_rng(0).random(len(gains))
    a, b = ips.ndcg(truth_order), switched.ndcg(truth_order)
    assert b.value == pytest.approx(1.0, abs=0.03)
    assert 0.2 < b.model_share < 0.8 and a.model_share == 0.0
    assert (b.interval.high - b.interval.low) < 0.8 * (a.interval.high - a.interval.low)
    logged = -np.tile(np.arange(10), len(sizes)).astype(float)
    assert switched.ndcg(logged).model_share == 0.0
    # a model that grades every row 0: the logged order (ranks 1-5, all IPS) is unchanged, the
    # truth order loses what its deep rows were worth
    blind = CounterfactualEvaluator(
        sizes, labels, theta, completed_gains=np.where(theta < 0.2, 0.0, gains), max_weight=5.0
    )
    assert blind.dcg(logged, 5) == pytest.approx(switched.dcg(logged, 5))
    assert blind.dcg(truth_order, 5).sum() < 0.9 * switched.dcg(truth_order, 5).sum()
    with pytest.raises(ValueError, match="at least 1"):
        CounterfactualEvaluator(sizes, labels, theta, completed_gains=gains, max_weight=0.5)


def test_counterfactual_intervals_stay_within_the_metric_s_range_and_say_so() -> None:
    """The UI once showed an nDCG@5 interval of 0.8571-1.0596: a percentile bootstrap of an
    IPS ratio can pass 1. It is clipped to [0, 1], and marked as clipped."""
    from ltr_assets.metrics.ranking import CounterfactualEvaluator, Interval

    assert Interval(0.8571, 1.0596).within(0.0, 1.0) == Interval(0.8571, 1.0, clipped=True)
    assert Interval(0.2, 0.3).within(0.0, 1.0) == Interval(0.2, 0.3, clipped=False)
    rng = np.random.default_rng(0)
    n_lists = 60
    sizes = np.full(n_lists, 3)
    theta = np.tile([1.0, 0.5, 0.25], n_lists)
    labels = np.zeros(3 * n_lists)
    labels[2::3] = rng.random(n_lists) < 0.5  # clicks far down, where 1/θ is 4
    labels[0::3] = rng.random(n_lists) < 0.1
    completed = np.tile([0.3, 0.2, 0.5], n_lists)  # a click model that underrates the bottom
    evaluator = CounterfactualEvaluator(sizes, labels, theta, completed, max_weight=5.0)
    bottom_first = np.tile([0.0, 1.0, 2.0], n_lists)
    report = evaluator.ndcg(bottom_first)
    assert report.interval.clipped
    assert 0.0 <= report.interval.low <= report.interval.high <= 1.0 < report.value
    paired = evaluator.paired(bottom_first, np.tile([2.0, 1.0, 0.0], n_lists))
    assert -1.0 <= paired.interval.low <= paired.interval.high <= 1.0
