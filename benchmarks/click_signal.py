"""What the click model's own tests say about users it was and was not built for.

    python -m benchmarks.click_signal [--seeds 3] [--days 14] [--loop-days 21]

For each user model and seed: 14 days of logs in the platform's own order (η 0.5 / 1 / 1.5,
η 1 with 5% swap exploration, a page-break curve, users blind to who is shown, cascade users
who stop at their first click), and the closed loop (every other day's published weights order
the next lists; seeing and blind users). The pipeline trains on the window as ltr_model does;
printed per run: the gate's click signal z on the test lists (LTR_CLICK_SIGNAL_MIN_Z), the
click-count test's z on the click model's held-out lists (the model card flags a cascade from
`CASCADE_Z`), and the published weights' paired nDCG@5 difference with the logged order as the
gate estimates it, with its interval, against the truth (for blind users the truth's
difference measures the simulator's hidden utility, which the clicks never saw). Medians and
extremes over seeds last, as name=value lines.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from benchmarks import simulated
from benchmarks.common import machine, report
from benchmarks.simulated import SimulatedLogs, closed_loop_logs, simulate_logs
from ltr_assets.gate.evaluation import logged_order_scores
from ltr_assets.learning.click_signal import click_signal
from ltr_assets.learning.training import counterfactual_evaluator, train_ranker
from ltr_assets.metrics.ranking import gain_ndcg
from ltr_assets.simulation.simulator import ClickModel
from ltr_core.scoring import WeightsScorer

PAGE_BREAK = (1.0, 0.85, 0.75, 0.68, 0.62, 0.2, 0.18)


def judge(logs: SimulatedLogs) -> dict[str, float]:
    train, valid, test = logs.splits()
    ranker = train_ranker(train, valid, simulated.TRAINING)
    signal = click_signal(
        ranker.debiaser.click_model, test.positions, test.y, test.X, test.group_sizes
    )
    scores = WeightsScorer(ranker.weights).score(test.X)
    logged = logged_order_scores(test)
    paired = counterfactual_evaluator(test, ranker.debiaser).paired(scores, logged)
    gains = test.frame["gain"].to_numpy()
    truth = gain_ndcg(gains, scores, test.group_sizes) - gain_ndcg(gains, logged, test.group_sizes)
    counts = ranker.propensity.params["click_count_test"]
    return {
        "z": signal.z,
        "click_count_z": counts["z"],
        "multi_click_lists": counts["multi_click_lists"],
        "multi_click_expected": counts["expected"],
        "gain_per_list": signal.gain_per_list,
        "gate_vs_logged": paired.difference,
        "gate_vs_logged_lower": paired.interval.low,
        "gate_vs_logged_covers": float(paired.interval.low <= truth <= paired.interval.high),
        "true_vs_logged": truth,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--loop-days", type=int, default=21, help="0: no closed loop")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    started = time.perf_counter()
    open_loop: list[tuple[str, dict[str, Any]]] = [
        ("eta0p5", {"click_model": ClickModel(position_bias=0.5)}),
        ("eta1", {"click_model": ClickModel(position_bias=1.0)}),
        ("eta1p5", {"click_model": ClickModel(position_bias=1.5)}),
        ("eta1_explore0p05", {"click_model": ClickModel(), "explore_rate": 0.05}),
        ("page_break", {"click_model": ClickModel(curve=PAGE_BREAK)}),
        ("blind", {"click_model": ClickModel(blind=True)}),
        ("cascade", {"click_model": ClickModel(cascade=True)}),
    ]
    runs: dict[str, list[dict[str, float]]] = {}
    for name, config in open_loop:
        for seed in range(args.seeds):
            runs.setdefault(name, []).append(judge(simulate_logs(seed, args.days, **config)))
            print(name, seed, {k: round(v, 4) for k, v in runs[name][-1].items()}, flush=True)
    if args.loop_days:
        for name, model in (("loop", ClickModel()), ("loop_blind", ClickModel(blind=True))):
            for seed in range(args.seeds):
                logs = closed_loop_logs(seed, args.loop_days, click_model=model)
                runs.setdefault(name, []).append(judge(logs))
                print(name, seed, {k: round(v, 4) for k, v in runs[name][-1].items()}, flush=True)
    figures: dict[str, float] = {}
    for name, per_seed in runs.items():
        z = [run["z"] for run in per_seed]
        figures[f"click_signal_z_{name}_median"] = statistics.median(z)
        figures[f"click_signal_z_{name}_min"] = min(z)
        figures[f"click_signal_z_{name}_max"] = max(z)
        counts = [run["click_count_z"] for run in per_seed]
        figures[f"click_count_z_{name}_median"] = statistics.median(counts)
        figures[f"click_count_z_{name}_min"] = min(counts)
        figures[f"click_count_z_{name}_max"] = max(counts)
        for key in ("gate_vs_logged", "true_vs_logged", "gate_vs_logged_covers"):
            figures[f"{key}_{name}_median"] = float(np.median([run[key] for run in per_seed]))
    figures["seconds"] = time.perf_counter() - started
    report(figures)


if __name__ == "__main__":
    main()
