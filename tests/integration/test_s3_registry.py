"""Versioned publication to a real S3 HTTP server (moto) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from dagster import AssetKey, DagsterInstance, MaterializeResult, MetadataValue, asset, materialize

from ltr_assets.cli import main as ltr
from ltr_assets.definitions import defs
from ltr_assets.registry import publication
from ltr_assets.registry.local import LocalRegistry
from ltr_assets.registry.s3_mirror import S3Mirror, mirror_from_settings, sync
from ltr_core.artifacts.format import MAX_FILE_BYTES, RegistryError, sha256
from ltr_core.artifacts.s3 import CANDIDATE
from ltr_core.artifacts.signing import ArtifactKeys
from ltr_core.settings import Settings
from tests.conftest import write_simulated_events
from tests.support.artifacts import tiny_model_text, weights
from tests.support.dagster_results import check_results, materialization_metadata
from tests.support.http_receiver import http_receiver
from tests.support.kafka_broker import free_port

MODEL = tiny_model_text()
GATED = {"gated_scorer": "weights"}  # what the candidate summary records


def _now(second: int) -> datetime:
    return datetime(2026, 11, 26, 2, 15, second, tzinfo=UTC)


def _mirror() -> S3Mirror:
    mirror = mirror_from_settings(Settings.from_env())
    assert mirror is not None
    mirror.backoff_s = 0.05
    return mirror


def _latest_copy_version(mirror: S3Mirror) -> str:
    version: str = json.loads(mirror._get("latest", "metadata.json"))["version"]
    return version


def _pointer(mirror: S3Mirror) -> dict[str, Any]:
    """latest.json on the bucket, which the test has published."""
    pointer, _ = mirror.pointer()
    assert pointer is not None
    return pointer


def _publish(local: LocalRegistry, mirror: S3Mirror | None, partition: str, second: int, **kw):
    result = local.publish(weights(second), MODEL, GATED, partition, now=_now(second), **kw)
    report = publication._sync(local, mirror, kw.get("force", False))
    return result, report


def test_publish_list_fetch_and_rollback(s3_env: str, tmp_path: Path, capsys) -> None:
    local = LocalRegistry(tmp_path / "reg", tmp_path / "w.json")
    mirror = _mirror()
    first = publication.publish(local, mirror, weights(1), MODEL, GATED, "2026-11-24", keep=30)
    assert first.s3_published is True and first.s3_uploaded == [first.version]
    second = publication.publish(local, mirror, weights(2), MODEL, GATED, "2026-11-25", keep=30)
    assert mirror.versions() == [first.version, second.version]
    pointer = _pointer(mirror)
    assert pointer["version"] == second.version and pointer["partition"] == "2026-11-25"
    assert _latest_copy_version(mirror) == second.version
    assert mirror.fetch(second.version).weights == local.load(second.version).weights

    back = publication.rollback(local, mirror, first.version)
    assert back.s3_published is True
    assert local.latest_version() == first.version
    assert _pointer(mirror)["version"] == first.version
    assert _latest_copy_version(mirror) == first.version

    os.environ["LTR_REGISTRY_DIR"] = str(tmp_path / "reg")
    try:
        assert ltr(["registry", "list"]) == 0
    finally:
        del os.environ["LTR_REGISTRY_DIR"]
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"* {first.version}") for line in lines)


def test_a_backfill_never_moves_s3_latest_backwards(s3_env: str, tmp_path: Path) -> None:
    local = LocalRegistry(tmp_path / "reg")
    mirror = _mirror()
    new, _ = _publish(local, mirror, "2026-11-25", 0)
    old, (ok, _, report) = _publish(local, mirror, "2026-11-10", 5)
    assert ok and report.uploaded == [old.version] and not old.latest_moved
    assert _pointer(mirror)["version"] == new.version
    assert old.version in mirror.versions()  # published, just not latest
    assert _latest_copy_version(mirror) == new.version


def test_two_concurrent_publishers_never_interleave(s3_env: str, tmp_path: Path) -> None:
    """Two publishers (own local registries, one bucket) race on latest.json; the newest
    partition wins and latest/ always agrees with latest.json."""
    errors: list[BaseException] = []

    def publisher(name: str, days: range, base_second: int) -> None:
        try:
            local = LocalRegistry(tmp_path / name)
            mirror = _mirror()
            for i, day in enumerate(days):
                _publish(local, mirror, f"2026-11-{day:02d}", base_second + i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=publisher, args=("a", range(1, 20, 2), 0)),
        threading.Thread(target=publisher, args=("b", range(2, 21, 2), 30)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    mirror = _mirror()
    pointer = _pointer(mirror)
    assert pointer["partition"] == "2026-11-20"
    assert _latest_copy_version(mirror) == pointer["version"]
    assert len(mirror.versions()) == 20


def test_a_copy_made_from_a_stale_pointer_read_is_made_again(s3_env: str, tmp_path: Path) -> None:
    """A repair reads latest.json (x) and copies x to latest/; another publisher moves the
    pointer to y (copying y first) before that copy lands. The repair's copy must not leave
    latest/ on x for good: it checks the pointer again and copies y."""
    local = LocalRegistry(tmp_path / "reg")
    mirror = _mirror()
    x, _ = _publish(local, mirror, "2026-11-10", 0)
    y, _ = _publish(local, mirror, "2026-11-25", 5)
    assert mirror.move_pointer(x.version, "2026-11-10", force=True)  # a rollback on S3
    mirror.client.delete_object(Bucket=mirror.bucket, Key=mirror.key("latest", "metadata.json"))
    copy = mirror._copy_to_latest
    raced: list[str] = []

    def copy_after_another_publisher(version: str) -> None:
        if not raced:  # the other publisher's whole move lands before this first copy
            raced.append(version)
            assert _mirror().move_pointer(y.version, "2026-11-25")
        copy(version)

    mirror._copy_to_latest = copy_after_another_publisher  # type: ignore[method-assign]
    assert mirror.repair_latest_copy()
    assert raced == [x.version]
    assert _pointer(mirror)["version"] == y.version
    assert _latest_copy_version(mirror) == y.version


def test_a_rollback_during_a_publish_s3_step_is_not_undone(s3_env: str, tmp_path: Path) -> None:
    """A nightly publish has read the local latest (z) and is about to move S3's pointer when
    an operator rolls back to x, locally and on S3. The publish's S3 write lands last: it must
    not leave S3 on z while the local latest is x (replicas reading S3 would serve z)."""
    local = LocalRegistry(tmp_path / "reg")
    mirror = _mirror()
    x, _ = _publish(local, mirror, "2026-11-01", 1)
    _publish(local, mirror, "2026-11-02", 2)
    move = mirror.move_pointer
    rolled_back: list[str] = []

    def move_after_a_rollback(version: str, partition: str, force: bool = False) -> bool:
        if not rolled_back:  # the operator's whole rollback lands before this move
            rolled_back.append(version)
            back = publication.rollback(local, _mirror(), x.version)
            assert back.s3_published is True and _pointer(mirror)["version"] == x.version
        return move(version, partition, force)

    mirror.move_pointer = move_after_a_rollback  # type: ignore[method-assign]
    night = local.publish(weights(3), MODEL, GATED, "2026-11-03", now=_now(3))
    ok, error, _ = publication._sync(local, mirror, False)
    assert rolled_back == [night.version] and ok, error
    assert local.latest_version() == x.version
    assert _pointer(mirror)["version"] == x.version
    assert _latest_copy_version(mirror) == x.version
    # and a plain sync afterwards leaves it there
    assert sync(local, _mirror()).pointer_version == x.version
    assert _pointer(mirror)["version"] == x.version


CRASH_SCRIPT = """
import os, signal, sys
from ltr_assets.lake import atomic
from ltr_assets.registry import publication
from ltr_core.settings import Settings
from ltr_assets.registry.local import LocalRegistry
from ltr_assets.registry.s3_mirror import mirror_from_settings
from tests.support.artifacts import tiny_model_text, weights
from tests.support.dagster_results import check_results
from tests.support.http_receiver import http_receiver

where, root = sys.argv[1], sys.argv[2]
local = LocalRegistry(__import__("pathlib").Path(root))
mirror = mirror_from_settings(Settings.from_env())
calls = {"n": 0}
def dies_on_second(original):
    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    return wrapper
if where == "local":
    atomic.write_bytes = dies_on_second(atomic.write_bytes)
elif where == "s3":
    mirror.client.put_object = dies_on_second(mirror.client.put_object)
else:  # "copy": while latest/ is being copied, before latest.json moves
    mirror.client.copy_object = dies_on_second(mirror.client.copy_object)
publication.publish(local, mirror, weights(9), tiny_model_text(), {}, "2026-11-26", keep=30)
"""


@pytest.mark.parametrize("where", ["local", "s3", "copy"])
def test_a_publish_killed_halfway_leaves_latest_on_the_previous_version(
    s3_env: str, tmp_path: Path, where: str
) -> None:
    local = LocalRegistry(tmp_path / "reg")
    mirror = _mirror()
    before, _ = _publish(local, mirror, "2026-11-25", 0)
    crash = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, where, str(tmp_path / "reg")],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crash.returncode == -9, crash.stderr
    assert _pointer(mirror)["version"] == before.version
    if where == "copy":  # the version is complete on S3; latest/ was torn, latest.json was not
        new = local.latest_version()
        assert mirror.versions() == [before.version, new]
        assert mirror.repair_latest_copy() is True
        assert _latest_copy_version(mirror) == before.version
        assert mirror.repair_latest_copy() is False
        sync(local, mirror)
        assert _pointer(mirror)["version"] == new and _latest_copy_version(mirror) == new
        return
    assert mirror.versions() == [before.version]  # the half-uploaded one is not complete
    if where == "local":
        assert local.latest_version() == before.version and local.versions() == [before.version]
    else:  # the local publish completed; S3 died between files and catches up on sync
        new = local.latest_version()
        assert new is not None and new != before.version and local.verify(new) == []
        report = sync(local, mirror)
        assert report.uploaded == [new] and _pointer(mirror)["version"] == new
        assert _latest_copy_version(mirror) == new


def test_a_checksum_mismatch_on_s3_is_refused(s3_env: str, tmp_path: Path) -> None:
    local = LocalRegistry(tmp_path / "reg")
    mirror = _mirror()
    version = _publish(local, mirror, "2026-11-25", 0)[0].version
    mirror.client.put_object(
        Bucket=mirror.bucket, Key=mirror.key(version, "model.txt"), Body=MODEL.encode() + b"\n"
    )
    with pytest.raises(RegistryError, match="checksum of model.txt"):
        mirror.fetch(version)
    # and an immutable version is never silently replaced with other content
    with pytest.raises(RegistryError, match="exists with other content"):
        mirror.upload_version(
            version,
            {"ltr_weights.json": b"{}", "model.txt": b"x", "metadata.json": b"{}"},
        )


def test_sync_repairs_a_pointed_version_damaged_on_s3(s3_env: str, tmp_path: Path, capsys) -> None:
    """A live version's model.txt overwritten on S3 (replicas reading S3 refuse it): sync
    compares the versions the pointers name with the local registry, byte for byte, and puts
    the local files back; latest/ follows. It said "uploaded 0 version(s)" and left it."""
    local = LocalRegistry(tmp_path / "reg")
    mirror = _mirror()
    version = _publish(local, mirror, "2026-11-25", 0)[0].version
    damaged = MODEL.encode() + b"\n"
    mirror.client.put_object(  # with a sha256 that matches what it holds: not proof either
        Bucket=mirror.bucket,
        Key=mirror.key(version, "model.txt"),
        Body=damaged,
        Metadata={"sha256": sha256(damaged)},
    )
    mirror.repair_latest_copy()  # latest/ now holds the damaged model too
    with pytest.raises(RegistryError, match="checksum of model.txt"):
        mirror.fetch(version)
    os.environ["LTR_REGISTRY_DIR"] = str(tmp_path / "reg")
    try:
        assert ltr(["registry", "sync"]) == 0
    finally:
        del os.environ["LTR_REGISTRY_DIR"]
    out = capsys.readouterr().out
    assert f"repaired 1 version(s) that S3 held otherwise than the local registry: {version}" in out
    assert mirror.fetch(version).model_text == MODEL
    assert mirror._get("latest", "model.txt") == MODEL.encode()
    assert sync(local, mirror).repaired == []  # whole again: nothing more to repair


class _SlowOnce:
    """The S3 client, answering the first GET with SlowDown (throttling)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.refused = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def get_object(self, **request: Any) -> Any:
        if not self.refused:
            self.refused = True
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "x"}}, "GetObject")
        return self.client.get_object(**request)


def test_a_rollbacks_read_back_rides_out_throttling_and_a_huge_object_is_no_match(
    s3_env: str, tmp_path: Path
) -> None:
    """Throttled once, the read-back is retried and the rollback reaches S3's
    latest.json (it failed the sync before the pointer moved); an object past a reader's size
    limit is not read whole but taken as damaged and replaced."""
    local = LocalRegistry(tmp_path / "reg")
    mirror = _mirror()
    first = _publish(local, mirror, "2026-11-24", 0)[0].version
    _publish(local, mirror, "2026-11-25", 1)
    huge = b" " * (MAX_FILE_BYTES + 1)
    mirror.client.put_object(
        Bucket=mirror.bucket, Key=mirror.key(first, "metadata.json"), Body=huge
    )
    local.rollback(first)
    mirror.client = _SlowOnce(mirror.client)
    published, error, report = publication._sync(local, mirror, True)  # as a rollback syncs
    assert published is True and error == "", error
    assert report is not None and report.repaired == [first]
    assert _pointer(mirror)["version"] == first
    assert mirror.fetch(first).version == first


class _Denied(_SlowOnce):
    """The S3 client, denying one operation (`get_object` or `put_object`) on one version's
    objects (their KMS key, or a bucket policy, say)."""

    def __init__(self, client: Any, version: str, operation: str = "get_object") -> None:
        super().__init__(client)
        self.version = version
        self.operation = operation

    def _call(self, operation: str, request: dict[str, Any]) -> Any:
        if operation == self.operation and f"/{self.version}/" in request["Key"]:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "x"}}, operation)
        return getattr(self.client, operation)(**request)

    def get_object(self, **request: Any) -> Any:
        return self._call("get_object", request)

    def put_object(self, **request: Any) -> Any:
        return self._call("put_object", request)


def test_a_read_back_that_fails_is_a_warning_and_the_rollback_still_reaches_s3(
    s3_env: str, tmp_path: Path
) -> None:
    """The read-back is a repair, not a condition: denied (or S3 failing past its retries),
    the rollback's pointer still moves on S3 and the publication counts as done; the note
    says what was not compared."""
    local = LocalRegistry(tmp_path / "reg")
    mirror = _mirror()
    first = _publish(local, mirror, "2026-11-24", 0)[0].version
    _publish(local, mirror, "2026-11-25", 1)
    local.rollback(first)
    client = mirror.client
    mirror.client = _Denied(client, first)
    published, error, report = publication._sync(local, mirror, True)
    mirror.client = client
    assert published is True and error == "", error
    assert report is not None and report.repaired == []
    assert len(report.unverified) == 1 and "AccessDenied" in report.unverified[0]
    assert report.unverified[0].startswith(f"{first} not compared with S3")
    assert _pointer(mirror)["version"] == first


def test_a_version_found_damaged_on_s3_and_not_repaired_gets_no_pointer(
    s3_env: str, tmp_path: Path
) -> None:
    """The read-back found other bytes on S3 (here a consistent copy, which replicas would
    serve) and the repair was refused: S3's latest.json stays where it was, and the sync says
    why, rather than pointing replicas at what it knows is not the version."""
    local = LocalRegistry(tmp_path / "reg")
    mirror = _mirror()
    first = _publish(local, mirror, "2026-11-24", 0)[0].version
    second = _publish(local, mirror, "2026-11-25", 1)[0].version
    mirror.client.put_object(
        Bucket=mirror.bucket, Key=mirror.key(first, "model.txt"), Body=b"another model"
    )
    local.rollback(first)
    client = mirror.client
    mirror.client = _Denied(client, first, "put_object")
    published, error, report = publication._sync(local, mirror, True)
    mirror.client = client
    assert published is False
    assert f"{first} on S3 differs from the local registry (model.txt)" in error
    assert report is not None and report.pointer_refused
    assert _pointer(mirror)["version"] == second


def test_a_live_version_damaged_on_s3_and_not_repaired_is_named_and_not_spread(
    s3_env: str, tmp_path: Path
) -> None:
    """S3's latest.json already names the version the read-back finds damaged, and the repair
    is refused: the sync says S3's latest names it (not merely "not moved"), and latest/ is
    not made a copy of those bytes."""
    local = LocalRegistry(tmp_path / "reg")
    mirror = _mirror()
    _publish(local, mirror, "2026-11-24", 0)
    live = _publish(local, mirror, "2026-11-25", 1)[0].version
    mirror.client.put_object(
        Bucket=mirror.bucket, Key=mirror.key(live, "model.txt"), Body=b"another model"
    )
    client = mirror.client
    mirror.client = _Denied(client, live, "put_object")
    published, error, _ = publication._sync(local, mirror, False)
    mirror.client = client
    assert published is False
    assert error.startswith(f"S3's latest.json names {live}, which replicas reading S3 refuse")
    assert mirror._get("latest", "model.txt") == MODEL.encode()  # latest/ kept as it was


def test_retention_keeps_the_newest_versions_and_latest(s3_env: str, tmp_path: Path) -> None:
    local = LocalRegistry(tmp_path / "reg")
    mirror = _mirror()
    versions = [_publish(local, mirror, "2026-11-25", s)[0].version for s in range(4)]
    local.rollback(versions[0])
    sync(local, mirror, force_pointer=True)
    pruned = publication.prune_versions(local, mirror, keep=2).pruned
    assert pruned == [versions[1]]
    assert local.versions() == [versions[0], versions[2], versions[3]]
    assert mirror.versions() == [versions[0], versions[2], versions[3]]


def test_retention_during_an_s3_outage_warns_and_the_next_run_prunes_s3(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 unreachable while retention runs: the local registry is pruned, the report says S3
    was not (a WARN, not a pass), and the first run that reaches S3 again deletes there what
    the local registry no longer holds."""
    local = LocalRegistry(tmp_path / "reg")
    mirror = _mirror()
    versions = [_publish(local, mirror, "2026-11-25", s)[0].version for s in range(3)]
    monkeypatch.setenv("S3_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens
    down = _mirror()
    down.attempts = 1
    during = publication.prune_versions(local, down, keep=2)
    assert during.pruned == [versions[0]] and not during.ok
    assert "S3 unreachable" in during.s3_skipped
    assert mirror.versions() == versions  # S3 kept its copy

    newest = _publish(local, mirror, "2026-11-25", 3)[0].version  # S3 back: the next night
    after = publication.prune_versions(local, mirror, keep=2)
    assert after.ok and after.pruned == [versions[0], versions[1]]
    assert mirror.versions() == local.versions() == [versions[2], newest]


def test_s3_outage_publishes_locally_warns_notifies_and_sync_catches_up(
    s3_env: str, ltr_home: Path, monkeypatch: pytest.MonkeyPatch, small_data_gate: None
) -> None:
    monkeypatch.setenv("S3_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=2)
    job = defs.resolve_job_def("ltr_daily_job")
    instance = DagsterInstance.ephemeral()
    with http_receiver() as receiver:
        monkeypatch.setenv("NOTIFY_WEBHOOK_URL", receiver.url)
        job.execute_in_process(partition_key="2026-11-01", instance=instance, raise_on_error=False)
        result = job.execute_in_process(partition_key="2026-11-02", instance=instance)
    assert result.success  # the local publish stands
    event = instance.get_latest_materialization_event(AssetKey("published_weights"))
    meta = materialization_metadata(event)
    assert meta["s3_published"] is False and "S3Unavailable" in meta["s3_error"]
    assert meta["version_address"] == f"s3://ltr-models/ltr/{meta['version']}/"
    assert meta["s3"].startswith("failed: ") and "s3_published" not in check_results(result)
    assert any("S3 is not in step with the local registry" in m["text"] for m in receiver.messages)

    monkeypatch.setenv("S3_ENDPOINT", s3_env)  # S3 is back
    assert ltr(["registry", "sync"]) == 0
    mirror = _mirror()
    assert mirror.versions() == [meta["version"]]
    assert mirror._get(meta["version"], "model_card.md").startswith(b"# Model card: version ")
    assert _pointer(mirror)["version"] == meta["version"]


def test_rollback_job_moves_both_pointers(
    s3_env: str, ltr_home: Path, small_data_gate: None
) -> None:
    local = LocalRegistry(ltr_home / "registry", ltr_home / "models" / "ltr_weights.json")
    mirror = _mirror()
    first, _ = _publish(local, mirror, "2026-11-24", 0)
    _publish(local, mirror, "2026-11-25", 1)
    result = defs.resolve_job_def("ltr_rollback_job").execute_in_process(
        run_config={"ops": {"rollback_to_version": {"config": {"version": first.version}}}},
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success
    assert local.latest_version() == first.version
    assert _pointer(mirror)["version"] == first.version
    bad = defs.resolve_job_def("ltr_rollback_job").execute_in_process(
        run_config={"ops": {"rollback_to_version": {"config": {"version": "20990101_000000"}}}},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not bad.success and local.latest_version() == first.version


def test_a_signature_travels_to_s3_and_a_version_rewritten_there_is_refused(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone with write access to the bucket but not the key rewrites model.txt and its
    checksum in metadata.json: a fetch with the verify keys refuses it; without them, as before,
    only the model's own checks stand."""
    secret = "s3-test-secret-" + "c" * 40
    monkeypatch.setenv("LTR_ARTIFACT_SIGNING_KEY", f"k1:{secret}")
    monkeypatch.setenv("LTR_ARTIFACT_VERIFY_KEYS", f"k1:{secret}")
    local = LocalRegistry(tmp_path / "reg", keys=Settings.from_env().artifact_keys)
    mirror = _mirror()
    assert mirror.keys.required and secret not in repr(mirror)
    version = _publish(local, mirror, "2026-11-25", 0)[0].version
    assert mirror.fetch(version).metadata["signature"]["key_id"] == "k1"
    model = MODEL.replace("shrinkage=0.1", "shrinkage=0.2", 1).encode()
    metadata = json.loads(mirror._get(version, "metadata.json"))
    metadata["checksums"]["model.txt"] = sha256(model)
    for name, body in (("model.txt", model), ("metadata.json", json.dumps(metadata).encode())):
        mirror.client.put_object(Bucket=mirror.bucket, Key=mirror.key(version, name), Body=body)
    with pytest.raises(RegistryError, match=r"metadata.json bad signature \(key k1\): refused"):
        mirror.fetch(version)
    assert replace(mirror, keys=ArtifactKeys()).fetch(version).version == version


def test_the_canary_candidate_is_mirrored_promoted_retired_and_kept_on_s3(
    s3_env: str, ltr_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """candidate.json follows the local one on S3 (set, promoted, retired), and S3 retention
    keeps what it names; the S3 serving store loads it."""
    from ltr_serving.store import S3WeightStore

    mirror = _mirror()
    local = LocalRegistry(ltr_home / "registry")

    def publish(second: int, partition: str) -> publication.PublicationReport:
        return publication.publish(
            local, mirror, weights(second), MODEL, GATED, partition, keep=1, rollout="canary"
        )

    live = publish(0, "2026-11-25")
    assert live.local.latest_moved and mirror.candidate() == (None, None)
    candidate = publish(1, "2026-11-26")
    assert candidate.s3_published and candidate.local.candidate_set
    on_s3, _ = mirror.candidate()
    assert on_s3 is not None and on_s3["version"] == candidate.version
    assert _pointer(mirror)["version"] == live.version
    assert {live.version, candidate.version} <= set(mirror.versions())  # keep=1 kept both
    store = S3WeightStore(mirror, "weights")
    loaded = store.load_candidate()
    assert loaded is not None and loaded.version == candidate.version
    marker = store.current_marker()
    assert marker is not None and "+" in marker

    promoted = publication.promote(local, mirror, {"wins": 3}, scorer="weights")
    assert promoted.s3_published
    assert _pointer(mirror)["version"] == candidate.version
    assert _latest_copy_version(mirror) == candidate.version
    assert mirror.candidate() == (None, None) and store.load_candidate() is None

    newer = publish(2, "2026-11-27")
    assert (mirror.candidate()[0] or {}).get("version") == newer.version
    assert ltr(["registry", "retire", "--note", "lost"]) == 0
    assert "retired" in capsys.readouterr().out
    assert mirror.candidate() == (None, None) and local.candidate() is None
    assert local.history()[-1]["evidence"] == {"note": "lost"}


def test_sync_mirrors_no_pointer_to_a_version_it_could_not_upload(
    s3_env: str, tmp_path: Path
) -> None:
    """A local candidate whose files are damaged is not uploaded, so S3's candidate.json is
    cleared rather than pointed at a version S3 does not have, and the report says so; a
    latest.json written without a partition (the field is optional) syncs without a crash."""
    local = LocalRegistry(tmp_path / "reg", tmp_path / "w.json")
    first, _ = _publish(local, None, "2026-11-24", 1)
    bad, _ = _publish(local, None, "2026-11-25", 2, rollout="canary")
    assert bad.candidate_set
    (local.versions_dir / bad.version / "model.txt").write_text("tree\n")  # damaged
    pointer = json.loads(local.pointer_path.read_text())
    del pointer["partition"]
    local.pointer_path.write_text(json.dumps(pointer))
    mirror = _mirror()
    report = sync(local, mirror)
    assert report.uploaded == [first.version]
    assert report.pointer_version == first.version and _pointer(mirror)["version"] == first.version
    assert report.candidate_version is None and mirror.pointer(CANDIDATE)[0] is None
    assert any(f"the local candidate {bad.version} is not a valid version" in p
               for p in report.problems)  # fmt: skip


def test_a_sync_that_fails_part_way_reports_what_s3_got(
    s3_env: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    """Versions published during an outage are uploaded oldest first; when S3 then refuses
    one, the publication (and `ltr registry sync`) still says which versions it holds now.
    The publication recorded `s3_uploaded: []` whatever had reached S3."""
    local = LocalRegistry(tmp_path / "reg", tmp_path / "w.json")
    first, _ = _publish(local, None, "2026-11-24", 1)
    second, _ = _publish(local, None, "2026-11-25", 2)
    mirror = _mirror()
    client = mirror.client
    mirror.client = _Denied(client, second.version, "put_object")
    report = publication.publish(
        local, mirror, weights(3), MODEL, GATED, "2026-11-26", keep=30, force=False
    )
    assert report.s3_published is False and "AccessDenied" in report.s3_error
    assert report.s3_uploaded == [first.version] == mirror.versions()
    mirror.client = client
    mirror.delete_version(first.version)  # the CLI's sync: S3 refuses `second` again
    upload = S3Mirror.upload_version

    def denied(self: S3Mirror, version: str, files: Any) -> None:
        if version == second.version:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "x"}}, "PutObject")
        upload(self, version, files)

    monkeypatch.setattr(S3Mirror, "upload_version", denied)
    monkeypatch.setenv("LTR_REGISTRY_DIR", str(tmp_path / "reg"))
    assert ltr(["registry", "sync"]) == 1
    assert f"(uploaded before it failed: {first.version})" in capsys.readouterr().err


def test_a_sync_after_an_outage_says_which_s3_pointers_it_moved_and_ltr_night_reloads(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 was down while a night promoted its candidate and set the next one: only the local
    registry moved. The next night moves nothing locally (its version is published beside the
    candidate being compared) but its sync brings S3's latest.json and candidate.json to the
    local ones: the publication says so, `pointer_moved` alone does not (it is also true when
    S3 already named the version), and `ltr night` asks serving to reload for it."""
    from ltr_assets.cli import _night_done
    from ltr_assets.defs.launch import NightReport
    from ltr_assets.defs.sensors import RunOutcome

    local = LocalRegistry(tmp_path / "reg")
    mirror = _mirror()
    _publish(local, mirror, "2026-11-01", 1)
    _publish(local, None, "2026-11-02", 2, rollout="canary")  # S3 down from here
    promoted = local.promote({"note": "test"})
    candidate, _ = _publish(local, None, "2026-11-03", 3, rollout="canary")
    assert candidate.candidate_set
    before = (local.latest_version(), local.candidate_version())
    night = publication.publish(
        local, mirror, weights(4), MODEL, GATED, "2026-11-04", keep=30, rollout="canary",
        replace_candidate=False,
    )  # fmt: skip
    assert (local.latest_version(), local.candidate_version()) == before  # nothing moved here
    assert night.s3_published is True
    assert night.s3_pointers_changed == ["latest.json", "candidate.json"]
    assert _pointer(mirror)["version"] == promoted.version
    again = sync(local, mirror)  # S3 in step already: nothing changes
    assert again.pointer_moved and again.pointers_changed == []

    reply = {
        "version": promoted.version,
        "candidate_state": "loaded",
        "candidate_version": candidate.version,
    }
    with http_receiver(reply=reply) as serving:
        monkeypatch.setenv("LTR_SERVING_URL", serving.url)
        monkeypatch.setenv("LTR_RELOAD_TOKEN", "t" * 32)
        settings = Settings.from_env()
        report = NightReport(
            "2026-11-04",
            "run",
            RunOutcome("published", night.version),
            s3_pointers_changed=tuple(night.s3_pointers_changed),
        )
        assert _night_done(report, settings, local, before)
        assert len(serving.messages) == 1  # the reload was asked for
        assert _night_done(replace(report, s3_pointers_changed=()), settings, local, before)
        assert len(serving.messages) == 1  # nothing moved anywhere: no reload


def test_ltr_night_reads_the_s3_pointers_its_run_changed() -> None:
    """`ltr night`'s report takes the S3 pointers changed from the run's records of
    online_comparison (a promotion's sync) and published_weights (the publication's)."""
    from ltr_assets.defs.launch import s3_changes

    instance = DagsterInstance.ephemeral()
    result = materialize([_comparison_moved_latest, _published_moved_both], instance=instance)
    assert s3_changes(instance, result.run_id) == ("latest.json", "candidate.json")
    quiet = materialize([_comparison_moved_nothing], instance=instance)
    assert s3_changes(instance, quiet.run_id) == ()


@asset(key="online_comparison")
def _comparison_moved_latest() -> MaterializeResult[None]:
    return MaterializeResult(metadata={"s3_pointers_changed": MetadataValue.json(["latest.json"])})


@asset(key="online_comparison")
def _comparison_moved_nothing() -> MaterializeResult[None]:
    return MaterializeResult(metadata={"pointer_moved": "none"})


@asset(key="published_weights", deps=["online_comparison"])
def _published_moved_both() -> MaterializeResult[None]:
    changed = MetadataValue.json(["candidate.json", "latest.json"])
    return MaterializeResult(metadata={"s3_pointers_changed": changed})


def test_a_plain_sync_replaces_a_latest_json_naming_a_version_s3_does_not_hold(
    s3_env: str, tmp_path: Path
) -> None:
    """S3's latest.json naming a version of a later partition that exists nowhere (written by
    hand, or its version deleted): the never-backwards rule kept it, and copying it to latest/
    failed the sync with NoSuchKey, so only `--force` mended it. It protects nothing: a plain
    sync replaces it."""
    local = LocalRegistry(tmp_path / "reg")
    mirror = _mirror()
    version = _publish(local, mirror, "2026-11-25", 0)[0].version
    mirror.client.put_object(
        Bucket=mirror.bucket,
        Key=mirror.key("latest.json"),
        Body=json.dumps({"version": "20991231_000000", "partition": "2099-12-31"}).encode(),
    )
    report = sync(local, mirror)
    assert report.pointer_moved and report.pointers_changed == ["latest.json"]
    assert _pointer(mirror)["version"] == version == _latest_copy_version(mirror)
    other = LocalRegistry(tmp_path / "other")  # a newer night S3 does hold stays
    newer = _publish(other, mirror, "2026-11-26", 1)[0].version
    assert _pointer(mirror)["version"] == newer
    assert "latest.json" not in sync(local, mirror).pointers_changed
    assert _pointer(mirror)["version"] == newer
