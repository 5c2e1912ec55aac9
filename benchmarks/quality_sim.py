"""Ranking quality on simulated traffic, judged by the simulator's truth.

    python -m benchmarks.quality_sim [--seeds 3] [--days 14] [--strengths 0.5,1,1.5]
                                     [--loop-days 21] [--explore-rates 0,0.05]
                                     [--methods none,click_model,ips,lightgbm_position]
    python -m benchmarks.quality_sim --quick   # 1 seed, none and click_model, no closed loop
    python -m benchmarks.quality_sim --examination-curve 1,0.8,0.7,…  # a curve, not a power law

Open loop (the platform's own v2.8 order, as the logs of a first deployment), for each position
bias strength η (examination θ_k = k^-η) and seed: the true nDCG@5 (from every candidate's true
gain) of the LightGBM model and of the published linear weights trained on raw clicks (naive),
with each debiasing method, and on unbiased labels (the oracle-trained ceiling); the share of the
naive → oracle-trained gap each method closes; the gate's counterfactual estimate against the
truth for every ranking; and the propensity curve against the simulator's. Closed loop (the
feedback loop, η = 1): `--loop-days` days where every other day's published weights order the
next lists, then the same comparison on the last window. Medians over seeds are printed last
as name=value lines.

Exploration: every condition runs once per `--explore-rates` value, the lists shown with the
ranking service's swap exploration at that rate (`ltr_core.exploration`, exactly as serving
applies it, its policy and propensities logged; 0 is off). Per condition: the examination
curve's error at positions 1-10 (each, and the largest), which positions came from
interventions and on how many swapped impressions, the gate's mean (signed and absolute) error
and its interval's coverage over the rankings, the share of the naive → oracle-trained gap the
served weights close, and what exploring cost the users (the true nDCG@5 of all lists as served
against the same lists in the deterministic order).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from dataclasses import replace

import numpy as np

from benchmarks import simulated
from benchmarks.common import machine, report
from benchmarks.exploration_cost import realised_cost
from benchmarks.simulated import (
    SimulatedLogs,
    closed_loop_logs,
    judged_rankings,
    simulate_logs,
    train_on_unbiased_labels,
)
from ltr_assets.learning.training import TrainedRanker, counterfactual_evaluator, train_ranker
from ltr_assets.metrics.ranking import gain_ndcg
from ltr_assets.simulation.simulator import ClickModel
from ltr_core.vocabulary import CURVE_FAMILY_SETTINGS, DebiasMethod

METHODS: tuple[DebiasMethod, ...] = ("none", "click_model", "ips", "lightgbm_position")


def judge_logs(
    logs: SimulatedLogs, users: ClickModel, methods: tuple[DebiasMethod, ...] = METHODS
) -> dict[str, float]:
    train, valid, test = logs.splits()
    gains = test.frame["gain"].to_numpy()

    def truth(scores: np.ndarray) -> float:
        return gain_ndcg(gains, scores, test.group_sizes)

    rankers: dict[str, TrainedRanker] = {
        m: train_ranker(train, valid, replace(simulated.TRAINING, debias=m)) for m in methods
    }
    rankers["oracle_trained"] = train_on_unbiased_labels(train, valid)
    judge = counterfactual_evaluator(test, rankers["click_model"].debiaser)
    scores = judged_rankings(rankers, test)
    out: dict[str, float] = {}
    errors, covered = [], []
    model_errors = []
    for name, s in scores.items():
        estimate = judge.ndcg(s)
        out[f"true_{name}"] = truth(s)
        model_errors.append(judge.model_based_ndcg(s).value - out[f"true_{name}"])
        out[f"gate_{name}"] = estimate.value
        out[f"gate_error_{name}"] = estimate.value - out[f"true_{name}"]
        hit = estimate.interval.low <= out[f"true_{name}"] <= estimate.interval.high
        out[f"gate_covers_{name}"] = float(hit)
        out[f"gate_model_share_{name}"] = estimate.model_share
        errors.append(out[f"gate_error_{name}"])
        covered.append(hit)
    out["gate_error_mean"] = float(np.mean(errors))
    out["gate_error_mean_abs"] = float(np.mean(np.abs(errors)))
    out["gate_ci_coverage"] = float(np.mean(covered))
    out["model_based_error_mean"] = float(np.mean(model_errors))
    out["model_based_error_mean_abs"] = float(np.mean(np.abs(model_errors)))
    published = [out["gate_error_model_click_model"], out["gate_error_weights_click_model"]]
    out["gate_error_mean_abs_published"] = float(np.mean(np.abs(published)))
    for kind in ("model", "weights"):
        naive, ceiling = out[f"true_{kind}_none"], out[f"true_{kind}_oracle_trained"]
        for method in methods[1:]:
            gap = ceiling - naive
            closed = (out[f"true_{kind}_{method}"] - naive) / gap if gap > 0 else float("nan")
            out[f"gap_closed_{kind}_{method}"] = closed
    fitted = rankers["click_model"].propensity
    curve = fitted.at(np.arange(1, 11))
    error = curve - users.examination(np.arange(1, 11))
    out["propensity_max_error_1_10"] = float(np.max(np.abs(error)))
    for k in range(2, 11):
        out[f"propensity_{k}"] = float(curve[k - 1])
        out[f"propensity_error_{k}"] = float(error[k - 1])
    # which family the curve was fitted in (LTR_PROPENSITY_FAMILY=auto chooses per run)
    out["propensity_power_law"] = float(fitted.params.get("family") == "power_law")
    out["propensity_free_curve_z"] = float(
        fitted.params.get("family_test", {}).get("free_curve_z", float("nan"))
    )
    sources = fitted.sources[:10]
    swapped = fitted.swapped_impressions[:10]
    out["propensity_positions_from_interventions"] = float(
        sum(s == "interventions" for s in sources)
    )
    out["swapped_impressions_per_position"] = float(np.mean(swapped[1:])) if swapped else 0.0
    if "deterministic_rank" in logs.frame.columns:
        served, deterministic = realised_cost(logs.frame)
    else:
        served = deterministic = gain_ndcg(
            logs.frame["gain"].to_numpy(),
            -logs.frame["rank_position"].to_numpy(dtype=float),
            logs.frame.groupby("group_id", sort=False).size().to_numpy(),
        )
    out["served_true_ndcg5"] = served
    out["exploration_cost"] = deterministic - served
    return out


def medians(runs: list[dict[str, float]], prefix: str) -> dict[str, float]:
    return {f"{prefix}_{k}": statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--strengths", default="0.5,1,1.5")
    parser.add_argument(
        "--examination-curve",
        help="θ_1,θ_2,… for the open loop instead of the power laws of --strengths (positions "
        "past its end take its last value), e.g. a page break: 1,0.85,0.75,0.68,0.62,0.2,0.18",
    )
    parser.add_argument("--loop-days", type=int, default=21)
    parser.add_argument("--explore-rates", default="0,0.05")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--quick", action="store_true", help="1 seed, methods none,click_model, no closed loop"
    )
    parser.add_argument(
        "--propensity-family",
        choices=CURVE_FAMILY_SETTINGS,
        help="the examination curve's family for this run (LTR_PROPENSITY_FAMILY; default: "
        "the settings' default), to compare families on the same simulations",
    )
    args = parser.parse_args()
    if args.propensity_family:  # every ranker of the run, simulated.py's included
        simulated.TRAINING = replace(simulated.TRAINING, propensity_family=args.propensity_family)
    print(f"propensity family: {simulated.TRAINING.propensity_family}")
    if args.quick:
        args.seeds, args.loop_days, args.methods = 1, 0, "none,click_model"
    methods = tuple(m for m in args.methods.split(",") if m)
    if methods[:2] != ("none", "click_model") or not set(methods) <= set(METHODS):
        parser.error(f"--methods starts with none,click_model and is drawn from {METHODS}")
    rates = [float(r) for r in args.explore_rates.split(",")]
    print(f"machine: {machine()}")
    started = time.perf_counter()
    figures: dict[str, float] = {}
    per_seed: dict[str, list[dict[str, float]]] = defaultdict(list)
    if args.examination_curve:  # one user model, a table instead of the power law
        table = tuple(float(v) for v in args.examination_curve.split(","))
        users = [("curve", ClickModel(curve=table))]
    else:
        users = [
            (f"eta{eta:g}", ClickModel(position_bias=eta))
            for eta in [float(s) for s in args.strengths.split(",")]
        ]
    conditions = [(name, model, rate) for name, model in users for rate in rates]
    for name, model, rate in conditions:
        label = f"open_{name}_explore{rate:g}".replace(".", "p")
        for seed in range(args.seeds):
            logs = simulate_logs(seed, args.days, click_model=model, explore_rate=rate)
            run = judge_logs(logs, model, methods)
            per_seed[label].append(run)
            print(
                f"{label} seed {seed}: true model naive {run['true_model_none']:.4f} "
                f"debiased {run['true_model_click_model']:.4f} oracle-trained "
                f"{run['true_model_oracle_trained']:.4f}; weights naive "
                f"{run['true_weights_none']:.4f} debiased {run['true_weights_click_model']:.4f} "
                f"oracle-trained {run['true_weights_oracle_trained']:.4f}; gate error "
                f"{run['gate_error_mean']:+.4f} (|{run['gate_error_mean_abs']:.4f}|, debiased "
                f"model {run['gate_error_model_click_model']:+.4f}, weights "
                f"{run['gate_error_weights_click_model']:+.4f}), CI coverage "
                f"{run['gate_ci_coverage']:.2f}, model share "
                f"{run['gate_model_share_model_click_model']:.2f}; propensity error "
                f"{run['propensity_max_error_1_10']:.3f} (power law "
                f"{run['propensity_power_law']:.0f}, free curve z "
                f"{run['propensity_free_curve_z']:+.2f}; errors 2-10 "
                + " ".join(f"{run[f'propensity_error_{k}']:+.3f}" for k in range(2, 11))
                + f"; {run['propensity_positions_from_interventions']:.0f} positions from "
                f"interventions, {run['swapped_impressions_per_position']:.0f} swapped "
                f"impressions per position); served lists' true nDCG@5 "
                f"{run['served_true_ndcg5']:.4f}, exploration cost "
                f"{run['exploration_cost']:.4f}",
                flush=True,
            )
        figures.update(medians(per_seed[label], f"quality_sim_{label}"))
    for rate in rates if args.loop_days > 0 else []:
        label = f"loop_explore{rate:g}".replace(".", "p")
        for seed in range(args.seeds):
            logs = closed_loop_logs(seed, args.loop_days, explore_rate=rate)
            logs.frame = logs.frame[logs.frame["shown_at"].dt.date >= logs.days[-14]]
            run = judge_logs(logs, ClickModel(), methods)
            per_seed[label].append(run)
            print(
                f"{label} seed {seed}: true model naive {run['true_model_none']:.4f} "
                f"debiased {run['true_model_click_model']:.4f} oracle-trained "
                f"{run['true_model_oracle_trained']:.4f}; gate error "
                f"{run['gate_error_mean']:+.4f} (|{run['gate_error_mean_abs']:.4f}|, debiased "
                f"model {run['gate_error_model_click_model']:+.4f}, weights "
                f"{run['gate_error_weights_click_model']:+.4f}), CI coverage "
                f"{run['gate_ci_coverage']:.2f}; propensity error "
                f"{run['propensity_max_error_1_10']:.3f} (power law "
                f"{run['propensity_power_law']:.0f}, free curve z "
                f"{run['propensity_free_curve_z']:+.2f}); exploration cost "
                f"{run['exploration_cost']:.4f}",
                flush=True,
            )
        figures.update(medians(per_seed[label], f"quality_sim_{label}"))
    figures["quality_sim_seconds"] = time.perf_counter() - started
    report(figures)


if __name__ == "__main__":
    main()
