"""The operator's Monday morning, in headless Chromium over a fresh `ltr demo` state: what is
live and why, which nights were refused and why, a crash told apart from a refusal, the charts,
and a rollback picked from the registry's versions. The screenshots it takes are the ones in
docs/screenshots/ (copied from LTR_TEST_ARTIFACTS)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunsFilter,
)
from playwright.sync_api import Page, sync_playwright

from tests.e2e.test_dagster_ui import CHROMIUM, CHROMIUM_ARGS, _page, _shot
from tests.support.dagster_processes import (
    BIN,
    ROOT,
    start_process,
    stop_process,
    wait_for_webserver,
)
from tests.support.kafka_broker import free_port

DEMO_DAYS = 8  # two nights refused at seed 7 (day 1 by min_samples), a promotion, 6 versions
LOCATION = "ltr_assets.definitions"


def _latest(home: Path) -> str:
    return str(json.loads((home / "registry" / "latest.json").read_text())["version"])


@pytest.fixture
def demo_home(ltr_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`ltr demo --days 8` into a fresh LTR_HOME and DAGSTER_HOME, as `make demo` runs it (the
    canary rollout and the demo's own settings, written to ltr.env for the UI)."""
    for name in ("LTR_ROLLOUT", "LTR_START_DATE", "LTR_TRAIN_WINDOW_DAYS"):
        monkeypatch.delenv(name, raising=False)
    dagster_home = ltr_home / "dagster"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    demo = subprocess.run(
        [str(BIN / "ltr"), "demo", "--days", str(DEMO_DAYS)],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    # What `make ui` reads: the demo's partition range
    first = datetime.now(UTC).date() - timedelta(days=DEMO_DAYS)
    assert f"LTR_START_DATE={first}" in (ltr_home / "ltr.env").read_text()
    return ltr_home


@pytest.fixture
def ui(demo_home: Path) -> Iterator[str]:
    """The webserver and the daemon (its sensors keep the rollback pick-list and run tags
    current) over the demo's instance."""
    port = free_port()
    workspace = str(ROOT / "workspace.yaml")
    daemon = start_process([str(BIN / "dagster-daemon"), "run", "-w", workspace])
    webserver = start_process(
        [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", workspace]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_webserver(url, timeout_s=300)  # loading the location is slow on a busy machine
        yield url
    finally:
        stop_process(webserver)
        stop_process(daemon)


def _daily_runs(instance: DagsterInstance) -> list[DagsterRun]:
    return [r.dagster_run for r in instance.get_run_records(RunsFilter(job_name="ltr_daily_job"))]


def _wait_for(predicate, what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def _partition_stats(ui: str) -> dict[str, dict[str, int]]:
    """Each asset's partition counts as the webserver gives them to the UI (the lineage's and
    the catalog's colours: red when a partition failed)."""
    query = (
        "{ assetNodes { assetKey { path } "
        "partitionStats { numMaterialized numFailed numPartitions } } }"
    )
    data = httpx.post(f"{ui}/graphql", json={"query": query}, timeout=60).json()["data"]
    return {"/".join(n["assetKey"]["path"]): n["partitionStats"] for n in data["assetNodes"]}


def _markdown(page: Page, key: str) -> None:
    """Open the Markdown of metadata entry `key` on the current asset page."""
    page.get_by_text(key, exact=True).first.wait_for(timeout=60_000)
    page.get_by_text(key, exact=True).first.locator("xpath=ancestor::tr").get_by_text(
        "[Show Markdown]"
    ).click()


def test_the_operator_reads_what_is_live_why_nights_were_refused_and_rolls_back(
    ui: str, demo_home: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: `make test` installs it")
    live = _latest(demo_home)
    with DagsterInstance.get() as instance:
        runs = _daily_runs(instance)
        # Every demo night ran from the code location, tagged with its outcome and reason.
        assert len(runs) == DEMO_DAYS
        assert all(r.remote_job_origin is not None for r in runs)
        assert all(r.tags.get("dagster/code_location") == LOCATION for r in runs)
        outcomes = {r.tags["dagster/partition"]: r.tags.get("ltr/outcome", "") for r in runs}
        run_ids = {r.tags["dagster/partition"]: r.run_id for r in runs}
        reasons = {r.tags["dagster/partition"]: r.tags.get("ltr/reason", "") for r in runs}
    refused = sorted(day for day, outcome in outcomes.items() if outcome == "gate_refused")
    assert refused and set(outcomes.values()) <= {"gate_refused", "published", ""}
    assert reasons[refused[0]].startswith("gate refused: ") and "min_samples" in reasons[refused[0]]
    assert "published" in outcomes.values()
    # A refused night is a successful run whose publication record says why nothing went out.
    assert all(r.status == DagsterRunStatus.SUCCESS for r in runs)
    with DagsterInstance.get() as instance:
        day = AssetRecordsFilter(
            asset_key=AssetKey("published_weights"), asset_partitions=refused[:1]
        )
        (record,) = instance.fetch_materializations(day, limit=1).records
    assert record.asset_materialization is not None
    outcome_entry = record.asset_materialization.metadata["outcome"]
    assert str(outcome_entry.value).startswith("not published: gate refused: ")
    assert "min_samples: " in str(outcome_entry.value)

    # What the lineage and the catalog colour by: no asset has a failed partition.
    stats = _partition_stats(ui)
    assert set(stats) == {"raw_events", "feature_matrix", "ltr_model", "online_comparison",
                          "published_weights"}  # fmt: skip
    for asset, figures in stats.items():
        assert figures["numFailed"] == 0, (asset, figures)
        assert figures["numMaterialized"] == figures["numPartitions"] == DEMO_DAYS, (asset, figures)

    httpx.post(f"{ui}/graphql", json={"query": "mutation { setNuxSeen }"}, timeout=10)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = _page(browser, ui)
        try:
            # The lineage: every asset green, published_weights among them.
            page.goto(f"{ui}/asset-groups", wait_until="domcontentloaded")
            page.get_by_text("published_weights", exact=True).first.wait_for(timeout=120_000)
            page.wait_for_timeout(3000)
            _shot(page, "operator-lineage", full_page=False)

            # The demo's nights on the Overview timeline, under the location's jobs.
            page.goto(f"{ui}/overview/timeline", wait_until="domcontentloaded")
            page.get_by_text("ltr_daily_job", exact=True).first.wait_for(timeout=120_000)
            page.wait_for_timeout(1500)
            _shot(page, "operator-timeline", full_page=False)

            # A refused night says so, with its reason, in the runs list.
            page.goto(
                f"{ui}/runs?q%5B0%5D=tag%3Altr%2Foutcome%3Dgate_refused",
                wait_until="domcontentloaded",
            )
            page.get_by_text(re.compile(r"ltr/reason: gate refused: ")).first.wait_for(
                timeout=60_000
            )
            assert page.get_by_text(re.compile(r"ltr/outcome: published")).count() == 0
            _shot(page, "operator-runs-refused-with-reason", full_page=False)

            # The refused night's own page: a successful run, its gate's failure a warning, no
            # failed step or stack trace as a crash has.
            page.goto(f"{ui}/runs/{run_ids[refused[0]]}", wait_until="domcontentloaded")
            page.get_by_text("Success", exact=True).first.wait_for(timeout=60_000)
            page.get_by_text(re.compile(r"not published: gate refused")).first.wait_for(
                timeout=60_000
            )
            assert page.get_by_text(re.compile("DagsterAssetCheckFailedError")).count() == 0
            _shot(page, "operator-refused-run", full_page=False)

            # What is live, named where the live version is shown, with its model card.
            page.goto(f"{ui}/assets/published_weights", wait_until="domcontentloaded")
            page.get_by_text("live_version", exact=True).first.wait_for(timeout=60_000)
            page.get_by_text(live, exact=True).first.wait_for(timeout=30_000)
            page.get_by_text("outcome", exact=True).first.wait_for(timeout=30_000)
            _shot(page, "operator-published-weights-live", full_page=False)
            _markdown(page, "model_card")
            title = page.get_by_text(re.compile(f"Model card: version {live}")).first
            title.wait_for(timeout=30_000)
            assert page.get_by_text(re.compile(r"gender&pcd=")).count() == 0  # not in the card
            page.wait_for_timeout(500)  # the dialog fades in, focused on its Close button
            title.scroll_into_view_if_needed()
            _shot(page, "operator-live-model-card", full_page=False)

            # The gate's charts: curve with its band, nDCG@5 and fairness per night.
            page.goto(f"{ui}/assets/ltr_model", wait_until="domcontentloaded")
            _markdown(page, "charts")
            images = page.locator("img[src^='data:image/svg+xml']")
            images.first.wait_for(timeout=30_000)
            assert images.count() == 3
            page.wait_for_timeout(500)
            _shot(page, "operator-gate-charts", full_page=False)

            # A crash is labelled a crash: the newest night again, with a matrix of its window
            # broken, launched from the location as the demo launches its nights.
            _crash_a_night(demo_home)
            page.goto(
                f"{ui}/runs?q%5B0%5D=tag%3Altr%2Foutcome%3Dcrashed", wait_until="domcontentloaded"
            )
            page.get_by_text(re.compile(r"ltr/reason: crashed: ltr_model")).first.wait_for(
                timeout=60_000
            )
            _shot(page, "operator-runs-crashed", full_page=False)

            # Roll back by picking a version from the registry's versions.
            with DagsterInstance.get() as instance:
                _wait_for(
                    lambda: len(instance.get_dynamic_partitions("registry_versions")) >= 2,
                    "the rollback pick-list",
                )
                versions = instance.get_dynamic_partitions("registry_versions")
            target = next(v for v in versions if v != _latest(demo_home))
            page.goto(
                f"{ui}/locations/{LOCATION}/jobs/ltr_rollback_job/playground",
                wait_until="domcontentloaded",
            )
            page.get_by_placeholder("Partition").click()
            page.get_by_text(target, exact=True).first.click()
            page.wait_for_timeout(1000)
            _shot(page, "operator-rollback-pick", full_page=False)
            page.get_by_role("button", name="Launch Run").click()
            with DagsterInstance.get() as instance:

                def rolled_back() -> bool:
                    done = [
                        r.dagster_run
                        for r in instance.get_run_records(RunsFilter(job_name="ltr_rollback_job"))
                        if r.dagster_run.status
                        in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)
                    ]
                    return bool(done)

                _wait_for(rolled_back, "the rollback run", timeout_s=300)
                (run,) = [
                    r.dagster_run
                    for r in instance.get_run_records(RunsFilter(job_name="ltr_rollback_job"))
                ]
            assert run.status == DagsterRunStatus.SUCCESS
            assert run.tags["dagster/partition"] == target and _latest(demo_home) == target
            page.goto(f"{ui}/runs/{run.run_id}", wait_until="domcontentloaded")
            page.get_by_text("previous_live_version").first.wait_for(timeout=60_000)
            _shot(page, "operator-rollback-result", full_page=False)
        finally:
            _shot(page, "operator-last-page")
            browser.close()


def _crash_a_night(home: Path) -> None:
    from ltr_assets.defs.launch import LocationLauncher

    newest = datetime.now(UTC).date() - timedelta(days=1)
    (home / "lake" / "feature_matrix" / f"{newest - timedelta(days=1)}.parquet").write_bytes(
        b"not parquet"
    )
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    with DagsterInstance.get() as instance, LocationLauncher(instance) as launcher:
        result = launcher.launch("ltr_daily_job", newest.isoformat(), quiet)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and run.tags["ltr/outcome"] == "crashed"
