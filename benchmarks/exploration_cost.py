"""What exploration costs the users: the true nDCG@5 of the lists served with swap
interventions against the same lists in the deterministic order.

    python -m benchmarks.exploration_cost [--seeds 3] [--days 14] [--strengths 0.5,1,1.5]

Measured two ways on the simulator's logs (the platform's v2.8 order, today's traffic):
realised, on the lists actually served with the service's exploration (`ltr_core.exploration`,
LTR_EXPLORE_RATE 0.05), and expected, exactly, per list: a swap design's cost is its rate times
the mean, over the swaps it may draw, of the nDCG@5 lost by that swap (from every candidate's
true gain). The expected cost is given for the serving policy's design (positions 1 and k, k
uniform in 2..min(n, 10)) at several rates, and for cheaper designs at the same rate: 1 ↔ k
with k at most 5, and adjacent pairs (k, k + 1), k uniform in 1..min(n, 10) − 1 (the
RandPair / FairPairs family of Joachims et al. 2017 and Radlinski & Joachims 2006). Each design
is judged by its cost per swapped impression pair too, the quantity a curve's precision rests on.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from benchmarks.common import machine, report
from benchmarks.simulated import simulate_logs
from ltr_assets.metrics.ranking import gain_ndcg, group_offsets
from ltr_assets.simulation.simulator import ClickModel

K = 5
RATES = (0.01, 0.02, 0.05)
Design = Callable[[int], list[tuple[int, int]]]  # list length -> the swaps it may draw


def one_to_k(max_position: int) -> Design:
    return lambda n: [(1, k) for k in range(2, min(n, max_position) + 1)]


def adjacent(max_position: int) -> Design:
    return lambda n: [(k, k + 1) for k in range(1, min(n, max_position))]


DESIGNS: dict[str, Design] = {
    "swap_1_k10": one_to_k(10),  # the serving policy (LTR_EXPLORE_MAX_POSITION = 10)
    "swap_1_k5": one_to_k(5),
    "adjacent_10": adjacent(10),
}


def _ndcg(gains: np.ndarray) -> float:
    """nDCG@K of `gains` in the order given."""
    top = min(K, gains.size)
    discounts = 1.0 / np.log2(np.arange(2, top + 2))
    ideal = np.sort(gains)[::-1][:top] @ discounts
    return float(gains[:top] @ discounts / ideal) if ideal > 0 else float("nan")


def per_swap_loss(frame: pd.DataFrame, design: Design) -> float:
    """The mean over lists (with a positive gain) of the mean nDCG@5 one swap of `design` loses
    against the deterministic order: the expected cost of exploring at rate 1."""
    order = frame.sort_values(["group_id", "deterministic_rank"], kind="stable")
    sizes = order.groupby("group_id", sort=False).size().to_numpy()
    gains = order["gain"].to_numpy(dtype=np.float64)
    offsets = group_offsets(sizes)
    losses = []
    for g in range(sizes.size):
        list_gains = gains[offsets[g] : offsets[g + 1]]
        base = _ndcg(list_gains)
        swaps = design(list_gains.size)
        if np.isnan(base) or not swaps:
            if not np.isnan(base):
                losses.append(0.0)
            continue
        lost = []
        for a, b in swaps:
            swapped = list_gains.copy()
            swapped[[a - 1, b - 1]] = swapped[[b - 1, a - 1]]
            lost.append(base - _ndcg(swapped))
        losses.append(float(np.mean(lost)))
    return float(np.mean(losses))


def realised_cost(frame: pd.DataFrame) -> tuple[float, float]:
    """(true nDCG@5 of the lists as served, as in the deterministic order) over all lists."""
    frame = frame.sort_values(["group_id", "rank_position"], kind="stable")
    sizes = frame.groupby("group_id", sort=False).size().to_numpy()
    gains = frame["gain"].to_numpy(dtype=np.float64)
    served = gain_ndcg(gains, -frame["rank_position"].to_numpy(dtype=float), sizes)
    deterministic = gain_ndcg(gains, -frame["deterministic_rank"].to_numpy(dtype=float), sizes)
    return served, deterministic


def measure(seed: int, days: int, eta: float, rate: float) -> dict[str, float]:
    logs = simulate_logs(seed, days, click_model=ClickModel(position_bias=eta), explore_rate=rate)
    served, deterministic = realised_cost(logs.frame)
    out = {
        "served_ndcg5": served,
        "deterministic_ndcg5": deterministic,
        "realised_cost": deterministic - served,
        "swapped_lists": float(
            logs.frame.loc[logs.frame["policy"] == "swap", "group_id"].nunique()
        ),
        "lists": float(logs.frame["group_id"].nunique()),
    }
    for name, design in DESIGNS.items():
        loss = per_swap_loss(logs.frame, design)
        out[f"loss_per_swap_{name}"] = loss
        for r in RATES:
            out[f"expected_cost_{name}_rate{r:g}".replace(".", "p")] = r * loss
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--strengths", default="0.5,1,1.5")
    parser.add_argument("--rate", type=float, default=0.05)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    started = time.perf_counter()
    figures: dict[str, float] = {}
    for eta in [float(s) for s in args.strengths.split(",")]:
        label = f"eta{eta:g}".replace(".", "p")
        runs = [measure(seed, args.days, eta, args.rate) for seed in range(args.seeds)]
        for seed, run in enumerate(runs):
            print(
                f"{label} seed {seed}: served {run['served_ndcg5']:.4f} deterministic "
                f"{run['deterministic_ndcg5']:.4f} cost {run['realised_cost']:.4f} "
                f"({run['swapped_lists']:.0f} of {run['lists']:.0f} lists swapped); loss per "
                f"swap 1<->k<=10 {run['loss_per_swap_swap_1_k10']:.4f}, 1<->k<=5 "
                f"{run['loss_per_swap_swap_1_k5']:.4f}, adjacent "
                f"{run['loss_per_swap_adjacent_10']:.4f}",
                flush=True,
            )
        for name in runs[0]:
            figures[f"exploration_cost_{label}_{name}"] = statistics.median(r[name] for r in runs)
    figures["exploration_cost_seconds"] = time.perf_counter() - started
    report(figures)


if __name__ == "__main__":
    main()
