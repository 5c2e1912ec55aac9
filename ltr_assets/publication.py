"""Publishing a version everywhere: the local registry first, then its S3 mirror; rollback;
retention. An S3 failure never undoes the local publish: it is reported, and the next publish
or `ltr registry sync` uploads what is missing."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ltr_assets.registry import (
    InvalidPointer,
    LocalRegistry,
    PublishResult,
    RegistryError,
    gated_scorer_of,
)
from ltr_assets.s3_registry import S3Mirror, S3Unavailable, SyncReport, sync

log = logging.getLogger("ltr.publication")
S3_ERRORS = (S3Unavailable, BotoCoreError, ClientError, RegistryError)


@dataclass
class PublicationReport:
    local: PublishResult
    s3_published: bool | None  # None: no S3 configured
    s3_error: str = ""
    s3_uploaded: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    prune_skipped: str = ""  # why retention deleted nothing this time ("" when it ran)

    @property
    def version(self) -> str:
        return self.local.version


def _sync(
    local: LocalRegistry, mirror: S3Mirror | None, force: bool
) -> tuple[bool | None, str, SyncReport | None]:
    if mirror is None:
        return None, "", None
    try:
        report = sync(local, mirror, force_pointer=force)
    except S3_ERRORS as exc:
        log.warning("S3 publish failed; the local registry stands: %s", exc)
        return False, f"{type(exc).__name__}: {exc}", None
    return True, "", report


@dataclass(frozen=True)
class PruneReport:
    pruned: list[str]
    skipped: str = ""  # why nothing was pruned, when retention did not run


def prune_versions(local: LocalRegistry, mirror: S3Mirror | None, keep: int) -> PruneReport:
    """Keep the newest `keep` versions plus whatever latest points at (here and on S3).

    Both pointers are read back and validated first: a malformed pointer (a path, a trailing
    slash, not JSON) names nothing we can compare with, so retention deletes nothing and says so.
    """
    versions = local.versions()
    protected = set(versions[-keep:]) if keep > 0 else set()
    try:
        latest = local.latest_version()
    except InvalidPointer as exc:
        log.warning("retention skipped: %s", exc)
        return PruneReport([], f"local pointer malformed: {exc}")
    if latest:
        protected.add(latest)
    if mirror is not None:
        try:
            pointer, _ = mirror.pointer()
            if pointer:
                protected.add(pointer["version"])
        except InvalidPointer as exc:
            log.warning("retention skipped: %s", exc)
            return PruneReport([], f"S3 pointer malformed: {exc}")
        except S3_ERRORS as exc:
            log.warning("S3 unreachable; pruning local versions only: %s", exc)
            mirror = None
    doomed = [v for v in versions if v not in protected]
    pruned: list[str] = []
    for version in doomed:
        try:
            local.delete_version(version)  # re-checks latest under the registry's lock
        except RegistryError as exc:
            log.warning("retention stopped: %s", exc)
            return PruneReport(pruned, str(exc))
        pruned.append(version)
        if mirror is not None:
            try:
                mirror.delete_version(version)
            except S3_ERRORS as exc:
                log.warning("could not delete %s on S3: %s", version, exc)
    return PruneReport(pruned)


def prune(local: LocalRegistry, mirror: S3Mirror | None, keep: int) -> list[str]:
    """The versions `prune_versions` deleted."""
    return prune_versions(local, mirror, keep).pruned


def publish(
    local: LocalRegistry,
    mirror: S3Mirror | None,
    weights: Mapping[str, float],
    model_text: str,
    metadata: Mapping[str, Any],
    partition: str,
    force: bool = False,
    keep: int = 30,
    documents: Callable[[Mapping[str, Any]], Mapping[str, bytes]] | None = None,
) -> PublicationReport:
    result = local.publish(
        weights, model_text, metadata, partition=partition, force=force, documents=documents
    )
    ok, error, report = _sync(local, mirror, force)
    pruned = prune_versions(local, mirror, keep)
    return PublicationReport(
        result, ok, error, report.uploaded if report else [], pruned.pruned, pruned.skipped
    )


def rollback(
    local: LocalRegistry, mirror: S3Mirror | None, version: str, scorer: str | None = None
) -> PublicationReport:
    """Validate the target, point the local latest at it, then S3's (forced: it may be older).

    With `scorer` (LTR_SCORER), a version gated for another scorer is refused here, before the
    pointer moves, instead of by every serving process afterwards.
    """
    if scorer is not None:
        gated = gated_scorer_of(local.metadata(version))
        if gated != scorer:
            raise RegistryError(
                f"{version} was gated for the {gated or 'unrecorded'} scorer; "
                f"serving runs LTR_SCORER={scorer} and would refuse it"
            )
    result = local.rollback(version)
    ok, error, report = _sync(local, mirror, force=True)
    return PublicationReport(result, ok, error, report.uploaded if report else [])
