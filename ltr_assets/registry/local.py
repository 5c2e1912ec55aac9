"""The local model registry: immutable versions, an atomic `latest` pointer, rollback.

Layout under LTR_REGISTRY_DIR:

    versions/<YYYYMMDD_HHMMSS>/ltr_weights.json   flat feature -> weight, sums to 1.0
                              /model.txt          LightGBM model
                              /metadata.json      metrics, gate, window, params, checksums
    latest.json                                   {"version", "partition", ...} (the pointer)
    candidate.json                                the canary candidate (LTR_ROLLOUT=canary)
    history.jsonl                                 candidate promotions, retirements, clearings

Rollout. With `rollout="canary"` a publish points `candidate.json` at the new version and
leaves `latest` alone (serving interleaves the two); `promote(evidence)` then moves latest to
the candidate and clears it, `retire(evidence)` clears it, and a rollback clears it too. When
no version is live yet (no latest.json), a canary publish moves latest instead: there is
nothing to compare with. `rollout="direct"` moves latest, as before canaries existed.

A version is written into a staging folder, verified, then renamed into versions/ in one step,
and only then does the pointer move: a reader never sees a half-written version. A version of an
older partition (a backfill) is published but does not move the pointer backwards unless forced.

A version id is `YYYYMMDD_HHMMSS` (UTC) and nothing else: every method taking a version, and the
pointer read back from disk, refuse anything else (a path, a trailing slash, `..`), so no name can
reach outside versions/. A deleted version is first renamed into `.trash/` (one atomic step for a
reader), then removed; what a killed writer leaves behind is cleaned by the next publish or by
`ltr registry verify --repair` (`repair()`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from ltr_assets.lake import atomic
from ltr_core.artifacts.format import (
    CHECKSUMMED_FILES,
    DOCUMENT_FILES,
    METADATA_FILE,
    MODEL_FILE,
    TRASH_DIR,
    VERSION_FORMAT,
    WEIGHTS_FILE,
    InvalidPointer,
    RegistryError,
    UnreadableFile,
    check_servable,
    check_version,
    parse_json,
    read_file,
    scorer_to_record,
    sha256,
    validate_artifact,
    weights_json,
)
from ltr_core.artifacts.signing import (
    SIGNATURE_FIELD,
    ArtifactKeys,
    BadSignature,
    check_signature,
    sign,
)
from ltr_core.artifacts.store import LocalVersions
from ltr_core.features import FEATURES
from ltr_core.vocabulary import Rollout

log = logging.getLogger("ltr.registry")
HISTORY_FILE = "history.jsonl"
CandidateAction = Literal[
    "promoted", "retired", "cleared_by_rollback", "replaced", "cleared_by_publish"
]


@dataclass(frozen=True)
class PublishResult:
    version: str
    path: Path
    latest_moved: bool
    previous_latest: str | None
    reason: str
    cleaned: list[str] = field(default_factory=list)  # leftovers of killed writers removed
    candidate_set: bool = False  # canary: the version became the candidate, latest stayed


def _check_expected(version: str, expected: str | None) -> None:
    if expected is not None and version != expected:
        raise RegistryError(
            f"the candidate is {version}, not {expected}: it changed since it was compared"
        )


class LocalRegistry(LocalVersions):
    """`keys`: the signing key signs every version published here; verify keys make every
    read (load, verify, rollback, publish's own check) require a valid signature."""

    def __init__(
        self, root: Path, weights_path: Path | None = None, keys: ArtifactKeys | None = None
    ) -> None:
        super().__init__(root, weights_path, keys)
        self._staging = self.root / ".staging"
        self._trash = self.root / TRASH_DIR

    def baseline_for(self, partition: str) -> str | None:
        """The version a candidate for `partition` must not regress against: the live one when
        it is not newer than the partition (the nightly case, or a rollback's), else, for a
        backfill, the last build of the newest day at or before it (`_nights`). A live model
        trained on later days would have seen the backfilled day's test groups and make an
        unfair yardstick."""
        pointer = self.pointer()
        if pointer and pointer.get("partition", "") <= partition:
            version: str = pointer["version"]
            return version
        earlier = [night for night in self._nights() if night[0] <= partition]
        return max(earlier)[1] if earlier else None  # the newest day, then the last build

    # -- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".lock"
        try:  # never through a link, never truncated: a planted link must not empty its target
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise RegistryError(
                f"{path} is not a regular file ({exc.strerror}): remove it by hand "
                "(nothing was changed)"
            ) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # say why nothing happens yet, then wait
                log.warning("waiting for the registry lock: another writer holds %s", self.root)
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _check_pointer_files(self) -> None:
        """Under the lock, before a pointer moves: each pointer path is a file or absent. A
        folder there (or anything else) cannot be replaced or removed, and finding out half-way
        would leave one pointer moved and the other not."""
        for path in (self.pointer_path, self.candidate_path, self.root / HISTORY_FILE):
            if os.path.lexists(path) and (path.is_symlink() or not path.is_file()):
                raise RegistryError(
                    f"{path} is not a regular file: remove it by hand (nothing was changed)"
                )
        _check_own_file(self.root / HISTORY_FILE)  # appended to in place, unlike the pointers
        self._finish_promotion()

    def _finish_promotion(self) -> str | None:
        """Under the lock: finish a promotion a killed process stopped half-way (latest.json
        and candidate.json name the same version): record it in the history as `promote` does,
        with the evidence latest.json carries, unless the history has it (or latest.json records
        no promotion or rollback that moved it: a candidate.json written by hand); then remove
        candidate.json. The version promoted, or None."""
        version = self.interrupted_promotion()
        if version is None:
            return None
        last = next(reversed(self.history()), None)
        latest = self.pointer() or {}
        promoted = latest.get("promoted")
        evidence = promoted.get("evidence") if isinstance(promoted, dict) else None
        if not isinstance(evidence, dict):  # a rollback to the candidate, stopped alike
            evidence = {"rolled_back_to": version} if "rolled_back" in latest else None
        recorded = last and last.get("action") == "promoted" and last.get("version") == version
        if evidence is not None and not recorded:  # (no promotion moved latest: none recorded)
            self._record("promoted", version, {**evidence, "finished_after_interruption": True})
        self.candidate_path.unlink(missing_ok=True)
        log.warning("finished the promotion of %s, which a killed process had left", version)
        return version

    def _new_version(self, now: datetime) -> str:
        """UTC YYYYMMDD_HHMMSS; the next free second if that one is taken."""
        while True:
            version = now.strftime(VERSION_FORMAT)
            if not (self.versions_dir / version).exists():
                return version
            now += timedelta(seconds=1)

    def _previous_pointer(self) -> tuple[dict[str, Any] | None, str]:
        """The pointer before a move; a malformed one counts as none (the move repairs it)."""
        try:
            return self.pointer(), ""
        except InvalidPointer as exc:
            log.warning("replacing a malformed pointer: %s", exc)
            return None, f"; replaced a malformed latest.json ({exc})"

    def publish(
        self,
        weights: Mapping[str, float],
        model_text: str,
        metadata: Mapping[str, Any],
        partition: str,
        force: bool = False,
        now: datetime | None = None,
        documents: Callable[[Mapping[str, Any]], Mapping[str, bytes]] | None = None,
        rollout: Rollout = "direct",
        replace_candidate: bool = True,
    ) -> PublishResult:
        """Write a new immutable version, then move `latest` unless it would go backwards; with
        `rollout="canary"` and a live version, point `candidate.json` at it instead (a
        candidate it replaces is recorded in the history as "replaced"). With
        `replace_candidate=False` a candidate already set stays (it is still being compared):
        the version is published and no pointer moves; but a re-run of the candidate's own
        night replaces it, even after later nights were published (the operator re-ran that
        day, e.g. after fixing its data, so the new build is the one to compare; the
        comparison starts over).

        `gated_scorer` (or the candidate summary's `scorer`) is recorded as the version's
        `gated_scorer`: serving refuses a version gated for another scorer than it runs.
        `documents` renders files of DOCUMENT_FILES (the model card) from the version's full
        metadata (so they can name the version); they are checksummed with the rest. With a
        signing key, metadata.json carries a signature over all of it (`signing`).
        """
        weights_bytes = weights_json(weights)
        model_bytes = model_text.encode()
        gated = scorer_to_record(metadata)
        with self._lock():
            self._check_pointer_files()
            cleaned = self._clean_leftovers()
            for path in cleaned:  # a publish reports them in its log
                log.warning("removed the leftover of a killed writer: %s", path)
            _own_folder(self._staging)
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            version = self._new_version(now or datetime.now(UTC))
            full_metadata = {
                **metadata,
                "version": version,
                "partition": partition,
                "published_at": datetime.now(UTC).isoformat(),
                "features": list(FEATURES),
                "checksums": {WEIGHTS_FILE: sha256(weights_bytes), MODEL_FILE: sha256(model_bytes)},
            }
            if gated is not None:
                full_metadata["gated_scorer"] = gated
            extra = dict(documents(full_metadata)) if documents is not None else {}
            unknown = set(extra) - set(DOCUMENT_FILES)
            if unknown:
                raise RegistryError(f"not a registry document: {sorted(unknown)}")
            full_metadata["checksums"].update({name: sha256(b) for name, b in extra.items()})
            full_metadata.pop(SIGNATURE_FIELD, None)
            if self.keys.signing is not None:  # last: it covers everything above
                full_metadata[SIGNATURE_FIELD] = sign(full_metadata, self.keys.signing)
            staging = self._staging / f"{version}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
            staging.mkdir()
            for name, data in extra.items():
                atomic.write_bytes(staging / name, data)
            atomic.write_bytes(staging / WEIGHTS_FILE, weights_bytes)
            atomic.write_bytes(staging / MODEL_FILE, model_bytes)
            atomic.write_json(staging / METADATA_FILE, full_metadata)
            try:
                validate_artifact(
                    (staging / WEIGHTS_FILE).read_bytes(),
                    (staging / MODEL_FILE).read_bytes(),
                    json.loads((staging / METADATA_FILE).read_text()),
                    self.keys,
                )
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            target = self.versions_dir / version
            os.rename(staging, target)  # atomic: the version appears whole or not at all
            previous, note = self._previous_pointer()
            previous_version = previous["version"] if previous else None
            if previous and not force and partition < previous.get("partition", ""):
                return PublishResult(
                    version,
                    target,
                    False,
                    previous_version,
                    f"partition {partition} is older than latest's {previous['partition']}: "
                    "published, latest not moved",
                    cleaned,
                )
            pending = self._candidate_or_none() if rollout == "canary" and previous else None
            # a new build of the candidate's own night replaces it, whatever came after it
            rebuild = pending is not None and pending.get("partition") == partition
            later = None if force or rebuild else self._later_version(partition, version)
            if later is not None:  # a backfill: a later night published already
                return PublishResult(
                    version,
                    target,
                    False,
                    previous_version,
                    f"partition {partition} is older than {later[1]}'s {later[0]} (a later "
                    "night): a backfill, published; no pointer moved" + note,
                    cleaned,
                )
            if rollout == "canary" and previous is not None:
                replaced = pending
                if not replace_candidate and replaced is not None and not rebuild:
                    return PublishResult(
                        version,
                        target,
                        False,
                        previous_version,
                        f"published; candidate {replaced['version']} is still being compared "
                        f"and stays the candidate; latest stays at {previous_version}" + note,
                        cleaned,
                    )
                with self._withdrawn_on_failure(version):
                    self._write_pointer(self.candidate_path, version, partition)
                if replaced is not None and replaced["version"] != version:
                    self._record("replaced", replaced["version"], {"by": version})
                return PublishResult(
                    version,
                    target,
                    False,
                    previous_version,
                    f"candidate set (canary); latest stays at {previous_version}" + note,
                    cleaned,
                    candidate_set=True,
                )
            with self._withdrawn_on_failure(version):
                self._move_pointer(version, partition, dict(weights))
            # a candidate was compared with the version live before: that comparison is void
            cleared = self._clear_candidate(
                "cleared_by_publish", {"by": version, "latest_was": previous_version}
            )
        if cleared is not None:
            note += f"; candidate {cleared} cleared (its comparison was with the version before)"
        return PublishResult(
            version, target, True, previous_version, "latest moved" + note, cleaned
        )

    def rollback(self, version: str, scorer: str | None = None) -> PublishResult:
        """Point `latest` at an existing version after validating it fully and, with `scorer`
        (LTR_SCORER), checking that serving would accept it (`check_servable`).

        Validation and the move happen under the registry's lock, so a concurrent publish's
        retention cannot delete the version between the two."""
        check_version(version)
        with self._lock():
            self._check_pointer_files()
            artifact = self.load(version)
            if scorer is not None:
                check_servable(artifact.metadata, scorer)
            previous, note = self._previous_pointer()
            candidate = self._candidate_version()
            self._move_pointer(
                version,
                artifact.metadata.get("partition", ""),
                artifact.weights,
                # what made it live: the live version's age then blames the rollback, not nights
                rolled_back={"from": previous["version"] if previous else None},
            )
            # rolling "back" to the candidate itself makes it live: recorded as promoted by hand
            promoted = candidate == version
            action: CandidateAction = "promoted" if promoted else "cleared_by_rollback"
            cleared = self._clear_candidate(action, {"rolled_back_to": version})
        if promoted:
            note += f"; the candidate {version} promoted by this rollback, without online evidence"
        elif cleared:
            note += f"; candidate {cleared} cleared"
        return PublishResult(
            version,
            self.versions_dir / version,
            True,
            previous["version"] if previous else None,
            f"rolled back to {version}{note}",
        )

    def promote(
        self,
        evidence: Mapping[str, Any],
        scorer: str | None = None,
        expected: str | None = None,
    ) -> PublishResult:
        """Move latest to the candidate and clear the candidate, in one step under the lock.

        The candidate is validated fully first (and, with `scorer`, checked servable, as a
        rollback is); `evidence` (the interleaving result, who decided) is recorded in the new
        latest.json and in the history. RegistryError when there is no candidate, or when
        `expected` is given and the candidate is another version (the evidence is not its)."""
        evidence = dict(evidence)
        with self._lock():
            self._check_pointer_files()
            candidate = self.candidate()  # InvalidPointer: refuse, nothing moves
            if candidate is None:
                raise RegistryError("there is no candidate to promote")
            version = candidate["version"]
            _check_expected(version, expected)
            artifact = self.load(version)
            if scorer is not None:
                check_servable(artifact.metadata, scorer)
            previous, note = self._previous_pointer()
            self._move_pointer(
                version,
                artifact.metadata.get("partition", ""),
                artifact.weights,
                promoted={
                    "evidence": evidence,
                    "previous": previous["version"] if previous else None,
                },
            )
            self._record("promoted", version, evidence)  # before the candidate goes: a kill
            self.candidate_path.unlink(missing_ok=True)  # between is finished from the record
        return PublishResult(
            version,
            self.versions_dir / version,
            True,
            previous["version"] if previous else None,
            f"candidate {version} promoted to latest{note}",
        )

    def retire(self, evidence: Mapping[str, Any], expected: str | None = None) -> str:
        """Clear the candidate (latest stays), recording `evidence` in the history; the
        retired version. RegistryError when there is no candidate, or when `expected` is given
        and the candidate is another version."""
        with self._lock():
            self._check_pointer_files()
            if expected is not None:
                current = self.candidate()
                if current is not None:
                    _check_expected(current["version"], expected)
            cleared = self._clear_candidate("retired", dict(evidence))
        if cleared is None:
            raise RegistryError("there is no candidate to retire")
        return cleared

    def history(self) -> list[dict[str, Any]]:
        """What happened to candidates, oldest first (history.jsonl; unreadable lines skipped)."""
        path = self.root / HISTORY_FILE
        if not path.is_file():
            return []
        try:
            text = read_file(path).decode(errors="replace")
        except UnreadableFile:  # the history exists: an empty one would hide its decisions
            raise
        except RegistryError as exc:  # not a regular file, or past the size a reader takes
            log.warning("candidate history not read: %s", exc)
            return []
        entries = []
        for line in text.splitlines():
            try:
                entry = parse_json(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    def pointed_versions(self) -> dict[str, str]:
        """pointer file name -> the version it names, for every pointer there is (latest and
        the candidate). InvalidPointer when one is malformed (what it names is then unknown)."""
        named = {}
        latest = self.latest_version()
        if latest:
            named[self.pointer_path.name] = latest
        candidate = self.candidate_version()
        if candidate:
            named[self.candidate_path.name] = candidate
        return named

    def _later_version(self, partition: str, version: str) -> tuple[str, str] | None:
        """The newest partition of another version, and that version, when it is newer than
        `partition`: the nights after it were published already (kept, live or a candidate),
        so `partition` is a backfill."""
        newest = self.newest_night(excluding=version)
        return newest if newest is not None and newest[0] > partition else None

    def newest_night(self, excluding: str | None = None) -> tuple[str, str] | None:
        """The newest partition any version was trained for, and its last build: how far the
        nights have got, which retention keeps (`prune_versions`) so a later backfill is still
        known as one."""
        nights = [night for night in self._nights() if night[1] != excluding]
        return max(nights) if nights else None

    def _nights(self) -> list[tuple[str, str]]:
        """(partition, version) of every version that can count: versions whose metadata
        cannot be read do not, nor, with verify keys set, unsigned ones (a planted folder with
        a far-future partition would otherwise make every night a backfill, or be a backfill's
        baseline the gate then cannot load)."""
        nights = []
        for version in self.versions():
            try:
                metadata = self.metadata(version)
                check_signature(metadata, self.keys)
            except (RegistryError, OSError, BadSignature):  # unreadable, or not signed
                continue
            partition = metadata.get("partition")
            if isinstance(partition, str):
                nights.append((partition, version))
        return nights

    def _candidate_or_none(self) -> dict[str, Any] | None:
        """The candidate pointer; a malformed one counts as none (it is being replaced)."""
        try:
            return self.candidate()
        except InvalidPointer as exc:
            log.warning("replacing a malformed candidate pointer: %s", exc)
            return None

    def _candidate_version(self) -> str | None:
        """The candidate's version, None when there is none or its pointer is malformed."""
        try:
            candidate = self.candidate()
        except InvalidPointer:
            return None
        return str(candidate["version"]) if candidate else None

    def _clear_candidate(self, action: CandidateAction, evidence: dict[str, Any]) -> str | None:
        """Under the lock: remove candidate.json, recording why; the version it named."""
        if not self.candidate_path.exists():
            return None
        try:  # as written: a rollback to the candidate has just made latest name it too
            candidate = self._read_pointer(self.candidate_path)
            version: str | None = candidate["version"] if candidate else None
        except InvalidPointer as exc:
            log.warning("clearing a malformed candidate pointer: %s", exc)
            version = None
        self.candidate_path.unlink(missing_ok=True)
        self._record(action, version or "?", evidence)
        return version or "?"

    def _record(self, action: CandidateAction, version: str, evidence: Mapping[str, Any]) -> None:
        """Append one line to history.jsonl (flushed and fsynced; a reader skips a torn one)."""
        entry = {
            "action": action,
            "version": version,
            "at": datetime.now(UTC).isoformat(),
            "evidence": dict(evidence),
        }
        line = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.root / HISTORY_FILE, flags, 0o644)
        if os.fstat(fd).st_nlink > 1:  # linked in after the check: never written through
            os.close(fd)
            raise RegistryError(_hard_linked(self.root / HISTORY_FILE))
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def delete_version(self, version: str) -> None:
        """Remove a version (retention). Never one a pointer names at the moment of deletion
        (checked under the lock that rollback and publish move pointers under), and nothing at
        all while a pointer is malformed (what it meant to protect is unknown). The folder is
        renamed into .trash/ first, so a reader sees the whole version or none of it."""
        check_version(version)
        with self._lock():
            for pointer, named in self.pointed_versions().items():  # InvalidPointer: refuse
                if named == version:
                    raise RegistryError(f"{version} is named by {pointer}; it is not deleted")
            self._discard(self.versions_dir / version)

    def repair(self) -> list[str]:
        """Remove what killed writers left behind (see `_clean_leftovers`) and finish a
        promotion one stopped half-way; what was removed, for the caller to report (`ltr
        registry verify --repair` prints each)."""
        with self._lock():
            finished = self._finish_promotion()
            cleaned = self._clean_leftovers()
        if finished is None:
            return cleaned
        return [f"{self.candidate_path} (finished the promotion of {finished})", *cleaned]

    def _discard(self, folder: Path) -> None:
        """Rename into .trash/ (atomic for readers), then delete."""
        _own_folder(self._trash)
        doomed = self._trash / f"{folder.name}.{uuid.uuid4().hex[:8]}"
        try:
            os.rename(folder, doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed, ignore_errors=True)

    def _write_pointer(self, path: Path, version: str, partition: str, **extra: Any) -> None:
        check_version(version)
        pointer = {
            "version": version,
            "partition": partition,
            "moved_at": datetime.now(UTC).isoformat(),
        }
        atomic.write_json(path, {**pointer, **extra})

    def _move_pointer(
        self, version: str, partition: str, weights: dict[str, float], **extra: Any
    ) -> None:
        """latest.json and the flat WEIGHTS_PATH copy move together or not at all: the flat
        file is written (and fsynced) beside its place first, then the pointer moves, then the
        flat file is renamed into place. A full disk under either leaves both as they were, so
        a publication that fails here has not gone live anywhere."""
        if self.weights_path is None:
            self._write_pointer(self.pointer_path, version, partition, **extra)
            return
        with atomic.writing_file(self.weights_path) as flat:
            with open(flat, "wb") as handle:
                handle.write(weights_json(weights))
                handle.flush()
                os.fsync(handle.fileno())
            self._write_pointer(self.pointer_path, version, partition, **extra)

    @contextlib.contextmanager
    def _withdrawn_on_failure(self, version: str) -> Iterator[None]:
        """A new version whose pointer could not be written (a full disk) was never published:
        its folder goes (through the trash), so `ltr registry sync` does not mirror a build
        that nothing serves and the night's re-run is its partition's only one. Kept if a
        pointer names it after all, or the pointers cannot be read."""
        try:
            yield
        except BaseException:
            try:
                named = version in self.pointed_versions().values()
            except (InvalidPointer, OSError):
                named = True
            if not named:
                try:
                    self._discard(self.versions_dir / version)
                except OSError as exc:  # the same full disk, say: retention removes it later
                    log.warning("could not remove the unpublished version %s: %s", version, exc)
                else:
                    log.warning("removed %s: its pointer could not be written", version)
            raise

    def _clean_leftovers(self) -> list[str]:
        """Under the lock, so no writer is halfway: temporary files of killed atomic writes of
        latest.json and WEIGHTS_PATH, staging folders, the trash, and version folders that a
        killed deletion left incomplete (a version is renamed into place whole, so an
        incomplete one that latest does not name can only be a half-deleted one)."""
        removed: list[Path] = []
        tmp_patterns = [
            (self.root, f".{self.pointer_path.name}.*.tmp"),
            (self.root, f".{self.candidate_path.name}.*.tmp"),
        ]
        if self.weights_path is not None:
            tmp_patterns.append((self.weights_path.parent, f".{self.weights_path.name}.*.tmp"))
        for folder, pattern in tmp_patterns:
            if folder.is_dir():
                for leftover in folder.glob(pattern):
                    leftover.unlink(missing_ok=True)
                    removed.append(leftover)
        for folder in (self._staging, self._trash):
            if folder.is_symlink():  # planted: the link goes, never what it points at
                if _remove(folder):
                    removed.append(folder)
            elif folder.is_dir():
                for leftover in folder.iterdir():
                    if _remove(leftover):
                        removed.append(leftover)
        try:
            pointed = set(self.pointed_versions().values())
        except InvalidPointer:
            pass  # incomplete folders are kept while what a pointer names is unknown
        else:
            for version in self.versions():
                folder = self.versions_dir / version
                complete = all(
                    (folder / name).is_file() for name in (*CHECKSUMMED_FILES, METADATA_FILE)
                )
                if version not in pointed and not complete:
                    try:
                        self._discard(folder)
                    except OSError as exc:  # housekeeping: never what fails a publish
                        log.warning("could not remove the leftover %s: %s", folder, exc)
                        continue
                    removed.append(folder)
        return [str(path) for path in removed]


def _check_own_file(path: Path) -> None:
    """A file the registry appends to must be its own: a hard link shares its bytes with a
    file elsewhere, which each append would write into."""
    if path.is_file() and path.stat().st_nlink > 1:
        raise RegistryError(_hard_linked(path))


def _hard_linked(path: Path) -> str:
    return f"{path} is hard-linked to another file: replace it by a copy (nothing was changed)"


def _own_folder(path: Path) -> None:
    """The registry's own working folder (staging, trash) as a real folder in the registry:
    a link or a file planted in its place is removed first, so nothing written or deleted
    there lands outside the registry."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        log.warning("removing %s: not the registry's own folder", path)
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)


def _remove(path: Path) -> bool:
    """Delete a leftover (a link itself, never what it points at; a folder with everything in
    it); whether it is gone."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
    except OSError as exc:  # housekeeping: reported, never what fails the caller
        log.warning("could not remove the leftover %s: %s", path, exc)
    return not os.path.lexists(path)
