"""Publishing a version everywhere: the local registry first, then its S3 mirror; rollback;
retention. An S3 failure never undoes the local publish: it is reported, and the next publish
or `ltr registry sync` uploads what is missing."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ltr_assets.registry import LocalRegistry, PublishResult, RegistryError
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


def prune(local: LocalRegistry, mirror: S3Mirror | None, keep: int) -> list[str]:
    """Keep the newest `keep` versions plus whatever latest points at (here and on S3)."""
    versions = local.versions()
    protected = set(versions[-keep:]) if keep > 0 else set()
    latest = local.latest_version()
    if latest:
        protected.add(latest)
    if mirror is not None:
        try:
            pointer, _ = mirror.pointer()
            if pointer:
                protected.add(pointer["version"])
        except S3_ERRORS as exc:
            log.warning("S3 unreachable; pruning local versions only: %s", exc)
            mirror = None
    doomed = [v for v in versions if v not in protected]
    for version in doomed:
        local.delete_version(version)
        if mirror is not None:
            try:
                mirror.delete_version(version)
            except S3_ERRORS as exc:
                log.warning("could not delete %s on S3: %s", version, exc)
    return doomed


def publish(
    local: LocalRegistry,
    mirror: S3Mirror | None,
    weights: Mapping[str, float],
    model_text: str,
    metadata: Mapping[str, Any],
    partition: str,
    force: bool = False,
    keep: int = 30,
) -> PublicationReport:
    result = local.publish(weights, model_text, metadata, partition=partition, force=force)
    ok, error, report = _sync(local, mirror, force)
    pruned = prune(local, mirror, keep)
    return PublicationReport(result, ok, error, report.uploaded if report else [], pruned)


def rollback(local: LocalRegistry, mirror: S3Mirror | None, version: str) -> PublicationReport:
    """Validate the target, point the local latest at it, then S3's (forced: it may be older)."""
    result = local.rollback(version)
    ok, error, report = _sync(local, mirror, force=True)
    return PublicationReport(result, ok, error, report.uploaded if report else [])
