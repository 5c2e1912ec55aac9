"""ltr_model: LightGBM LambdaRank on a rolling window, split by time, and the published weights.

The window is read from the lake by path (days that were never built are recorded as missing).
Query groups are ordered by their start time and split into train / validation (early stopping,
choice of weights) / test (the gate). Training is deterministic: fixed seed, no bagging,
`deterministic=True`.

The published weights are a linear scorer: non-negative, summing to 1.0 over FEATURES. How they
are derived is measured, not assumed: three derivations are computed and the one with the best
validation nDCG@5 is published; all three figures go into the metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import minimize, nnls

from ltr_assets.lake import Lake
from ltr_assets.metrics import group_offsets, ndcg_at_k
from ltr_assets.schema import ATTRIBUTE_COLUMNS, FEATURE_COLUMNS, FEATURES

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "ndcg_eval_at": [5],
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 50,
    "min_sum_hessian_in_leaf": 5.0,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "bagging_freq": 0,
    "lambda_l2": 1.0,
    "seed": 42,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbosity": -1,
}
MAX_ROUNDS = 400
EARLY_STOPPING_ROUNDS = 40
WEIGHT_METHODS = ("gain_importance", "distilled_nnls", "pairwise_logistic")


class NotEnoughData(RuntimeError):
    """The window holds too few query groups to train and evaluate a model."""


@dataclass
class Window:
    end: date
    days_present: list[date]
    days_missing: list[date]
    frame: pd.DataFrame  # feature-matrix rows of every present day, in group-time order


def load_window(lake: Lake, end: date, days: int) -> Window:
    """The feature matrices of `end` and the `days - 1` days before it that exist in the lake."""
    present, missing, frames = [], [], []
    for offset in range(days - 1, -1, -1):
        day = end - timedelta(days=offset)
        path = lake.feature_matrix(day)
        if path.exists():
            present.append(day)
            frames.append(pd.read_parquet(path))
        else:
            missing.append(day)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return Window(end, present, missing, frame)


@dataclass
class Split:
    """One part of the data: rows in group order, with the group sizes."""

    frame: pd.DataFrame
    group_sizes: np.ndarray

    @cached_property
    def X(self) -> np.ndarray:  # noqa: N802 - the usual name for a feature matrix
        """Computed once: training, evaluation, timing and the baseline all read it."""
        return self.frame[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64, na_value=np.nan)

    @cached_property
    def y(self) -> np.ndarray:
        return self.frame["label"].to_numpy(dtype=np.float64)

    @property
    def groups(self) -> int:
        return len(self.group_sizes)

    def attributes(self) -> dict[str, list[str | None]]:
        return {
            column.removeprefix("g_"): [
                None if pd.isna(v) else str(v) for v in self.frame[column].tolist()
            ]
            for column in ATTRIBUTE_COLUMNS
        }

    def query_matrices(self) -> list[np.ndarray]:
        X = self.X
        offsets = group_offsets(self.group_sizes)
        return [X[offsets[i] : offsets[i + 1]] for i in range(self.groups)]


def _split(frame: pd.DataFrame, group_ids: np.ndarray) -> Split:
    part = frame[frame["group_id"].isin(set(group_ids))]
    # keep the frame's order (group time order, then rank position)
    sizes = part.groupby("group_id", sort=False).size()
    return Split(part.reset_index(drop=True), sizes.to_numpy())


def split_by_time(
    frame: pd.DataFrame, valid_fraction: float = 0.15, test_fraction: float = 0.2
) -> tuple[Split, Split, Split]:
    """Oldest groups train, the next validate, the newest test."""
    if frame.empty:
        raise NotEnoughData("the training window holds no rows")
    order = frame.groupby("group_id", sort=False)["shown_at"].min().sort_values(kind="stable")
    groups = order.index.to_numpy()
    n = len(groups)
    n_test = int(round(n * test_fraction))
    n_valid = int(round(n * valid_fraction))
    n_train = n - n_test - n_valid
    if n_train < 10 or n_valid < 5 or n_test < 5:
        raise NotEnoughData(f"only {n} query groups in the window; need at least 50")
    return (
        _split(frame, groups[:n_train]),
        _split(frame, groups[n_train : n_train + n_valid]),
        _split(frame, groups[n_train + n_valid :]),
    )


def train_booster(
    train: Split, valid: Split, params: dict[str, Any] | None = None
) -> tuple[lgb.Booster, dict[str, Any]]:
    """LambdaRank with early stopping on the validation groups."""
    params = {**DEFAULT_PARAMS, **(params or {})}
    train_set = lgb.Dataset(
        train.X, train.y, group=train.group_sizes, feature_name=list(FEATURES), free_raw_data=False
    )
    valid_set = lgb.Dataset(valid.X, valid.y, group=valid.group_sizes, reference=train_set)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    # Keep only the best iteration so model.txt scores what was validated.
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    info = {"params": params, "best_iteration": booster.current_iteration()}
    return booster, info


def normalise(raw: np.ndarray) -> dict[str, float]:
    """Non-negative weights summing to exactly 1.0 over FEATURES (uniform if all are zero)."""
    clipped = np.clip(np.nan_to_num(np.asarray(raw, dtype=np.float64)), 0.0, None)
    total = clipped.sum()
    if total <= 0:
        clipped = np.ones(len(FEATURES))
        total = clipped.sum()
    values = [float(v) for v in clipped / total]
    # Put the rounding residue on the largest weight so the sum is 1.0 in floating point too.
    largest = int(np.argmax(values))
    values[largest] += 1.0 - sum(values)
    return dict(zip(FEATURES, values, strict=True))


def _centred_by_group(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    offsets = group_offsets(sizes)
    out = np.array(values, dtype=np.float64, copy=True)
    for i in range(len(sizes)):
        part = out[offsets[i] : offsets[i + 1]]
        part -= part.mean(axis=0)
    return out


def weights_gain_importance(booster: lgb.Booster) -> np.ndarray:
    """Baseline: each feature's share of the model's total split gain."""
    return booster.feature_importance(importance_type="gain").astype(np.float64)


def weights_distilled(booster: lgb.Booster, split: Split) -> np.ndarray:
    """Non-negative least squares of the model's scores on the features, within each list."""
    X = np.nan_to_num(split.X, nan=0.0)
    target = _centred_by_group(booster.predict(X), split.group_sizes)
    design = _centred_by_group(X, split.group_sizes)
    coefficients, _ = nnls(design, target)
    return coefficients


def weights_pairwise(split: Split, l2: float = 1e-3) -> np.ndarray:
    """A non-negative linear ranker fitted directly: pairwise logistic loss within each list,
    pairs weighted by their gain difference."""
    X = np.nan_to_num(split.X, nan=0.0)
    y = split.y
    offsets = group_offsets(split.group_sizes)
    diffs, pair_weights = [], []
    for i in range(split.groups):
        lo, hi = offsets[i], offsets[i + 1]
        labels = y[lo:hi]
        if labels.max() <= 0:
            continue
        better, worse = np.nonzero(labels[:, None] > labels[None, :])
        diffs.append(X[lo:hi][better] - X[lo:hi][worse])
        pair_weights.append(2.0 ** labels[better] - 2.0 ** labels[worse])
    if not diffs:
        return np.ones(X.shape[1])
    D = np.vstack(diffs)
    w = np.concatenate(pair_weights)
    w = w / w.sum()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        margin = D @ theta
        value = w @ np.logaddexp(0.0, -margin) + l2 * theta @ theta
        grad = -(D.T @ (w / (1.0 + np.exp(margin)))) + 2 * l2 * theta
        return float(value), grad

    result = minimize(
        loss,
        np.full(X.shape[1], 1.0),
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, None)] * X.shape[1],
    )
    return result.x


@dataclass
class TrainedRanker:
    booster: lgb.Booster
    weights: dict[str, float]
    weights_method: str
    weights_validation: dict[str, float]  # method -> validation nDCG@5 of its weights
    model_validation_ndcg5: float
    info: dict[str, Any] = field(default_factory=dict)


def train_ranker(train: Split, valid: Split, params: dict[str, Any] | None = None) -> TrainedRanker:
    """Train the booster, then derive the linear weights every way and keep the best one."""
    booster, info = train_booster(train, valid, params)
    raw = {
        "gain_importance": weights_gain_importance(booster),
        "distilled_nnls": weights_distilled(booster, train),
        "pairwise_logistic": weights_pairwise(train),
    }
    candidates = {method: normalise(values) for method, values in raw.items()}
    X_valid = np.nan_to_num(valid.X, nan=0.0)
    validation = {}
    for method, weights in candidates.items():
        vector = np.array([weights[f] for f in FEATURES])
        validation[method] = ndcg_at_k(valid.y, X_valid @ vector, valid.group_sizes, 5).value
    best = max(WEIGHT_METHODS, key=lambda m: (validation[m], -WEIGHT_METHODS.index(m)))
    model_ndcg = ndcg_at_k(valid.y, booster.predict(valid.X), valid.group_sizes, 5).value
    return TrainedRanker(booster, candidates[best], best, validation, model_ndcg, info)
