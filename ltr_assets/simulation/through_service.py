"""Simulated days through the real ranking service: the loop as production closes it.

Each case of a simulated day (`Simulator.day_cases`) is sent to a running `ltr serve` as
`POST /rank`, with the simulator's request id and, as `X-LTR-Clock`, the simulated time it was
asked for (the service runs with LTR_SIMULATED_CLOCK=true, so the impressions it logs carry that
time). The simulator's users (`Simulator.day_users`) then examine and act on the list exactly as
the service returned it, exploration swaps included, under the simulator's click model, and their
feedback goes to `POST /feedback` in batches. Nothing of a served day reaches the audit log: the
pipeline's raw_events reads what the service logged under LTR_SERVING_LOG_DIR.

`ServiceProcess` starts `ltr serve` as a child in a session of its own on a free 127.0.0.1
port, with a generated feedback and reload token, and stops its whole process group;
`ServiceClient` is the HTTP client; `serve_day` runs one day through it; `wait_until_logged`
waits until the service has written what it was sent into complete files.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import orjson

from ltr_assets.simulation.simulator import SimCase, Simulator
from ltr_core.features import FEATURES

CLOCK_HEADER = "X-LTR-Clock"
FEEDBACK_BATCH = 1000  # POST /feedback's limit (ltr_serving.routers.feedback.MAX_FEEDBACK_BATCH)
STARTUP_TIMEOUT_S = 90.0  # on a busy 2-core machine the service's imports alone took 20 s
LOG_TIMEOUT_S = 60.0


class ServiceError(RuntimeError):
    """The service did not start, refused a request, or did not log what it was sent."""


@dataclass(frozen=True)
class RankAnswer:
    """What `POST /rank` answered for one case."""

    request_id: str
    version: str
    policy: str
    shown: list[str]  # lawyer ids in shown positions


@dataclass
class ServedDay:
    """One simulated day as the service served it."""

    day: date
    requests: int = 0
    impressions: int = 0
    swapped: int = 0  # requests the service shown with an exploration swap
    feedback: int = 0  # events /feedback accepted
    versions: Counter[str] = field(default_factory=Counter)  # requests per serving version
    seconds: float = 0.0

    @property
    def version(self) -> str:
        """The version that served the day (the most requests, if a reload fell mid-day)."""
        return self.versions.most_common(1)[0][0] if self.versions else "-"


def rank_body(case: SimCase) -> dict[str, Any]:
    """The `POST /rank` body of a case: its candidates, features and declared attributes, with
    the simulator's request id (the feedback refers to it, and the truth is keyed by it)."""
    candidates = []
    for lawyer, row, groups in zip(
        case.lawyer_ids, case.features.tolist(), case.groups, strict=True
    ):
        candidate: dict[str, Any] = {
            "lawyer_id": lawyer,
            "features": dict(zip(FEATURES, row, strict=True)),
        }
        declared = {k: v for k, v in groups.items() if v is not None}
        if declared:
            candidate["protected_attributes"] = declared
        candidates.append(candidate)
    return {"case_id": case.case_id, "request_id": case.request_id, "candidates": candidates}


def clock_text(case: SimCase) -> str:
    return case.shown_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ServiceClient:
    """The calls the loop makes: /rank, /feedback, /reload and /ltr/health."""

    def __init__(
        self, url: str, feedback_token: str, reload_token: str = "", timeout_s: float = 30.0
    ) -> None:
        self.url = url
        self._feedback = {"Authorization": f"Bearer {feedback_token}"}
        self._reload = {"Authorization": f"Bearer {reload_token}"}
        self.http = httpx.Client(base_url=url, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def health(self) -> dict[str, Any]:
        response = self.http.get("/ltr/health")
        body: dict[str, Any] = response.json()
        return body

    def reload(self) -> str:
        """POST /reload (as the reload sensor does after a publish); the version now live."""
        response = self.http.post("/reload", headers=self._reload)
        if response.status_code != 200:
            raise ServiceError(f"POST /reload: {response.status_code} {response.text}")
        version: str = response.json()["version"]
        return version

    def rank(self, case: SimCase) -> RankAnswer:
        headers = {"Content-Type": "application/json", CLOCK_HEADER: clock_text(case)}
        response = self.http.post("/rank", content=orjson.dumps(rank_body(case)), headers=headers)
        if response.status_code != 200:
            raise ServiceError(
                f"POST /rank {case.request_id}: {response.status_code} {response.text}"
            )
        body = orjson.loads(response.content)
        return RankAnswer(
            body["request_id"],
            body["version"],
            body["policy"],
            [item["lawyer_id"] for item in body["candidates"]],
        )

    def feedback(self, events: Sequence[dict[str, Any]]) -> int:
        """POST /feedback in batches; the number accepted (every event, or ServiceError)."""
        accepted = 0
        for start in range(0, len(events), FEEDBACK_BATCH):
            batch = events[start : start + FEEDBACK_BATCH]
            response = self.http.post(
                "/feedback",
                content=orjson.dumps(batch),
                headers={**self._feedback, "Content-Type": "application/json"},
            )
            if response.status_code != 200:
                raise ServiceError(f"POST /feedback: {response.status_code} {response.text[:500]}")
            accepted += int(response.json()["accepted"])
        return accepted


def serve_day(simulator: Simulator, day: date, client: ServiceClient) -> ServedDay:
    """Rank each of the day's cases with `POST /rank`, let the simulator's users act on the
    order the service returned, and post their feedback, in time order, to `POST /feedback`."""
    started = time.perf_counter()
    served = ServedDay(day)
    users = simulator.day_users(day)
    feedback: list[dict[str, Any]] = []
    for case in simulator.day_cases(day):  # in order: the users' draws follow the day's cases
        answer = client.rank(case)
        served.requests += 1
        served.impressions += len(answer.shown)
        served.swapped += answer.policy == "swap"
        served.versions[answer.version] += 1
        feedback.extend(users.respond_to_ids(case, answer.shown))
    feedback.sort(key=lambda e: (e["timestamp"], e["event_id"]))
    served.feedback = client.feedback(feedback)
    served.seconds = time.perf_counter() - started
    return served


def wait_until_logged(
    client: ServiceClient,
    log_dir: Path,
    day: date,
    impressions: int,
    feedback: int,
    timeout_s: float = LOG_TIMEOUT_S,
) -> None:
    """Wait until the service has logged `impressions` and `feedback` events in all (its
    counts since it started) and the day's folder holds complete files only (a file is
    completed at an event of another day, or LTR_SERVING_LOG_ROTATE_SECONDS after it opened)."""
    deadline = time.monotonic() + timeout_s
    folder = log_dir / day.isoformat()
    while True:
        log = client.health().get("event_log") or {}
        logged = (log.get("logged_impressions", 0), log.get("logged_feedback", 0))
        if logged[0] >= impressions and logged[1] >= feedback and not any(folder.glob("*.part")):
            return
        if log.get("dropped") or log.get("failed"):
            raise ServiceError(f"the service dropped or failed to write events: {log}")
        if time.monotonic() > deadline:
            raise ServiceError(
                f"after {timeout_s:g} s the service had logged {logged} of ({impressions}, "
                f"{feedback}) impressions and feedback events, or {folder} still had a file open"
            )
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class ServiceProcess:
    """`ltr serve` on a free 127.0.0.1 port, in a session (process group) of its own, set up
    for a simulation: the simulated clock, the impression log to files under `log_dir`
    (completed `rotate_seconds` after they open), a generated feedback and reload token, the
    poller off (the caller reloads after each publication, as the reload sensor does).
    Everything else comes from `env` (the same LTR_HOME, hence the same registry). Its output
    goes to `output` (default `<log_dir>/../ltr-serve.log`)."""

    def __init__(
        self,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        *,
        explore_rate: float | None = None,
        rotate_seconds: float = 1.0,
        output: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = Path(log_dir)
        self.output = output or self.log_dir.parent / "ltr-serve.log"
        self.feedback_token = secrets.token_urlsafe(24)
        self.reload_token = secrets.token_urlsafe(24)
        child_env = dict(os.environ if env is None else env)
        child_env.update(
            {
                "LTR_ENVIRONMENT": "development",
                "LTR_SIMULATED_CLOCK": "true",
                "LTR_IMPRESSION_LOG": "file",
                "LTR_SERVING_LOG_DIR": str(self.log_dir),
                "LTR_SERVING_LOG_ROTATE_SECONDS": str(rotate_seconds),
                "LTR_FEEDBACK_TOKEN": self.feedback_token,
                "LTR_RELOAD_TOKEN": self.reload_token,
                "WEIGHTS_POLL_SECONDS": "0",
            }
        )
        if explore_rate is not None:
            child_env["LTR_EXPLORE_RATE"] = str(explore_rate)
        self.env = child_env
        self.process: subprocess.Popen[bytes] | None = None
        self.client = ServiceClient(self.url, self.feedback_token, self.reload_token)

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> dict[str, Any]:
        """Start it and wait until it serves a version; its health then."""
        command = [sys.executable, "-m", "ltr_assets.cli", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port)]  # fmt: skip
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with self.output.open("ab") as output:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                tail = self.output.read_text(errors="replace")[-2000:]
                raise ServiceError(f"ltr serve exited with {self.process.returncode}: {tail}")
            try:
                response = self.client.http.get("/ltr/health", timeout=1.0)
                if response.status_code == 200:
                    body: dict[str, Any] = response.json()
                    return body
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"ltr serve did not serve a version within {timeout_s:g} s")
            time.sleep(0.1)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM to the service's process group (it drains its log queue and completes its
        files), SIGKILL after `timeout_s`; its exit code."""
        self.client.close()
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return process.returncode

    def __enter__(self) -> ServiceProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
