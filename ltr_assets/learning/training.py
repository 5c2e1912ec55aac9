"""ltr_model: LightGBM LambdaRank on a rolling window, split by time, and the published weights.

The window is read from the lake by path (days that were never built are recorded as missing).
Query groups are ordered by their start time and split into train / validation (early stopping,
choice of weights) / test (the gate). Training is deterministic: fixed seed, no bagging,
`deterministic=True`.

The logged labels measure the position a candidate was shown at as much as its relevance, so
training corrects for position bias by default (`LTR_DEBIAS`, see `ltr_assets.learning.debias`):

- `click_model` (default): a click model fitted on the training lists gives each candidate's
  debiased expected gain; LambdaRank learns to rank by it (labels on a fine gain scale).
- `ips`: LambdaRank on the logged labels, clicked rows weighted by 1 / max(θ, clip).
- `lightgbm_position`: LightGBM's position-aware LambdaRank (`Dataset(position=…)`).
- `none`: the logged labels as they are (the naive baseline, for comparison).

The published weights are a linear scorer: non-negative, summing to 1.0 over FEATURES. How they
are derived is measured, not assumed: three derivations are fitted on the debiased targets and
the one with the best counterfactual nDCG@5 on the validation lists is published; all three
figures go into the metadata.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import minimize, nnls

from ltr_assets.lake.paths import Lake, read_frame
from ltr_assets.learning.dataset import Split, Targets
from ltr_assets.learning.debias import (
    GAIN_LEVELS,
    METHODS,
    Debiaser,
    fit_debiaser,
    gain_levels,
    logged_gain,
)
from ltr_assets.learning.interventions import Impressions, intervention_curve
from ltr_assets.learning.lightgbm_params import BASE_PARAMS
from ltr_assets.learning.propensity import (
    PropensityCurve,
    PropensityError,
    pinned_curve,
    with_interventions,
)
from ltr_assets.metrics.ranking import CounterfactualEvaluator, group_offsets
from ltr_core.features import FEATURES
from ltr_core.scoring import predict
from ltr_core.settings import ConfigError, SampleCaps, Settings
from ltr_core.vocabulary import CurveFamilySetting, DebiasMethod, PropensityMethod

log = logging.getLogger("ltr.training")

# LambdaRank's own parameters over the shared ones (lightgbm_params.BASE_PARAMS); the number of
# threads is added per fit (LTR_NUM_THREADS).
DEFAULT_PARAMS: dict[str, Any] = {
    **BASE_PARAMS,
    "objective": "lambdarank",
    "metric": "ndcg",
    "ndcg_eval_at": [5],
    "learning_rate": 0.1,  # a lower rate reaches the same quality in more rounds
    "num_leaves": 15,
    "min_data_in_leaf": 50,
    "min_sum_hessian_in_leaf": 5.0,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "bagging_freq": 0,
}
# The intervention curve of LTR_PROPENSITY_METHOD=auto (ltr_assets.learning.interventions): the
# affine model with E = 1 (its estimate barely depends on E) and a bootstrap over requests.
INTERVENTION_BOOTSTRAP = 100
MAX_ROUNDS = 300
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
    # list ids found on more than one day (a list shown across midnight, or a client that
    # reuses request ids): each day's part is a list of its own, its id prefixed with the day
    ids_on_several_days: int = 0


def load_window(lake: Lake, end: date, days: int, first: date | None = None) -> Window:
    """The feature matrices of `end` and the `days - 1` days before it that exist in the lake.
    Days before `first` (the first partition) are not partitions: neither present nor missing,
    since nobody could backfill them.

    A list id is unique within a day's matrix, not across days: one found on several days is
    renamed `<day>/<id>` on each, so the days' rows never merge into one group (LambdaRank's
    groups are runs of rows: a merged id would cut lists apart and join others)."""
    present, missing, frames = [], [], []
    for offset in range(days - 1, -1, -1):
        day = end - timedelta(days=offset)
        if first is not None and day < first:
            continue
        path = lake.feature_matrix(day)
        if path.exists():
            present.append(day)
            frames.append(read_frame(path))
        else:
            missing.append(day)
    shared = _ids_on_several_days(frames)
    if shared:
        for day, frame in zip(present, frames, strict=True):
            renamed = frame["group_id"].isin(shared)
            frame.loc[renamed, "group_id"] = f"{day}/" + frame.loc[renamed, "group_id"].astype(str)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return Window(end, present, missing, frame, len(shared))


def _ids_on_several_days(frames: list[pd.DataFrame]) -> set[str]:
    seen: Counter[str] = Counter()
    for frame in frames:
        if "group_id" in frame.columns:
            seen.update(frame["group_id"].astype(str).unique().tolist())
    return {group for group, days in seen.items() if days > 1}


def sample_lists(sizes: np.ndarray, max_rows: int, seed: int = 0) -> np.ndarray | None:
    """Which lists a fit capped at `max_rows` rows uses: whole lists, drawn in a fixed-seed
    random order until the next would pass the cap, returned in their original order (a
    boolean mask over the lists). None when there is no cap (0) or every row fits: a capped
    step then uses all of its input, exactly as without the cap."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if max_rows <= 0 or int(sizes.sum()) <= max_rows:
        return None
    order = np.random.default_rng(seed).permutation(sizes.size)
    fits = np.cumsum(sizes[order]) <= max_rows
    chosen = np.zeros(sizes.size, dtype=bool)
    chosen[order[fits]] = True
    if not chosen.any():  # one list longer than the cap: take the first drawn
        chosen[order[0]] = True
    return chosen


def sampling_record(
    sizes: np.ndarray, chosen: np.ndarray | None, max_rows: int, seed: int
) -> dict[str, Any]:
    """What a capped step used, for the version's metadata."""
    used = sizes if chosen is None else sizes[chosen]
    return {
        "max_rows": max_rows,
        "rows_available": int(sizes.sum()),
        "lists_available": int(sizes.size),
        "sampled": chosen is not None,
        "seed": seed,
        "rows_used": int(used.sum()),
        "lists_used": int(used.size),
    }


def sample_split(
    split: Split, max_rows: int, seed: int = 0
) -> tuple[Split, np.ndarray | None, dict[str, Any]]:
    """`split` itself when it fits in `max_rows` rows, else a deterministic sample of its whole
    lists (`sample_lists`); with the lists chosen (None: all) and a record of what was used."""
    chosen = sample_lists(split.group_sizes, max_rows, seed)
    record = sampling_record(split.group_sizes, chosen, max_rows, seed)
    return (split if chosen is None else split.subset(chosen)), chosen, record


def _split(frame: pd.DataFrame, group_ids: np.ndarray) -> Split:
    """The rows of `group_ids`, each list's rows together in the order given (a stable sort:
    within a list, the frame's order by rank position), with the list sizes in that order."""
    part = frame[frame["group_id"].isin(set(group_ids))]
    rank = pd.Series(np.arange(len(group_ids)), index=group_ids)
    codes = rank.loc[part["group_id"]].to_numpy()
    order = np.argsort(codes, kind="stable")
    part = part.iloc[order].reset_index(drop=True)
    sizes = np.bincount(codes, minlength=len(group_ids))
    return Split(part, sizes[sizes > 0])


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
        raise NotEnoughData(
            f"only {n} query groups in the window: too few for train ({n_train}, needs 10), "
            f"validation ({n_valid}, needs 5) and test ({n_test}, needs 5) splits"
        )
    return (
        _split(frame, groups[:n_train]),
        _split(frame, groups[n_train : n_train + n_valid]),
        _split(frame, groups[n_train + n_valid :]),
    )


def check_features_vary(split: Split) -> None:
    """NotEnoughData when no feature takes two values over the split's rows (missing values
    aside): neither the click model nor LambdaRank has anything to split on (LightGBM stops with
    "num_features > 0"); e.g. a feature service that wrote its defaults for days."""
    if split.frame.empty:
        return
    low = np.fmin.reduce(split.X, axis=0)
    high = np.fmax.reduce(split.X, axis=0)
    if not (high > low).any():
        raise NotEnoughData(
            f"no feature varies over the training split's {split.groups} lists: every "
            "candidate has the same value of every feature, so nothing can be learned (is the "
            "feature service writing defaults? see the day's raw events)"
        )


def training_targets(split: Split, method: str, debiaser: Debiaser) -> Targets:
    """The labels each debiasing method trains on (module docstring)."""
    if method == "click_model":
        return Targets(gain_levels(debiaser.expected_gain(split.X)), list(GAIN_LEVELS))
    labels = split.y.astype(np.int64)
    if method == "ips":
        weight = 1.0 / np.maximum(debiaser.propensities(split.positions), debiaser.clip)
        return Targets(labels, weight=np.where(labels > 0, weight, 1.0))
    if method == "lightgbm_position":
        return Targets(labels, position=split.positions - 1)
    if method == "none":
        return Targets(labels)
    raise ValueError(f"unknown debiasing method {method!r}; one of {', '.join(METHODS)}")


def train_booster(
    train: Split,
    valid: Split,
    train_targets: Targets,
    valid_targets: Targets,
    params: dict[str, Any] | None,
    dask_scheduler: str,
) -> tuple[lgb.Booster, dict[str, Any]]:
    """LambdaRank with early stopping on the validation groups; on the Dask cluster at
    `dask_scheduler` when one is given (`ltr_assets.learning.dask_training`)."""
    params = {**DEFAULT_PARAMS, **(params or {})}
    if train_targets.label_gain is not None:
        params["label_gain"] = train_targets.label_gain
    if dask_scheduler:
        from ltr_assets.learning.dask_training import train_booster_dask

        return train_booster_dask(
            dask_scheduler,
            train,
            valid,
            train_targets,
            valid_targets,
            params,
            MAX_ROUNDS,
            EARLY_STOPPING_ROUNDS,
        )
    train_set = lgb.Dataset(
        train.X,
        train_targets.labels,
        group=train.group_sizes,
        weight=train_targets.weight,
        position=train_targets.position,
        feature_name=list(FEATURES),
        free_raw_data=False,
    )
    valid_set = lgb.Dataset(
        valid.X, valid_targets.labels, group=valid.group_sizes, reference=train_set
    )
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
    target = _centred_by_group(predict(booster, X), split.group_sizes)
    design = _centred_by_group(X, split.group_sizes)
    coefficients: np.ndarray
    coefficients, _ = nnls(design, target)
    return coefficients


def weights_pairwise(split: Split, targets: np.ndarray, l2: float = 1e-3) -> np.ndarray:
    """A non-negative linear ranker fitted directly: pairwise logistic loss within each list
    over the pairs whose targets differ, each pair weighted by the difference of its targets."""
    X = np.nan_to_num(split.X, nan=0.0)
    offsets = group_offsets(split.group_sizes)
    diffs, pair_weights = [], []
    for i in range(split.groups):
        lo, hi = offsets[i], offsets[i + 1]
        t = targets[lo:hi]
        better, worse = np.nonzero(t[:, None] > t[None, :] + 1e-9)
        if better.size == 0:
            continue
        diffs.append(X[lo:hi][better] - X[lo:hi][worse])
        pair_weights.append(t[better] - t[worse])
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
    return np.asarray(result.x)


def counterfactual_evaluator(split: Split, debiaser: Debiaser) -> CounterfactualEvaluator:
    """The gate's estimator on one split's lists, from the debiaser fitted on training lists;
    its intervals span the other curve families the logs do not rule out."""
    return CounterfactualEvaluator(
        split.group_sizes,
        split.y,
        debiaser.propensities(split.positions),
        debiaser.completed_gain(split.X, split.positions, split.y),
        max_weight=debiaser.ips_max_weight,
        alternatives=debiaser.alternative_curves(split.X, split.positions, split.y),
    )


@dataclass
class TrainedRanker:
    booster: lgb.Booster
    weights: dict[str, float]
    weights_method: str
    weights_validation: dict[str, float]  # method -> counterfactual validation nDCG@5
    model_validation_ndcg5: float  # counterfactual, on the validation lists
    debias: str
    debiaser: Debiaser
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def propensity(self) -> PropensityCurve:
        return self.debiaser.curve


def _click_model_sample(
    train: Split, valid: Split, caps: SampleCaps
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Features, positions, labels and list sizes the click model is fitted on: the training
    and validation lists, or a deterministic sample of them holding at most
    `caps.click_model_rows` rows (`sample_lists`), with a record of what was used."""
    sizes = np.concatenate([train.group_sizes, valid.group_sizes])
    chosen = sample_lists(sizes, caps.click_model_rows, caps.seed)
    parts = []
    for i, split in enumerate((train, valid)):
        if chosen is None:
            parts.append((split.X, split.positions, split.y))
            continue
        lists = chosen[: train.groups] if i == 0 else chosen[train.groups :]
        rows = np.repeat(lists, split.group_sizes)
        parts.append((split.X[rows], split.positions[rows], split.y[rows]))
    X, positions, labels = (np.concatenate([p[j] for p in parts]) for j in range(3))
    used = sizes if chosen is None else sizes[chosen]
    return (
        X,
        positions,
        labels,
        used,
        sampling_record(sizes, chosen, caps.click_model_rows, caps.seed),
    )


def _weights_fit(
    train: Split,
    booster_train: Split,
    booster_lists: np.ndarray | None,
    weights_lists: np.ndarray | None,
    debias: str,
    debiaser: Debiaser,
) -> tuple[Split, np.ndarray]:
    """The lists the weight derivations fit on and their targets. With equal seeds a smaller
    cap's sample is part of a larger one's, so the targets LambdaRank's lists already have
    (γ is a sum of many small boosters: costly on a big window) are reused."""
    everything = np.ones(train.groups, dtype=bool)
    base = everything if booster_lists is None else booster_lists
    wanted = everything if weights_lists is None else weights_lists

    def targets_of(split: Split) -> np.ndarray:
        return logged_gain(split.y) if debias == "none" else debiaser.expected_gain(split.X)

    if np.all(base[wanted]):  # every wanted list is one of LambdaRank's
        within = wanted[base]
        targets = targets_of(booster_train)
        if within.all():
            return booster_train, targets
        return booster_train.subset(within), targets[np.repeat(within, booster_train.group_sizes)]
    fit = train if weights_lists is None else train.subset(weights_lists)
    return fit, targets_of(fit)


_IMPRESSION_COLUMNS = ("policy", "deterministic_rank", "rank_position", "propensity")


def logged_impressions(splits: tuple[Split, ...]) -> Impressions | None:
    """The impressions logged with their logging policy (policy, deterministic rank, position
    and propensity all present) in `splits`, one request per list; None when none of them was
    swapped (or the matrices predate the logging-policy columns)."""
    frames = []
    for split in splits:
        frame = split.frame
        if not set(_IMPRESSION_COLUMNS) <= set(frame.columns):
            continue
        logged = frame.loc[frame[list(_IMPRESSION_COLUMNS)].notna().all(axis=1)]
        frames.append(logged[["group_id", *_IMPRESSION_COLUMNS, "label"]])
    if not frames:
        return None
    rows = pd.concat(frames, ignore_index=True)
    if not (rows["policy"] == "swap").any():
        return None
    return Impressions.from_columns(
        rows["group_id"].astype(str).to_numpy(),
        rows["deterministic_rank"].to_numpy(dtype=np.int64),
        rows["rank_position"].to_numpy(dtype=np.int64),
        rows["policy"].astype(str).to_numpy(dtype=object),
        rows["propensity"].to_numpy(dtype=np.float64),
        rows["label"].to_numpy(dtype=np.float64),
    )


def auto_curve(debiaser: Debiaser, splits: tuple[Split, ...], min_swapped: int) -> None:
    """LTR_PROPENSITY_METHOD=auto: the debiaser's curve (the click model's) with the positions
    that the swap interventions logged in `splits` measured on at least `min_swapped` swapped
    impressions taken from them (`propensity.with_interventions`). Training's targets and
    weights and the gate's estimator all read θ from the debiaser, so they all use it. Without
    swapped impressions the curve is left as it is (`regression_em`). Logs the estimator
    refuses (a row moved without policy "swap", say) leave it too, the reason recorded in the
    curve's params."""
    impressions = logged_impressions(splits)
    if impressions is None:
        return
    curve = debiaser.click_model.curve
    try:
        interventions = intervention_curve(impressions, bootstrap=INTERVENTION_BOOTSTRAP)
    except ValueError as exc:
        log.warning("swap interventions not used, the click model's curve stands: %s", exc)
        debiaser.click_model.curve = replace(
            curve, params={**curve.params, "interventions": {"refused": str(exc)}}
        )
        return
    debiaser.click_model.curve = with_interventions(curve, interventions, min_swapped=min_swapped)


@dataclass(frozen=True)
class TrainingOptions:
    """What training takes from the settings, read in one place (`from_settings`): the
    debiasing method (LTR_DEBIAS), how the examination curve is obtained
    (LTR_PROPENSITY_METHOD, LTR_PROPENSITY_MIN_SWAPPED) and a pinned one
    (LTR_PROPENSITY_CURVE), the IPS clip and largest weight (LTR_PROPENSITY_CLIP,
    LTR_IPS_MAX_WEIGHT), the Dask cluster (LTR_DASK_SCHEDULER), the sample caps and the
    threads per fit (LTR_NUM_THREADS)."""

    debias: DebiasMethod
    pinned_curve: PropensityCurve | None
    clip: float
    ips_max_weight: float
    dask_scheduler: str
    caps: SampleCaps
    num_threads: int
    # LTR_PROPENSITY_METHOD and LTR_PROPENSITY_MIN_SWAPPED (auto: swap interventions where
    # they rest on enough swapped impressions)
    propensity_method: PropensityMethod = "auto"
    min_swapped: int = 1000
    propensity_family: CurveFamilySetting = "per_position"  # LTR_PROPENSITY_FAMILY

    @classmethod
    def from_settings(cls, settings: Settings) -> TrainingOptions:
        pinned = None
        if settings.propensity_method == "pinned":
            try:
                pinned = pinned_curve(settings.propensity_curve)
            except PropensityError as exc:
                raise ConfigError(f"LTR_PROPENSITY_CURVE: {exc}") from None
        return cls(
            debias=settings.debias,
            pinned_curve=pinned,
            clip=settings.propensity_clip,
            ips_max_weight=settings.ips_max_weight,
            dask_scheduler=settings.dask_scheduler,
            caps=settings.sample_caps,
            num_threads=settings.num_threads,
            propensity_method=settings.propensity_method,
            min_swapped=settings.propensity_min_swapped,
            propensity_family=settings.propensity_family,
        )


def train_ranker(
    train: Split,
    valid: Split,
    options: TrainingOptions,
    params: dict[str, Any] | None = None,
) -> TrainedRanker:
    """Fit the click model on the training and validation lists, train the booster on the
    debiased targets (on the Dask cluster at `options.dask_scheduler` when given), derive the
    linear weights every way and keep the best on validation. On big windows the click model,
    LambdaRank and the weight derivations each fit on a deterministic sample of whole lists
    (`options.caps`: LTR_CLICK_MODEL_MAX_ROWS, LTR_TRAIN_MAX_ROWS, LTR_WEIGHTS_MAX_ROWS);
    validation (early stopping, the choice of weights) uses every list. `params` override the
    LightGBM parameters (benchmarks and tests)."""
    debias, caps, num_threads = options.debias, options.caps, options.num_threads
    if debias not in METHODS:
        raise ValueError(f"unknown debiasing method {debias!r}; one of {', '.join(METHODS)}")
    fit_X, fit_positions, fit_labels, fit_sizes, click_sample = _click_model_sample(
        train, valid, caps
    )
    debiaser = fit_debiaser(
        fit_X,
        fit_positions,
        fit_labels,
        fit_sizes,
        pinned=options.pinned_curve,
        clip=options.clip,
        ips_max_weight=options.ips_max_weight,
        num_threads=num_threads,
        family=options.propensity_family,
    )
    del fit_X, fit_positions, fit_labels
    if options.propensity_method == "auto" and options.pinned_curve is None:
        auto_curve(debiaser, (train, valid), options.min_swapped)
    # LambdaRank on the training lists (a deterministic sample of them past the cap)
    booster_train, booster_lists, booster_sample = sample_split(train, caps.train_rows, caps.seed)
    train_targets = training_targets(booster_train, debias, debiaser)
    valid_targets = training_targets(valid, debias, debiaser)
    booster, info = train_booster(
        booster_train,
        valid,
        train_targets,
        valid_targets,
        {"num_threads": num_threads, **(params or {})},
        options.dask_scheduler,
    )
    # The weights learn from the same targets as the model: debiased, unless debiasing is off
    # (on a deterministic sample of the training lists when they hold more than the cap).
    weights_lists = sample_lists(train.group_sizes, caps.weights_rows, caps.seed)
    weights_sample = sampling_record(train.group_sizes, weights_lists, caps.weights_rows, caps.seed)
    fit, targets = _weights_fit(
        train, booster_train, booster_lists, weights_lists, debias, debiaser
    )
    raw = {
        "gain_importance": weights_gain_importance(booster),
        "distilled_nnls": weights_distilled(booster, fit),
        "pairwise_logistic": weights_pairwise(fit, targets),
    }
    candidates = {method: normalise(values) for method, values in raw.items()}
    judge = counterfactual_evaluator(valid, debiaser)
    X_valid = np.nan_to_num(valid.X, nan=0.0)
    validation = {}
    for method, weights in candidates.items():
        vector = np.array([weights[f] for f in FEATURES])
        validation[method] = judge.ndcg(X_valid @ vector, 5).value
    best = max(WEIGHT_METHODS, key=lambda m: (validation[m], -WEIGHT_METHODS.index(m)))
    model_ndcg = judge.ndcg(predict(booster, valid.X), 5).value
    info["debias"] = {
        "method": debias,
        "propensity_clip": options.clip,
        "evaluation_ips_max_weight": options.ips_max_weight,
        "label_gain": train_targets.label_gain,
        "ips_weights": train_targets.weight is not None,
        "lightgbm_position": train_targets.position is not None,
    }
    info["sampling"] = {
        "click_model": click_sample,
        "lambdarank": booster_sample,
        "weights": weights_sample,
    }
    return TrainedRanker(
        booster, candidates[best], best, validation, model_ndcg, debias, debiaser, info
    )
