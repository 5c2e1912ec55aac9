"""The gate's metrics against LightGBM and against hand-made rankings."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from ltr_assets.metrics import fairness_gap, ndcg_at_k, ndcg_per_group, samples


def _ranking_data(rng: np.random.Generator, groups: int) -> tuple[np.ndarray, np.ndarray, list]:
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
        "num_leaves": 7,
        "min_data_in_leaf": 5,
        "deterministic": True,
        "seed": 1,
    }
    history: dict = {}
    booster = lgb.train(
        params,
        train,
        num_boost_round=15,
        valid_sets=[valid],
        valid_names=["v"],
        callbacks=[lgb.record_evaluation(history)],
    )
    lightgbm_value = history["v"][f"ndcg@{k}"][-1]
    ours = ndcg_at_k(yv, booster.predict(Xv), sizes_v, k)
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


def test_ndcg_ties_keep_input_order() -> None:
    assert ndcg_per_group(np.array([0, 1]), np.array([1.0, 1.0]), [2], k=1)[0] == 0.0


def _lists(rng: np.random.Generator, groups: int) -> tuple[list[int], list[str | None]]:
    sizes = list(rng.integers(5, 20, groups))
    values = [
        str(rng.choice(["F", "M"])) if rng.random() > 0.1 else None for _ in range(sum(sizes))
    ]
    return sizes, values


def test_fairness_gap_is_about_zero_on_a_fair_ranking() -> None:
    rng = np.random.default_rng(5)
    sizes, gender = _lists(rng, 3000)
    report = fairness_gap(rng.random(len(gender)), sizes, {"gender": gender})
    assert report.gap < 0.015
    assert report.interval.low <= report.gap <= report.interval.high + 1e-12
    assert report.groups > 2500


def test_fairness_gap_is_large_when_a_group_is_hidden() -> None:
    rng = np.random.default_rng(5)
    sizes, gender = _lists(rng, 500)
    # F candidates always last: they get no exposure whenever five others exist.
    scores = np.array([-1.0 if g == "F" else 0.0 for g in gender]) + rng.random(len(gender)) * 0.1
    report = fairness_gap(scores, sizes, {"gender": gender})
    assert report.gap > 0.05
    assert report.value in {"F", "M"}
    f = next(pv for pv in report.per_value if pv.value == "F")
    assert f.mean_difference < -0.05  # signed: F is under-exposed


def test_fairness_gap_averages_signed_differences_not_absolute_ones() -> None:
    # Two lists of 6 with one F each (candidate share 1/6). List 1 puts F first (over-exposed),
    # list 2 puts F sixth, outside the top 5 (no exposure): the differences have opposite signs.
    weights = 1 / np.log2(np.arange(2, 7))
    over = weights[0] / weights.sum() - 1 / 6
    gender = (["F"] + ["M"] * 5) * 2
    scores = np.array([6, 5, 4, 3, 2, 1] + [1, 6, 5, 4, 3, 2], dtype=float)
    report = fairness_gap(scores, [6, 6], {"gender": gender}, min_groups=1)
    f = next(pv for pv in report.per_value if pv.value == "F")
    assert f.mean_difference == pytest.approx((over + (0 - 1 / 6)) / 2)
    assert abs(f.mean_difference) < (abs(over) + 1 / 6) / 2  # what |·| averaging would give


def test_unknown_values_are_not_gated_and_rare_values_are_reported_only() -> None:
    gender = [None, "M", "M", "M", "M", "M"] * 40 + ["X", "M", "M", "M", "M", "M"] * 3
    scores = np.tile(np.arange(6, 0, -1), 43).astype(float)  # position 1 always first
    report = fairness_gap(scores, [6] * 43, {"gender": gender}, min_groups=30)
    values = {pv.value: pv for pv in report.per_value}
    assert "unknown" not in values
    assert values["X"].groups == 3 and not values["X"].gated
    assert report.value == "M"
