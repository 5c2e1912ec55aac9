"""What published_weights tells an operator: the live version, not only this run's, and in a
backfill a comparison named for what it is (a baseline, not the live version)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance

from ltr_assets.definitions import defs
from ltr_assets.defs.sensors import run_outcome
from ltr_assets.notify import failure_text
from ltr_assets.registry.local import LocalRegistry
from ltr_core.features import FEATURES
from tests.conftest import write_simulated_events
from tests.support.dagster_results import check_metadata


def _metadata(instance: DagsterInstance, result: Any, asset: str) -> dict[str, Any]:
    for entry in instance.all_logs(result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is not None and materialization.asset_key == AssetKey(asset):
            return {k: v.value for k, v in materialization.metadata.items()}
    raise AssertionError(f"{asset} did not materialize")


def test_live_version_links_weights_and_backfill_baseline(
    ltr_home: Path, small_data_gate: None
) -> None:
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=3)
    job = defs.resolve_job_def("ltr_daily_job")
    instance = DagsterInstance.ephemeral()
    registry = LocalRegistry(ltr_home / "registry")
    job.execute_in_process(partition_key="2026-11-01", instance=instance, raise_on_error=False)
    second = job.execute_in_process(partition_key="2026-11-02", instance=instance)
    third = job.execute_in_process(partition_key="2026-11-03", instance=instance)
    assert second.success and third.success
    v2 = _metadata(instance, second, "published_weights")["version"]
    nightly = _metadata(instance, third, "published_weights")
    v3 = nightly["version"]
    assert (nightly["live_version"], nightly["live_partition"], nightly["is_live"]) == (
        v3,
        "2026-11-03",
        True,
    )
    assert nightly["compared_with"] == f"live {v2}"
    assert nightly["version_address"] == str(ltr_home / "registry" / "versions" / v3)
    # The version folder holds its model card, checksummed, and the registry verifies it.
    folder = ltr_home / "registry" / "versions" / v3
    card = (folder / "model_card.md").read_text()
    assert card.startswith(f"# Model card: version {v3} (partition 2026-11-03)")
    assert f"Baseline: live {v2}." in card and "| counterfactual nDCG@10 |" in card
    assert "## Fairness per protected value" in card and "| gender=F |" in card
    assert registry.metadata(v3)["checksums"]["model_card.md"]
    assert registry.verify(v3) == []
    # The live version's card, early in the entries (the UI lists them in order), summary first.
    assert list(nightly).index("model_card") < 5
    assert nightly["model_card"].startswith(f"**Live version {v3}** (partition 2026-11-03;")
    live_card = nightly["model_card"]
    # The rollback pick-list's versions, newest first, the live one marked, with gate lines.
    assert f"| `{v3}` | live | 2026-11-03 |" in nightly["registry_versions"]
    assert "| PASSED |" in nightly["registry_versions"]
    assert live_card.index("## Gate: PASSED") < live_card.index("## Fairness per protected value")
    model = _metadata(instance, third, "ltr_model")
    assert model["model_card"].startswith("# Model card: candidate (partition 2026-11-03)")
    weights = registry.load(v3).weights
    for name in FEATURES:
        assert nightly[f"weight_{name}"] == round(weights[name], 4)

    # A backfill of day 2: published, but day 3's version stays live, and what day 2's
    # candidate was compared with is the version published for day 2, not "live".
    backfill = job.execute_in_process(partition_key="2026-11-02", instance=instance)
    assert backfill.success
    old = _metadata(instance, backfill, "published_weights")
    assert old["version"] not in (v2, v3)
    assert (old["live_version"], old["live_partition"], old["is_live"]) == (
        v3,
        "2026-11-03",
        False,
    )
    label = "baseline (published for 2026-11-02 or before)"
    assert old["compared_with"] == f"{label} {v2}"
    regression = check_metadata(backfill, "no_regression")
    assert regression["compared_with"].value == label
    assert registry.latest_version() == v3
    # Its card is the live version's (day 3's), not the backfill's candidate.
    assert old["model_card"].startswith(f"**Live version {v3}** (partition 2026-11-03;")
    assert old["version"] not in old["model_card"]
    backfill_card = ltr_home / "registry" / "versions" / old["version"] / "model_card.md"
    assert f"Baseline: {label} {v2}." in backfill_card.read_text()

    # A model card that no longer matches its checksum is reported by verify.
    (folder / "model_card.md").write_text("edited\n")
    assert registry.verify(v3) == [f"version {v3}: checksum of model_card.md does not match"]


def test_under_canary_the_first_version_goes_live_and_the_next_becomes_the_candidate(
    ltr_home: Path, small_data_gate: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LTR_ROLLOUT", "canary")
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=3)
    job = defs.resolve_job_def("ltr_daily_job")
    instance = DagsterInstance.ephemeral()
    registry = LocalRegistry(ltr_home / "registry")
    job.execute_in_process(partition_key="2026-11-01", instance=instance, raise_on_error=False)
    second = job.execute_in_process(partition_key="2026-11-02", instance=instance)
    third = job.execute_in_process(partition_key="2026-11-03", instance=instance)
    assert second.success and third.success
    first = _metadata(instance, second, "published_weights")
    assert (first["latest_moved"], first["candidate_set"], first["rollout"]) == (
        True,
        False,
        "canary",
    )  # nothing was live: it went straight to latest
    canary = _metadata(instance, third, "published_weights")
    assert canary["candidate_set"] and not canary["latest_moved"] and not canary["is_live"]
    assert canary["live_version"] == first["version"] == registry.latest_version()
    assert registry.candidate_version() == canary["version"]

    # the candidate's own night re-run and refused: the earlier build stays the candidate, and
    # the record, the run's tags and the notification say so rather than only "not published"
    monkeypatch.setenv("LTR_NDCG_MIN", "0.999")
    rerun = job.execute_in_process(partition_key="2026-11-03", instance=instance)
    refused = _metadata(instance, rerun, "published_weights")
    kept = f"{canary['version']}, an earlier build of this day, stays the candidate"
    assert refused["published"] is False and refused["outcome"].endswith(kept)
    assert refused["kept_candidate"] == canary["version"] == registry.candidate_version()
    run = instance.get_run_by_id(rerun.run_id)
    assert run is not None
    outcome = run_outcome(instance, run)
    assert (outcome.outcome, outcome.kept_candidate) == ("gate_refused", canary["version"])
    told = failure_text(
        run.job_name,
        "2026-11-03",
        run.run_id,
        True,
        outcome.detail,
        outcome.live,
        kept_candidate=outcome.kept_candidate,
    )
    assert told.endswith(f"Nothing was published; live: {first['version']}; {kept}.")
    (age,) = [
        e.asset_check_evaluation
        for e in instance.all_logs(rerun.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.asset_check_evaluation and e.asset_check_evaluation.check_name == "live_version_age"
    ]
    assert str(age.description).endswith(
        f"{canary['version']}, an earlier build of 2026-11-03, stays the candidate"
    )
