"""The serving tests' fixtures (registered for every tier by tests/conftest.py): the real app
under uvicorn on 127.0.0.1, in a temporary LTR_HOME with a real registry folder.

Nothing here imports the pipeline (`ltr_assets`): the serving tier runs in the serving install
(tests/deploy/test_serving_install.py). Versions are written by `VersionWriter`, on ltr_core."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import numpy as np
import pytest
import uvicorn

from ltr_core.features import FEATURES
from ltr_core.settings import Settings
from ltr_serving.app import create_app
from tests.support.registry_writer import VersionWriter, normalise, write_atomically

TOKEN = "s3cret-reload-token"
FEEDBACK_TOKEN = "s3cret-feedback-token"
PARTITION = "2026-11-25"


@pytest.fixture(scope="session")
def model_text() -> str:
    """A tiny real LightGBM lambdarank booster over FEATURES."""
    rng = np.random.default_rng(0)
    X = rng.random((300, len(FEATURES)))
    y = (X[:, 0] + X[:, 1] > 1.0).astype(int) + (X[:, 2] > 0.8).astype(int)
    data = lgb.Dataset(X, y, group=[20] * 15, feature_name=list(FEATURES))
    params = {"objective": "lambdarank", "verbosity": -1, "min_data_in_leaf": 5, "seed": 1}
    return lgb.train(params, data, num_boost_round=5).model_to_string()


def weights_for(seed: int) -> dict[str, float]:
    return normalise(np.random.default_rng(seed).random(len(FEATURES)))


class Publisher:
    """Publishes versions into the test registry, one second apart so ids never collide."""

    def __init__(self, settings: Settings, model_text: str) -> None:
        self.registry = VersionWriter(settings.registry_dir, settings.weights_path)
        self.model_text = model_text
        self._now = datetime(2026, 11, 26, 2, 15, 0, tzinfo=UTC)

    def publish(
        self, weights: dict[str, float], gated_scorer: str | None = "", candidate: bool = False
    ) -> str:
        """A version gated for `gated_scorer`: by default the LTR_SCORER of the moment, None for
        a version that records no gated scorer. `candidate`: a canary publish (candidate.json
        names it, latest stays)."""
        self._now += timedelta(seconds=1)
        metadata: dict[str, Any] = {"gate_passed": True}
        if gated_scorer is not None:
            metadata["gated_scorer"] = gated_scorer or os.environ.get("LTR_SCORER", "weights")
        return self.registry.publish(
            weights, self.model_text, metadata, PARTITION, now=self._now, candidate=candidate
        )

    def point_latest_at(self, version: str) -> None:
        """Move the pointer by hand, bypassing the registry's validation (a broken publisher)."""
        # Atomically (temporary file, then os.replace), as the registry itself writes it: the
        # poller reads it every 0.1 s and must never see a half-written file.
        pointer = {"version": version, "partition": PARTITION, "moved_at": "now"}
        write_atomically(self.registry.pointer_path, json.dumps(pointer).encode())


@dataclass
class RunningServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, **kwargs)

    def stop(self) -> None:
        # the lifespan's shutdown waits for the event log's writer process to finish writing
        self.server.should_exit = True
        self.thread.join(timeout=90)
        assert not self.thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def serving_env(ltr_home: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Set the serving variables (before any app exists); returns the resulting Settings."""

    def apply(**env: str | None) -> Settings:
        defaults: dict[str, str | None] = {
            "LTR_RELOAD_TOKEN": TOKEN,
            "WEIGHTS_POLL_SECONDS": "0",  # poller off unless a test turns it on
            "LTR_SCORER": "weights",
            "LTR_MAX_CANDIDATES": None,
            # Exploration swaps positions of a share of requests; off unless a test turns it on,
            # so the order of every response follows the scores.
            "LTR_EXPLORE_RATE": "0",
            "LTR_INTERLEAVE_RATE": None,  # the default; only a candidate makes it matter
            "LTR_FEEDBACK_TOKEN": FEEDBACK_TOKEN,
        }
        for name, value in {**defaults, **env}.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        return Settings.from_env()

    return apply


@pytest.fixture
def publisher(serving_env: Callable[..., Settings], model_text: str) -> Publisher:
    return Publisher(serving_env(), model_text)


@pytest.fixture
def start_server() -> Iterator[Callable[..., RunningServer]]:
    """Start `create_app()` (settings read from the environment at startup) under uvicorn, or
    the app given."""
    running: list[RunningServer] = []

    def start(app: Any = None) -> RunningServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))  # a free port, held from here on: no race with others
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app or create_app(), log_level="warning", access_log=False, loop="asyncio"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn exited during startup"
            assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
            time.sleep(0.01)
        result = RunningServer(f"http://127.0.0.1:{port}", server, thread)
        running.append(result)
        return result

    yield start
    for result in running:
        result.stop()


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 60.0, **kwargs})


@pytest.fixture
def start_server_process() -> Iterator[Callable[..., ServerProcess]]:
    """The app in its own process via `ltr_serving.server.serve` (own GIL, own core), with the
    environment as the test has set it."""
    running: list[subprocess.Popen[bytes]] = []

    def start(stderr: Path | None = None) -> ServerProcess:
        """`stderr`: a file the process's stderr goes to (else the test's)."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        code = f"from ltr_serving.server import serve; serve(port={port}, log_level='warning')"
        with contextlib.ExitStack() as files:
            err = files.enter_context(open(stderr, "ab")) if stderr is not None else None
            process = subprocess.Popen(
                [sys.executable, "-c", code], env=dict(os.environ), stderr=err
            )
        running.append(process)
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert process.poll() is None, "the server process exited"
            try:
                return httpx.get(url + "/ltr/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        # Generous: on a busy 2-core machine the imports alone have taken 20 s.
        wait_for(healthy, 90, "the server process to answer")
        return ServerProcess(url, process)

    yield start
    for process in running:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rank_body(n: int, seed: int = 0, case_id: str = "c-1", **extra: Any) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    values = rng.random((n, len(FEATURES)))
    return {
        "case_id": case_id,
        "candidates": [
            {"lawyer_id": f"l-{i}", "features": dict(zip(FEATURES, map(float, row), strict=True))}
            for i, row in enumerate(values)
        ],
        **extra,
    }


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.02)


def metric_value(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus text output (0.0 when absent)."""
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def writer_of(server: ServerProcess) -> int:
    """The server's writer process (`python -m ltr_serving.log_process`)."""
    for child in children(server.process.pid):
        if b"ltr_serving.log_process" in Path(f"/proc/{child}/cmdline").read_bytes():
            return child
    raise AssertionError("the server has no writer process")
