"""The registry as an attacker or an unlucky operator meets it: names that are not versions,
a pointer that names a path, metadata without checksums, a model that crashes LightGBM, and the
leftovers of killed publishes."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ltr_assets.cli import main
from ltr_assets.registry import publication
from ltr_assets.registry.local import LocalRegistry
from ltr_core.artifacts.format import (
    METADATA_FILE,
    MODEL_FILE,
    WEIGHTS_FILE,
    InvalidPointer,
    InvalidVersion,
    RegistryError,
    sha256,
)
from ltr_core.artifacts.model_check import UnsafeModel, check_model_text
from ltr_core.artifacts.model_format import MalformedModel
from ltr_core.features import FEATURES
from tests.support.artifacts import tiny_model_text, weights
from tests.support.cli import run_ltr
from tests.support.model_texts import edit_tree, tree_line

BAD_NAMES = [
    "20261126_021500/",
    "../..",
    "/some/copied/dir",
    "20261126_021500\n",
    "2026112_0215000",
    "20261326_021500",  # month 13: not a timestamp
    "٢٠٢٦١١٢٦_٠٢١٥٠٠",  # digits, but not ASCII ones
    "",
]


def _now(second: int) -> datetime:
    return datetime(2026, 11, 26, 2, 15, second, tzinfo=UTC)


def _registry(tmp_path: Path) -> LocalRegistry:
    return LocalRegistry(tmp_path / "reg", tmp_path / "models" / "ltr_weights.json")


def _publish(registry: LocalRegistry, second: int, partition: str = "2026-11-25") -> str:
    meta = {"gated_scorer": "weights"}
    return registry.publish(
        weights(second), tiny_model_text(), meta, partition, now=_now(second)
    ).version


@pytest.mark.parametrize("name", BAD_NAMES)
def test_every_registry_method_refuses_a_name_that_is_not_a_version(
    tmp_path: Path, name: str
) -> None:
    registry = _registry(tmp_path)
    _publish(registry, 0)
    for method in (registry.metadata, registry.load, registry.verify, registry.rollback,
                   registry.delete_version):  # fmt: skip
        with pytest.raises(InvalidVersion, match="not a version id"):
            method(name)


def test_a_pointer_naming_a_path_is_refused_when_read_back(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    version = _publish(registry, 0)
    for content in ({"version": f"{version}/"}, {"version": str(tmp_path)}, [version], "x"):
        registry.pointer_path.write_text(json.dumps(content))
        with pytest.raises(InvalidPointer):
            registry.latest_version()
    registry.pointer_path.write_text("{not json")
    with pytest.raises(InvalidPointer, match="not JSON"):
        registry.pointer()


def test_retention_deletes_nothing_while_the_pointer_is_malformed(tmp_path: Path) -> None:
    """`rollback "$V/"` used to store "V/" as latest; retention compared strings and deleted V."""
    registry = _registry(tmp_path)
    versions = [_publish(registry, s) for s in range(4)]
    registry.pointer_path.write_text(json.dumps({"version": f"{versions[0]}/", "partition": ""}))
    report = publication.prune_versions(registry, None, keep=1)
    assert report.pruned == [] and "malformed" in report.skipped
    assert registry.versions() == versions
    with pytest.raises(RegistryError):
        registry.delete_version(versions[1])  # what latest meant to protect is unknown
    assert registry.versions() == versions

    registry.rollback(versions[0])  # a valid pointer again: retention keeps it and the newest
    assert publication.prune_versions(registry, None, keep=1).pruned == versions[1:3]
    assert registry.versions() == [versions[0], versions[3]]


def test_a_publish_replaces_a_malformed_pointer(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    registry.root.mkdir(parents=True)
    registry.pointer_path.write_text(json.dumps({"version": "../../etc", "partition": "9999"}))
    result = registry.publish(weights(1), tiny_model_text(), {}, "2026-11-25", now=_now(0))
    assert result.latest_moved and "malformed" in result.reason
    assert registry.latest_version() == result.version


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["registry", "show", "../.."], "'../..' is not a version id"),
        (["registry", "verify", "/etc"], "'/etc' is not a version id"),
        (["registry", "rollback", "20261126_021500/"], "is not a version id"),
        (["registry", "rollback", "/some/copied/dir"], "is not a version id"),
    ],
)
def test_the_cli_refuses_a_name_that_is_not_a_version_with_exit_code_2(
    ltr_home: Path, argv: list[str], shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = LocalRegistry(ltr_home / "registry", ltr_home / "models" / "ltr_weights.json")
    version = _publish(registry, 0)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert shown in capsys.readouterr().err
    assert registry.latest_version() == version


# -- metadata without checksums, and models that crash LightGBM -----------------------------


def _truncated_model() -> bytes:
    """Cut where the trees begin: LightGBM aborts the process parsing this (checked below)."""
    text = tiny_model_text()
    return text[: text.index("Tree=0")].encode()


@pytest.mark.slow  # starts the CLI as a process (or trains): not in make test-fast
def test_the_truncated_model_really_aborts_lightgbm_in_process() -> None:
    """The premise of the next tests: parsed in-process, this model kills the process."""
    code = "import sys, lightgbm; lightgbm.Booster(model_str=sys.stdin.read())"
    child = subprocess.run([sys.executable, "-c", code], input=_truncated_model(), check=False,
                           capture_output=True)  # fmt: skip
    assert child.returncode == -signal.SIGABRT


def _tamper(registry: LocalRegistry, version: str, model: bytes, metadata: object) -> None:
    folder = registry.versions_dir / version
    (folder / MODEL_FILE).write_bytes(model)
    (folder / METADATA_FILE).write_text(json.dumps(metadata))


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        (None, "NoneType, not an object"),
        ([1, 2], "list, not an object"),
        ({"version": "x"}, "no checksums object"),
        ({"checksums": {WEIGHTS_FILE: "abc", MODEL_FILE: None}}, "no valid sha256"),
    ],
)
@pytest.mark.slow  # starts the CLI as a process (or trains): not in make test-fast
def test_metadata_without_valid_checksums_is_refused_before_lightgbm_sees_the_model(
    tmp_path: Path, metadata: object, reason: str
) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    version = _publish(registry, 0)
    _tamper(registry, version, _truncated_model(), metadata)
    verify = run_ltr("registry", "verify", version, home=tmp_path)
    assert verify.returncode == 1, verify  # not 134 (SIGABRT): the model was never parsed
    assert reason in verify.stdout


@pytest.mark.slow  # starts the CLI as a process (or trains): not in make test-fast
def test_a_truncated_model_with_matching_checksums_cannot_kill_verify(tmp_path: Path) -> None:
    """An attacker who can rewrite model.txt can rewrite metadata.json's checksums too."""
    registry = LocalRegistry(tmp_path / "registry")
    good = _publish(registry, 0)
    bad = _publish(registry, 1)
    model = _truncated_model()
    metadata = json.loads((registry.versions_dir / bad / METADATA_FILE).read_text())
    metadata["checksums"][MODEL_FILE] = sha256(model)
    _tamper(registry, bad, model, metadata)
    verify = run_ltr("registry", "verify", home=tmp_path)
    assert verify.returncode == 1, verify
    assert f"{good}: ok" in verify.stdout
    assert "model.txt is malformed: has no trees" in verify.stdout  # read before LightGBM
    with pytest.raises(RegistryError, match="has no trees"):
        registry.rollback(bad)  # in this process: refused, and the process lives on
    assert registry.latest_version() == bad  # publish moved it; rollback did not touch it


def _crafted(first_right_child: str) -> str:
    """The real model with tree 0's root sending right to `first_right_child`: 0 is a cycle
    (prediction loops forever), 1000000 out of range (it reads outside its arrays). LightGBM
    parses both and scores the check's row of 0.5s, which goes left."""
    text = tiny_model_text()
    rest = tree_line(text, 0, "right_child")[1:]
    return edit_tree(text, 0, "right_child", " ".join([first_right_child, *rest]))


@pytest.mark.parametrize(
    ("first", "reason"),
    [("0", "node 0 is reached twice"), ("1000000", "node 0 has child 1000000, out of range")],
    ids=["cycle", "child out of range"],
)
@pytest.mark.slow  # starts the CLI as a process (or trains): not in make test-fast
def test_a_tree_that_would_hang_or_crash_prediction_is_refused_by_publish_and_verify(
    tmp_path: Path, first: str, reason: str
) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    good = _publish(registry, 0)
    crafted = _crafted(first)
    with pytest.raises(RegistryError, match=f"model.txt is malformed: tree 0: {reason}"):
        registry.publish(weights(1), crafted, {"gated_scorer": "model"}, "2026-11-25", now=_now(1))
    assert registry.versions() == [good] and registry.latest_version() == good
    bad = _publish(registry, 2)  # then rewritten by someone with write access to the registry
    metadata = json.loads((registry.versions_dir / bad / METADATA_FILE).read_text())
    metadata["checksums"][MODEL_FILE] = sha256(crafted.encode())
    _tamper(registry, bad, crafted.encode(), metadata)
    verify = run_ltr("registry", "verify", home=tmp_path)
    assert verify.returncode == 1, verify
    assert f"{good}: ok" in verify.stdout
    assert f"{bad}: version {bad}: model.txt is malformed: tree 0: {reason}" in verify.stdout
    with pytest.raises(RegistryError, match=reason):
        registry.rollback(bad)


def test_the_child_process_check_survives_a_model_that_aborts_lightgbm() -> None:
    """Behind the format check, LightGBM still parses a model first in a child process, which
    dies instead of the caller when LightGBM aborts."""
    with pytest.raises(UnsafeModel, match=r"LightGBM crashed parsing the model \(SIGABRT\)"):
        check_model_text(_truncated_model(), FEATURES, check_format=False)
    with pytest.raises(MalformedModel, match="has no trees"):  # the format check comes first
        check_model_text(_truncated_model(), FEATURES)


# -- leftovers of killed publishes ----------------------------------------------------------


def _leave_leftovers(registry: LocalRegistry, version: str) -> list[Path]:
    """What a publisher killed at various points leaves: temp files of atomic writes, a staging
    folder, a half-deleted version and a half-emptied trash entry."""
    assert registry.weights_path is not None
    pointer_tmp = registry.root / ".latest.json.k1ll3d.tmp"
    weights_tmp = registry.weights_path.parent / ".ltr_weights.json.k1ll3d.tmp"
    staging = registry.root / ".staging" / "20261126_030000.123.abcd"
    trash = registry.root / ".trash" / f"{version}.abcd1234"
    for path in (pointer_tmp, weights_tmp):
        path.write_text("{")
    for folder in (staging, trash):
        folder.mkdir(parents=True)
        (folder / METADATA_FILE).write_text("{}")
    (registry.versions_dir / version / MODEL_FILE).unlink()  # a deletion killed halfway
    return [pointer_tmp, weights_tmp, staging, trash, registry.versions_dir / version]


def test_the_next_publish_cleans_what_killed_publishes_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = _registry(tmp_path)
    half_deleted = _publish(registry, 0)
    _publish(registry, 1)
    leftovers = _leave_leftovers(registry, half_deleted)
    with caplog.at_level(logging.WARNING):
        result = registry.publish(weights(3), tiny_model_text(), {}, "2026-11-25", now=_now(3))
    assert sorted(result.cleaned) == sorted(str(p) for p in leftovers)
    assert not any(p.exists() for p in leftovers)
    for path in leftovers:  # the publish's log says what it removed, once each
        assert caplog.text.count(f"removed the leftover of a killed writer: {path}\n") == 1
    assert half_deleted not in registry.versions()


@pytest.mark.slow  # starts the CLI as a process (or trains): not in make test-fast
def test_verify_repair_cleans_on_demand_and_says_what_it_removed(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "registry", tmp_path / "models" / "ltr_weights.json")
    half_deleted = _publish(registry, 0)
    live = _publish(registry, 1)
    leftovers = _leave_leftovers(registry, half_deleted)
    verify = run_ltr("registry", "verify", "--repair", home=tmp_path)
    assert verify.returncode == 0, verify
    assert "removed 5 leftover(s)" in verify.stdout
    for path in leftovers:
        assert f"removed leftover: {path}" in verify.stdout and not path.exists()
    assert "leftover" not in verify.stderr, verify.stderr  # said once, not logged as well
    assert f"{live}: ok" in verify.stdout and f"{half_deleted}: " not in verify.stdout


def test_a_deletion_killed_halfway_leaves_no_half_version_in_sight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = _registry(tmp_path)
    doomed = _publish(registry, 0)
    _publish(registry, 1)

    def killed(path: Path, ignore_errors: bool = False) -> None:
        (Path(path) / MODEL_FILE).unlink()  # rmtree got this far, then the process died
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        registry.delete_version(doomed)
    monkeypatch.undo()
    assert not (registry.versions_dir / doomed).exists()  # renamed away before any file went
    assert len(list((registry.root / ".trash").iterdir())) == 1
    assert registry.repair() and not list((registry.root / ".trash").iterdir())


# -- the scorer a version was gated for -----------------------------------------------------


def test_publish_records_the_gated_scorer(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    summary = {"scorer": "model", "gate_passed": True}  # what the candidate summary carries
    version = registry.publish(weights(1), tiny_model_text(), summary, "2026-11-25").version
    assert registry.metadata(version)["gated_scorer"] == "model"
    with pytest.raises(RegistryError, match="gated scorer 'linear'"):
        registry.publish(weights(1), tiny_model_text(), {"gated_scorer": "linear"}, "2026-11-25")


def test_rollback_refuses_a_version_gated_for_another_scorer(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    weights_version = _publish(registry, 0)
    _publish(registry, 1)
    with pytest.raises(RegistryError, match="gated for the weights scorer"):
        publication.rollback(registry, None, weights_version, scorer="model")
    assert publication.rollback(registry, None, weights_version, scorer="weights").version


def test_rollback_applies_exactly_the_rule_serving_applies(tmp_path: Path) -> None:
    """A version recording the training summary's `scorer` but no `gated_scorer` (an older
    publisher, a hand-made version) used to pass rollback, which fell back to `scorer`, while
    serving refused it: every replica started afterwards answered 503."""
    from ltr_serving.state import check_gated_scorer
    from ltr_serving.store import LocalWeightStore

    registry = _registry(tmp_path)
    unrecorded = _publish(registry, 0)
    live = _publish(registry, 1)
    path = registry.versions_dir / unrecorded / METADATA_FILE
    metadata = json.loads(path.read_text())
    del metadata["gated_scorer"]
    metadata["scorer"] = "weights"
    path.write_text(json.dumps(metadata))  # checksums cover the artifact files: still valid
    assert registry.verify(unrecorded) == []

    with pytest.raises(RegistryError, match="records no gated_scorer") as refused_by_rollback:
        publication.rollback(registry, None, unrecorded, scorer="weights")
    assert registry.latest_version() == live
    registry.rollback(unrecorded)  # forced past the rule (no scorer): serving's turn to judge
    artifact = LocalWeightStore(registry.root, tmp_path / "none.json", "weights").load()
    with pytest.raises(RegistryError) as refused_by_serving:
        check_gated_scorer(artifact, "weights")
    assert str(refused_by_serving.value) == str(refused_by_rollback.value)


@pytest.fixture
def immutable_folders() -> Iterator[list[Path]]:
    """Folders made immutable (`chattr +i`: even root cannot rename them), released after."""
    folders: list[Path] = []
    yield folders
    for folder in folders:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


def test_a_version_retention_cannot_move_never_fails_a_publish(
    tmp_path: Path, immutable_folders: list[Path]
) -> None:
    """Retention used to crash the publish after `latest` had moved, and every later publish
    the same way."""
    registry = _registry(tmp_path)
    stuck = _publish(registry, 0)
    _publish(registry, 1)
    folder = registry.versions_dir / stuck
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    immutable_folders.append(folder)

    for second in (2, 3):
        report = publication.publish(
            registry, None, weights(second), tiny_model_text(), {"gated_scorer": "weights"},
            "2026-11-25", keep=1,
        )  # fmt: skip
        assert report.local.latest_moved and registry.latest_version() == report.version
        assert report.retention is not None and not report.retention.ok
        assert list(report.retention.failed) == [stuck]
        assert "PermissionError" in report.retention.failed[stuck]
    assert report.retention is not None
    assert report.retention.pruned  # the versions it could delete, it deleted
    assert registry.versions() == [stuck, report.version]


@pytest.mark.slow  # starts the CLI as a process (or trains): not in make test-fast
def test_verify_flags_a_pointed_version_serving_would_refuse(tmp_path: Path) -> None:
    """verify checks the pointers "as serving would": latest gated for another scorer than
    LTR_SCORER is reported and fails the command, though its files are all intact."""
    registry = LocalRegistry(tmp_path / "registry")
    registry.publish(weights(1), tiny_model_text(), {"gated_scorer": "model"}, "2026-11-25")
    served = run_ltr("registry", "verify", home=tmp_path, LTR_SCORER="model")
    assert served.returncode == 0, served.stdout + served.stderr
    refused = run_ltr("registry", "verify", home=tmp_path, LTR_SCORER="weights")
    assert refused.returncode == 1
    assert "serving (LTR_SCORER=weights) refuses it" in refused.stdout


@pytest.mark.slow  # starts the CLI as a process (or trains): not in make test-fast
@pytest.mark.parametrize("pointer", ["latest.json", "candidate.json"])
def test_a_folder_where_a_pointer_belongs_is_a_clear_error_and_nothing_moves(
    tmp_path: Path, pointer: str
) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    first = _publish(registry, 1)
    second = _publish(registry, 2)
    if pointer == "latest.json":
        (registry.root / pointer).unlink()
    (registry.root / pointer).mkdir()
    before = sorted(p.name for p in registry.root.iterdir())
    result = run_ltr("registry", "rollback", first, home=tmp_path, LTR_SCORER="weights")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "is not a regular file: remove it by hand (nothing was changed)" in result.stderr
    assert sorted(p.name for p in registry.root.iterdir()) == before
    if pointer == "candidate.json":
        assert registry.latest_version() == second


@pytest.mark.slow  # starts the CLI as a process (or trains): not in make test-fast
def test_a_rollback_says_it_cleared_the_candidate(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    first = _publish(registry, 1)
    candidate = registry.publish(
        weights(2), tiny_model_text(), {"gated_scorer": "weights"}, "2026-11-26",
        now=_now(2), rollout="canary",
    ).version  # fmt: skip
    result = run_ltr("registry", "rollback", first, home=tmp_path, LTR_SCORER="weights")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"candidate {candidate} cleared" in result.stdout
    assert registry.candidate() is None


@pytest.mark.slow  # holds the lock from another process for a second
def test_a_writer_waiting_for_the_registry_lock_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    first = _publish(registry, 1)
    _publish(registry, 2)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, sys, time; h = open(sys.argv[1], 'w'); fcntl.flock(h, fcntl.LOCK_EX); "
         "print('held', flush=True); time.sleep(1.5)", str(registry.root / ".lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with caplog.at_level(logging.WARNING, logger="ltr.registry"):
            registry.rollback(first)
    finally:
        holder.wait(10)
    assert any("waiting for the registry lock" in r.getMessage() for r in caplog.records)
    assert registry.latest_version() == first


@pytest.mark.slow  # starts the CLI as a process (or trains): not in make test-fast
def test_promote_and_retire_can_insist_on_the_candidate_the_operator_judged(
    tmp_path: Path,
) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    _publish(registry, 1)
    judged = registry.publish(
        weights(2), tiny_model_text(), {"gated_scorer": "weights"}, "2026-11-26",
        now=_now(2), rollout="canary",
    ).version  # fmt: skip
    newer = registry.publish(
        weights(3), tiny_model_text(), {"gated_scorer": "weights"}, "2026-11-27",
        now=_now(3), rollout="canary",
    ).version  # fmt: skip
    assert registry.candidate_version() == newer  # a nightly replaced the judged one
    for command in ("promote", "retire"):
        refused = run_ltr("registry", command, "--expect", judged, home=tmp_path)
        assert refused.returncode == 1
        assert f"the candidate is {newer}, not {judged}" in refused.stderr
    assert registry.candidate_version() == newer
    promoted = run_ltr("registry", "promote", "--expect", newer, home=tmp_path)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert registry.latest_version() == newer


def test_a_refusal_shown_in_health_is_bounded() -> None:
    """A crafted artifact's text can end up quoted in a refusal; health is read by every load
    balancer, so what it keeps of one is bounded and says how much was cut."""
    from ltr_serving.state import MAX_ERROR_CHARS, error_text

    assert error_text(ValueError("short")) == "short"
    assert error_text(ValueError()) == "ValueError"
    long = error_text(ValueError("x" * 5_000_000))
    assert len(long) < MAX_ERROR_CHARS + 100 and long.endswith("(4999000 characters cut)")
