"""The fairness gate's false alarms and its power, on the simulator.

    python -m benchmarks.fairness [--fair-seeds 20] [--trained-seeds 5]
                                  [--strengths 0.05,0.1,0.15,0.2,0.25,0.35,0.5] [--bias-seeds 3]

- False alarms: the share of seeds in which a fair ranker passes the fairness gate: the oracle
  (ranking by the true gain) on 1,200 simulated lists per seed, and the pipeline's own published
  scorer (debiased weights) trained on 14 days of fair clients, on its ~1,120 test lists.
- Power: clients biased against gender=F at each strength (the simulator lowers that group's
  client-made features by 30% × strength and their perceived utility by 0.2 × strength); the
  pipeline trains on the biased logs and the gate judges its published scorer on ~1,120 test
  lists. Reported: the share of seeds detected per strength, and the smallest strength detected
  in every seed.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import machine, report
from benchmarks.simulated import published_scorer_fairness, simulate_logs
from ltr_assets.gate.evaluation import _fairness_result, gate_fairness_report
from ltr_assets.metrics.fairness import RankedLists
from ltr_core.settings import GateThresholds

GATE = GateThresholds()


def oracle_passes(seed: int) -> bool:
    frame = simulate_logs(seed, 3).frame
    sizes = frame.groupby("group_id", sort=False).size().to_numpy()
    attributes = {
        a: [None if v is None or v != v else str(v) for v in frame[f"g_{a}"]]
        for a in GATE.fairness_attributes
    }
    gains = frame["gain"].to_numpy()
    fair = gate_fairness_report(RankedLists(gains, sizes, attributes, gains), GATE)
    return _fairness_result(fair).passed


def trained_result(seed: int, **bias: object) -> tuple[bool, str, int]:
    """(passed, the value the check names, test lists) for the pipeline's published scorer."""
    fair, lists = published_scorer_fairness(seed, 14, GATE, **bias)
    result = _fairness_result(fair)
    return result.passed, str(result.details.get("worst_value", "")), lists


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fair-seeds", type=int, default=20)
    parser.add_argument("--trained-seeds", type=int, default=5)
    parser.add_argument("--strengths", default="0.05,0.1,0.15,0.2,0.25,0.35,0.5")
    parser.add_argument("--bias-seeds", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    started = time.perf_counter()
    figures: dict[str, float | int | str] = {}
    oracle = [oracle_passes(seed) for seed in range(args.fair_seeds)]
    figures["fairness_oracle_pass_rate"] = sum(oracle) / len(oracle)
    print(f"oracle ranker passes in {sum(oracle)} of {len(oracle)} seeds", flush=True)
    trained = [trained_result(100 + seed) for seed in range(args.trained_seeds)]
    figures["fairness_trained_fair_pass_rate"] = sum(p for p, _, _ in trained) / len(trained)
    figures["fairness_test_lists"] = trained[0][2]
    print(f"trained scorer, fair clients: {[(p, w) for p, w, _ in trained]}", flush=True)
    smallest: float | None = None
    for strength in [float(s) for s in args.strengths.split(",")]:
        runs = [
            trained_result(seed, bias_against="gender=F", bias_strength=strength)
            for seed in range(args.bias_seeds)
        ]
        detected = [not p for p, _, _ in runs]
        named = [w for p, w, _ in runs if not p]
        rate = sum(detected) / len(detected)
        figures[f"fairness_detected_at_{strength:g}".replace(".", "p")] = rate
        print(f"bias {strength}: detected in {sum(detected)} of {len(runs)}, named {named}",
              flush=True)  # fmt: skip
        if smallest is None and all(detected) and all(w == "gender=F" for w in named):
            smallest = strength
    figures["fairness_smallest_bias_detected_every_seed"] = smallest if smallest else "none"
    figures["fairness_seconds"] = time.perf_counter() - started
    report(figures)


if __name__ == "__main__":
    main()
