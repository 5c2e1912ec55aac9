"""Debiased relevance from position-biased feedback: what training and evaluation learn from.

The click model (`ltr_assets.learning.propensity`) says how likely an examined candidate is clicked,
γ(x), and how likely each rank is examined, θ_k. A second small model says what a click is worth,
ḡ(x) = E[2^label − 1 | clicked, x] (contacts and contracts follow clicks). From them:

- `expected_gain(x) = γ(x) · ḡ(x)`: the gain a user would give the candidate if it were examined,
  the debiased target of training (`click_model` debiasing) and of the linear weights;
- `completed_gain`: a row's logged gain where it was clicked, else its posterior expected gain
  given that it was not clicked at its position, (1 − θ)·γ / (1 − θ·γ) · ḡ: what normalises the
  counterfactual nDCG, and what grades the rows past the largest IPS weight in it
  (`ltr_assets.metrics.ranking`).

Measured on the simulator (`python -m benchmarks.quality_sim`): LambdaRank trained on the
expected gains closes most of the gap between a model trained on raw clicks and one trained on
unbiased feedback; IPS-weighted LambdaRank and LightGBM's `position` close much less of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np

from ltr_assets.learning.lightgbm_params import lightgbm_params
from ltr_assets.learning.propensity import ClickModel, PropensityCurve, fit_click_model
from ltr_core.scoring import predict
from ltr_core.vocabulary import CurveFamilySetting

METHODS = ("click_model", "ips", "lightgbm_position", "none")

# A fine gain scale for LambdaRank labels: label i has gain GAIN_LEVELS[i] (LightGBM's
# `label_gain`), so a debiased gain is rounded to one of 31 levels instead of four grades.
GAIN_LEVELS: tuple[float, ...] = (0.0, *[float(v) for v in np.geomspace(0.02, 16.0, 30)])

# The click-gain model's own parameters (over lightgbm_params.BASE_PARAMS).
_GAIN_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 50,
}
GAIN_ROUNDS = 200


def gain_levels(gains: np.ndarray) -> np.ndarray:
    """Integer LambdaRank labels: the index of the nearest level at or below each gain."""
    levels = np.asarray(GAIN_LEVELS)
    index = np.searchsorted(levels, np.clip(np.asarray(gains, dtype=np.float64), 0, None), "right")
    return np.clip(index - 1, 0, len(levels) - 1).astype(np.int64)


def logged_gain(labels: np.ndarray) -> np.ndarray:
    return np.power(2.0, np.asarray(labels, dtype=np.float64)) - 1.0


@dataclass
class Debiaser:
    """The fitted click and gain models, and the debiased quantities they give."""

    click_model: ClickModel
    gain_model: lgb.Booster | None  # None: no click in the data it was fitted on
    mean_click_gain: float
    clip: float  # training's IPS weights are at most 1 / clip
    ips_max_weight: float  # the gate's estimator grades rows past this weight by the model
    # Predictions per feature matrix, kept with the matrix itself: training asks for the same
    # splits' γ and ḡ several times, and γ is a sum of many small boosters.
    _memo: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False
    )

    @property
    def curve(self) -> PropensityCurve:
        return self.click_model.curve

    def _predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hit = self._memo.get(id(features))
        if hit is not None and hit[0] is features:
            return hit[1], hit[2]
        gamma = self.click_model.gamma(features)
        if self.gain_model is None:
            gain = np.full(len(features), self.mean_click_gain)
        else:
            gain = np.clip(predict(self.gain_model, features), 1.0, None)  # a click gains ≥ 1
        self._memo[id(features)] = (features, gamma, gain)
        return gamma, gain

    def click_gain(self, features: np.ndarray) -> np.ndarray:
        """ḡ(x): the expected gain of a click."""
        return self._predict(features)[1]

    def expected_gain(self, features: np.ndarray) -> np.ndarray:
        gamma, gain = self._predict(features)
        expected: np.ndarray = gamma * gain
        return expected

    def propensities(self, positions: np.ndarray) -> np.ndarray:
        return self.curve.at(positions)

    def alternative_curves(
        self, features: np.ndarray, positions: np.ndarray, labels: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(θ at each row's position, completed gains) under each other curve family the logs
        do not rule out (`ClickModel.alternative_curves`): what the gate's intervals span."""
        p = np.asarray(positions, dtype=np.int64)
        out = []
        for theta in self.click_model.alternative_curves().values():
            at = theta[np.minimum(p, theta.size) - 1]
            out.append((at, self.completed_gain(features, positions, labels, at)))
        return out

    def completed_gain(
        self,
        features: np.ndarray,
        positions: np.ndarray,
        labels: np.ndarray,
        theta: np.ndarray | None = None,
    ) -> np.ndarray:
        """Each row's completed gain (module docstring); `theta`: θ at each row's position
        under another curve than the debiaser's own (see `alternative_curves`)."""
        theta = self.propensities(positions) if theta is None else theta
        gamma, click_gain = self._predict(features)
        unseen = (1.0 - theta) * gamma / np.maximum(1.0 - theta * gamma, 1e-9)
        gains = logged_gain(labels)
        return np.where(gains > 0, gains, unseen * click_gain)


def fit_debiaser(
    features: np.ndarray,
    positions: np.ndarray,
    labels: np.ndarray,
    group_sizes: np.ndarray,
    *,
    pinned: PropensityCurve | None,
    clip: float,
    ips_max_weight: float,
    num_threads: int,
    bootstrap: int = 100,
    family: CurveFamilySetting = "per_position",
) -> Debiaser:
    """Fit the click model and the gain model on logged lists (the training days).
    `clip` (LTR_PROPENSITY_CLIP), `ips_max_weight` (LTR_IPS_MAX_WEIGHT) and `num_threads`
    (LTR_NUM_THREADS) and the curve's `family` (LTR_PROPENSITY_FAMILY) come from the settings;
    the caller passes them."""
    labels = np.asarray(labels)
    click_model = fit_click_model(
        positions,
        labels > 0,
        features,
        group_sizes,
        pinned=pinned,
        bootstrap=bootstrap,
        num_threads=num_threads,
        family=family,
    )
    clicked = labels > 0
    gains = logged_gain(labels[clicked])
    gain_model = None
    if clicked.sum() >= 2 * _GAIN_PARAMS["min_data_in_leaf"]:
        gain_model = lgb.train(
            lightgbm_params(num_threads, **_GAIN_PARAMS),
            lgb.Dataset(features[clicked], gains),
            num_boost_round=GAIN_ROUNDS,
        )
    mean_gain = float(gains.mean()) if gains.size else 1.0
    return Debiaser(click_model, gain_model, mean_gain, clip, ips_max_weight)
