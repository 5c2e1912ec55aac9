"""Quality on real ranking data: LightGBM's own lambdarank example (shared/data), scored with
the project's nDCG, next to the reference figures in its SOURCE.md.

    python -m benchmarks.quality_real [--data DIR]

The data is read where it lies and never copied into the repository: from --data, else from
$LTR_SHARED_DATA (the folder holding rank.train, rank.test and their .query files), else from
shared/data/lightgbm-lambdarank beside the repository root (the folder holding pyproject.toml),
wherever the checkout itself sits.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from benchmarks.common import machine, report
from ltr_assets.metrics.ranking import ndcg_at_k
from ltr_core.scoring import predict

SHARED_DATA_VARIABLE = "LTR_SHARED_DATA"


def repository_root() -> Path:
    """The checkout's root: the nearest folder above this file that holds pyproject.toml."""
    here = Path(__file__).resolve()
    for folder in here.parents:
        if (folder / "pyproject.toml").is_file():
            return folder
    raise FileNotFoundError(f"no pyproject.toml above {here}")


def default_data() -> Path:
    """$LTR_SHARED_DATA, else <repository root>/../shared/data/lightgbm-lambdarank."""
    configured = os.environ.get(SHARED_DATA_VARIABLE, "").strip()
    if configured:
        return Path(configured)
    return repository_root().parent / "shared" / "data" / "lightgbm-lambdarank"


# train.conf: lambdarank, 100 trees, 31 leaves, lr 0.1, min_data_in_leaf 50, min hessian 5
PARAMS = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "ndcg_eval_at": [1, 3, 5, 10],
    "num_leaves": 31,
    "learning_rate": 0.1,
    "min_data_in_leaf": 50,
    "min_sum_hessian_in_leaf": 5.0,
    "max_bin": 255,
    "verbosity": -1,
    "num_threads": 2,
}
REFERENCE_BAGGING_OFF = {1: 0.594, 3: 0.647, 5: 0.670, 10: 0.748}
K = (1, 3, 5, 10)


def read_svmlight(path: Path, n_features: int = 300) -> tuple[np.ndarray, np.ndarray]:
    labels, rows = [], []
    for line in path.read_text().splitlines():
        parts = line.split()
        labels.append(float(parts[0]))
        row = np.zeros(n_features)
        for item in parts[1:]:
            index, value = item.split(":")
            row[int(index) - 1] = float(value)
        rows.append(row)
    return np.vstack(rows), np.array(labels)


def train_and_score(data: Path, params: dict[str, Any], seed: int) -> dict[int, float]:
    X, y = read_svmlight(data / "rank.train")
    Xt, yt = read_svmlight(data / "rank.test")
    groups = np.loadtxt(data / "rank.train.query", dtype=int)
    test_groups = np.loadtxt(data / "rank.test.query", dtype=int)
    booster = lgb.train(
        {**params, "seed": seed}, lgb.Dataset(X, y, group=groups), num_boost_round=100
    )
    scores = predict(booster, Xt)
    return {k: ndcg_at_k(yt, scores, test_groups, k).value for k in K}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--data", type=Path, default=None, help=f"default: ${SHARED_DATA_VARIABLE} or shared/"
    )
    args = parser.parse_args()
    args.data = args.data or default_data()
    print(f"machine: {machine()}; data: {args.data}")
    off = train_and_score(
        args.data, {**PARAMS, "bagging_fraction": 1.0, "bagging_freq": 0, "deterministic": True}, 0
    )
    bagged = [
        train_and_score(args.data, {**PARAMS, "bagging_fraction": 0.9, "bagging_freq": 1}, seed)
        for seed in range(10)
    ]
    figures: dict[str, float] = {}
    for k in K:
        figures[f"quality_real_ndcg{k}_bagging_off"] = off[k]
        figures[f"quality_real_ndcg{k}_bagging_off_reference"] = REFERENCE_BAGGING_OFF[k]
        values = [b[k] for b in bagged]
        figures[f"quality_real_ndcg{k}_10seeds_mean"] = statistics.mean(values)
        figures[f"quality_real_ndcg{k}_10seeds_sd"] = statistics.stdev(values)
    report(figures)


if __name__ == "__main__":
    main()
