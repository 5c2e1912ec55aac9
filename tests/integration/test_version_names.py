"""Version names on the S3 mirror and in the rollback job: nothing but YYYYMMDD_HHMMSS."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import DagsterInstance

from ltr_assets.definitions import defs
from ltr_assets.registry import publication
from ltr_assets.registry.local import LocalRegistry
from ltr_assets.registry.s3_mirror import S3Mirror, mirror_from_settings, sync
from ltr_core.artifacts.format import InvalidPointer, InvalidVersion
from ltr_core.settings import Settings
from ltr_serving.store import S3WeightStore, StoreError
from tests.support.artifacts import tiny_model_text, weights


def _mirror() -> S3Mirror:
    mirror = mirror_from_settings(Settings.from_env())
    assert mirror is not None
    mirror.backoff_s = 0.05
    return mirror


def _publish(local: LocalRegistry, second: int) -> str:
    now = datetime(2026, 11, 26, 2, 15, second, tzinfo=UTC)
    meta = {"gated_scorer": "weights"}
    return local.publish(weights(second), tiny_model_text(), meta, "2026-11-25", now=now).version


def _put_pointer(mirror: S3Mirror, content: object) -> None:
    body = json.dumps(content).encode()
    mirror.client.put_object(Bucket=mirror.bucket, Key=mirror.key("latest.json"), Body=body)


@pytest.mark.parametrize("name", ["20261126_021500/", "../20261126_021500", "latest", ""])
def test_the_mirror_refuses_names_that_are_not_versions(
    s3_env: str, tmp_path: Path, name: str
) -> None:
    mirror = _mirror()
    with pytest.raises(InvalidVersion):
        mirror.fetch(name)
    with pytest.raises(InvalidVersion):
        mirror.upload_version(name, {"ltr_weights.json": b"{}"})
    with pytest.raises(InvalidVersion):
        mirror.move_pointer(name, "2026-11-25")
    with pytest.raises(InvalidVersion):
        mirror.delete_version(name)


def test_a_malformed_s3_pointer_is_refused_by_serving_and_protects_retention(
    s3_env: str, tmp_path: Path
) -> None:
    local = LocalRegistry(tmp_path / "reg")
    mirror = _mirror()
    versions = [_publish(local, s) for s in range(3)]
    sync(local, mirror)
    _put_pointer(mirror, {"version": f"{versions[0]}/", "partition": "2026-11-25"})
    with pytest.raises(InvalidPointer):
        mirror.pointer()

    store = S3WeightStore(mirror, "weights")
    with pytest.raises(StoreError, match="malformed"):
        store.load()
    report = publication.prune_versions(local, mirror, keep=1)
    assert report.pruned == [] and "S3 pointer malformed" in report.skipped
    assert mirror.versions() == versions

    sync(local, mirror)  # the next sync replaces the malformed pointer with the local latest
    pointer, _ = mirror.pointer()
    assert pointer is not None and pointer["version"] == versions[-1]


@pytest.mark.parametrize("name", ["20261126_021500/", "/some/copied/dir", "../.."])
def test_the_rollback_job_refuses_a_name_that_is_not_a_version(ltr_home: Path, name: str) -> None:
    local = LocalRegistry(ltr_home / "registry", ltr_home / "models" / "ltr_weights.json")
    live = _publish(local, 0)
    result = defs.resolve_job_def("ltr_rollback_job").execute_in_process(
        run_config={"ops": {"rollback_to_version": {"config": {"version": name}}}},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    failure = result.failure_data_for_node("rollback_to_version")
    assert failure is not None and "is not a version id" in str(failure.error)
    assert local.latest_version() == live
