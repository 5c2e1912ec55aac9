"""A store that cannot be read just now is retried; an invalid artifact is not."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ltr_core.artifacts.store import LocalVersions
from ltr_core.settings import Settings
from ltr_serving.metrics import ServingMetrics
from ltr_serving.state import ServingState
from ltr_serving.store import StoredArtifact, StoreError, StoreUnavailable
from tests.support.serving import weights_for


class ScriptedStore:
    """Answers load() from a script of outcomes; the marker never changes (same pointer)."""

    source: Literal["file", "s3"] = "s3"

    def __init__(self, outcomes: list[StoredArtifact | Exception]) -> None:
        self.outcomes = outcomes
        self.loads = 0

    def current_marker(self) -> str:
        return "etag-1"

    def load(self) -> StoredArtifact:
        outcome = self.outcomes[min(self.loads, len(self.outcomes) - 1)]
        self.loads += 1
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def load_candidate(self) -> StoredArtifact | None:
        return None


def _state(store: ScriptedStore, tmp_path: Path) -> ServingState:
    env = {"LTR_REGISTRY_DIR": str(tmp_path), "WEIGHTS_PATH": str(tmp_path / "w.json")}
    settings = Settings.from_env(env)
    return ServingState(store, settings, ServingMetrics())


def _live_version(state: ServingState) -> str | None:
    return state.live.version if state.live else None


def _artifact(version: str) -> StoredArtifact:
    origin = f"s3://bucket/ltr/{version}"
    return StoredArtifact(
        version, weights_for(1), None, "s3", origin, metadata={"gated_scorer": "weights"}
    )


def test_an_unreadable_store_is_retried_by_the_next_poll(tmp_path: Path) -> None:
    store = ScriptedStore([StoreUnavailable("EndpointConnectionError"), _artifact("v1")])
    state = _state(store, tmp_path)
    first = state.reload("startup")
    assert not first.ok and first.retryable and state.live is None
    attempt = state.poll_once()  # same marker, but the failure was the store's, not the artifact's
    assert attempt is not None and attempt.ok and _live_version(state) == "v1"


def test_an_invalid_artifact_is_not_retried_until_latest_changes(tmp_path: Path) -> None:
    store = ScriptedStore([StoreError("checksum of model.txt does not match"), _artifact("v1")])
    state = _state(store, tmp_path)
    assert not state.reload("startup").retryable
    assert state.poll_once() is None and store.loads == 1


def test_local_io_errors_are_retryable(tmp_path: Path) -> None:
    from ltr_serving.store import LocalWeightStore

    registry = LocalVersions(tmp_path / "reg")
    registry.root.mkdir()
    registry.pointer_path.write_text('{"version": "20261126_000000", "partition": "x"}')
    (registry.versions_dir / "20261126_000000").mkdir(parents=True)
    metadata = registry.versions_dir / "20261126_000000" / "metadata.json"
    metadata.symlink_to(metadata)  # opening it fails with an I/O error (ELOOP), as EIO would
    store = LocalWeightStore(registry.root, tmp_path / "w.json", "weights")
    state = _state(store, tmp_path)  # type: ignore[arg-type]
    attempt = state.reload("startup")
    assert not attempt.ok and attempt.retryable, attempt.error
    # a directory where the file should be is no I/O error: the version is refused
    metadata.unlink()
    metadata.mkdir()
    attempt = state.reload("api")
    assert not attempt.ok and not attempt.retryable
    assert attempt.error is not None and "not a regular file" in attempt.error


class MarkedStore(ScriptedStore):
    """A ScriptedStore whose marker and candidate the test sets as it goes."""

    def __init__(self, outcomes: list[StoredArtifact | Exception]) -> None:
        super().__init__(outcomes)
        self.marker = "etag-1"
        self.candidate: StoredArtifact | Exception | None = None
        self.candidate_reads = 0

    def current_marker(self) -> str:
        return self.marker

    def load_candidate(self) -> StoredArtifact | None:
        self.candidate_reads += 1
        if isinstance(self.candidate, Exception):
            raise self.candidate
        return self.candidate


def test_an_outage_that_ends_on_the_last_marker_loaded_is_retried(tmp_path: Path) -> None:
    """latest.json denied for a while (its own marker, loads failing as retryable), then back
    with nothing new: the poller tries again, and health is not left on the old error."""
    denied = StoreUnavailable("AccessDenied")
    store = MarkedStore([_artifact("v1"), denied, denied, _artifact("v1")])
    state = _state(store, tmp_path)
    assert state.reload("startup").ok
    store.marker = "latest.json:403"
    for _ in range(2):
        attempt = state.poll_once()
        assert attempt is not None and not attempt.ok and attempt.retryable
    store.marker = "etag-1"  # S3 answers again; latest.json as it was
    attempt = state.poll_once()
    assert attempt is not None and attempt.ok
    assert state.last_attempt is not None and state.last_attempt.ok and store.loads == 4


def test_an_unreadable_candidate_is_retried_alone_not_with_the_live_version(
    tmp_path: Path,
) -> None:
    """candidate.json denied (a replica without s3:ListBucket): each poll used to reload and
    rebuild the live version as well."""
    store = MarkedStore([_artifact("v1")])
    store.marker = "etag-1+candidate.json:403"
    store.candidate = StoreUnavailable("AccessDenied")
    state = _state(store, tmp_path)
    assert state.reload("startup").ok and _candidate(state) == ("unavailable", None)
    for _ in range(3):
        assert state.poll_once() is None
    assert store.loads == 1 and store.candidate_reads == 4
    store.candidate = _artifact("v2")  # readable now
    assert state.poll_once() is None
    assert _candidate(state) == ("loaded", "v2")
    assert state.live is not None and state.live.candidate is not None
    assert store.loads == 1
    state.poll_once()
    assert store.candidate_reads == 5  # loaded: not read again


def _candidate(state: ServingState) -> tuple[str, str | None]:
    return state.candidate_status.state, state.candidate_status.version
