"""Rollback from the UI without typing a version: the registry's versions are the partitions of
ltr_rollback_job (kept in step by registry_versions_sensor), and a run of one partition makes
that version live and shows the result."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    Failure,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from ltr_assets.definitions import defs
from ltr_assets.defs.jobs import rollback_target
from ltr_assets.defs.partitions import REGISTRY_VERSIONS
from ltr_assets.defs.resources import LtrResource
from ltr_assets.defs.sensors import registry_versions_sensor
from ltr_assets.gate.versions import VersionRow, list_versions, versions_table
from ltr_assets.registry.local import LocalRegistry
from ltr_core.vocabulary import Rollout
from tests.support.artifacts import tiny_model_text, weights


def _publish(local: LocalRegistry, second: int, rollout: Rollout = "direct") -> str:
    now = datetime(2026, 11, 26, 2, 15, second, tzinfo=UTC)
    meta = {"gated_scorer": "weights"}
    partition = f"2026-11-{20 + second:02d}"
    published = local.publish(
        weights(second), tiny_model_text(), meta, partition, now=now, rollout=rollout
    )
    return published.version


def _tick(instance: DagsterInstance) -> SensorResult | SkipReason:
    context = build_sensor_context(instance=instance, resources={"ltr": LtrResource()})
    result = registry_versions_sensor(context)
    assert isinstance(result, SensorResult | SkipReason)
    return result


def _apply(instance: DagsterInstance, result: SensorResult | SkipReason) -> None:
    """What the daemon does with the sensor's partition requests."""
    assert isinstance(result, SensorResult)
    for request in result.dynamic_partitions_requests or []:
        if type(request).__name__ == "AddDynamicPartitionsRequest":
            instance.add_dynamic_partitions(REGISTRY_VERSIONS, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(REGISTRY_VERSIONS, key)


def test_the_pick_list_follows_the_registry_and_a_picked_version_goes_live(
    ltr_home: Path,
) -> None:
    local = LocalRegistry(ltr_home / "registry", ltr_home / "models" / "ltr_weights.json")
    versions = [_publish(local, s) for s in range(3)]
    candidate = _publish(local, 3, rollout="canary")
    assert local.latest_version() == versions[-1]
    assert local.pointed_versions().get("candidate.json") == candidate
    with DagsterInstance.ephemeral() as instance:
        _apply(instance, _tick(instance))
        assert instance.get_dynamic_partitions(REGISTRY_VERSIONS) == [*versions, candidate]
        idle = _tick(instance)
        assert isinstance(idle, SkipReason) and "4 versions" in str(idle.skip_message)

        result = defs.resolve_job_def("ltr_rollback_job").execute_in_process(
            instance=instance, partition_key=versions[0]
        )
        assert result.success and local.latest_version() == versions[0]
        output = result.output_for_node("rollback_to_version")
        assert output == versions[0]
        [event] = [
            e
            for e in result.all_events
            if e.event_type_value == "STEP_OUTPUT" and e.step_key == "rollback_to_version"
        ]
        shown = event.event_specific_data.metadata  # type: ignore[union-attr]
        assert shown["live_version"].value == versions[0]
        assert shown["previous_live_version"].value == versions[-1]
        assert f"`{versions[0]}` | live | 2026-11-20" in str(shown["versions"].value)
        # The canary candidate is cleared, and the run says so.
        assert "candidate.json" not in local.pointed_versions()
        cleared = f"rolled back to {versions[0]}; candidate {candidate} cleared"
        assert shown["change"].value == cleared
        # published_weights' history shows the rollback with what is live now (its last
        # materialization still says what was live when its day was recorded).
        observed = instance.fetch_observations(AssetKey("published_weights"), limit=1).records
        [observation] = [r.asset_observation for r in observed]
        assert observation is not None
        now_live: dict[str, Any] = {k: v.value for k, v in observation.metadata.items()}
        assert now_live["outcome"].startswith(f"{cleared} (rollback run ")
        assert now_live["live_version"] == versions[0]
        assert now_live["live_by_rollback_at"] == (local.pointer() or {})["moved_at"]
        assert (local.pointer() or {})["rolled_back"] == {"from": versions[-1]}
        assert f"`{versions[0]}` | live |" in str(now_live["registry_versions"])
        assert f"`{candidate}` | candidate" not in str(now_live["registry_versions"])

        local.delete_version(versions[1])  # retention pruned it: it leaves the pick-list
        _apply(instance, _tick(instance))
        remaining = [versions[0], versions[2], candidate]
        assert instance.get_dynamic_partitions(REGISTRY_VERSIONS) == remaining


def test_a_version_missing_from_the_registry_is_refused_and_latest_stays(ltr_home: Path) -> None:
    local = LocalRegistry(ltr_home / "registry", ltr_home / "models" / "ltr_weights.json")
    live = _publish(local, 0)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(REGISTRY_VERSIONS, ["20990101_000000"])
        result = defs.resolve_job_def("ltr_rollback_job").execute_in_process(
            instance=instance, partition_key="20990101_000000", raise_on_error=False
        )
    assert not result.success and local.latest_version() == live


def test_a_partition_and_a_different_configured_version_are_refused() -> None:
    assert rollback_target("20261126_021500", "") == "20261126_021500"
    assert rollback_target(None, "20261126_021501") == "20261126_021501"
    with pytest.raises(Failure, match="pick one"):
        rollback_target("20261126_021500", "20261126_021501")
    with pytest.raises(Failure, match="no version named"):
        rollback_target(None, "")


def test_the_versions_table_marks_live_and_candidate_newest_first(tmp_path: Path) -> None:
    local = LocalRegistry(tmp_path / "reg")
    first, second = _publish(local, 0), _publish(local, 1)
    rows, warnings = list_versions(local)
    assert warnings == [] and [r.version for r in rows] == [second, first]
    assert [r.role for r in rows] == ["live", ""]
    assert rows[0].gate == "not recorded"  # published without a gate summary
    table = versions_table(
        [VersionRow("20261126_021500", "live", "2026-11-25", 0.71234, 0.69, 0.73, "PASSED")]
    )
    assert "| `20261126_021500` | live | 2026-11-25 | 0.7123 [0.6900, 0.7300] | PASSED |" in table
