"""The serving tests' registry writer (tests/support/registry_writer.py, on ltr_core alone, for
the serving install) writes what the pipeline's LocalRegistry writes: same files, same bytes but
for the publication times, versions that load and verify with the same keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ltr_assets.learning.training import normalise as pipeline_normalise
from ltr_assets.registry.local import LocalRegistry
from ltr_core.artifacts.signing import ArtifactKeys, SigningKey
from ltr_core.artifacts.store import LocalVersions
from ltr_core.features import FEATURES
from tests.support.artifacts import tiny_model_text, weights
from tests.support.registry_writer import VersionWriter, normalise

KEYS = ArtifactKeys(signing=SigningKey("k1", b"a test signing secret" * 2))
NOW = datetime(2026, 11, 26, 2, 15, 0, tzinfo=UTC)
TIMES = ("published_at", "moved_at", "signature")


def _tree(root: Path) -> dict[str, Any]:
    """Every file under `root` (JSON parsed, publication times and signature dropped)."""
    files: dict[str, Any] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".lock"):
        data: Any = path.read_bytes()
        if path.suffix == ".json":
            data = {k: v for k, v in json.loads(data).items() if k not in TIMES}
        files[str(path.relative_to(root))] = data
    return files


@pytest.mark.parametrize("keys", [ArtifactKeys(), KEYS], ids=["unsigned", "signed"])
def test_the_writer_writes_what_the_registry_writes(tmp_path: Path, keys: ArtifactKeys) -> None:
    model = tiny_model_text()
    metadata = {"gate_passed": True, "gated_scorer": "model"}
    registry = LocalRegistry(tmp_path / "a" / "reg", tmp_path / "a" / "w.json", keys)
    writer = VersionWriter(tmp_path / "b" / "reg", tmp_path / "b" / "w.json", keys)
    for second in (0, 0):  # the second publish of the same second takes the next one
        expected = registry.publish(weights(second), model, metadata, "2026-11-25", now=NOW)
        assert writer.publish(weights(second), model, metadata, "2026-11-25", now=NOW) == (
            expected.version
        )
    assert writer.versions() == ["20261126_021500", "20261126_021501"]
    registry.repair()  # the registry's empty .staging/ and .trash/ folders: none written
    assert _tree(tmp_path / "b") == _tree(tmp_path / "a")
    # Loads and verifies as the registry's own does: signed (with verify keys) or not.
    verify = ArtifactKeys(verifying=(keys.signing,)) if keys.signing else ArtifactKeys()
    reader = LocalVersions(tmp_path / "b" / "reg", keys=verify)
    for version in writer.versions():
        assert reader.verify(version) == []
        assert ("signature" in reader.metadata(version)) is (keys.signing is not None)


def test_normalise_is_the_pipelines() -> None:
    rng = np.random.default_rng(7)
    for raw in (rng.random(len(FEATURES)), np.zeros(len(FEATURES)), rng.normal(size=len(FEATURES))):
        assert normalise(raw) == pipeline_normalise(raw)
