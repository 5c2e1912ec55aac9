"""A registry writer for the serving tests, on `ltr_core` alone.

The serving tests run in the serving install (tests/deploy/test_serving_install.py), which holds
no pipeline: `ltr_assets.registry.local.LocalRegistry` does not import there (its atomic writes
come with pyarrow). `VersionWriter` writes the same layout with the shared format of
`ltr_core.artifacts` (weights file, checksums, signature, pointer), the way the pipeline's
registry does: the version folder renamed into place whole, then the pointer replaced
atomically. It does not validate what it writes (serving does, which is what the tests test),
keeps no lock and deletes nothing. tests/unit/test_registry_writer.py checks that it writes
what LocalRegistry writes.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from ltr_core.artifacts.format import (
    METADATA_FILE,
    MODEL_FILE,
    VERSION_FORMAT,
    WEIGHTS_FILE,
    scorer_to_record,
    sha256,
    weights_json,
)
from ltr_core.artifacts.signing import SIGNATURE_FIELD, sign
from ltr_core.artifacts.store import LocalVersions
from ltr_core.features import FEATURES


def normalise(raw: np.ndarray) -> dict[str, float]:
    """Non-negative weights summing to exactly 1.0 over FEATURES (as the pipeline's training
    normalises them: the rounding residue on the largest weight)."""
    clipped = np.clip(np.nan_to_num(np.asarray(raw, dtype=np.float64)), 0.0, None)
    if clipped.sum() <= 0:
        clipped = np.ones(len(FEATURES))
    values = [float(v) for v in clipped / clipped.sum()]
    values[int(np.argmax(values))] += 1.0 - sum(values)
    return dict(zip(FEATURES, values, strict=True))


def write_atomically(path: Path, data: bytes) -> None:
    """A temporary file beside `path`, then os.replace: a reader sees the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json(obj: object) -> bytes:
    """As the pipeline's registry writes its JSON files."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


class VersionWriter(LocalVersions):
    """Publishes versions into a local registry folder; `keys.signing` signs them."""

    def publish(
        self,
        weights: Mapping[str, float],
        model_text: str,
        metadata: Mapping[str, Any],
        partition: str,
        now: datetime | None = None,
        *,
        candidate: bool = False,
    ) -> str:
        """Write a new version and point `latest` (and WEIGHTS_PATH) at it, or with `candidate`
        point `candidate.json` at it (a canary publish); its id."""
        weights_bytes = weights_json(weights)
        model_bytes = model_text.encode()
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        moment = now or datetime.now(UTC)
        while (self.versions_dir / moment.strftime(VERSION_FORMAT)).exists():
            moment += timedelta(seconds=1)
        version = moment.strftime(VERSION_FORMAT)
        full: dict[str, Any] = {
            **metadata,
            "version": version,
            "partition": partition,
            "published_at": datetime.now(UTC).isoformat(),
            "features": list(FEATURES),
            "checksums": {WEIGHTS_FILE: sha256(weights_bytes), MODEL_FILE: sha256(model_bytes)},
        }
        gated = scorer_to_record(metadata)
        if gated is not None:
            full["gated_scorer"] = gated
        full.pop(SIGNATURE_FIELD, None)
        if self.keys.signing is not None:  # last: it covers everything above
            full[SIGNATURE_FIELD] = sign(full, self.keys.signing)
        staging = self.root / ".staging" / f"{version}.{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        (staging / WEIGHTS_FILE).write_bytes(weights_bytes)
        (staging / MODEL_FILE).write_bytes(model_bytes)
        (staging / METADATA_FILE).write_bytes(_json(full))
        os.rename(staging, self.versions_dir / version)  # the version appears whole
        moved_at = datetime.now(UTC).isoformat()
        pointer = {"version": version, "partition": partition, "moved_at": moved_at}
        if candidate:
            write_atomically(self.candidate_path, _json(pointer))
            return version
        write_atomically(self.pointer_path, _json(pointer))
        if self.weights_path is not None:
            write_atomically(self.weights_path, weights_bytes)
        return version
