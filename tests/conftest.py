"""Shared fixtures: an isolated LTR_HOME per test and simulated event files."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from ltr_assets.config import Settings
from ltr_assets.simulator import Simulator, SimulatorConfig, render_lines

START = date(2026, 11, 1)


@pytest.fixture
def ltr_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every LTR_* path under a fresh temporary directory; thresholds at their defaults."""
    home = tmp_path / "ltr"
    for name in (
        "LTR_DATA_DIR",
        "LTR_REGISTRY_DIR",
        "WEIGHTS_PATH",
        "LTR_AUDIT_LOG",
        "LTR_NDCG_MIN",
        "LTR_FAIRNESS_MAX",
        "LTR_LATENCY_P95_MS",
        "LTR_MIN_SAMPLES",
        "LTR_REGRESSION_MARGIN",
        "LTR_TRAIN_WINDOW_DAYS",
        "LTR_SCORER",
        "LTR_SERVING_URL",
        "NOTIFY_WEBHOOK_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LTR_HOME", str(home))
    (home / "events").mkdir(parents=True)
    yield home


@pytest.fixture
def settings(ltr_home: Path) -> Settings:
    return Settings.from_env()


def write_simulated_events(
    path: Path, days: int, seed: int = 3, envelope: str = "audit", **config
) -> Simulator:
    simulator = Simulator(SimulatorConfig(start=START, days=days, seed=seed, **config))
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = render_lines(simulator.events(), envelope, seed)
    path.write_text("".join(line + "\n" for line in lines))
    return simulator
