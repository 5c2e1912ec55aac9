"""The registry's mirror on S3/MinIO: immutable versions, a `latest/` copy and a `latest.json`
pointer moved with a conditional write, so two publishers can never interleave.

Layout: s3://$S3_BUCKET/$S3_PREFIX/<version>/{ltr_weights.json, model.txt, metadata.json},
.../latest/{same files} and .../latest.json ({"version", "partition", ...}), written last;
.../candidate.json, the canary candidate's pointer, mirrors the local one (`move_candidate`).
A version's metadata.json is uploaded last, so its presence marks a complete version.
Version ids are checked (YYYYMMDD_HHMMSS) before they become keys, and latest.json is validated
when read back, like the local registry's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ltr_assets.registry.local import LocalRegistry
from ltr_core.artifacts.format import (
    DOCUMENT_FILES,
    METADATA_FILE,
    MODEL_FILE,
    WEIGHTS_FILE,
    InvalidPointer,
    RegistryError,
    check_version,
    sha256,
)
from ltr_core.artifacts.s3 import (
    _LOST_RACE,
    CANDIDATE,
    FILES_IN_ORDER,
    POINTER,
    S3Unavailable,
    S3Versions,
    _code,
    s3_versions_client,
    with_retries,
)

if TYPE_CHECKING:
    from ltr_core.settings import Settings


log = logging.getLogger("ltr.s3")


@dataclass
class S3Mirror(S3Versions):
    """The mirror with its writing side: immutable uploads, the pointer moved by a conditional
    write, retention."""

    def _put_immutable(self, key: str, body: bytes) -> None:
        """Create an object that must never change: a same-content retry is fine, a different
        content under an existing key is refused."""
        digest = sha256(body)
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", Metadata={"sha256": digest}
            )
        except ClientError as exc:
            if _code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            head = self.client.head_object(Bucket=self.bucket, Key=key)
            if head.get("Metadata", {}).get("sha256") != digest:
                raise RegistryError(f"s3://{self.bucket}/{key} exists with other content") from None

    def upload_version(self, version: str, files: dict[str, bytes]) -> None:
        """Upload a version's files (metadata.json last), then verify what S3 holds."""
        check_version(version)

        # Documents (the model card) go before metadata.json, which marks the version complete.
        names = [n for n in (WEIGHTS_FILE, MODEL_FILE, *DOCUMENT_FILES) if n in files]
        names.append(METADATA_FILE)

        def upload() -> None:
            for name in names:
                self._put_immutable(self.key(version, name), files[name])
            for name in names:
                head = self.client.head_object(Bucket=self.bucket, Key=self.key(version, name))
                if head.get("Metadata", {}).get("sha256") != sha256(files[name]) or head[
                    "ContentLength"
                ] != len(files[name]):
                    raise RegistryError(f"{self.url(version, name)} does not verify")

        with_retries(upload, self.attempts, self.backoff_s, f"upload of {version}")

    def differing_files(self, version: str, files: dict[str, bytes]) -> list[str]:
        """The names among `files` whose object on S3 is missing, too large for a reader, or
        holds other bytes: read (up to a reader's limit) and compared, since an object's
        recorded sha256 is written by whoever wrote it. S3 failing to answer is retried, then
        S3Unavailable."""
        return with_retries(
            lambda: self._differing(version, files),
            self.attempts,
            self.backoff_s,
            f"read-back of {self.url(version)}",
        )

    def _differing(self, version: str, files: dict[str, bytes]) -> list[str]:
        """One attempt of `differing_files`."""
        differing = []
        for name, data in files.items():
            try:
                held = self._get(version, name)
            except RegistryError:  # past a reader's size limit: not the local file
                differing.append(name)
                continue
            except ClientError as exc:
                if _code(exc) not in ("404", "NoSuchKey"):
                    raise
                differing.append(name)
                continue
            if held != data:
                differing.append(name)
        return differing

    def replace_files(self, version: str, files: dict[str, bytes]) -> None:
        """Overwrite a version's objects with the local registry's bytes (metadata.json last),
        then verify them: the repair of a version damaged on S3."""
        check_version(version)
        names = sorted(files, key=lambda name: name == METADATA_FILE)

        def replace() -> None:
            for name in names:
                data = files[name]
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.key(version, name),
                    Body=data,
                    Metadata={"sha256": sha256(data)},
                )
            if self._differing(version, files):
                raise RegistryError(f"{self.url(version, '')} does not verify after its repair")

        with_retries(replace, self.attempts, self.backoff_s, f"repair of {version}")

    def _copy_to_latest(self, version: str) -> None:
        for name in FILES_IN_ORDER:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=self.key("latest", name),
                CopySource={"Bucket": self.bucket, "Key": self.key(version, name)},
            )

    def move_pointer(self, version: str, partition: str, force: bool = False) -> bool:
        """Point latest at `version` unless that moves it to an older partition (not forced).

        latest/ is copied first, then latest.json is written with If-Match on the ETag read
        before (If-None-Match when there is none). A publisher that loses the race re-reads
        the pointer and decides again; if it then stays put, it restores latest/ to the
        pointer's version, so latest/ and latest.json always end up agreeing.
        """

        check_version(version)

        def attempt() -> bool:
            copied = False
            for _ in range(self.pointer_retries):
                try:
                    current, etag = self.pointer()
                except InvalidPointer as exc:  # replaced below, conditionally on its ETag
                    log.warning("%s", exc)
                    current, etag = None, exc.etag
                if current and current.get("version") == version:
                    return True
                if current and not force and partition < current.get("partition", ""):
                    if copied:
                        self._copy_pointed_version(current["version"], etag)
                    return False
                self._copy_to_latest(version)
                copied = True
                body = json.dumps(
                    {
                        "version": version,
                        "partition": partition,
                        "moved_at": datetime.now(UTC).isoformat(),
                    }
                ).encode()
                condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
                try:
                    self.client.put_object(
                        Bucket=self.bucket, Key=self.key(POINTER), Body=body, **condition
                    )
                    return True
                except ClientError as exc:
                    if _code(exc) not in _LOST_RACE:
                        raise
                    log.info("latest.json changed under us; deciding again")
            raise S3Unavailable(f"latest.json kept changing: gave up after {self.pointer_retries}")

        return with_retries(attempt, self.attempts, self.backoff_s, "moving latest.json")

    def touch_pointer(self) -> bool:
        """Rewrite latest.json as it is, with `refreshed_at`, so its ETag changes: replicas
        poll the pointers' ETags, and a version repaired in place (same id, bytes put back)
        must be read again by every replica that loaded or refused it before. Conditional on
        the ETag read, like a move; False when there is no valid pointer or it moved meanwhile
        (which changed the ETag anyway)."""

        def attempt() -> bool:
            try:
                current, etag = self.pointer()
            except InvalidPointer:
                return False
            if current is None or etag is None:
                return False
            body = json.dumps({**current, "refreshed_at": datetime.now(UTC).isoformat()})
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=self.key(POINTER), Body=body.encode(), IfMatch=etag
                )
            except ClientError as exc:
                if _code(exc) not in _LOST_RACE:
                    raise
                return False
            return True

        return with_retries(attempt, self.attempts, self.backoff_s, "refreshing latest.json")

    def move_candidate(self, pointer: dict[str, object] | None) -> bool:
        """Make candidate.json say what the local registry's does: `pointer` (the local
        candidate.json, already validated) or none. Written conditionally on the ETag read
        before, like latest.json; True when it changed."""

        def attempt() -> bool:
            for _ in range(self.pointer_retries):
                try:
                    current, etag = self.candidate()
                except InvalidPointer as exc:
                    log.warning("%s", exc)
                    current, etag = None, exc.etag
                if pointer is None:
                    if current is None and etag is None:
                        return False
                    self.client.delete_object(Bucket=self.bucket, Key=self.key(CANDIDATE))
                    return True
                check_version(pointer.get("version"))
                if current == pointer:
                    return False
                condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
                try:
                    self.client.put_object(
                        Bucket=self.bucket,
                        Key=self.key(CANDIDATE),
                        Body=json.dumps(pointer).encode(),
                        **condition,
                    )
                    return True
                except ClientError as exc:
                    if _code(exc) not in _LOST_RACE:
                        raise
                    log.info("candidate.json changed under us; deciding again")
            raise S3Unavailable(
                f"candidate.json kept changing: gave up after {self.pointer_retries}"
            )

        return with_retries(attempt, self.attempts, self.backoff_s, "moving candidate.json")

    def _copy_pointed_version(self, version: str, etag: str | None) -> None:
        """Copy `version`, which latest.json pointed at with `etag`, to latest/; then, if the
        pointer moved meanwhile, copy what it points at now, until it holds still. Why: a copy
        made from a pointer read a moment ago can land after the copy of the writer that moved
        the pointer since, leaving latest/ on the older version for good."""
        for _ in range(self.pointer_retries):
            self._copy_to_latest(version)
            try:
                current, now = self.pointer()
            except InvalidPointer as exc:
                log.warning("not checking latest/ again: %s", exc)
                return
            if now == etag or not current:
                return
            version, etag = current["version"], now
        log.warning("latest.json kept moving while latest/ was copied; the next sync mends it")

    def repair_latest_copy(self) -> bool:
        """Make latest/ a faithful copy of the version latest.json points at; True if it was not.

        latest.json is the atomic truth. latest/ is a convenience copy of several objects that
        no single S3 call can replace at once: a publisher killed while copying leaves it torn,
        and the next publish or sync mends it here."""
        try:
            pointer, etag = self.pointer()
        except InvalidPointer as exc:
            log.warning("not repairing latest/: %s", exc)
            return False
        if not pointer:
            return False
        version = pointer["version"]
        for name in FILES_IN_ORDER:
            try:
                copy = self.client.head_object(Bucket=self.bucket, Key=self.key("latest", name))
                source = self.client.head_object(Bucket=self.bucket, Key=self.key(version, name))
            except ClientError as exc:
                if _code(exc) not in ("404", "NoSuchKey"):
                    raise
                break
            if copy["ETag"] != source["ETag"]:
                break
        else:
            return False
        log.warning("latest/ did not match %s; copying it again", version)
        self._copy_pointed_version(version, etag)
        return True

    def delete_version(self, version: str) -> None:
        """metadata.json first: without it the version is no longer listed or complete, so a
        reader never takes a half-deleted version for a whole one."""
        check_version(version)
        for names in ((METADATA_FILE,), (WEIGHTS_FILE, MODEL_FILE, *DOCUMENT_FILES)):
            self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": self.key(version, name)} for name in names]},
            )


@dataclass
class SyncReport:
    uploaded: list[str]
    pointer_moved: bool
    pointer_version: str | None
    candidate_version: str | None = None  # what S3's candidate.json names now (None: none)
    problems: list[str] = field(default_factory=list)  # pointers left alone, and why
    repaired: list[str] = field(default_factory=list)  # pointed versions S3 held otherwise
    # pointed versions not compared with (or not repaired on) S3, and why: the pointers moved
    unverified: list[str] = field(default_factory=list)
    pointer_refused: bool = False  # latest.json names a version S3 cannot have
    # the local latest and candidate pointers this sync brought S3 to (compared afterwards)
    local_pointers: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None)
    # the S3 pointers this sync changed (latest.json, candidate.json): what replicas reading S3
    # load changed, although the local registry may not have moved (`pointer_moved` is also
    # true when S3's latest already named the version)
    pointers_changed: list[str] = field(default_factory=list)


def version_files(local: LocalRegistry, version: str) -> dict[str, bytes]:
    """The artifact's files, and the documents (model card) the version has."""
    folder = local.versions_dir / check_version(version)
    files = {name: (folder / name).read_bytes() for name in FILES_IN_ORDER}
    files.update({n: (folder / n).read_bytes() for n in DOCUMENT_FILES if (folder / n).is_file()})
    return files


def sync(
    local: LocalRegistry,
    mirror: S3Mirror,
    force_pointer: bool = False,
    uploaded: list[str] | None = None,
    changed: list[str] | None = None,
) -> SyncReport:
    """Upload every valid local version S3 lacks, then bring S3's pointer to the local latest
    (never backwards unless forced), then S3's candidate.json to the local candidate (latest
    first: a promotion never leaves S3 with neither pointing at the promoted version). This is
    how a publish made during an outage catches up.

    The local pointers are read again after S3's are written: if another writer moved them
    meanwhile (a rollback while this publish's S3 step was in flight), this sync's write may
    have landed after that writer's own sync and undone it, so S3 is brought to the local
    pointers again, forced: the local registry is the truth S3 mirrors, and a local move is
    already checked (a backfill never moves the local latest backwards).

    `uploaded`: a list each version is appended to as soon as S3 holds it, so a caller whose
    sync failed part way still knows what reached S3; `changed` likewise, each S3 pointer this
    sync changed (`SyncReport.pointers_changed`, over every pass)."""
    uploaded = [] if uploaded is None else uploaded
    changed = [] if changed is None else changed
    report = _sync_once(local, mirror, force_pointer, uploaded, changed)
    for _ in range(mirror.pointer_retries):
        now = (local.pointer(), local.candidate())
        if now == report.local_pointers:
            return report
        log.warning("the local pointers moved while S3 was synced; syncing S3 to them again")
        report = _sync_once(local, mirror, True, uploaded, changed)
    raise S3Unavailable(
        f"the local pointers kept moving: gave up after {mirror.pointer_retries} syncs"
    )


def _sync_once(
    local: LocalRegistry,
    mirror: S3Mirror,
    force_pointer: bool,
    uploaded: list[str],
    changed: list[str],
) -> SyncReport:
    pointer = local.pointer()
    candidate = local.candidate()
    local_pointers = (pointer, candidate)
    on_s3 = set(mirror.versions())
    for version in local.versions():
        if version in on_s3:
            continue
        invalid = local.verify(version)
        if invalid:
            log.warning("not uploading invalid local version %s: %s", version, invalid[0])
            continue
        mirror.upload_version(version, version_files(local, version))
        uploaded.append(version)
    available = on_s3 | set(uploaded)
    problems: list[str] = []
    repaired, unverified, damaged = _repair_pointed(
        local, mirror, (pointer, candidate), on_s3 - set(uploaded)
    )
    available -= set(damaged)  # known wrong on S3: no pointer there names it
    moved = False
    pointer_refused = bool(pointer and pointer["version"] not in available)
    s3_latest = _s3_latest(mirror) if damaged else None  # read only when it matters
    if pointer and pointer["version"] in damaged:
        named = pointer["version"]
        problems.append(
            f"S3's latest.json names {named}, which replicas reading S3 refuse or serve as it "
            f"is there: {damaged[named]}"
            if s3_latest == named
            else f"latest.json not moved: {damaged[named]}"
        )
    elif pointer and pointer_refused:
        problems.append(
            f"latest.json not moved: {pointer['version']} is not on S3 (not a valid local "
            "version: `ltr registry verify` says why)"
        )
    elif pointer:
        partition = str(pointer.get("partition", ""))  # optional in a pointer
        named = s3_latest if damaged else _read_s3_latest(mirror)
        # S3's latest.json naming a version S3 does not hold protects no newer publication:
        # it is replaced, not kept by the never-backwards rule (it failed the sync before)
        dangling = named is not None and named not in available and named not in mirror.versions()
        if dangling:
            log.warning("S3's latest.json names %s, which S3 does not hold; replacing it", named)
        moved = mirror.move_pointer(pointer["version"], partition, force=force_pointer or dangling)
        if moved and named != pointer["version"]:
            _changed(changed, POINTER)
    if candidate is not None and candidate["version"] in damaged:
        problems.append(f"candidate.json cleared on S3: {damaged[candidate['version']]}")
        candidate = None
    elif candidate is not None and candidate["version"] not in available:
        problems.append(
            f"candidate.json cleared on S3: the local candidate {candidate['version']} is not "
            "a valid version, and replicas reading S3 must not interleave a missing one"
        )
        candidate = None
    if mirror.move_candidate(candidate):
        _changed(changed, CANDIDATE)
    if repaired and POINTER not in changed and mirror.touch_pointer():
        # same ids, bytes put back: replicas only re-read a version when a pointer's ETag moves
        _changed(changed, POINTER)
    named_now = pointer["version"] if moved and pointer else s3_latest
    if named_now not in damaged:  # latest/ is not made a copy of what is known wrong
        mirror.repair_latest_copy()
    return SyncReport(
        uploaded,
        moved,
        pointer["version"] if pointer else None,
        candidate["version"] if candidate else None,
        problems,
        repaired=repaired,
        unverified=unverified,
        pointer_refused=pointer_refused,
        local_pointers=local_pointers,
        pointers_changed=list(changed),
    )


def _changed(changed: list[str], name: str) -> None:
    if name not in changed:
        changed.append(name)


def _read_s3_latest(mirror: S3Mirror) -> str | None:
    """The version S3's latest.json names before this sync moves it (retried like the move)."""
    return with_retries(
        lambda: _s3_latest(mirror), mirror.attempts, mirror.backoff_s, "reading latest.json"
    )


def _s3_latest(mirror: S3Mirror) -> str | None:
    """The version S3's latest.json names now (None: none, or unreadable)."""
    try:
        current, _ = mirror.pointer()
    except InvalidPointer:
        return None
    return str(current["version"]) if current else None


def _repair_pointed(
    local: LocalRegistry,
    mirror: S3Mirror,
    pointers: tuple[dict[str, Any] | None, dict[str, Any] | None],
    on_s3: set[str],
) -> tuple[list[str], list[str], dict[str, str]]:
    """The versions the local pointers name, compared on S3 with the local files and
    overwritten where they differ (replicas reading S3 would refuse them, or serve what was
    put there). Only those: they are what replicas load, and each is read whole.

    Returns the repaired versions; notes on those that could not be compared (S3 failing,
    access denied: the pointers still move, as before the read-back existed); and the versions
    found to differ and not repaired, with why: known wrong on S3, so no pointer moves to
    them (a consistent foreign copy would be served)."""
    repaired: list[str] = []
    unverified: list[str] = []
    damaged: dict[str, str] = {}
    named = {p["version"] for p in pointers if p is not None}
    for version in sorted(named & on_s3):
        if local.verify(version):  # an invalid local copy is no reference
            continue
        files = version_files(local, version)
        try:
            differing = mirror.differing_files(version, files)
        except (S3Unavailable, ClientError, BotoCoreError) as exc:
            unverified.append(f"{version} not compared with S3: {exc}")
            log.warning("%s", unverified[-1])
            continue
        if not differing:
            continue
        log.warning(
            "%s on S3 does not match the local registry (%s): replacing it",
            version,
            ", ".join(differing),
        )
        try:
            mirror.replace_files(version, {name: files[name] for name in differing})
        except (S3Unavailable, ClientError, BotoCoreError, RegistryError) as exc:
            damaged[version] = (
                f"{version} on S3 differs from the local registry ({', '.join(differing)}) "
                f"and could not be replaced: {exc}"
            )
            log.warning("%s", damaged[version])
            continue
        repaired.append(version)
    return repaired, unverified, damaged


def mirror_from_settings(settings: Settings) -> S3Mirror | None:
    """The S3 mirror when S3_BUCKET is set; None means the local registry only."""
    client = s3_versions_client(settings)
    if client is None:
        return None
    return S3Mirror(client, settings.s3.bucket, settings.s3.prefix, keys=settings.artifact_keys)
