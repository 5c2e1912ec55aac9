"""Dagster processes for the end-to-end and deployment tests: start and stop a process tree,
wait for a port or an HTTP endpoint, and launch a backfill through the webserver's GraphQL API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]


def start_process(args: list[str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """A process in its own session, so the whole process group can be stopped (dagster ignores
    SIGINT/SIGTERM sent to the parent alone when started from a non-interactive shell). Output
    goes to `log` when given, else nowhere."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (the child keeps it)
    return subprocess.Popen(
        args, cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 15) -> None:
    """SIGTERM the process group, SIGKILL it past `grace_s` (no test here judges a graceful
    exit; the Postgres deployment's daemon used to hold the teardown for a minute)."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], what: str, timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, f"{what} exited with {process.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{what} did not listen on {port}"
        time.sleep(0.5)


def wait_for_webserver(url: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "dagster-webserver did not come up"
        time.sleep(0.5)


def launch_backfill(webserver: str, days: Sequence[str] = DAYS) -> str:
    """A backfill of ltr_daily_job over `days` through the webserver's GraphQL API (the UI's own
    call); returns the backfill id."""
    query = """
    mutation($data: LaunchBackfillParams!) {
      launchPartitionBackfill(backfillParams: $data) {
        __typename
        ... on LaunchBackfillSuccess { backfillId }
        ... on PythonError { message }
      }
    }"""
    data = {
        "selector": {
            "partitionSetName": "ltr_daily_job_partition_set",
            "repositorySelector": {
                "repositoryLocationName": "ltr_assets.definitions",
                "repositoryName": "__repository__",
            },
        },
        "partitionNames": list(days),
    }
    answer = httpx.post(
        f"{webserver}/graphql", json={"query": query, "variables": {"data": data}}, timeout=60
    ).json()
    result = answer["data"]["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", answer
    return str(result["backfillId"])


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), children first."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop(0)
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.append(child)
                    queue.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
