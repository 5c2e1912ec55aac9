"""Scale caps of ltr_model: the click model and the weight derivations fit on deterministic
samples of whole lists only when their input is bigger than the cap (LTR_CLICK_MODEL_MAX_ROWS,
LTR_WEIGHTS_MAX_ROWS); small windows are fitted exactly as without caps. The vectorised fairness
shares equal the per-list definition."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ltr_assets.learning.dataset import Split
from ltr_assets.learning.training import _weights_fit, sample_lists, sample_split, train_ranker
from ltr_assets.metrics.fairness import ListShares, list_shares
from ltr_assets.metrics.ranking import group_offsets, tie_breaker
from ltr_core.features import FEATURE_COLUMNS, UNKNOWN
from ltr_core.settings import ConfigError, SampleCaps, Settings
from tests.support.defaults import TRAINING

NO_CAPS = SampleCaps(click_model_rows=0, weights_rows=0, train_rows=0)


def test_the_caps_are_configuration_with_documented_defaults() -> None:
    caps = Settings.from_env({}).sample_caps
    assert (caps.click_model_rows, caps.weights_rows, caps.train_rows) == (
        200_000,
        200_000,
        200_000,
    )
    env = {"LTR_CLICK_MODEL_MAX_ROWS": "0", "LTR_WEIGHTS_MAX_ROWS": "50000"}
    caps = Settings.from_env(env).sample_caps
    assert (caps.click_model_rows, caps.weights_rows) == (0, 50_000)
    outside = r"is outside its range 0 or \[10000, "
    with pytest.raises(ConfigError, match=f"LTR_CLICK_MODEL_MAX_ROWS='500' {outside}"):
        Settings.from_env({"LTR_CLICK_MODEL_MAX_ROWS": "500"})
    with pytest.raises(ConfigError, match=f"LTR_WEIGHTS_MAX_ROWS='-1' {outside}"):
        Settings.from_env({"LTR_WEIGHTS_MAX_ROWS": "-1"})


def test_a_cap_bites_only_above_its_size_and_samples_whole_lists_deterministically() -> None:
    sizes = np.random.default_rng(1).integers(5, 30, 2000)
    total = int(sizes.sum())
    assert sample_lists(sizes, 0) is None  # no cap
    assert sample_lists(sizes, total) is None  # everything fits: the whole input
    chosen = sample_lists(sizes, total // 3)
    assert chosen is not None and chosen.dtype == bool and chosen.size == sizes.size
    used = int(sizes[chosen].sum())
    assert total // 3 - sizes.max() < used <= total // 3  # filled up to the cap
    again, reseeded = sample_lists(sizes, total // 3), sample_lists(sizes, total // 3, seed=1)
    assert again is not None and np.array_equal(chosen, again)  # deterministic
    assert reseeded is not None and not np.array_equal(chosen, reseeded)
    # a list longer than the cap still gives a sample
    one = sample_lists(np.array([50, 60]), 10)
    assert one is not None and one.sum() == 1


def _logs(seed: int, lists: int, n: int = 12) -> Split:
    """Lists of a position-based click model: a logging ranker sorting by a noisy score,
    clicks = examined (θ_k = 1/k) × attractive (two of the features)."""
    rng = np.random.default_rng(seed)
    X = rng.random((lists * n, len(FEATURE_COLUMNS)))
    attractive = 1.0 / (1.0 + np.exp(-(4.0 * X[:, 0] + 2.0 * X[:, 1] - 4.0)))
    positions = np.empty(lists * n, dtype=np.int64)
    for q in range(lists):
        rows = slice(q * n, (q + 1) * n)
        positions[rows] = np.argsort(np.argsort(-(X[rows, 0] + rng.normal(0, 0.3, n)))) + 1
    clicks = rng.random(lists * n) < attractive / positions
    labels = np.where(clicks, 1 + (rng.random(lists * n) < 0.3), 0)
    frame = pd.DataFrame(X, columns=list(FEATURE_COLUMNS))
    frame["label"] = labels
    frame["rank_position"] = positions
    frame["group_id"] = np.repeat([f"g{q}" for q in range(lists)], n)
    return Split(frame, np.full(lists, n))


def test_a_sampled_split_holds_whole_lists_in_their_order() -> None:
    split = _logs(3, 100)
    same, chosen, record = sample_split(split, 10_000)
    assert same is split and record["sampled"] is False and record["rows_used"] == 1200
    assert chosen is None
    sample, chosen, record = sample_split(split, 600)
    assert chosen is not None and int(chosen.sum()) == record["lists_used"]
    assert record["sampled"] is True and record["rows_used"] == len(sample.frame) == 600
    assert record["lists_used"] == 50 and record["lists_available"] == 100
    groups = sample.frame["group_id"].tolist()
    kept = list(dict.fromkeys(groups))
    assert kept == sorted(kept, key=lambda g: int(g[1:]))  # original list order
    assert all(groups.count(g) == 12 for g in kept)  # whole lists
    assert np.array_equal(
        sample.X, split.frame[split.frame["group_id"].isin(kept)][list(FEATURE_COLUMNS)].to_numpy()
    )


@pytest.mark.slow  # trains LambdaRank several times: not in make test-fast
def test_small_windows_train_exactly_as_without_caps_and_big_ones_on_the_sample() -> None:
    train, valid = _logs(7, 600), _logs(8, 150)  # 9,000 rows in all
    uncapped = train_ranker(train, valid, replace(TRAINING, caps=NO_CAPS))
    default = train_ranker(train, valid, TRAINING)  # default caps: far above 9,000 rows
    assert default.info["sampling"]["click_model"]["sampled"] is False
    assert default.info["sampling"]["weights"]["sampled"] is False
    assert default.info["sampling"]["lambdarank"]["sampled"] is False
    assert default.propensity == uncapped.propensity
    assert default.weights == uncapped.weights
    assert default.booster.model_to_string() == uncapped.booster.model_to_string()

    # below the smallest cap a setting may give (MIN_SAMPLE_CAP): built without validation
    caps = SampleCaps.model_construct(click_model_rows=6_000, weights_rows=3_600, train_rows=4_800)
    capped = train_ranker(train, valid, replace(TRAINING, caps=caps))
    click = capped.info["sampling"]["click_model"]
    assert click["sampled"] is True and click["rows_available"] == 9_000
    assert click["rows_used"] == 6_000 == capped.propensity.params["rows"]
    weights = capped.info["sampling"]["weights"]
    assert weights["sampled"] is True and weights["rows_used"] == 3_600
    lambdarank = capped.info["sampling"]["lambdarank"]
    assert lambdarank["sampled"] is True and lambdarank["rows_used"] == 4_800
    assert capped.propensity != uncapped.propensity  # the cap did bite
    again = train_ranker(train, valid, replace(TRAINING, caps=caps))
    assert again.propensity == capped.propensity and again.weights == capped.weights
    # (how close a sampled curve stays to the whole window's is measured at scale, where the
    # cap bites: docs/benchmarks.md, "scale")


@pytest.mark.slow  # trains LambdaRank several times: not in make test-fast
def test_the_weights_sample_reuses_lambdaranks_targets_only_when_it_is_part_of_its_sample() -> None:
    train, valid = _logs(9, 400), _logs(10, 100)
    ranker = train_ranker(train, valid, replace(TRAINING, caps=NO_CAPS))
    debiaser = ranker.debiaser
    sizes = train.group_sizes
    for lambdarank_rows, weights_rows in [(3_600, 2_400), (2_400, 3_600), (0, 2_400), (3_600, 0)]:
        booster_lists = sample_lists(sizes, lambdarank_rows)
        booster_train = train if booster_lists is None else train.subset(booster_lists)
        weights_lists = sample_lists(sizes, weights_rows)
        fit, targets = _weights_fit(
            train, booster_train, booster_lists, weights_lists, "click_model", debiaser
        )
        expected = train if weights_lists is None else train.subset(weights_lists)
        assert fit.frame["group_id"].tolist() == expected.frame["group_id"].tolist()
        assert np.allclose(targets, debiaser.expected_gain(expected.X), rtol=0, atol=1e-12)


def test_attribute_values_are_text_or_none_whatever_the_column_type() -> None:
    frame = pd.DataFrame(
        {
            "g_gender": ["F", None, "M", np.nan],
            "g_ethnicity": pd.Series(["parda", None, "preta", "branca"], dtype="string"),
            "g_pcd": [True, False, None, True],
            "g_orientation": pd.Series([True, False, pd.NA, True], dtype="boolean"),
        }
    )
    got = Split(frame, np.array([4])).attributes()
    expected = {
        c.removeprefix("g_"): [None if pd.isna(v) else str(v) for v in frame[c].tolist()]
        for c in frame.columns
    }
    assert got == expected


def _list_shares_per_list(
    scores: np.ndarray,
    group_sizes: Sequence[int] | np.ndarray,
    columns: Mapping[str, np.ndarray],
    merit: np.ndarray,
    k: int = 5,
    list_offset: int = 0,
) -> dict[tuple[str, str], ListShares]:
    """The definition, list by list (the implementation before it was vectorised)."""
    scores = np.asarray(scores, dtype=np.float64)
    merit = np.clip(np.asarray(merit, dtype=np.float64), 0.0, None)
    ties = tie_breaker(scores.size)
    offsets = group_offsets(group_sizes)
    out: dict[tuple[str, str], ListShares] = {}
    for g in range(len(offsets) - 1):
        lo, hi = offsets[g], offsets[g + 1]
        n = hi - lo
        if n < 2:
            continue
        order = np.lexsort((ties[lo:hi], -scores[lo:hi]))
        top = min(k, n)
        discounts = 1.0 / np.log2(np.arange(2, top + 2))
        exposure = np.zeros(n)
        exposure[order[:top]] = discounts / discounts.sum()
        list_merit = merit[lo:hi]
        merit_total = list_merit.sum()
        for attribute, column in columns.items():
            values = column[lo:hi]
            for value in set(values):
                if value == UNKNOWN:
                    continue
                members = values == value
                count = int(members.sum())
                if count == n:
                    continue
                shares = out.setdefault((attribute, value), ListShares())
                shares.lists.append(list_offset + g)
                shares.candidate.append(count / n)
                shares.exposure.append(float(exposure[members].sum()))
                shares.merit.append(
                    float(list_merit[members].sum() / merit_total) if merit_total > 0 else count / n
                )
    return out


def test_vectorised_fairness_shares_equal_the_per_list_definition() -> None:
    rng = np.random.default_rng(11)
    sizes = rng.integers(1, 25, 400)
    n = int(sizes.sum())
    gender = rng.choice(np.array(["F", "M", UNKNOWN], dtype=object), n, p=[0.4, 0.5, 0.1])
    pcd = rng.choice(np.array(["true", "false"], dtype=object), n, p=[0.1, 0.9])
    both = np.where((gender != UNKNOWN), gender + "&" + pcd, UNKNOWN)
    columns = {"gender": gender, "pcd": pcd, "gender&pcd": both}
    scores = np.round(rng.random(n), 1)  # many ties
    merit = np.where(rng.random(n) < 0.2, 0.0, rng.random(n))
    merit[: int(sizes[0])] = 0.0  # a list without merit
    fast = list_shares(scores, sizes, columns, merit, list_offset=7)
    slow = _list_shares_per_list(scores, sizes, columns, merit, list_offset=7)
    assert set(fast) == set(slow)
    for key, expected in slow.items():
        got = fast[key]
        assert got.lists == expected.lists
        for name in ("candidate", "exposure", "merit"):
            assert getattr(got, name) == pytest.approx(getattr(expected, name), abs=1e-12)


def test_fairness_with_the_evaluators_resamples_equals_fairness_drawing_its_own() -> None:
    from ltr_assets.metrics.fairness import RankedLists, fairness_report
    from ltr_assets.metrics.ranking import bootstrap_draws

    rng = np.random.default_rng(5)
    sizes = rng.integers(5, 20, 300)
    n = int(sizes.sum())
    attributes = {"gender": list(rng.choice(np.array(["F", "M", "X"]), n, p=[0.49, 0.5, 0.01]))}
    test = RankedLists(rng.random(n), sizes, attributes, rng.random(n))
    pool_sizes = rng.integers(5, 20, 100)
    m = int(pool_sizes.sum())
    pool_attributes = {"gender": list(rng.choice(np.array(["F", "M", "X"]), m))}
    pool = RankedLists(rng.random(m), pool_sizes, pool_attributes, rng.random(m))
    own = fairness_report(
        test, ("gender",), pool, max_difference=0.05, min_ratio=0.8, min_coverage=0.5, min_lists=200
    )
    shared = fairness_report(
        test,
        ("gender",),
        pool,
        max_difference=0.05,
        min_ratio=0.8,
        min_coverage=0.5,
        min_lists=200,
        test_draws=bootstrap_draws(sizes.size),
    )
    assert any(v.pooled for v in own.values)  # the pooled resamples are drawn when needed
    assert own == shared


def test_intersection_columns_equal_the_per_row_concatenation() -> None:
    from ltr_assets.metrics.fairness import _value_columns

    rng = np.random.default_rng(3)
    n = 500
    attributes = {
        "gender": list(rng.choice(np.array(["F", "M", None], dtype=object), n)),
        "pcd": list(rng.choice(np.array(["True", "False", None], dtype=object), n)),
        "ethnicity": list(rng.choice(np.array(["parda", "preta"], dtype=object), n)),
    }
    columns = _value_columns(attributes, ("gender", "pcd", "ethnicity"))
    for a, b in [("gender", "pcd"), ("gender", "ethnicity"), ("pcd", "ethnicity")]:
        left, right = columns[a], columns[b]
        known = (left != UNKNOWN) & (right != UNKNOWN)
        expected = np.where(known, left + "&" + right, UNKNOWN)
        assert columns[f"{a}&{b}"].tolist() == expected.tolist()
    assert _value_columns({"gender": [], "pcd": []}, ("gender", "pcd"))["gender&pcd"].size == 0
