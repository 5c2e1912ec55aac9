"""The Dagster UI in headless Chromium: it loads the same Definitions and shows the gate's
asset-check results of a real run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dagster import DagsterInstance
from playwright.sync_api import sync_playwright

from ltr_assets.definitions import defs
from tests.conftest import write_simulated_events
from tests.support.kafka_broker import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture
def webserver(ltr_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """dagster-webserver over a DAGSTER_HOME that holds one day's real run."""
    dagster_home = ltr_home / "dagster"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=2)
    job = defs.resolve_job_def("ltr_daily_job")
    with DagsterInstance.get() as instance:
        job.execute_in_process(partition_key="2026-11-01", instance=instance, raise_on_error=False)
        assert job.execute_in_process(partition_key="2026-11-02", instance=instance).success
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
         "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("dagster-webserver did not come up")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_ui_shows_assets_and_gate_check_results(webserver: str) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
        )
    with sync_playwright() as p, tempfile.TemporaryDirectory() as shots:
        # Playwright gives the browser a fresh temporary profile (user data dir) of its own.
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{webserver}/assets/ltr_model?view=checks", wait_until="domcontentloaded")
        for check in ("ndcg_at_5", "fairness_gap", "latency_p95", "min_samples", "no_regression"):
            page.get_by_text(check, exact=True).first.wait_for(timeout=60_000)
        page.get_by_text("Succeeded").nth(4).wait_for(timeout=30_000)  # all five gate checks
        page.get_by_text("largest exposure gap", exact=False).first.wait_for(timeout=30_000)
        page.screenshot(path=str(Path(shots) / "checks.png"))
        page.goto(f"{webserver}/assets", wait_until="domcontentloaded")
        for asset in ("raw_events", "feature_matrix", "ltr_model", "published_weights"):
            page.get_by_text(asset, exact=True).first.wait_for(timeout=60_000)
        page.goto(
            f"{webserver}/locations/ltr_assets.definitions/jobs", wait_until="domcontentloaded"
        )
        for job in ("ltr_daily_job", "ltr_label_refresh_job", "ltr_rollback_job"):
            page.get_by_text(job, exact=True).first.wait_for(timeout=60_000)
        browser.close()
