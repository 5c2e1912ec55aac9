"""The registry's versions as an operator picks from them: each version with its partition, its
gated counterfactual nDCG@5 and whether it is live or the canary candidate.

One listing serves `ltr registry list`, the rollback pick-list in the UI (the versions are the
partitions of `ltr_rollback_job`) and the table beside it on `published_weights`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from ltr_assets.gate.evaluation import gate_line
from ltr_assets.gate.summary import CandidateSummary
from ltr_assets.registry.local import LocalRegistry
from ltr_core.artifacts.format import RegistryError

Role = Literal["live", "candidate", ""]


@dataclass(frozen=True)
class VersionRow:
    version: str
    role: Role
    partition: str  # "?" when the metadata is unreadable
    ndcg5: float | None  # counterfactual nDCG@5 as gated, with its 95% interval
    low: float | None
    high: float | None
    gate: str  # "PASSED", "FAILED: ...", or why the metadata could not be read


def _pointed(registry: LocalRegistry) -> tuple[str | None, str | None, list[str]]:
    """latest and candidate versions; an unreadable pointer is a warning, not a crash."""
    warnings: list[str] = []
    latest = candidate = None
    try:
        latest = registry.latest_version()
    except RegistryError as exc:
        warnings.append(f"latest: {exc}")
    try:
        candidate = registry.candidate_version()
    except RegistryError as exc:
        warnings.append(f"candidate: {exc}")
    warnings += dangling_pointers(registry, latest, candidate)
    return latest, candidate, warnings


def dangling_pointers(
    registry: LocalRegistry, latest: str | None, candidate: str | None
) -> list[str]:
    """A pointer naming a version folder that is not there: serving refuses it, so the
    registry's own listing and `verify` say so too."""
    present = set(registry.versions())
    return [
        f"{name}: names version {version}, which does not exist in {registry.versions_dir}"
        for name, version in (("latest", latest), ("candidate", candidate))
        if version is not None and version not in present
    ]


def _row(registry: LocalRegistry, version: str, role: Role) -> VersionRow:
    try:
        metadata = registry.metadata(version)
    except RegistryError as exc:
        reason = str(exc).splitlines()[0]
        return VersionRow(version, role, "?", None, None, None, f"unreadable: {reason}")
    partition = str(metadata.get("partition", "?"))
    try:
        summary = CandidateSummary.from_json(metadata)
    except ValidationError:  # an artifact published without a gate summary (tools, tests)
        return VersionRow(version, role, partition, None, None, None, "not recorded")
    ndcg = summary.metrics.counterfactual.get(5)
    return VersionRow(
        version=version,
        role=role,
        partition=partition,
        ndcg5=ndcg.value if ndcg else None,
        low=ndcg.interval.low if ndcg else None,
        high=ndcg.interval.high if ndcg else None,
        gate=gate_line(summary.gate) if summary.gate else "not evaluated",
    )


def list_versions(registry: LocalRegistry) -> tuple[list[VersionRow], list[str]]:
    """Every version folder, newest first, and warnings about unreadable pointers."""
    latest, candidate, warnings = _pointed(registry)
    rows = []
    for version in reversed(registry.versions()):
        role: Role = "live" if version == latest else "candidate" if version == candidate else ""
        rows.append(_row(registry, version, role))
    return rows, warnings


def _figure(row: VersionRow) -> str:
    if row.ndcg5 is None:
        return "n/a"
    if row.low is None or row.high is None:
        return f"{row.ndcg5:.4f}"
    return f"{row.ndcg5:.4f} [{row.low:.4f}, {row.high:.4f}]"


def versions_table(rows: list[VersionRow]) -> str:
    """A Markdown table of the versions (newest first) for the UI."""
    lines = [
        "| version | | partition | counterfactual nDCG@5 [95% CI] | gate |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| `{row.version}` | {row.role} | {row.partition} | {_figure(row)} | {row.gate} |"
        )
    if not rows:
        lines.append("| (no version) | | | | |")
    return "\n".join(lines)


def versions_text(rows: list[VersionRow]) -> list[str]:
    """One line per version for the terminal: `*` live, `c` the canary candidate."""
    marks = {"live": "*", "candidate": "c", "": " "}
    return [
        f"{marks[row.role]} {row.version}  partition={row.partition}  nDCG@5={_figure(row)}  "
        f"gate={row.gate}"
        for row in rows
    ]
