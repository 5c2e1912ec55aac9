"""Training cost: the ltr_model step on a 14-day simulated window (400 lists a day).

    python -m benchmarks.training [--repeats 3]

Reports the median wall time of training alone (booster + the three weight derivations) and of
the whole candidate step (train, evaluate, time 1,000 queries, gate), and the peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

from benchmarks.common import machine, median_time, report
from benchmarks.simulated import TRAINING, simulated_lake
from ltr_assets.gate.candidate import train_candidate
from ltr_assets.learning.training import load_window, split_by_time, train_ranker
from ltr_assets.registry.local import LocalRegistry
from ltr_core.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lake, _, last = simulated_lake(root, 14, seed=1)
        window = load_window(lake, last, 14)
        train, valid, _ = split_by_time(window.frame)
        train_s, _ = median_time(lambda: train_ranker(train, valid, TRAINING), args.repeats)
        settings = Settings.from_env({"LTR_HOME": str(root)})
        registry = LocalRegistry(root / "registry")
        step_s, _ = median_time(
            lambda: train_candidate(lake, registry, last, settings), args.repeats
        )
    report(
        {
            "training_rows": len(window.frame),
            "training_groups": window.frame["group_id"].nunique(),
            "training_fit_s": train_s,
            "training_candidate_step_s": step_s,
            "training_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


if __name__ == "__main__":
    main()
