"""The project's nDCG on LightGBM's own lambdarank example reproduces its reference figures."""

from __future__ import annotations

import pytest

from benchmarks.quality_real import DEFAULT_DATA, PARAMS, REFERENCE_BAGGING_OFF, train_and_score


def test_reference_figures_are_reproduced_with_bagging_off() -> None:
    if not (DEFAULT_DATA / "rank.train").exists():
        pytest.fail(f"shared data missing at {DEFAULT_DATA}")
    params = {**PARAMS, "bagging_fraction": 1.0, "bagging_freq": 0, "deterministic": True}
    ours = train_and_score(DEFAULT_DATA, params, seed=0)
    for k, reference in REFERENCE_BAGGING_OFF.items():
        assert ours[k] == pytest.approx(reference, abs=0.001), k
