"""A simulated lake for the quality and training benchmarks: N days ingested and joined."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from ltr_assets.features import build_feature_matrix
from ltr_assets.ingest import ingest_day
from ltr_assets.lake import Lake
from ltr_assets.simulator import Simulator, SimulatorConfig
from ltr_assets.sources import AuditLogSource

START = date(2026, 10, 1)


def simulated_lake(root: Path, days: int, seed: int, **config) -> tuple[Lake, Simulator, date]:
    simulator = Simulator(SimulatorConfig(start=START, days=days, seed=seed, **config))
    log = root / "events.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in simulator.events()))
    lake = Lake(root / "lake")
    source = AuditLogSource(str(log))
    all_days = [START + timedelta(days=i) for i in range(days)]
    for day in all_days:
        ingest_day(source.read_day(day), day, lake, source.name)
    for day in all_days:
        build_feature_matrix(lake, day)
    return lake, simulator, all_days[-1]


def utilities(simulator: Simulator, frame: pd.DataFrame) -> pd.Series:
    truth = pd.DataFrame(
        [(c.case_id, c.lawyer_id, c.utility) for c in simulator.truth],
        columns=["case_id", "lawyer_id", "utility"],
    )
    return frame.merge(truth, on=["case_id", "lawyer_id"], how="left")["utility"]
