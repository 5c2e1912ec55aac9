"""Where the gate's counterfactual nDCG@5 errs, judged by the simulator's truth.

    python -m benchmarks.gate_error [--seeds 3] [--days 14] [--strengths 0.5,1,1.5]
                                    [--propensity-family per_position|power_law|auto]

Per position-bias strength η and seed: the platform's own logs (v2.8's order, no exploration),
the naive and debiased (`click_model`) rankers and the oracle-trained one as quality_sim trains
them, and nine rankings of the test lists (their models and weights, the logged order, v2.8,
random). For each ranking the gate's estimate against the true nDCG@5 two ways: as gated (the
estimated examination curve), and with the simulator's true curve in its place, so that what
is left is the estimator's own error. Then the estimate's two parts against their truths, with
the true curve: the normaliser (the estimated ideal DCG@5 summed over lists, over the true
ideal) and each ranking's DCG@5 (its estimate over its true DCG). Medians over seeds are printed
last as name=value lines (`gate_error_<η>_…`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np

from benchmarks import simulated
from benchmarks.common import machine, report
from benchmarks.simulated import judged_rankings, simulate_logs, train_on_unbiased_labels
from ltr_assets.learning.dataset import Split
from ltr_assets.learning.debias import Debiaser
from ltr_assets.learning.training import train_ranker
from ltr_assets.metrics.ranking import CounterfactualEvaluator, gain_ndcg
from ltr_assets.simulation.simulator import ClickModel
from ltr_core.vocabulary import CURVE_FAMILY_SETTINGS


def _rankings(train: Split, valid: Split, test: Split) -> tuple[Debiaser, dict[str, np.ndarray]]:
    rankers = {
        m: train_ranker(train, valid, replace(simulated.TRAINING, debias=m))
        for m in ("none", "click_model")
    }
    rankers["oracle_trained"] = train_on_unbiased_labels(train, valid)
    return rankers["click_model"].debiaser, judged_rankings(rankers, test)


def judge(seed: int, days: int, eta: float) -> dict[str, float]:
    train, valid, test = simulate_logs(
        seed, days, click_model=ClickModel(position_bias=eta)
    ).splits()
    gains = test.frame["gain"].to_numpy()
    debiaser, scores = _rankings(train, valid, test)
    completed = debiaser.completed_gain(test.X, test.positions, test.y)
    true_theta = ClickModel(position_bias=eta).examination(test.positions)
    gated = CounterfactualEvaluator(
        test.group_sizes,
        test.y,
        debiaser.propensities(test.positions),
        completed,
        max_weight=debiaser.ips_max_weight,
    )
    with_truth = CounterfactualEvaluator(
        test.group_sizes, test.y, true_theta, completed, max_weight=debiaser.ips_max_weight
    )
    # the true gains as an "estimator": its ideal and DCGs are the truth's, list by list
    truth = CounterfactualEvaluator(
        test.group_sizes, np.zeros_like(test.y), np.ones_like(true_theta), gains, max_weight=1.0
    )
    truth.gains = gains
    out: dict[str, float] = {
        "ideal_bias": float(with_truth.ideal(5).sum() / truth.ideal(5).sum() - 1.0)
    }
    errors, errors_true_curve = [], []
    for name, s in scores.items():
        true_ndcg = gain_ndcg(gains, s, test.group_sizes)
        errors.append(gated.ndcg(s).value - true_ndcg)
        errors_true_curve.append(with_truth.ndcg(s).value - true_ndcg)
        out[f"numerator_bias_{name}"] = float(
            with_truth.dcg(s, 5).sum() / truth.dcg(s, 5).sum() - 1
        )
        out[f"error_{name}"] = errors[-1]
        out[f"error_true_curve_{name}"] = errors_true_curve[-1]
    out["error_mean"] = float(np.mean(errors))
    out["error_mean_abs"] = float(np.mean(np.abs(errors)))
    out["error_true_curve_mean"] = float(np.mean(errors_true_curve))
    out["error_true_curve_mean_abs"] = float(np.mean(np.abs(errors_true_curve)))
    k = np.arange(1, 11)
    out["curve_max_error_1_10"] = float(
        np.max(np.abs(debiaser.curve.at(k) - ClickModel(position_bias=eta).examination(k)))
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--strengths", default="0.5,1,1.5")
    parser.add_argument("--propensity-family", choices=CURVE_FAMILY_SETTINGS)
    args = parser.parse_args()
    if args.propensity_family:
        simulated.TRAINING = replace(simulated.TRAINING, propensity_family=args.propensity_family)
    print(f"machine: {machine()}; propensity family: {simulated.TRAINING.propensity_family}")
    started = time.perf_counter()
    figures: dict[str, float] = {}
    for eta in [float(s) for s in args.strengths.split(",")]:
        runs = []
        for seed in range(args.seeds):
            run = judge(seed, args.days, eta)
            runs.append(run)
            print(
                f"η {eta:g} seed {seed}: gate error {run['error_mean']:+.4f} "
                f"(|{run['error_mean_abs']:.4f}|), with the true curve "
                f"{run['error_true_curve_mean']:+.4f} (|{run['error_true_curve_mean_abs']:.4f}|); "
                f"curve max error {run['curve_max_error_1_10']:.3f}; ideal DCG "
                f"{run['ideal_bias']:+.3f}; DCG debiased model "
                f"{run['numerator_bias_model_click_model']:+.3f}, logged order "
                f"{run['numerator_bias_logged_order']:+.3f}, random "
                f"{run['numerator_bias_random']:+.3f}",
                flush=True,
            )
        label = f"gate_error_eta{eta:g}".replace(".", "p")
        figures.update({f"{label}_{k}": statistics.median(r[k] for r in runs) for k in runs[0]})
    figures["gate_error_seconds"] = time.perf_counter() - started
    report(figures)


if __name__ == "__main__":
    main()
