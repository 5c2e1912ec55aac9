"""LambdaRank on a Dask cluster (`LTR_DASK_SCHEDULER`): `lightgbm.dask.DaskLGBMRanker`.

The same parameters as single-machine training (`training.DEFAULT_PARAMS`, spelled the way the
scikit-learn interface names them), on the same targets and weights. The training rows are cut
into one partition per worker at query-group boundaries, so every partition holds whole lists
(LambdaRank's gradients are computed within a list) and its group sizes sum to its rows.

Early stopping: lightgbm.dask takes no callbacks, so the cluster trains `MAX_ROUNDS` trees and
the early-stopping rule of `lightgbm.early_stopping` (stop `EARLY_STOPPING_ROUNDS` rounds after
the best validation nDCG@5, keep the best iteration) is applied afterwards on the validation
lists, scored tree by tree on this machine with LightGBM's own nDCG definition. Boosting is
sequential, so the kept trees are those early stopping would have kept; only the extra rounds
cost time.

Imported only when a scheduler is configured: dask and distributed are the optional `dask`
extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np

from ltr_assets.metrics.ranking import group_offsets
from ltr_core.features import FEATURES

if TYPE_CHECKING:
    from ltr_assets.learning.dataset import Split, Targets

# training.DEFAULT_PARAMS' names -> the scikit-learn constructor's, where they differ (the
# constructor's defaults would otherwise be aliases competing with ours).
_SKLEARN_NAMES = {
    "min_data_in_leaf": "min_child_samples",
    "min_sum_hessian_in_leaf": "min_child_weight",
    "feature_fraction": "colsample_bytree",
    "bagging_fraction": "subsample",
    "bagging_freq": "subsample_freq",
    "lambda_l2": "reg_lambda",
    "seed": "random_state",
}
# Set by lightgbm.dask from the cluster (threads of each worker, number of workers) or not used
# (metrics: the validation score is computed here).
_DROPPED = {"num_threads", "metric", "ndcg_eval_at"}


def sklearn_params(params: dict[str, Any], rounds: int) -> dict[str, Any]:
    """LightGBM parameters as DaskLGBMRanker's keyword arguments."""
    out: dict[str, Any] = {"n_estimators": rounds}
    for name, value in params.items():
        if name in _DROPPED:
            continue
        out[_SKLEARN_NAMES.get(name, name)] = value
    return out


def partition_bounds(group_sizes: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Cut the groups into at most `parts` contiguous runs of about equal rows: (first group,
    end group) of each, never splitting a group."""
    offsets = group_offsets(group_sizes)
    total = int(offsets[-1])
    cuts = [0]
    for p in range(1, parts):
        cut = int(np.searchsorted(offsets, total * p / parts))
        if cuts[-1] < cut < len(group_sizes):
            cuts.append(cut)
    cuts.append(len(group_sizes))
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def lightgbm_ndcg(
    gains: np.ndarray, scores: np.ndarray, group_sizes: np.ndarray, k: int = 5
) -> float:
    """LightGBM's ndcg@k (gains given, 1/log2(rank+1) discounts, a list without gain scores 1),
    vectorised over lists padded to the longest."""
    n = len(group_sizes)
    width = int(group_sizes.max())
    offsets = group_offsets(group_sizes)
    rows = np.repeat(np.arange(n), group_sizes)
    cols = np.arange(len(scores)) - np.repeat(offsets[:-1], group_sizes)
    score_m = np.full((n, width), -np.inf)
    gain_m = np.zeros((n, width))
    score_m[rows, cols] = scores
    gain_m[rows, cols] = gains
    top = min(k, width)
    discounts = 1.0 / np.log2(np.arange(2, top + 2))
    order = np.argsort(-score_m, axis=1, kind="stable")[:, :top]
    dcg = np.take_along_axis(gain_m, order, axis=1) @ discounts
    ideal = -np.sort(-gain_m, axis=1)[:, :top] @ discounts
    values = np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 1.0)
    return float(values.mean())


def best_iteration(
    booster: lgb.Booster, valid: Split, gains: np.ndarray, stopping_rounds: int
) -> tuple[int, list[float]]:
    """The iteration `lightgbm.early_stopping` would keep, from validation nDCG@5 per round."""
    scores = np.zeros(len(valid.frame))
    best, best_score, history = 0, -np.inf, []
    for i in range(booster.current_iteration()):
        scores += np.asarray(booster.predict(valid.X, start_iteration=i, num_iteration=1))
        value = lightgbm_ndcg(gains, scores, valid.group_sizes)
        history.append(value)
        if value > best_score:
            best, best_score = i, value
        elif i - best >= stopping_rounds:
            break
    return best + 1, history


def train_booster_dask(
    scheduler: str,
    train: Split,
    valid: Split,
    train_targets: Targets,
    valid_targets: Targets,
    params: dict[str, Any],
    rounds: int,
    stopping_rounds: int,
) -> tuple[lgb.Booster, dict[str, Any]]:
    """Train on the cluster at `scheduler`; the booster keeps the early-stopping iteration."""
    if train_targets.position is not None:
        raise ValueError(
            "LTR_DEBIAS=lightgbm_position is not supported with LTR_DASK_SCHEDULER: "
            "lightgbm.dask takes no positions"
        )
    import dask.array as da
    from distributed import Client
    from lightgbm.dask import DaskLGBMRanker

    def chunked(values: np.ndarray, chunks: tuple[tuple[int, ...], ...]) -> Any:
        return da.from_array(values, chunks=chunks)  # type: ignore[no-untyped-call]

    # lightgbm.dask waits on futures through the default client: this one, while training.
    with Client(scheduler, timeout=30) as client:  # type: ignore[no-untyped-call]
        workers = max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
        bounds = partition_bounds(train.group_sizes, workers)
        offsets = group_offsets(train.group_sizes)
        row_chunks = tuple(int(offsets[hi] - offsets[lo]) for lo, hi in bounds)
        group_chunks = tuple(hi - lo for lo, hi in bounds)
        X = chunked(train.X, (row_chunks, (train.X.shape[1],)))
        y = chunked(train_targets.labels, (row_chunks,))
        group = chunked(train.group_sizes, (group_chunks,))
        weight = (
            None if train_targets.weight is None else chunked(train_targets.weight, (row_chunks,))
        )
        model = DaskLGBMRanker(client=client, **sklearn_params(params, rounds))
        model.fit(X, y, sample_weight=weight, group=group, feature_name=list(FEATURES))
        full = model.booster_
    gain_table = np.asarray(
        valid_targets.label_gain or [2.0**i - 1 for i in range(32)], dtype=np.float64
    )
    valid_gains = gain_table[valid_targets.labels.astype(np.int64)]
    best, history = best_iteration(full, valid, valid_gains, stopping_rounds)
    booster = lgb.Booster(model_str=full.model_to_string(num_iteration=best))
    info = {
        "params": params,
        "best_iteration": booster.current_iteration(),
        "dask": {
            "scheduler": scheduler,
            "workers": workers,
            "partitions": len(bounds),
            "rounds_trained": full.current_iteration(),
            "valid_ndcg_at_5": history[best - 1] if history else None,
        },
    }
    return booster, info
