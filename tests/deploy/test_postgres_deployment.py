"""The deployed shape, as separate processes on a Postgres instance (deploy/dagster-postgres.yaml):
a gRPC code server for ltr_assets.definitions, the webserver on a workspace that points at it,
and dagster-daemon. A 3-day backfill of ltr_daily_job is launched through GraphQL; day 2's run
worker is killed once ltr_model has started. The dead worker's run is marked failed and retried
(from the failed step) and the retry publishes; day 1, refused by its gate (min_samples), is
not retried: a refusal is a decision, not a fault.

PostgreSQL: the server on 127.0.0.1:5432 (trust auth, user postgres), in a database of the
test's own that is dropped afterwards. Without a server the test fails, saying so."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    EventLogEntry,
    RunRecord,
    RunsFilter,
)
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from tests.conftest import write_simulated_events
from tests.deploy.conftest import PG_HOST, PG_PORT, PG_USER
from tests.support.dagster_processes import (
    BIN,
    DAYS,
    ROOT,
    cmdline,
    descendants,
    launch_backfill,
    start_process,
    stop_process,
    wait_for_port,
    wait_for_webserver,
)
from tests.support.kafka_broker import free_port

DONE = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
LOCATION = "ltr_assets.definitions"
GATE = ("ndcg_at_5", "fairness_gap", "latency_p95", "min_samples", "click_signal", "no_regression")


@pytest.fixture
def pg_home(
    ltr_home: Path, small_data_gate: None, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """DAGSTER_HOME holding the production instance file, as shipped, on the test's database."""
    home = ltr_home / "dagster"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster-postgres.yaml", home / "dagster.yaml")
    for name, value in {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_USER": PG_USER,
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "DAGSTER_PG_HOST": PG_HOST,
        "DAGSTER_PG_PORT": str(PG_PORT),
        "DAGSTER_PG_DB": pg_database,
        "LTR_START_DATE": DAYS[0],
    }.items():
        monkeypatch.setenv(name, value)
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=len(DAYS))
    with DagsterInstance.get() as instance:  # migrate the schema now, before three processes race
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert instance.run_retries_enabled and instance.run_monitoring_enabled
    return home


@pytest.fixture
def deployment(pg_home: Path, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """Code server, webserver and daemon; yields the webserver's URL and the code server's pid.
    Their output goes to tmp_path/*.log (printed if the test fails)."""
    grpc_port, web_port = free_port(), free_port()
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        f"  - grpc_server:\n      host: 127.0.0.1\n      port: {grpc_port}\n"
        f"      location_name: {LOCATION}\n"
    )
    processes = []
    try:
        code_server = start_process(
            [str(BIN / "dagster"), "api", "grpc", "-h", "127.0.0.1", "-p", str(grpc_port),
             "-m", LOCATION, "--location-name", LOCATION],
            log=tmp_path / "code-server.log",
        )  # fmt: skip
        processes.append(code_server)
        wait_for_port(grpc_port, code_server, "the gRPC code server")
        url = f"http://127.0.0.1:{web_port}"
        processes.append(
            start_process(
                [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port),
                 "-w", str(workspace)],
                log=tmp_path / "webserver.log",
            )
        )  # fmt: skip
        processes.append(
            start_process(
                [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
                log=tmp_path / "daemon.log",
            )
        )
        wait_for_webserver(url)
        yield url, code_server.pid
    finally:
        for process in reversed(processes):
            stop_process(process)


def _runs(instance: DagsterInstance) -> list[RunRecord]:
    return list(instance.get_run_records(RunsFilter(job_name="ltr_daily_job")))


def _by_partition(records: list[RunRecord], day: str) -> list[RunRecord]:
    return sorted(
        (r for r in records if r.dagster_run.tags.get("dagster/partition") == day),
        key=lambda r: r.create_timestamp,
    )


def _wait(what: str, timeout_s: float, probe):  # noqa: ANN001, ANN202 (a test helper)
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _step_started(instance: DagsterInstance, run_id: str, step: str) -> bool:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_START).records
    return any(r.event_log_entry.step_key == step for r in records)


def _run_worker(code_server_pid: int) -> int | None:
    """The code server's run worker: the one process it spawned (multiprocessing, spawn) that
    is not multiprocessing's resource tracker. One pipeline run at a time (tag limit 1)."""
    workers = [
        pid
        for pid in descendants(code_server_pid)
        if "spawn_main" in cmdline(pid) and "resource_tracker" not in cmdline(pid)
    ]
    assert len(workers) <= 1, [cmdline(pid) for pid in workers]
    return workers[0] if workers else None


def _failure_time(instance: DagsterInstance, run_id: str) -> float:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records
    assert records, run_id
    return float(records[-1].event_log_entry.timestamp)


def _events(instance: DagsterInstance, run_id: str, kind: DagsterEventType) -> list[EventLogEntry]:
    return [r.event_log_entry for r in instance.get_records_for_run(run_id, of_type=kind).records]


def _text(entry: EventLogEntry) -> str:
    event = entry.dagster_event
    return str(entry.user_message or (event.message if event else "") or "")


def _clock(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%H:%M:%S.%f")[:-3]


def test_a_killed_run_worker_is_retried_and_a_refused_gate_is_not(
    deployment: tuple[str, int], ltr_home: Path, tmp_path: Path
) -> None:
    webserver, code_server_pid = deployment
    began = time.monotonic()
    try:
        _run_the_backfill(webserver, code_server_pid, ltr_home)
    except BaseException:
        for log in sorted(tmp_path.glob("*.log")):
            print(f"==== {log.name} (last 4000 characters)\n{log.read_text()[-4000:]}")
        raise
    finally:
        print(f"wall time of the backfill (processes up to checks done): "
              f"{time.monotonic() - began:.1f} s")  # fmt: skip


def _run_the_backfill(webserver: str, code_server_pid: int, ltr_home: Path) -> None:
    backfill_id = launch_backfill(webserver, DAYS)
    with DagsterInstance.get() as instance:
        # Day 2's run, once its worker has started ltr_model: kill the worker (SIGKILL, as the
        # kernel's OOM killer would).
        victim = _wait(
            "day 2's run to start ltr_model",
            600,
            lambda: next(
                (
                    r.dagster_run
                    for r in _by_partition(_runs(instance), DAYS[1])
                    if r.dagster_run.status == DagsterRunStatus.STARTED
                    and _step_started(instance, r.dagster_run.run_id, "ltr_model")
                ),
                None,
            ),
        )
        worker = _wait("the run worker process", 30, lambda: _run_worker(code_server_pid))
        os.kill(worker, signal.SIGKILL)
        killed_at = time.time()

        # Every run of the backfill finished, the retry included (it carries the backfill tag,
        # so the backfill waits for it).
        def settled() -> list[RunRecord] | None:
            records = _runs(instance)
            retried = [r for r in records if r.dagster_run.parent_run_id == victim.run_id]
            finished = all(r.dagster_run.status in DONE for r in records)
            return records if retried and len(records) > len(DAYS) and finished else None

        records = _wait("the backfill and the retry to finish", 900, settled)
        backfill = _wait(
            "the backfill to complete",
            120,
            lambda: (
                (b := instance.get_backfill(backfill_id)) and b.status.value != "REQUESTED" and b
            ),
        )

        day1 = _by_partition(records, DAYS[0])
        day2 = _by_partition(records, DAYS[1])
        day3 = _by_partition(records, DAYS[2])
        killed = instance.get_run_record_by_id(victim.run_id)
        assert killed is not None
        retry = day2[-1]
        retry_run = retry.dagster_run

        # The killed run: failed (not by a step), retried once, from the failed step.
        assert [r.dagster_run.run_id for r in day2] == [victim.run_id, retry_run.run_id]
        assert killed.dagster_run.status == DagsterRunStatus.FAILURE
        assert killed.dagster_run.tags.get("dagster/failure_reason") != "STEP_FAILURE"
        assert killed.dagster_run.tags.get("dagster/will_retry") == "true"
        assert retry_run.tags["dagster/parent_run_id"] == victim.run_id
        assert retry_run.tags["dagster/root_run_id"] == victim.run_id
        assert retry_run.tags["dagster/retry_number"] == "1"
        assert retry_run.tags.get("dagster/backfill") == backfill_id
        assert retry_run.tags["ltr/pipeline"] == "daily"
        assert retry_run.status == DagsterRunStatus.SUCCESS

        # Who noticed: the code server watches the workers it spawned (twice a second) and
        # marks the run of one that exited failed (Dagster 1.13's DefaultRunLauncher has no
        # worker health check for the monitoring daemon to poll; docs/deployment.md).
        notices = [
            e
            for e in _events(instance, victim.run_id, DagsterEventType.ENGINE_EVENT)
            if e.timestamp >= killed_at - 1
        ]
        assert any("Run execution process" in _text(e) for e in notices), [
            _text(e) for e in notices
        ]
        # The retry re-ran only what had not finished: ltr_model and published_weights.
        retried_steps = {
            e.step_key for e in _events(instance, retry_run.run_id, DagsterEventType.STEP_START)
        }
        assert retried_steps == {"ltr_model", "published_weights"}, retried_steps
        # The daemons that did the work kept their heartbeats in Postgres.
        heartbeats = set(instance.get_daemon_heartbeats())
        assert {"QUEUED_RUN_COORDINATOR", "BACKFILL", "MONITORING", "EVENT_LOG_CONSUMER"} <= (
            heartbeats
        ), heartbeats

        # Day 1: the gate refused it (min_samples): a successful run that published nothing,
        # never retried.
        assert len(day1) == 1, [r.dagster_run.tags for r in day1]
        refused = day1[0].dagster_run
        assert refused.status == DagsterRunStatus.SUCCESS
        assert not [r for r in records if r.dagster_run.parent_run_id == refused.run_id]
        assert len(day3) == 1 and day3[0].dagster_run.status == DagsterRunStatus.SUCCESS
        assert backfill.status.value == "COMPLETED_FAILED"  # the killed run (day 1 succeeded)

        # Never two pipeline runs at a time, the retry included (the tag limit, on Postgres).
        spans = sorted((r.start_time, r.end_time) for r in records if r.start_time is not None)
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert end <= start, "two pipeline runs overlapped"

        # The run-status sensors name each outcome: the dead worker's run crashed, day 1 was
        # refused (tags only; the runs keep their status).
        def outcome(run_id: str) -> str | None:
            run = instance.get_run_by_id(run_id)
            return run.tags.get("ltr/outcome") if run else None

        _wait("the outcome tags", 120, lambda: outcome(victim.run_id) and outcome(refused.run_id))
        assert outcome(victim.run_id) == "crashed"
        victim_run = instance.get_run_by_id(victim.run_id)
        assert victim_run is not None  # the reason says where the dead worker stopped
        assert victim_run.tags["ltr/reason"].startswith("crashed: ltr_model: interrupted: ")
        assert outcome(refused.run_id) == "gate_refused"

        # The gate's evaluations, read from the Postgres instance, by day: min_samples refused
        # day 1; every gate check passed on days 2 (the retry's) and 3.
        for name in GATE:
            key = AssetCheckKey.from_user_string(f"ltr_model:{name}")
            latest = {
                day: instance.event_log_storage.get_latest_asset_check_execution_by_key(
                    [key], partition_filter=PartitionKeyFilter(key=day)
                )[key]
                for day in DAYS
            }
            assert latest[DAYS[1]].run_id == retry_run.run_id, name
            assert latest[DAYS[1]].status == AssetCheckExecutionRecordStatus.SUCCEEDED, name
            assert latest[DAYS[2]].status == AssetCheckExecutionRecordStatus.SUCCEEDED, name
            if name == "min_samples":
                assert latest[DAYS[0]].status == AssetCheckExecutionRecordStatus.FAILED

        # The registry: one version each for days 2 and 3, none for day 1; latest is day 3's.
        published: dict[str, list[str]] = {}
        for folder in sorted((ltr_home / "registry" / "versions").iterdir()):
            partition = json.loads((folder / "metadata.json").read_text())["partition"]
            published.setdefault(partition, []).append(folder.name)
        assert sorted(published) == DAYS[1:], published
        assert all(len(versions) == 1 for versions in published.values()), published
        pointer = json.loads((ltr_home / "registry" / "latest.json").read_text())
        assert pointer["partition"] == DAYS[2]
        assert pointer["version"] == published[DAYS[2]][0]

        detected_at = _failure_time(instance, victim.run_id)
        created = retry.create_timestamp.timestamp()
        outcomes = [
            (r.dagster_run.tags.get("dagster/partition"), r.dagster_run.run_id[:8],
             r.dagster_run.tags.get("ltr/outcome"))
            for r in _runs(instance)
        ]  # fmt: skip
        print("\nwhat the killed run's log says after the kill:")
        for entry in sorted(
            notices + _events(instance, victim.run_id, DagsterEventType.RUN_FAILURE),
            key=lambda e: e.timestamp,
        ):
            first_line = _text(entry).partition("\n")[0]
            print(f"  {_clock(entry.timestamp)}  {first_line}")
        print(
            "retry timeline (UTC):\n"
            f"  day 2 run {victim.run_id[:8]} started      {_clock(killed.start_time)}\n"
            f"  run worker (pid {worker}) killed  {_clock(killed_at)}\n"
            f"  run marked failed             {_clock(detected_at)}"
            f"  (+{detected_at - killed_at:.1f} s; reason "
            f"{killed.dagster_run.tags.get('dagster/failure_reason')})\n"
            f"  retry {retry_run.run_id[:8]} created       {_clock(created)}"
            f"  (+{created - killed_at:.1f} s)\n"
            f"  retry started                 {_clock(retry.start_time)}"
            f"  (+{(retry.start_time or killed_at) - killed_at:.1f} s)\n"
            f"  retry finished (SUCCESS)      {_clock(retry.end_time)}"
            f"  (+{(retry.end_time or killed_at) - killed_at:.1f} s)\n"
            f"  day 3 run started / finished  {_clock(day3[0].start_time)} / "
            f"{_clock(day3[0].end_time)}\n"
            f"  retry's steps: {sorted(map(str, retried_steps))}\n"
            f"  ltr/outcome tags so far: {outcomes}\n"
            f"  published: {published}; latest: {pointer['version']} ({pointer['partition']})"
        )
