"""Publishing a version everywhere: the local registry first, then its S3 mirror; rollback;
retention; how old the live version is for a night. An S3 failure never undoes the local
publish: it is reported, and the next publish or `ltr registry sync` uploads what is missing."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ltr_assets.notify import stays_the_candidate
from ltr_assets.registry.local import LocalRegistry, PublishResult
from ltr_assets.registry.s3_mirror import S3Mirror, SyncReport, sync
from ltr_core.artifacts.format import InvalidPointer, RegistryError
from ltr_core.artifacts.s3 import S3Unavailable
from ltr_core.vocabulary import Rollout

log = logging.getLogger("ltr.publication")
S3_ERRORS = (S3Unavailable, BotoCoreError, ClientError, RegistryError)


@dataclass
class PublicationReport:
    local: PublishResult
    s3_published: bool | None  # None: no S3 configured
    s3_error: str = ""
    s3_uploaded: list[str] = field(default_factory=list)
    retention: PruneReport | None = None  # None: no retention ran (a rollback)
    # S3 pointers the sync changed (`SyncReport.pointers_changed`): replicas reading S3 load
    # something else now, whether or not the local pointers moved (a sync after an outage)
    s3_pointers_changed: list[str] = field(default_factory=list)

    @property
    def version(self) -> str:
        return self.local.version


def _sync(
    local: LocalRegistry,
    mirror: S3Mirror | None,
    force: bool,
    uploaded: list[str] | None = None,
    changed: list[str] | None = None,
) -> tuple[bool | None, str, SyncReport | None]:
    """(published to S3, why not, the sync's report). `uploaded` collects the versions S3 got,
    those of a sync that failed part way too: S3 holds them although its pointers did not move;
    `changed`, the S3 pointers it changed, likewise."""
    if mirror is None:
        return None, "", None
    try:
        report = sync(local, mirror, force_pointer=force, uploaded=uploaded, changed=changed)
    except S3_ERRORS as exc:
        log.warning("S3 publish failed; the local registry stands: %s", exc)
        return False, f"{type(exc).__name__}: {exc}", None
    if report.problems:  # a pointer S3 could not follow (a local version it cannot have)
        log.warning("S3 pointers not all moved: %s", "; ".join(report.problems))
        return False, "; ".join(report.problems), report
    return True, "", report


@dataclass(frozen=True)
class PruneReport:
    """What retention did. It is housekeeping: whatever fails here is reported (a WARN check),
    never raised, so it can neither fail a publish after `latest` moved nor block the next."""

    pruned: list[str]
    skipped: str = ""  # why retention deleted nothing at all, when it did not run
    failed: dict[str, str] = field(default_factory=dict)  # version -> why it was not deleted
    s3_failed: dict[str, str] = field(default_factory=dict)  # version -> why S3 still has it
    s3_skipped: str = ""  # why S3 was not pruned this time (unreachable): the next run does it

    @property
    def ok(self) -> bool:
        return not (self.skipped or self.failed or self.s3_failed or self.s3_skipped)


def prune_versions(local: LocalRegistry, mirror: S3Mirror | None, keep: int) -> PruneReport:
    """Keep the newest `keep` versions plus whatever a pointer (latest or the candidate) names
    and the version of the newest night (`LocalRegistry.newest_night`), here and on S3,
    counting the versions of both: S3 may still hold versions deleted here while it was
    unreachable (pruned by the first run that reaches it again), and after the local registry
    is lost it holds the only copies of the newest.

    Both registries' pointers are read back and validated first: a malformed pointer (a path, a
    trailing slash, not JSON) names nothing we can compare with, so retention deletes nothing and
    says so. S3 unreachable: local versions are pruned by the local registry alone and the
    report says S3 was not (a WARN). Each deletion re-checks the local pointers under the
    registry's lock; a version that cannot be deleted (a pointer moved to it meanwhile, a folder
    the OS will not move) is reported and skipped, and retention goes on with the next.
    """
    try:
        versions = local.versions()
        protected = set(local.pointed_versions().values())
        newest_night = local.newest_night()  # kept: a later backfill must know it is one
        if newest_night is not None:
            protected.add(newest_night[1])
    except InvalidPointer as exc:
        log.warning("retention skipped: %s", exc)
        return PruneReport([], f"local pointer malformed: {exc}")
    except OSError as exc:
        log.warning("retention skipped: %s", exc)
        return PruneReport([], f"cannot read the registry: {exc}")
    on_s3: list[str] = []
    s3_skipped = ""
    if mirror is not None:
        try:
            for pointer, _ in (mirror.pointer(), mirror.candidate()):
                if pointer:
                    protected.add(pointer["version"])
            on_s3 = mirror.versions()
        except InvalidPointer as exc:
            log.warning("retention skipped: %s", exc)
            return PruneReport([], f"S3 pointer malformed: {exc}")
        except S3_ERRORS as exc:
            log.warning("S3 unreachable; pruning local versions only: %s", exc)
            s3_skipped = f"S3 unreachable, its old versions were kept: {type(exc).__name__}: {exc}"
            mirror = None
    if keep > 0:
        protected.update(sorted(set(versions) | set(on_s3))[-keep:])
    pruned: list[str] = []
    failed: dict[str, str] = {}
    s3_failed: dict[str, str] = {}
    for version in (v for v in versions if v not in protected):
        try:
            local.delete_version(version)
        except (RegistryError, OSError) as exc:
            log.warning("retention could not delete %s: %s", version, exc)
            failed[version] = f"{type(exc).__name__}: {exc}"
            continue
        pruned.append(version)
    if mirror is not None:
        # what was deleted here, and what S3 kept of an earlier run (never what failed here)
        for version in sorted((set(pruned) | (set(on_s3) - set(versions))) - protected):
            try:
                mirror.delete_version(version)
            except S3_ERRORS as exc:
                log.warning("could not delete %s on S3: %s", version, exc)
                s3_failed[version] = f"{type(exc).__name__}: {exc}"
                continue
            if version not in pruned:
                pruned.append(version)
    return PruneReport(sorted(pruned), failed=failed, s3_failed=s3_failed, s3_skipped=s3_skipped)


def publish(
    local: LocalRegistry,
    mirror: S3Mirror | None,
    weights: Mapping[str, float],
    model_text: str,
    metadata: Mapping[str, Any],
    partition: str,
    *,
    keep: int,
    force: bool = False,
    documents: Callable[[Mapping[str, Any]], Mapping[str, bytes]] | None = None,
    rollout: Rollout = "direct",
    replace_candidate: bool = True,
) -> PublicationReport:
    """Publish locally (`rollout`: canary sets the candidate when a version is live, direct
    moves latest; `replace_candidate`: see `LocalRegistry.publish`), mirror to S3, then apply
    retention."""
    result = local.publish(
        weights,
        model_text,
        metadata,
        partition=partition,
        force=force,
        documents=documents,
        rollout=rollout,
        replace_candidate=replace_candidate,
    )
    uploaded: list[str] = []
    changed: list[str] = []
    ok, error, _ = _sync(local, mirror, force, uploaded, changed)
    retention = prune_versions(local, mirror, keep)
    return PublicationReport(result, ok, error, uploaded, retention, changed)


def rollback(
    local: LocalRegistry, mirror: S3Mirror | None, version: str, scorer: str | None = None
) -> PublicationReport:
    """Validate the target and point the local latest at it (one step under the registry's
    lock), then S3's (forced: it may be older).

    With `scorer` (LTR_SCORER), the version must pass serving's own acceptance rule
    (`check_servable`) before the pointer moves, instead of being refused by every serving
    process afterwards.
    """
    result = local.rollback(version, scorer)
    uploaded: list[str] = []
    changed: list[str] = []
    ok, error, _ = _sync(local, mirror, True, uploaded, changed)
    return PublicationReport(result, ok, error, uploaded, s3_pointers_changed=changed)


def promote(
    local: LocalRegistry,
    mirror: S3Mirror | None,
    evidence: Mapping[str, Any],
    scorer: str | None = None,
    expected: str | None = None,
) -> PublicationReport:
    """Move the local latest to the candidate and clear it (one step under the registry's
    lock, `evidence` recorded), then S3's pointers (latest forced, then candidate.json).
    `expected`: the candidate version the evidence is about (refused if it changed)."""
    result = local.promote(evidence, scorer, expected)
    uploaded: list[str] = []
    changed: list[str] = []
    ok, error, _ = _sync(local, mirror, True, uploaded, changed)
    return PublicationReport(result, ok, error, uploaded, s3_pointers_changed=changed)


def retire(
    local: LocalRegistry,
    mirror: S3Mirror | None,
    evidence: Mapping[str, Any],
    expected: str | None = None,
    changed: list[str] | None = None,
) -> tuple[str, bool | None, str]:
    """Clear the candidate locally (`evidence` recorded), then on S3: (the retired version,
    S3 synced (None: no S3), the S3 error). `expected`: as for `promote`; `changed` collects
    the S3 pointers the sync changed."""
    version = local.retire(evidence, expected)
    ok, error, _ = _sync(local, mirror, False, changed=changed)
    return version, ok, error


@dataclass(frozen=True)
class LiveAge:
    """How old the live version is for day D's publication record: `age_days` is the day it is
    measured on (`measured_on`: D, or the newest night run when D is older) minus the partition
    the live version was trained on (None when nothing is live or its partition is unknown); it
    passes within `limit` days, and when the live version is newer than that day."""

    day: date
    measured_on: date
    live_version: str  # "": nothing is live
    live_partition: str  # as the pointer records it ("" when it records none)
    age_days: int | None
    limit: int
    passed: bool
    description: str


def live_version_age(
    day: date,
    live_version: str,
    live_partition: str,
    limit: int,
    refused: Sequence[str] = (),
    newest_night: date | None = None,
    by_rollback_at: str = "",
    kept_candidate: str = "",
) -> LiveAge:
    """Whether the version live after day D's publication record is at most `limit` days older
    than D, by its training partition (the registry pointer's `partition`), not by the wall
    clock: a night's answer does not depend on when it ran.

    `newest_night`: the newest day the pipeline has recorded a publication (or refusal) for.
    A backfill of an older day measures the age there instead of at D: the live version is
    today's, and measured at an old day it would look fresh (even "newer than this day") while
    it is stale now; the check's latest result must not silence the warning the newest night
    raised.

    `by_rollback_at`: when a rollback made the live version live (the pointer's time), a stale
    age is the rollback's doing, not the nights' since, and the description says so.

    `refused`: the checks the gate refused D's candidate on (`<check>: <value> vs <threshold>`),
    empty when D published; the description names them, so a stale live version reads with
    the night that kept it live. Freshness alone cannot tell: a refused night is a
    materialization too. `kept_candidate`: an earlier build of D that stays the canary
    candidate after D's re-run was refused (said, so "refused" is not read as its fate)."""
    night = f"; {day}'s candidate was refused by the gate: {'; '.join(refused)}" if refused else ""
    if refused and kept_candidate:
        night += f"; {stays_the_candidate(kept_candidate, str(day))}"
    on = max(day, newest_night) if newest_night is not None else day
    named = f"{on}, the newest night run" if on != day else f"{day}"

    def result(age: int | None, passed: bool, description: str) -> LiveAge:
        return LiveAge(
            day, on, live_version, live_partition, age, limit, passed, description + night
        )

    if not live_version:
        return result(None, False, f"nothing is live on {named}: no version has gone live yet")
    try:
        trained = date.fromisoformat(live_partition)
    except ValueError:
        return result(
            None,
            False,
            f"live version {live_version} records no training partition "
            f"({live_partition!r}): its age on {named} is unknown",
        )
    age = (on - trained).days
    if age < 0:
        return result(
            age,
            True,
            f"live version {live_version} was trained on {trained}, {-age} "
            f"{_days(-age)} after {named}: the live version is newer than this day",
        )
    trained_on = f"live version {live_version} was trained on {trained}"
    if age == 0:
        return result(age, True, f"{trained_on}, {named} itself (limit {limit})")
    before = f"{trained_on}, {age} {_days(age)} before {named} (limit {limit})"
    if age <= limit:
        return result(age, True, before)
    if by_rollback_at:
        return result(
            age, False, f"{before}: made live by a rollback at {minute_text(by_rollback_at)}"
        )
    return result(age, False, f"{before}: no version of the nights since went live")


def minute_text(at: object) -> str:
    """A registry timestamp (ISO) to the minute in UTC, for a sentence ("?" when unreadable)."""
    try:
        moment = datetime.fromisoformat(str(at))
    except ValueError:
        return "?"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _days(n: int) -> str:
    return "day" if n == 1 else "days"
