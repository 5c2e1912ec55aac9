"""Registry files an attacker or an accident crafts: a FIFO, a device, a directory or an
oversized file where a file should be, JSON nested deeper than the parser goes, pointers naming
versions that are not there. Each is refused with a message naming the file, never read into
memory whole, never a traceback."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from ltr_assets.cli import main
from ltr_assets.gate.versions import list_versions
from ltr_assets.registry.local import LocalRegistry
from ltr_core.artifacts.format import (
    LATEST_POINTER,
    MAX_FILE_BYTES,
    METADATA_FILE,
    MODEL_FILE,
    InvalidPointer,
    RegistryError,
    read_file,
)
from ltr_core.artifacts.model_format import MAX_MODEL_BYTES
from tests.unit.test_registry_hardening import _publish, _registry

DEEP = "[" * 200_000 + "]" * 200_000


def _load_within(registry: LocalRegistry, version: str, seconds: float = 10.0) -> BaseException:
    """What loading `version` raises, from a thread that must finish in time (a FIFO read by
    the old code blocked forever)."""
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            registry.load(version)
        except BaseException as exc:  # noqa: BLE001 - what it raised is the result
            outcome.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"loading {version} did not return within {seconds} s"
    assert outcome, f"{version} loaded"
    return outcome[0]


def test_a_model_that_is_a_fifo_or_a_device_is_refused_without_reading_it(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    fifo, device = _publish(registry, 1), _publish(registry, 2)
    model = registry.versions_dir / fifo / MODEL_FILE
    model.unlink()
    os.mkfifo(model)
    error = _load_within(registry, fifo)
    assert isinstance(error, RegistryError) and "not a regular file" in str(error), error
    model = registry.versions_dir / device / MODEL_FILE
    model.unlink()
    model.symlink_to("/dev/zero")  # endless: read whole, it exhausts memory
    error = _load_within(registry, device)
    assert isinstance(error, RegistryError) and "not a regular file" in str(error), error
    assert registry.verify(device) and registry.verify(fifo)


def test_an_oversized_file_is_refused_by_its_size_not_by_reading_it(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    version = _publish(registry, 1)
    model = registry.versions_dir / version / MODEL_FILE
    with model.open("r+b") as handle:
        handle.truncate(MAX_MODEL_BYTES + 1)  # sparse: no disk used
    error = _load_within(registry, version)
    assert isinstance(error, RegistryError)
    assert f"{MAX_MODEL_BYTES + 1} bytes, more than {MAX_MODEL_BYTES}" in str(error)
    metadata = registry.versions_dir / version / METADATA_FILE
    with metadata.open("r+b") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(RegistryError, match="more than"):
        registry.metadata(version)
    # the limit is on what is read, whatever the file says it holds
    small = tmp_path / "small.json"
    small.write_bytes(b"x" * 11)
    with pytest.raises(RegistryError, match="11 bytes, more than 10"):
        read_file(small, limit=10)


def test_a_directory_where_a_file_should_be_is_a_refusal_not_a_crash(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    version = _publish(registry, 1)
    metadata = registry.versions_dir / version / METADATA_FILE
    metadata.unlink()
    metadata.mkdir()
    with pytest.raises(RegistryError, match="not a regular file"):
        registry.metadata(version)
    assert registry.verify(version)
    registry.pointer_path.unlink()
    registry.pointer_path.mkdir()
    with pytest.raises(InvalidPointer, match="not a regular file"):
        registry.pointer()


@pytest.fixture
def cli_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalRegistry:
    """The test registry, where the `ltr registry` commands of the test look."""
    monkeypatch.setenv("LTR_REGISTRY_DIR", str(tmp_path / "reg"))
    monkeypatch.setenv("WEIGHTS_PATH", str(tmp_path / "models" / "ltr_weights.json"))
    registry = _registry(tmp_path)
    return registry


def test_a_version_folder_without_its_metadata_is_incomplete_not_absent(
    cli_registry: LocalRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = cli_registry
    torn, good = _publish(registry, 1), _publish(registry, 2)
    (registry.versions_dir / torn / METADATA_FILE).unlink()
    with pytest.raises(RegistryError, match=f"version {torn} is incomplete: its metadata.json"):
        registry.metadata(torn)
    assert main(["registry", "verify", torn]) == 1
    out = capsys.readouterr()
    assert "metadata.json is missing" in out.out + out.err and "does not exist" not in out.out
    assert main(["registry", "rollback", torn]) != 0
    assert "metadata.json is missing" in capsys.readouterr().err
    assert registry.latest_version() == good


def test_json_nested_too_deeply_is_malformed_json(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    version = _publish(registry, 1)
    (registry.versions_dir / version / METADATA_FILE).write_text(DEEP)
    with pytest.raises(RegistryError, match="nested too deeply"):
        registry.metadata(version)
    rows, _ = list_versions(registry)
    assert rows[0].gate.startswith("unreadable")
    registry.pointer_path.write_text(DEEP)
    with pytest.raises(InvalidPointer, match="nested too deeply"):
        registry.pointer()
    (registry.root / "history.jsonl").write_text(DEEP + "\n" + '{"event": "promoted"}\n')
    assert registry.history() == [{"event": "promoted"}]


def test_the_cli_reports_crafted_files_and_dangling_pointers(
    cli_registry: LocalRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = cli_registry
    good, deep = _publish(registry, 1), _publish(registry, 2)
    (registry.versions_dir / deep / METADATA_FILE).write_text(DEEP)
    assert main(["registry", "list"]) == 0
    listing = capsys.readouterr().out
    assert good in listing and "nested too deeply" in listing
    assert main(["registry", "verify"]) == 1
    out = capsys.readouterr().out
    assert f"{good}: ok" in out and f"{deep}: version {deep}" in out
    # a latest naming a version that is not there: serving refuses it, so must verify
    (registry.root / LATEST_POINTER).write_text('{"version": "20990101_000000", "partition": "x"}')
    (registry.versions_dir / deep / METADATA_FILE).unlink()
    assert main(["registry", "verify", good]) == 1
    assert "latest: names version 20990101_000000, which does not exist" in capsys.readouterr().out
    assert main(["registry", "list"]) == 0
    assert "20990101_000000, which does not exist" in capsys.readouterr().err
    # a pointer that is a directory
    registry.pointer_path.unlink()
    registry.pointer_path.mkdir()
    assert main(["registry", "verify", good]) == 1
    assert "not a regular file" in capsys.readouterr().out


def test_repair_removes_a_link_in_the_trash_and_not_what_it_points_at(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    _publish(registry, 1)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    trash = registry.root / ".trash"
    trash.mkdir(exist_ok=True)
    (trash / "link").symlink_to(outside)
    removed = registry.repair()
    assert removed == [str(trash / "link")]
    assert not os.path.lexists(trash / "link")
    assert (outside / "keep.txt").read_text() == "keep"
    assert registry.repair() == []  # nothing is reported removed twice


def test_sync_from_a_registry_without_versions_touches_nothing_on_s3(
    cli_registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run where the registry is not (a container without its volume), a forced sync would
    have cleared S3's candidate pointer: refused before S3 is reached (nothing listens)."""
    monkeypatch.setenv("S3_BUCKET", "ltr-models")
    monkeypatch.setenv("S3_ENDPOINT", "http://127.0.0.1:9")
    assert main(["registry", "sync", "--force"]) == 2
    err = capsys.readouterr().err
    assert "holds no version: nothing to mirror" in err and str(cli_registry.root) in err


@pytest.mark.parametrize("folder", [".trash", ".staging"])
def test_a_working_folder_planted_as_a_link_loses_nothing_outside(
    folder: str, tmp_path: Path
) -> None:
    """The registry's own working folders planted as links to a folder outside: repair and
    publish remove the link, and empty nothing outside the registry."""
    registry = _registry(tmp_path)
    _publish(registry, 1)
    outside = tmp_path / "outside"
    (outside / "lake").mkdir(parents=True)
    (outside / "lake" / "day.parquet").write_bytes(b"precious")
    (outside / "notes.txt").write_text("keep")
    planted = registry.root / folder
    if planted.exists():
        os.rmdir(planted)
    planted.symlink_to(outside)
    assert registry.repair() == [str(planted)]
    assert not planted.is_symlink()
    planted.symlink_to(outside)
    _publish(registry, 2)  # cleans up, stages and discards through its own folders
    assert sorted(str(p.relative_to(outside)) for p in outside.rglob("*")) == [
        "lake",
        "lake/day.parquet",
        "notes.txt",
    ]
    assert (outside / "lake" / "day.parquet").read_bytes() == b"precious"


@pytest.mark.parametrize("name", [".lock", "history.jsonl"])
def test_a_lock_or_history_planted_as_a_link_is_refused_and_its_target_kept(
    name: str, tmp_path: Path
) -> None:
    """Opening `.lock` for writing through a link emptied the file it named; appending to
    history.jsonl through one wrote into it. Both are refused, the target untouched."""
    registry = _registry(tmp_path)
    first = _publish(registry, 1)
    _publish(registry, 2)
    target = tmp_path / "outside.txt"
    target.write_text("precious contents\n")
    planted = registry.root / name
    planted.unlink(missing_ok=True)
    planted.symlink_to(target)
    with pytest.raises(RegistryError, match="not a regular file"):
        registry.rollback(first)
    assert target.read_text() == "precious contents\n"


def test_a_history_hard_linked_to_an_outside_file_is_refused_and_that_file_kept(
    tmp_path: Path,
) -> None:
    """A hard link is a regular file: history.jsonl linked to a file elsewhere had each
    candidate decision appended to that file."""
    registry = _registry(tmp_path)
    first = _publish(registry, 1)
    _publish(registry, 2)
    outside = tmp_path / "outside.txt"
    outside.write_text("precious contents\n")
    history = registry.root / "history.jsonl"
    history.unlink(missing_ok=True)
    os.link(outside, history)
    with pytest.raises(RegistryError, match="hard-linked to another file"):
        registry.rollback(first)
    assert outside.read_text() == "precious contents\n"
    assert registry.latest_version() != first  # refused before anything moved


def _deny(monkeypatch: pytest.MonkeyPatch, denied: Path) -> None:
    """Opening `denied` fails as it does for another uid's 0600 file (the tests run as root)."""
    real_open = os.open

    def open_(path: object, *args: object, **kwargs: object) -> int:
        if str(path) == str(denied):
            raise PermissionError(13, "Permission denied", str(denied))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", open_)


def test_a_version_this_process_may_not_read_is_skipped_by_every_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another uid's 0600 metadata.json raised PermissionError through the version listing
    (the publication record, `ltr registry list`, the rollback pick-list): a crash of every
    night after the pointer moved. It is a RegistryError naming the file, which they show as
    unreadable."""
    registry = _registry(tmp_path)
    unreadable, good = _publish(registry, 1), _publish(registry, 2)
    _deny(monkeypatch, registry.versions_dir / unreadable / METADATA_FILE)
    with pytest.raises(RegistryError, match="cannot be read: Permission denied"):
        registry.metadata(unreadable)
    rows, _ = list_versions(registry)
    assert [row.version for row in rows] == [good, unreadable]
    assert rows[1].gate.startswith("unreadable: ") and "Permission denied" in rows[1].gate


def test_a_history_this_process_may_not_read_is_raised_not_read_as_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty history would hide every decision (a re-run day's, the stale-interleaving
    check's count): a history.jsonl this process may not read is an error, not []."""
    registry = _registry(tmp_path)
    candidate = _publish(registry, 1)
    _publish(registry, 2)
    registry.candidate_path.write_text(json.dumps({"version": candidate, "partition": "x"}))
    registry.retire({"by": "test"})
    _deny(monkeypatch, registry.root / "history.jsonl")
    with pytest.raises(RegistryError, match="cannot be read: Permission denied"):
        registry.history()
