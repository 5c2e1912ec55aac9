"""Where each partition's data lives in the local data lake (LTR_DATA_DIR)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path


@dataclass(frozen=True)
class Lake:
    root: Path

    def raw_events(self, day: date) -> Path:
        return self.root / "raw_events" / f"{day.isoformat()}.parquet"

    def quarantine(self, day: date) -> Path:
        return self.root / "quarantine" / f"{day.isoformat()}.jsonl"

    def feature_matrix(self, day: date) -> Path:
        return self.root / "feature_matrix" / f"{day.isoformat()}.parquet"

    def candidate(self, day: date) -> Path:
        """The trained-but-not-yet-published model of a partition (ltr_model)."""
        return self.root / "candidates" / day.isoformat()
