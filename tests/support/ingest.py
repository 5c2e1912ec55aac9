"""What the ingest tests check of an IngestReport."""

from __future__ import annotations

from ltr_assets.ingest.day import IngestReport


def accounted(report: IngestReport) -> int:
    """Every record read is exactly one of these: the sum equals `report.read`."""
    return (
        report.accepted + report.duplicates + report.conflicts + report.quarantined + report.ignored
    )
