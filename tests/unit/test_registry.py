"""The local registry: immutable versions, the latest pointer, rollback, validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from ltr_assets.learning.training import normalise
from ltr_assets.registry.local import LocalRegistry
from ltr_core.artifacts.format import RegistryError
from ltr_core.features import FEATURES
from tests.support.artifacts import tiny_model_text, weights


@pytest.fixture(scope="module")
def model_text() -> str:
    return tiny_model_text()


def _now(second: int) -> datetime:
    return datetime(2026, 11, 26, 2, 15, second, tzinfo=UTC)


def test_normalised_weights_are_non_negative_and_sum_to_one() -> None:
    weights = normalise(np.array([3.0, -1.0, 0.0] + [0.1] * (len(FEATURES) - 3)))
    assert sum(weights.values()) == 1.0
    assert min(weights.values()) >= 0 and weights[FEATURES[1]] == 0.0
    assert sum(normalise(np.zeros(len(FEATURES))).values()) == 1.0


def test_publish_moves_latest_and_writes_the_flatweights(tmp_path: Path, model_text: str) -> None:
    registry = LocalRegistry(tmp_path / "reg", tmp_path / "models" / "ltr_weights.json")
    result = registry.publish(
        weights(1), model_text, {"gate_passed": True}, "2026-11-25", now=_now(0)
    )
    assert result.version == "20261126_021500" and result.latest_moved
    assert registry.latest_version() == result.version
    artifact = registry.load(result.version)
    assert artifact.metadata["partition"] == "2026-11-25"
    assert set(artifact.metadata["checksums"]) == {"ltr_weights.json", "model.txt"}
    assert json.loads((tmp_path / "models" / "ltr_weights.json").read_text()) == artifact.weights
    assert abs(sum(artifact.weights.values()) - 1.0) < 1e-12
    # same second again: the next free second, never an overwrite
    again = registry.publish(weights(2), model_text, {}, "2026-11-25", now=_now(0))
    assert again.version == "20261126_021501"


def test_backfill_never_moves_latest_backwards(tmp_path: Path, model_text: str) -> None:
    registry = LocalRegistry(tmp_path / "reg", tmp_path / "w.json")
    new = registry.publish(weights(1), model_text, {}, "2026-11-25", now=_now(0))
    old = registry.publish(weights(2), model_text, {}, "2026-11-10", now=_now(5))
    assert not old.latest_moved and "older" in old.reason
    assert registry.latest_version() == new.version
    assert json.loads((tmp_path / "w.json").read_text()) == registry.load(new.version).weights
    forced = registry.publish(weights(3), model_text, {}, "2026-11-10", force=True, now=_now(9))
    assert forced.latest_moved and registry.latest_version() == forced.version


def test_rollback_validates_the_target(tmp_path: Path, model_text: str) -> None:
    registry = LocalRegistry(tmp_path / "reg", tmp_path / "w.json")
    first = registry.publish(weights(1), model_text, {}, "2026-11-24", now=_now(0))
    second = registry.publish(weights(2), model_text, {}, "2026-11-25", now=_now(1))
    assert registry.rollback(first.version).previous_latest == second.version
    assert registry.latest_version() == first.version
    assert json.loads((tmp_path / "w.json").read_text()) == registry.load(first.version).weights

    (registry.versions_dir / second.version / "ltr_weights.json").write_text(
        json.dumps({f: 1.0 / len(FEATURES) + 0.01 for f in FEATURES})
    )
    assert "checksum of ltr_weights.json" in registry.verify(second.version)[0]
    with pytest.raises(RegistryError):
        registry.rollback(second.version)
    assert registry.latest_version() == first.version
    with pytest.raises(RegistryError, match="does not exist"):
        registry.rollback("20990101_000000")


def test_checksum_mismatch_is_refused(tmp_path: Path, model_text: str) -> None:
    registry = LocalRegistry(tmp_path / "reg")
    version = registry.publish(weights(1), model_text, {}, "2026-11-25", now=_now(0)).version
    model = registry.versions_dir / version / "model.txt"
    model.write_text(model.read_text().replace("Tree=0", "Tree=0 ", 1))
    assert "checksum of model.txt" in registry.verify(version)[0]


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({f: 1.0 / len(FEATURES) for f in FEATURES[:-1]}, "features differ"),
        ({**{f: 0.2 for f in FEATURES}, FEATURES[0]: -1.0}, "non-negative"),
        ({f: 0.5 for f in FEATURES}, "sum"),
    ],
)
def test_invalid_weights_are_never_published(
    tmp_path: Path, model_text: str, weights: dict[str, float], message: str
) -> None:
    registry = LocalRegistry(tmp_path / "reg")
    with pytest.raises(
        (RegistryError, KeyError), match=message if len(weights) == len(FEATURES) else None
    ):
        registry.publish(weights, model_text, {}, "2026-11-25")
    assert registry.versions() == [] and registry.latest_version() is None


def test_the_regression_baseline_of_a_backfill_is_not_a_later_model(
    tmp_path: Path, model_text: str
) -> None:
    registry = LocalRegistry(tmp_path / "reg")
    assert registry.baseline_for("2026-11-20") is None
    v10 = registry.publish(weights(1), model_text, {}, "2026-11-10", now=_now(0)).version
    v20 = registry.publish(weights(2), model_text, {}, "2026-11-20", now=_now(1)).version
    assert registry.baseline_for("2026-11-21") == v20  # nightly: the live version
    assert registry.baseline_for("2026-11-15") == v10  # backfill: the version of its time
    assert registry.baseline_for("2026-11-05") is None
    registry.rollback(v10)
    assert registry.baseline_for("2026-11-21") == v10  # live after a rollback
    registry.rollback(v20)
    # a backfill of an older day published after both: the baseline of a day between them is
    # still the version of the newest day at or before it, not the last one published
    v05 = registry.publish(weights(3), model_text, {}, "2026-11-05", now=_now(2)).version
    assert registry.baseline_for("2026-11-15") == v10
    assert registry.baseline_for("2026-11-07") == v05
