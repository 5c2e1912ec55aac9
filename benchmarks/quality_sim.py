"""Ranking quality on simulated traffic: the LightGBM model and each way of deriving the
published linear weights, against the simulator's oracle, the platform's own order and random.

    python -m benchmarks.quality_sim [--days 21] [--seeds 3]

Medians over seeds of the test-split nDCG@5 (the newest 20% of lists of a 14-day window), and the
fairness gap of the published weights, fair and with clients biased against gender=F.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import machine, report
from benchmarks.simulated import simulated_lake, utilities
from ltr_assets.metrics import fairness_gap, ndcg_at_k
from ltr_assets.schema import FEATURES
from ltr_assets.training import (
    load_window,
    normalise,
    split_by_time,
    train_ranker,
    weights_distilled,
    weights_gain_importance,
    weights_pairwise,
)


def one_seed(days: int, seed: int, **config) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        lake, simulator, last = simulated_lake(Path(tmp), days, seed, **config)
        window = load_window(lake, last, 14)
        train, valid, test = split_by_time(window.frame)
        ranker = train_ranker(train, valid)

        def ndcg(scores: np.ndarray) -> float:
            return ndcg_at_k(test.y, scores, test.group_sizes, 5).value

        def linear(raw: np.ndarray) -> np.ndarray:
            weights = normalise(raw)
            return np.nan_to_num(test.X) @ np.array([weights[f] for f in FEATURES])

        published = linear(np.array([ranker.weights[f] for f in FEATURES]))
        return {
            "model": ndcg(ranker.booster.predict(test.X)),
            "weights_published": ndcg(published),
            "weights_gain_importance": ndcg(linear(weights_gain_importance(ranker.booster))),
            "weights_distilled_nnls": ndcg(linear(weights_distilled(ranker.booster, train))),
            "weights_pairwise_logistic": ndcg(linear(weights_pairwise(train))),
            "oracle": ndcg(utilities(simulator, test.frame).to_numpy()),
            "platform_order": ndcg(-test.frame["rank_position"].to_numpy(dtype=float)),
            "random": ndcg(np.random.default_rng(seed).random(len(test.frame))),
            "fairness_gap": fairness_gap(published, test.group_sizes, test.attributes()).gap,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    fair = [one_seed(args.days, seed) for seed in range(args.seeds)]
    biased = [
        one_seed(args.days, seed, bias_against="gender=F", bias_strength=1.5)
        for seed in range(args.seeds)
    ]
    figures = {
        f"quality_sim_ndcg5_{name}": statistics.median(run[name] for run in fair)
        for name in fair[0]
        if name != "fairness_gap"
    }
    figures["quality_sim_fairness_gap_fair"] = statistics.median(r["fairness_gap"] for r in fair)
    figures["quality_sim_fairness_gap_biased"] = statistics.median(
        r["fairness_gap"] for r in biased
    )
    figures["quality_sim_ndcg5_model_biased"] = statistics.median(r["model"] for r in biased)
    report(figures)


if __name__ == "__main__":
    main()
