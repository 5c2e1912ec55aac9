"""What the ingest tests check of an IngestReport, and of the rows and files it names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ltr_assets.ingest.day import IngestReport
from ltr_assets.lake.paths import LakePath
from ltr_core.events import EVENT_COLUMNS, EventRow


def accounted(report: IngestReport) -> int:
    """Every record read is exactly one of these: the sum equals `report.read`."""
    return (
        report.accepted + report.duplicates + report.conflicts + report.quarantined + report.ignored
    )


def local(path: LakePath | None) -> Path:
    """A lake path that a test's local lake (Lake(tmp_path / ...)) made: a file on disk, set."""
    assert isinstance(path, Path), path
    return path


def fields(row: object) -> dict[str, Any]:
    """An accepted event's columns by name (the checker's EventRow declares only a few of them)."""
    assert isinstance(row, EventRow), row
    return dict(zip(EVENT_COLUMNS, row, strict=True))
