"""The project's nDCG on LightGBM's own lambdarank example reproduces its reference figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.quality_real import (
    PARAMS,
    REFERENCE_BAGGING_OFF,
    SHARED_DATA_VARIABLE,
    default_data,
    repository_root,
    train_and_score,
)


def test_the_data_is_found_from_the_repository_root_or_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = repository_root()
    assert (root / "pyproject.toml").is_file() and (root / "benchmarks").is_dir()
    monkeypatch.delenv(SHARED_DATA_VARIABLE, raising=False)
    assert default_data() == root.parent / "shared" / "data" / "lightgbm-lambdarank"
    monkeypatch.setenv(SHARED_DATA_VARIABLE, str(tmp_path))
    assert default_data() == tmp_path


def test_reference_figures_are_reproduced_with_bagging_off() -> None:
    data = default_data()
    if not (data / "rank.train").exists():
        pytest.fail(f"shared data missing at {data} (set {SHARED_DATA_VARIABLE} to its folder)")
    params = {**PARAMS, "bagging_fraction": 1.0, "bagging_freq": 0, "deterministic": True}
    ours = train_and_score(data, params, seed=0)
    for k, reference in REFERENCE_BAGGING_OFF.items():
        assert ours[k] == pytest.approx(reference, abs=0.001), k
