"""The canary rollout in the local registry: a candidate pointer beside latest, promote, retire,
rollback clearing it, and retention keeping what either pointer names."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ltr_assets.registry import publication
from ltr_assets.registry.local import LocalRegistry
from ltr_core.artifacts.format import InvalidPointer, RegistryError
from ltr_core.artifacts.signing import ArtifactKeys, SigningKey
from tests.support.artifacts import tiny_model_text, weights

META = {"gated_scorer": "weights"}


def _now(second: int) -> datetime:
    return datetime(2026, 11, 26, 2, 15, second, tzinfo=UTC)


def _registry(tmp_path: Path) -> LocalRegistry:
    return LocalRegistry(tmp_path / "reg", tmp_path / "models" / "ltr_weights.json")


def _publish(
    registry: LocalRegistry, second: int, rollout: str = "canary", partition: str = "2026-11-25"
) -> str:
    result = registry.publish(
        weights(second), tiny_model_text(), META, partition, now=_now(second),
        rollout="canary" if rollout == "canary" else "direct",
    )  # fmt: skip
    return result.version


def test_the_first_canary_publish_goes_live_there_being_nothing_to_compare(
    tmp_path: Path,
) -> None:
    registry = _registry(tmp_path)
    result = registry.publish(
        weights(0), tiny_model_text(), META, "2026-11-25", now=_now(0), rollout="canary"
    )
    assert result.latest_moved and not result.candidate_set
    assert registry.latest_version() == result.version and registry.candidate() is None


def test_a_canary_publish_sets_the_candidate_and_leaves_latest(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    live = _publish(registry, 0)
    flat = registry.weights_path.read_bytes() if registry.weights_path else b""
    result = registry.publish(
        weights(1), tiny_model_text(), META, "2026-11-26", now=_now(1), rollout="canary"
    )
    assert result.candidate_set and not result.latest_moved
    assert result.previous_latest == live and "candidate" in result.reason
    assert registry.latest_version() == live
    assert registry.candidate_version() == result.version
    candidate = registry.candidate()
    assert candidate is not None and candidate["partition"] == "2026-11-26"
    assert registry.weights_path is not None and registry.weights_path.read_bytes() == flat
    assert registry.pointed_versions() == {"latest.json": live, "candidate.json": result.version}


def test_a_direct_publish_moves_latest_and_sets_no_candidate(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    _publish(registry, 0, "direct")
    second = _publish(registry, 1, "direct")
    assert registry.latest_version() == second and registry.candidate() is None


def test_a_newer_candidate_replaces_the_older_one_and_says_so(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    _publish(registry, 0)
    first = _publish(registry, 1)
    second = _publish(registry, 2)
    assert registry.candidate_version() == second
    last = registry.history()[-1]
    assert (last["action"], last["version"], last["evidence"]) == (
        "replaced",
        first,
        {"by": second},
    )


def test_a_backfill_moves_neither_pointer(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    live = _publish(registry, 0, partition="2026-11-25")
    result = registry.publish(
        weights(1), tiny_model_text(), META, "2026-11-20", now=_now(1), rollout="canary"
    )
    assert not result.latest_moved and not result.candidate_set
    assert registry.latest_version() == live and registry.candidate() is None


def test_promote_moves_latest_to_the_candidate_clears_it_and_records_the_evidence(
    tmp_path: Path,
) -> None:
    registry = _registry(tmp_path)
    live = _publish(registry, 0)
    candidate = _publish(registry, 1)
    evidence = {"candidate_wins": 120, "live_wins": 80, "note": "interleaving, 7 days"}
    result = registry.promote(evidence, scorer="weights")
    assert result.version == candidate and result.previous_latest == live
    assert registry.latest_version() == candidate and registry.candidate() is None
    pointer = json.loads(registry.pointer_path.read_text())
    assert pointer["promoted"] == {"evidence": evidence, "previous": live}
    assert registry.weights_path is not None
    assert json.loads(registry.weights_path.read_text()) == pytest.approx(weights(1))
    last = registry.history()[-1]
    assert last["action"] == "promoted" and last["version"] == candidate
    assert last["evidence"] == evidence


def test_retire_clears_the_candidate_and_leaves_latest(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    live = _publish(registry, 0)
    candidate = _publish(registry, 1)
    assert registry.retire({"reason": "lost the interleaving"}) == candidate
    assert registry.latest_version() == live and registry.candidate() is None
    assert registry.history()[-1]["action"] == "retired"
    assert candidate in registry.versions()  # retired, not deleted


def test_promote_and_retire_without_a_candidate_are_refused(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    live = _publish(registry, 0)
    with pytest.raises(RegistryError, match="no candidate"):
        registry.promote({})
    with pytest.raises(RegistryError, match="no candidate"):
        registry.retire({})
    assert registry.latest_version() == live


def test_a_malformed_candidate_pointer_is_refused_on_read_and_not_promoted(
    tmp_path: Path,
) -> None:
    registry = _registry(tmp_path)
    live = _publish(registry, 0)
    registry.candidate_path.write_text(json.dumps({"version": "../../etc", "partition": ""}))
    with pytest.raises(InvalidPointer):
        registry.candidate()
    with pytest.raises(InvalidPointer):
        registry.promote({})
    assert registry.latest_version() == live
    assert registry.retire({}) == "?"  # clearing a malformed candidate is always possible
    assert registry.candidate() is None


def test_rollback_clears_the_candidate(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    old = _publish(registry, 0)
    _publish(registry, 1, "direct")
    candidate = _publish(registry, 2)
    result = registry.rollback(old, scorer="weights")
    assert registry.latest_version() == old and registry.candidate() is None
    assert f"candidate {candidate} cleared" in result.reason
    assert registry.history()[-1]["action"] == "cleared_by_rollback"


def test_a_rollback_to_the_candidate_promotes_it_and_says_so(tmp_path: Path) -> None:
    """The UI's rollback pick-list offers every version, the candidate too: picking it makes it
    live, which the history records as a promotion, not as a candidate cleared."""
    registry = _registry(tmp_path)
    _publish(registry, 0)
    candidate = _publish(registry, 1)
    result = registry.rollback(candidate, scorer="weights")
    assert registry.latest_version() == candidate and registry.candidate() is None
    assert result.reason.endswith(
        f"; the candidate {candidate} promoted by this rollback, without online evidence"
    )
    last = registry.history()[-1]
    assert (last["action"], last["version"]) == ("promoted", candidate)
    assert last["evidence"] == {"rolled_back_to": candidate}


def test_retention_keeps_the_candidate_and_latest(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    live = _publish(registry, 0)
    candidate = _publish(registry, 1)
    # backfills: published, neither pointer moves
    older, newest = (_publish(registry, s, partition="2026-11-20") for s in (2, 3))
    assert registry.pointed_versions() == {"latest.json": live, "candidate.json": candidate}
    report = publication.prune_versions(registry, None, keep=1)
    assert report.ok and report.pruned == [older]
    assert registry.versions() == [live, candidate, newest]
    with pytest.raises(RegistryError, match="candidate.json"):
        registry.delete_version(candidate)


def test_publication_publish_passes_the_rollout(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    live = _publish(registry, 0)
    report = publication.publish(
        registry, None, weights(1), tiny_model_text(), META, "2026-11-26", keep=5,
        rollout="canary",
    )  # fmt: skip
    assert report.local.candidate_set and registry.latest_version() == live
    promoted = publication.promote(registry, None, {"ok": True}, scorer="weights")
    assert promoted.version == report.version == registry.latest_version()


def test_the_cli_shows_promotes_and_retires_the_candidate(
    ltr_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ltr_assets.cli import main as ltr

    registry = LocalRegistry(ltr_home / "registry", ltr_home / "models" / "ltr_weights.json")
    live = _publish(registry, 0)
    candidate = _publish(registry, 1)
    assert ltr(["registry", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"* {live}" in listing and f"c {candidate}" in listing
    assert ltr(["registry", "show", "--candidate"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == candidate
    assert ltr(["registry", "promote", "--evidence", '{"wins": 9}', "--note", "ok"]) == 0
    assert f"{live} -> {candidate}" in capsys.readouterr().out
    assert ltr(["registry", "show", "--pointers"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["latest"]["version"] == candidate and shown["candidate"] is None
    assert shown["latest"]["promoted"]["evidence"] == {"wins": 9, "note": "ok"}
    assert shown["history"][-1]["action"] == "promoted"
    assert ltr(["registry", "retire"]) == 1  # nothing to retire
    assert "no candidate" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="JSON object"):
        ltr(["registry", "promote", "--evidence", "[1]"])
    # what to show is one choice: conflicting asks are refused, not silently resolved
    with pytest.raises(SystemExit):
        ltr(["registry", "show", "--candidate", "--pointers"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert ltr(["registry", "show", live, "--pointers"]) == 2
    assert "name a VERSION or give --pointers, not both" in capsys.readouterr().err


def test_verify_says_so_when_the_registry_is_empty(
    ltr_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ltr_assets.cli import main as ltr

    assert ltr(["registry", "verify"]) == 0
    assert "no versions in " in capsys.readouterr().out


def test_a_backfill_after_the_candidate_was_retired_sets_no_candidate(tmp_path: Path) -> None:
    """Latest lags the newest night under canaries: with the candidate retired, a backfill of a
    day between them took the free slot (an older model holding off every later night)."""
    registry = _registry(tmp_path)
    live = _publish(registry, 0, partition="2026-11-25")
    _publish(registry, 1, partition="2026-11-28")
    registry.retire({"by": "test"})
    result = registry.publish(
        weights(2), tiny_model_text(), META, "2026-11-26", now=_now(2), rollout="canary"
    )
    assert not result.candidate_set and not result.latest_moved
    assert "a backfill" in result.reason and "2026-11-28" in result.reason
    assert (registry.latest_version(), registry.candidate()) == (live, None)
    # the next night is no backfill: it becomes the candidate
    night = _publish(registry, 3, partition="2026-11-29")
    assert registry.candidate_version() == night


def test_retention_keeps_the_newest_night_so_a_later_backfill_stays_one(tmp_path: Path) -> None:
    """Backfills published after the nights push the newest night out of the newest `keep` by
    publish time; with it deleted, a backfill of a day before it took the free candidate place."""
    registry = _registry(tmp_path)
    live = _publish(registry, 0, partition="2026-11-25")
    night = _publish(registry, 1, partition="2026-11-28")
    registry.retire({"by": "test"})
    backfill = _publish(registry, 2, partition="2026-11-26")
    report = publication.prune_versions(registry, None, keep=1)
    assert report.ok and night in registry.versions()
    assert registry.newest_night() == ("2026-11-28", night)
    result = registry.publish(
        weights(3), tiny_model_text(), META, "2026-11-27", now=_now(3), rollout="canary"
    )
    assert "a backfill" in result.reason and not result.candidate_set
    assert (registry.latest_version(), registry.candidate()) == (live, None)
    publication.prune_versions(registry, None, keep=1)
    assert backfill not in registry.versions()  # retention still deletes what it should


def test_a_direct_publish_clears_a_pending_candidate(tmp_path: Path) -> None:
    """LTR_ROLLOUT switched to direct with a candidate collecting: the new version goes live and
    the candidate, compared with the version before, is cleared (it was kept, then promoted
    over the newer live version, moving latest back)."""
    registry = _registry(tmp_path)
    _publish(registry, 0, partition="2026-11-25")
    candidate = _publish(registry, 1, partition="2026-11-26")
    result = registry.publish(
        weights(2), tiny_model_text(), META, "2026-11-27", now=_now(2), rollout="direct"
    )
    assert result.latest_moved and f"candidate {candidate} cleared" in result.reason
    assert registry.latest_version() == result.version and registry.candidate() is None
    assert registry.history()[-1]["action"] == "cleared_by_publish"
    assert registry.history()[-1]["version"] == candidate
    with pytest.raises(RegistryError, match="no candidate to promote"):
        registry.promote({"by": "test"})


def test_a_version_whose_metadata_cannot_be_read_does_not_stop_a_publish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backfill rule reads the other versions' partitions: one it may not read (another
    uid's 0600 file) is passed over, not a crash of every later night."""
    registry = _registry(tmp_path)
    unreadable = _publish(registry, 0, partition="2026-11-25")
    read = LocalRegistry.metadata

    def metadata(self: LocalRegistry, version: str) -> dict[str, object]:
        if version == unreadable:
            raise PermissionError(13, "Permission denied", version)
        return read(self, version)

    monkeypatch.setattr(LocalRegistry, "metadata", metadata)
    result = registry.publish(
        weights(1), tiny_model_text(), META, "2026-11-26", now=_now(1), rollout="direct"
    )
    assert result.latest_moved and registry.latest_version() == result.version


def _signed_registry(tmp_path: Path) -> LocalRegistry:
    key = SigningKey("k1", b"a test signing secret" * 2)
    return LocalRegistry(tmp_path / "reg", keys=ArtifactKeys(signing=key, verifying=(key,)))


def _plant_unsigned(registry: LocalRegistry, source: str, name: str, partition: str) -> None:
    """A copy of `source` as version `name` for `partition`, its signature removed: a folder
    planted by someone without the signing key."""
    planted = registry.versions_dir / name
    shutil.copytree(registry.versions_dir / source, planted)
    metadata = json.loads((planted / "metadata.json").read_text())
    metadata.pop("signature")
    metadata.update(version=name, partition=partition)
    (planted / "metadata.json").write_text(json.dumps(metadata))


def test_with_verify_keys_an_unsigned_later_version_makes_no_night_a_backfill(
    tmp_path: Path,
) -> None:
    """A folder planted with a far-future partition (unsigned) would have made every night
    "a backfill, no pointer moved"; with verify keys only signed versions count."""
    registry = _signed_registry(tmp_path)
    live = _publish(registry, 0, rollout="direct", partition="2026-11-25")
    _plant_unsigned(registry, live, "20990101_000000", "2099-01-01")
    night = registry.publish(
        weights(2), tiny_model_text(), META, "2026-11-26", now=_now(2), rollout="direct"
    )
    assert night.latest_moved, night.reason


def test_with_verify_keys_an_unsigned_version_is_no_backfill_s_baseline(tmp_path: Path) -> None:
    """An unsigned folder for a day between two signed ones was taken as a backfill's baseline,
    which the gate then could not load ("unsigned: refused")."""
    registry = _signed_registry(tmp_path)
    early = _publish(registry, 0, rollout="direct", partition="2026-11-20")
    _publish(registry, 1, rollout="direct", partition="2026-11-28")
    _plant_unsigned(registry, early, "20261125_000000", "2026-11-24")
    assert registry.baseline_for("2026-11-25") == early


def test_a_re_run_of_the_candidate_s_night_replaces_it_after_later_nights(
    tmp_path: Path,
) -> None:
    """The candidate is compared over several nights, each publishing a version that stays
    kept; a re-run of the candidate's own night (its data fixed) was taken for a backfill and
    left the candidate built from the bad data in place."""
    registry = _registry(tmp_path)
    live = _publish(registry, 0, partition="2026-11-24")
    candidate = _publish(registry, 1, partition="2026-11-25")
    later = registry.publish(
        weights(2), tiny_model_text(), META, "2026-11-26", now=_now(2), rollout="canary",
        replace_candidate=False,
    )  # fmt: skip
    assert not later.candidate_set and registry.candidate_version() == candidate
    rebuilt = registry.publish(
        weights(3), tiny_model_text(), META, "2026-11-25", now=_now(3), rollout="canary",
        replace_candidate=False,
    )  # fmt: skip
    assert rebuilt.candidate_set, rebuilt.reason
    assert (registry.latest_version(), registry.candidate_version()) == (live, rebuilt.version)
    # any other older day is still a backfill
    backfill = registry.publish(
        weights(4), tiny_model_text(), META, "2026-11-24", now=_now(4), rollout="canary",
        replace_candidate=False,
    )  # fmt: skip
    assert "a backfill" in backfill.reason and not backfill.candidate_set
    assert registry.candidate_version() == rebuilt.version


@pytest.mark.parametrize("fault", ["full_disk", "no_folder"])
def test_a_flat_copy_that_cannot_be_written_leaves_latest_where_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """latest.json and WEIGHTS_PATH move together: a publication whose flat copy fails (a full
    disk under WEIGHTS_PATH, its folder gone) has gone live nowhere."""
    import errno
    import os

    registry = _registry(tmp_path)
    live = _publish(registry, 0, "direct")
    assert registry.weights_path is not None
    folder = registry.weights_path.parent
    flat, pointer = registry.weights_path.read_bytes(), registry.pointer_path.read_bytes()
    if fault == "full_disk":  # the flat file's blocks are refused when it is synced
        fsync = os.fsync

        def refusing(fd: int) -> None:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(f"{folder}/"):
                raise OSError(errno.ENOSPC, "No space left on device")
            fsync(fd)

        monkeypatch.setattr(os, "fsync", refusing)
    else:  # a file where its folder should be
        shutil.rmtree(registry.weights_path.parent)
        registry.weights_path.parent.write_text("not a folder")
    with pytest.raises(OSError):
        _publish(registry, 1, "direct")
    assert registry.latest_version() == live
    assert registry.pointer_path.read_bytes() == pointer
    if fault == "full_disk":
        assert registry.weights_path.read_bytes() == flat
        assert list(registry.weights_path.parent.iterdir()) == [registry.weights_path]
    assert registry.versions() == [live]  # the unpublished build is not left to be mirrored


def test_a_candidate_pointer_that_cannot_be_written_leaves_no_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk refusing candidate.json: the canary publication fails, latest and the
    versions are as they were (the new build's folder is withdrawn), and the next publish
    works."""
    import errno

    from ltr_assets.lake import atomic

    registry = _registry(tmp_path)
    live = _publish(registry, 0, "direct")
    write_json = atomic.write_json

    def refusing(path: Path, data: object) -> None:
        if path == registry.candidate_path:
            raise OSError(errno.ENOSPC, "No space left on device")
        write_json(path, data)

    monkeypatch.setattr(atomic, "write_json", refusing)
    with pytest.raises(OSError, match="No space"):
        _publish(registry, 1)
    assert registry.versions() == [live] and registry.candidate_version() is None
    assert registry.latest_version() == live
    monkeypatch.setattr(atomic, "write_json", write_json)
    candidate = _publish(registry, 2)
    assert registry.versions() == [live, candidate] == [live, registry.candidate_version()]


@pytest.mark.parametrize("stopped_after", ["pointer", "record"])
def test_a_promotion_killed_half_way_is_no_candidate_and_is_finished_by_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stopped_after: str, capsys
) -> None:
    """A process killed between promote's steps left candidate.json naming the version
    latest.json had moved to: the canary stayed "collecting" a candidate serving never
    interleaved, and nights kept new builds out. Now that candidate is none to every reader,
    `verify` says so, and the next write under the lock (here `verify --repair`, or a publish)
    records the promotion once, with its evidence, and removes candidate.json."""
    from ltr_assets import cli

    registry = _registry(tmp_path)
    live = _publish(registry, 0)
    candidate = _publish(registry, 1)
    evidence = {"candidate_wins": 12, "live_wins": 3}

    class Killed(BaseException):
        pass

    if stopped_after == "pointer":
        monkeypatch.setattr(LocalRegistry, "_record", lambda *a: (_ for _ in ()).throw(Killed()))
    else:
        unlink = Path.unlink

        def killed(self: Path, missing_ok: bool = False) -> None:
            if self == registry.candidate_path:
                raise Killed()
            unlink(self, missing_ok)

        monkeypatch.setattr(Path, "unlink", killed)
    with pytest.raises(Killed):
        registry.promote(evidence, scorer="weights", expected=candidate)
    monkeypatch.undo()
    assert json.loads(registry.candidate_path.read_text())["version"] == candidate
    assert registry.latest_version() == candidate
    assert registry.candidate() is None and registry.candidate_version() is None
    assert registry.pointed_versions() == {"latest.json": candidate}
    assert registry.interrupted_promotion() == candidate
    monkeypatch.setenv("LTR_REGISTRY_DIR", str(registry.root))
    monkeypatch.setenv("WEIGHTS_PATH", str(registry.weights_path))
    assert cli.main(["registry", "verify"]) == 1
    assert f"candidate.json still names {candidate}" in capsys.readouterr().out
    assert cli.main(["registry", "verify", "--repair"]) == 0
    assert f"finished the promotion of {candidate}" in capsys.readouterr().out
    assert not registry.candidate_path.exists() and registry.interrupted_promotion() is None
    promoted = [e for e in registry.history() if e["action"] == "promoted"]
    assert [(e["version"], e["evidence"]["candidate_wins"]) for e in promoted] == [(candidate, 12)]
    assert promoted[0]["evidence"].get("finished_after_interruption") is (
        True if stopped_after == "pointer" else None
    )
    following = _publish(registry, 2)  # a canary publish sets the next candidate as usual
    assert (registry.latest_version(), registry.candidate_version()) == (candidate, following)
    assert live in registry.versions()


def test_a_hand_written_candidate_naming_a_directly_published_latest_records_no_promotion(
    tmp_path: Path,
) -> None:
    """candidate.json naming the live version, which no promotion or rollback moved to: the
    next write removes it, but the history gets no invented promotion."""
    registry = _registry(tmp_path)
    live = _publish(registry, 0, "direct")
    registry.candidate_path.write_text(json.dumps({"version": live, "partition": "2026-11-25"}))
    assert registry.interrupted_promotion() == live
    registry.repair()
    assert not registry.candidate_path.exists()
    assert [e for e in registry.history() if e["action"] == "promoted"] == []
