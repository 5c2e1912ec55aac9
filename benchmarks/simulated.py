"""Simulated logs for the quality and training benchmarks and the debiasing tests.

`simulate_logs` builds the feature matrix of N days directly from the simulator's events
(`ltr_assets.simulation.simulator.logged_frame`, kept equal to the DuckDB path by a test),
joined with
what the simulator knows: each candidate's true gain, utility and an unbiased label. Lists are
shown in the platform's own order unless `ranker_for_day` says otherwise (the feedback loop).
`simulated_lake` goes through the real ingest and DuckDB path instead, for the training-cost
benchmark.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ltr_assets.gate.evaluation import FairnessInputs, evaluate
from ltr_assets.ingest.day import ingest_day
from ltr_assets.ingest.matrix import build_feature_matrix
from ltr_assets.ingest.sources import AuditLogSource
from ltr_assets.lake.paths import Lake
from ltr_assets.learning.dataset import Split
from ltr_assets.learning.training import (
    TrainedRanker,
    TrainingOptions,
    counterfactual_evaluator,
    split_by_time,
    train_ranker,
)
from ltr_assets.metrics.fairness import FairnessReport
from ltr_assets.simulation.simulator import (
    PLATFORM_VERSION,
    Simulator,
    SimulatorConfig,
    logged_frame,
    platform_ranker,
)
from ltr_core.scoring import WeightsScorer, predict
from ltr_core.settings import GateThresholds, Settings
from ltr_core.vocabulary import DebiasMethod

# The settings' defaults: the benchmarks run the pipeline as configured out of the box.
DEFAULTS = Settings.from_env({})
TRAINING = TrainingOptions.from_settings(DEFAULTS)

START = date(2026, 10, 1)
RankerForDay = Callable[[date], tuple[Callable[[np.ndarray], np.ndarray] | None, str]]


@dataclass
class SimulatedLogs:
    simulator: Simulator
    frame: pd.DataFrame  # feature-matrix rows of every day, with the truth columns joined
    days: list[date]

    def splits(self) -> tuple[Split, Split, Split]:
        return split_by_time(self.frame)


def with_truth(simulator: Simulator, frame: pd.DataFrame) -> pd.DataFrame:
    truth = simulator.truth_frame().drop_duplicates(["request_id", "lawyer_id"])
    joined = frame.merge(truth, on=["request_id", "lawyer_id"], how="left", validate="1:1")
    if joined["gain"].isna().any():
        raise AssertionError("a logged impression has no truth")
    return joined


def simulate_logs(
    seed: int,
    days: int,
    ranker_for_day: RankerForDay | None = None,
    start: date = START,
    explore_rate: float = 0.0,
    **config: Any,
) -> SimulatedLogs:
    """N days of logs; with `explore_rate` > 0 the lists are shown with the ranking service's
    swap exploration applied (`Simulator.day_events`), its policy and propensities logged."""
    simulator = Simulator(SimulatorConfig(start=start, days=days, seed=seed, **config))
    frames = []
    all_days = [start + timedelta(days=i) for i in range(days)]
    for day in all_days:
        ranker, version = ranker_for_day(day) if ranker_for_day else (None, PLATFORM_VERSION)
        events = simulator.day_events(day, ranker, version, explore_rate=explore_rate)
        frames.append(logged_frame(events))
    return SimulatedLogs(
        simulator, with_truth(simulator, pd.concat(frames, ignore_index=True)), all_days
    )


def closed_loop_logs(
    seed: int,
    days: int,
    window_days: int = 14,
    retrain_every: int = 2,
    first_training_day: int = 3,
    debias: DebiasMethod = "click_model",
    start: date = START,
    explore_rate: float = 0.0,
    **config: Any,
) -> SimulatedLogs:
    """Logs of the feedback loop: every `retrain_every` days the pipeline trains on the last
    `window_days` days and its published weights order the following days' lists."""
    simulator = Simulator(SimulatorConfig(start=start, days=days, seed=seed, **config))
    frames: list[pd.DataFrame] = []
    ranker: Callable[[np.ndarray], np.ndarray] | None = None
    version = PLATFORM_VERSION
    all_days = [start + timedelta(days=i) for i in range(days)]
    for i, day in enumerate(all_days):
        events = simulator.day_events(day, ranker, version, explore_rate=explore_rate)
        frames.append(logged_frame(events))
        if i + 1 >= first_training_day and (i + 1 - first_training_day) % retrain_every == 0:
            recent = pd.concat(frames[-window_days:], ignore_index=True)
            train, valid, _ = split_by_time(recent)
            trained = train_ranker(train, valid, replace(TRAINING, debias=debias))
            vector = np.array(list(trained.weights.values()))
            ranker, version = (lambda m, v=vector: np.nan_to_num(m) @ v), f"sim-{day}"
    return SimulatedLogs(
        simulator, with_truth(simulator, pd.concat(frames, ignore_index=True)), all_days
    )


def train_on_unbiased_labels(train: Split, valid: Split) -> TrainedRanker:
    """The oracle-trained ranker: the same pipeline on labels drawn as if every candidate had
    been examined (the simulator's `unbiased_label`), no debiasing needed."""

    def relabelled(split: Split) -> Split:
        frame = split.frame.assign(label=split.frame["unbiased_label"])
        return Split(frame, split.group_sizes)

    return train_ranker(relabelled(train), relabelled(valid), replace(TRAINING, debias="none"))


def judged_rankings(rankers: dict[str, TrainedRanker], test: Split) -> dict[str, np.ndarray]:
    """The rankings of the test lists the quality benchmarks judge: each ranker's model and its
    weights, the logged order, the platform's v2.8 and a random order (a fixed seed)."""
    scores: dict[str, np.ndarray] = {}
    for name, ranker in rankers.items():
        scores[f"model_{name}"] = predict(ranker.booster, test.X)
        scores[f"weights_{name}"] = WeightsScorer(ranker.weights).score(test.X)
    scores["logged_order"] = -test.positions.astype(float)
    scores["platform_v28"] = platform_ranker(np.nan_to_num(test.X))
    scores["random"] = np.random.default_rng(0).random(len(test.y))
    return scores


def published_scorer_fairness(
    seed: int, days: int, gate: GateThresholds, **bias: Any
) -> tuple[FairnessReport, int]:
    """(the fairness report, test lists) of the scorer the pipeline would publish (debiased
    weights) trained on `days` of simulated logs, optionally with clients' bias."""
    train, valid, test = simulate_logs(seed, days, **bias).splits()
    ranker = train_ranker(train, valid, TRAINING)
    evaluation = evaluate(
        WeightsScorer(ranker.weights),
        test,
        counterfactual_evaluator(test, ranker.debiaser),
        FairnessInputs(
            ranker.debiaser.expected_gain(test.X), valid, ranker.debiaser.expected_gain(valid.X)
        ),  # fmt: skip
        gate,
        max_candidates=DEFAULTS.serving.max_candidates,
        time_it=False,
    )
    return evaluation.fairness, test.groups


def simulated_lake(root: Path, days: int, seed: int, **config: Any) -> tuple[Lake, Simulator, date]:
    """N days through the real path: audit log, ingest, DuckDB feature matrix."""
    simulator = Simulator(SimulatorConfig(start=START, days=days, seed=seed, **config))
    log = root / "events.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in simulator.events()))
    lake = Lake(root / "lake")
    source = AuditLogSource(str(log))
    all_days = [START + timedelta(days=i) for i in range(days)]
    for day in all_days:
        ingest_day(source.read_day(day), day, lake, source.name)
    for day in all_days:
        build_feature_matrix(lake, day, DEFAULTS.feedback_window_hours)
    return lake, simulator, all_days[-1]
