"""LTR_PROPENSITY_METHOD=auto: the click model's examination curve, with the positions that
enough swap interventions measured taken from them; without swaps, exactly regression_em."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ltr_assets.learning.dataset import Split
from ltr_assets.learning.debias import Debiaser
from ltr_assets.learning.interventions import Impressions, intervention_curve
from ltr_assets.learning.propensity import ClickModel, PropensityCurve, _click_model_sources
from ltr_assets.learning.training import (
    INTERVENTION_BOOTSTRAP,
    auto_curve,
    logged_impressions,
    train_ranker,
)
from ltr_core.settings import Settings
from tests.support.defaults import TRAINING
from tests.unit.test_interventions import _large_log
from tests.unit.test_scale_caps import _logs

ETA = 1.0  # the simulator's examination curve θ_k = k^-η
POSITIONS = 12  # the click model's curve is longer than the swaps' reach (positions 2-10)


CLICK_MODEL_SOURCES = _click_model_sources(POSITIONS)


def _click_model_curve() -> PropensityCurve:
    """A regression-EM curve that is wrong on purpose (θ_k = k^-0.5), so that where the
    combined curve follows the truth it can only be because of the interventions."""
    theta = [float(k) ** -0.5 for k in range(1, POSITIONS + 1)]
    return PropensityCurve(
        method="regression_em",
        examination=theta,
        low=[t - 0.01 for t in theta],
        high=[min(1.0, t + 0.01) for t in theta],
        impressions=[5000] * POSITIONS,
        clicks=[700] * POSITIONS,
        params={"model": "position-based"},
        sources=CLICK_MODEL_SOURCES,
        swapped_impressions=[0] * POSITIONS,
    )


def _debiaser(curve: PropensityCurve) -> Debiaser:
    return Debiaser(ClickModel(curve, 0.0, []), None, 1.0, clip=0.05, ips_max_weight=5.0)


def _few_deep_swaps(log: Impressions) -> Impressions:
    """The log without most of the requests swapped at k ≥ 6: positions 2-5 rest on thousands
    of swapped impressions, positions 6-10 on a few dozen."""
    moved = (log.policy == "swap") & (log.rank == 1)
    deep = np.unique(log.request[moved & (log.position >= 6)])
    drop = np.isin(log.request, deep[np.arange(deep.size) % 20 != 0])
    keep = ~drop
    return Impressions(*(np.asarray(column)[keep] for column in log._columns()))


def _split(log: Impressions, with_policy: bool = True) -> Split:
    """Feature-matrix rows of the log, as the window holds them (lists in order)."""
    frame = pd.DataFrame(
        {
            "group_id": [f"g{r}" for r in log.request],
            "rank_position": log.position,
            "label": log.label,
        }
    )
    if with_policy:
        frame["policy"] = log.policy
        frame["propensity"] = log.propensity
        frame["deterministic_rank"] = log.rank
    frame = frame.sort_values(["group_id", "rank_position"], kind="stable", ignore_index=True)
    sizes = frame.groupby("group_id", sort=False).size().to_numpy()
    return Split(frame, sizes)


def test_positions_with_enough_swaps_come_from_the_interventions_with_their_counts() -> None:
    log = _few_deep_swaps(_large_log(ETA, 20_000, 0.5, seed=4))
    split = _split(log)
    half = split.groups // 2
    train = split.subset(np.arange(split.groups) < half)
    valid = split.subset(np.arange(split.groups) >= half)
    click_model = _click_model_curve()
    debiaser = _debiaser(click_model)

    auto_curve(debiaser, (train, valid), min_swapped=1000)

    curve = debiaser.curve
    logged = logged_impressions((train, valid))
    assert logged is not None and logged.request.size == log.request.size
    expected = intervention_curve(logged, bootstrap=INTERVENTION_BOOTSTRAP)
    assert curve.method == "auto" and curve.positions == POSITIONS
    assert curve.sources == ["reference", *["interventions"] * 4, *["click_model"] * 7]
    counts = [0] + [
        e.swapped_impressions for k in range(2, 11) if (e := expected.estimate(k)) is not None
    ]
    assert curve.swapped_impressions == [*counts, 0, 0]
    assert min(counts[1:5]) >= 1000 and max(counts[5:]) < 1000
    for k in range(2, 6):  # measured: within a few hundredths of the truth
        assert curve.examination[k - 1] == pytest.approx(k**-ETA, abs=0.05)
        assert curve.impressions[k - 1] == counts[k - 1]
        low, high = curve.low[k - 1], curve.high[k - 1]
        assert low is not None and high is not None and low <= curve.examination[k - 1] <= high
    # the others keep the click model's figures
    assert curve.examination[5:] == click_model.examination[5:]
    assert curve.low[5:] == click_model.low[5:] and curve.impressions[5:] == [5000] * 7
    assert curve.params["model"] == "position-based"  # the click model's own record kept
    recorded = curve.params["interventions"]
    assert recorded["min_swapped"] == 1000 and recorded["positions_from_interventions"] == [
        2,
        3,
        4,
        5,
    ]
    # the gate and training read θ through the debiaser: they get the combined curve
    assert debiaser.propensities(np.array([1, 3, 8, 40])).tolist() == [
        1.0,
        curve.examination[2],
        click_model.examination[7],
        click_model.examination[-1],
    ]


def test_without_swapped_impressions_the_curve_is_the_click_models() -> None:
    log = _large_log(ETA, 2_000, 0.0, seed=5)  # the logging policy is on, nothing swapped
    assert set(log.policy.tolist()) == {"deterministic"}
    click_model = _click_model_curve()
    for split in (_split(log), _split(log, with_policy=False)):  # also: matrices before them
        debiaser = _debiaser(click_model)
        auto_curve(debiaser, (split,), min_swapped=1)
        assert debiaser.curve is click_model


def test_logs_the_estimator_refuses_leave_the_click_models_curve_saying_why() -> None:
    log = _large_log(ETA, 2_000, 0.5, seed=6)
    split = _split(log)
    moved = split.frame["deterministic_rank"] != split.frame["rank_position"]
    split.frame.loc[moved.to_numpy().nonzero()[0][:1], "policy"] = "deterministic"
    debiaser = _debiaser(_click_model_curve())
    auto_curve(debiaser, (split,), min_swapped=1)
    curve = debiaser.curve
    assert curve.method == "regression_em" and curve.examination == _click_model_curve().examination
    assert "must have policy 'swap'" in curve.params["interventions"]["refused"]


def test_auto_is_the_default_and_the_other_methods_stay() -> None:
    assert Settings.from_env({}).propensity_method == "auto"
    assert Settings.from_env({}).propensity_min_swapped == 1000
    assert Settings.from_env({"LTR_PROPENSITY_CURVE": "1,0.5"}).propensity_method == "pinned"
    chosen = Settings.from_env({"LTR_PROPENSITY_METHOD": "regression_em"})
    assert chosen.propensity_method == "regression_em"
    assert TRAINING.propensity_method == "auto" and TRAINING.min_swapped == 1000


@pytest.mark.slow  # trains LambdaRank twice: not in make test-fast
def test_auto_without_swaps_trains_exactly_as_regression_em() -> None:
    train, valid = _logs(11, 300), _logs(12, 80)
    auto = train_ranker(train, valid, TRAINING)
    em = train_ranker(train, valid, replace(TRAINING, propensity_method="regression_em"))
    assert auto.propensity == em.propensity and auto.propensity.method == "regression_em"
    assert auto.propensity.sources[0] == "reference"
    assert set(auto.propensity.sources[1:]) == {"click_model"}
    assert auto.weights == em.weights
    assert auto.booster.model_to_string() == em.booster.model_to_string()
