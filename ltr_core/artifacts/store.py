"""Reading a local registry folder: the `latest` pointer and fully validated versions.

Layout under LTR_REGISTRY_DIR:

    versions/<YYYYMMDD_HHMMSS>/ltr_weights.json   flat feature -> weight, sums to 1.0
                              /model.txt          LightGBM model
                              /metadata.json      metrics, gate, window, params, checksums
    latest.json                                   {"version", "partition", ...} (the pointer)
    candidate.json                                the canary candidate's pointer (same rules),
                                                  only while a candidate awaits promote/retire

Serving reads through `LocalVersions`; the pipeline's `LocalRegistry` adds publishing, rollback
and retention on top of it. Every method taking a version, and the pointer read back from disk,
refuse anything that is not a version id, so no name can reach outside versions/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ltr_core.artifacts.format import (
    CANDIDATE_POINTER,
    DOCUMENT_FILES,
    LATEST_POINTER,
    METADATA_FILE,
    MODEL_FILE,
    TRASH_DIR,
    WEIGHTS_FILE,
    Artifact,
    InvalidPointer,
    RegistryError,
    check_pointer,
    check_version,
    checked_artifact,
    is_version,
    parse_json,
    read_file,
    sha256,
)
from ltr_core.artifacts.signing import (
    ArtifactKeys,
)


class LocalVersions:
    """Read-only view of a registry folder. `keys` with verify keys make every read require
    a valid signature."""

    def __init__(
        self, root: Path, weights_path: Path | None = None, keys: ArtifactKeys | None = None
    ) -> None:
        self.root = Path(root)
        self.weights_path = weights_path
        self.keys = keys or ArtifactKeys()
        self.versions_dir = self.root / "versions"
        self.pointer_path = self.root / LATEST_POINTER
        self.candidate_path = self.root / CANDIDATE_POINTER
        self._trash = self.root / TRASH_DIR

    def pointer(self) -> dict[str, Any] | None:
        """The latest pointer; None when there is none. InvalidPointer when latest.json does
        not name a version id (not JSON, not an object, a path, a trailing slash...)."""
        return self._read_pointer(self.pointer_path)

    def candidate(self) -> dict[str, Any] | None:
        """The candidate pointer (candidate.json), read back with latest's rules; None when
        no candidate awaits promotion, also when latest.json names it already: a promotion
        stopped between moving latest and removing candidate.json (`interrupted_promotion`)."""
        candidate = self._read_pointer(self.candidate_path)
        if candidate is not None and candidate["version"] == self._latest_or_none():
            return None
        return candidate

    def interrupted_promotion(self) -> str | None:
        """The version both latest.json and candidate.json name, if they do: a promotion killed
        after latest moved and before candidate.json was removed. The candidate is live; the
        registry's next write finishes the promotion."""
        try:
            candidate = self._read_pointer(self.candidate_path)
        except InvalidPointer:
            return None
        if candidate is not None and candidate["version"] == self._latest_or_none():
            return str(candidate["version"])
        return None

    def _latest_or_none(self) -> str | None:
        try:
            return self.latest_version()
        except InvalidPointer:
            return None

    @staticmethod
    def _read_pointer(path: Path) -> dict[str, Any] | None:
        try:
            raw = read_file(path)
        except FileNotFoundError:
            return None
        except RegistryError as exc:  # not a regular file, or too big: not a pointer
            raise InvalidPointer(f"{path} cannot be read: {exc}") from None
        try:
            pointer = parse_json(raw)
        except ValueError as exc:
            raise InvalidPointer(f"{path} is not JSON: {exc}") from None
        return check_pointer(pointer, str(path))

    def latest_version(self) -> str | None:
        pointer = self.pointer()
        return pointer["version"] if pointer else None

    def candidate_version(self) -> str | None:
        pointer = self.candidate()
        return pointer["version"] if pointer else None

    def versions(self) -> list[str]:
        """Version folders, oldest first; anything else under versions/ is not a version."""
        if not self.versions_dir.exists():
            return []
        return sorted(
            p.name for p in self.versions_dir.iterdir() if is_version(p.name) and p.is_dir()
        )

    def metadata(self, version: str) -> dict[str, Any]:
        path = self.versions_dir / check_version(version) / METADATA_FILE
        try:
            metadata = parse_json(read_file(path))
        except FileNotFoundError:
            if path.parent.is_dir():  # a folder without its manifest: not "no such version"
                raise RegistryError(
                    f"version {version} is incomplete: its {METADATA_FILE} is missing"
                ) from None
            raise RegistryError(f"version {version} does not exist in {self.root}") from None
        except RegistryError as exc:
            raise RegistryError(f"version {version}: {exc}") from None
        except ValueError as exc:
            raise RegistryError(f"version {version}: {METADATA_FILE} is not JSON: {exc}") from None
        if not isinstance(metadata, dict):
            raise RegistryError(
                f"version {version}: {METADATA_FILE} is {type(metadata).__name__}, not an object"
            )
        return metadata

    def load(self, version: str) -> Artifact:
        """Read and fully validate a version (checksums before the model is parsed)."""
        metadata = self.metadata(version)
        folder = self.versions_dir / version
        try:
            weights_bytes = read_file(folder / WEIGHTS_FILE)
            model_bytes = read_file(folder / MODEL_FILE)
        except FileNotFoundError as exc:
            raise RegistryError(f"version {version} is incomplete: {exc.filename}") from None
        except RegistryError as exc:
            raise RegistryError(f"version {version}: {exc}") from None
        return checked_artifact(
            version, weights_bytes, model_bytes, metadata, f"version {version}", self.keys
        )

    def verify(self, version: str) -> list[str]:
        """Problems with a version; empty when it is valid. InvalidVersion for a bad name.
        Documents (the model card) listed in the checksums must be there and match."""
        check_version(version)
        try:
            artifact = self.load(version)
        except RegistryError as exc:
            return [str(exc)]
        problems = []
        checksums = artifact.metadata["checksums"]
        for name in DOCUMENT_FILES:
            if name not in checksums:
                continue
            try:
                data = read_file(self.versions_dir / version / name)
            except FileNotFoundError:
                problems.append(f"version {version}: {name} is listed in checksums but missing")
                continue
            except RegistryError as exc:
                problems.append(f"version {version}: {exc}")
                continue
            if sha256(data) != checksums[name]:
                problems.append(f"version {version}: checksum of {name} does not match")
        return problems
