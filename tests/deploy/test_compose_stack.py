"""The compose deployment, run: deploy/docker-compose.yml as shipped, on Debian's dockerd and
docker-compose (v1), with the images `make deploy-images` builds from uv.lock.

The stack: the Dagster code server, webserver and daemon each in its own container, every run in
a container of its own (DockerRunLauncher), two ranking-service replicas polling S3. Around it,
on 127.0.0.1 (every container uses the host's network): Postgres (the machine's server, a
database of the test's own, dropped afterwards), Kafka (the test broker, noida-db) and S3 (moto's
server, standing in for MinIO). The test publishes three simulated days to the topic, launches a
three-day backfill of ltr_daily_job through GraphQL and kills day 2's run container once it
trains. It checks: each run ran in its own container; day 1 was refused by its gate, days 2 and 3
published (day 2 by the daemon's retry of the killed run); both replicas converge on `latest` and
answer /rank; stopping one replica under load leaves the other answering with no failed
request; the containers run the compose file's services, commands and variables.

The test installs and starts what it needs (`make deploy-images`: Debian's docker.io,
docker-compose and debootstrap, dockerd, the base image, both images; Docker's layer cache keeps
a rebuild to the project's own layer) and removes what it started: the compose project, the run
containers, the state volume, its database."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunRecord

from ltr_assets.ingest.kafka import ensure_topic, publish_events
from ltr_assets.simulation.simulator import Simulator, SimulatorConfig
from ltr_core.settings import Settings
from tests.conftest import START
from tests.deploy.conftest import PG_HOST, PG_PORT, PG_USER
from tests.deploy.test_postgres_deployment import (
    _by_partition,
    _runs,
    _step_started,
    _wait,
)
from tests.support.dagster_processes import DAYS, ROOT, launch_backfill, wait_for_webserver
from tests.support.kafka_broker import Broker, free_port
from tests.support.serving import rank_body

COMPOSE_FILE = ROOT / "deploy" / "docker-compose.yml"
DOCKER = "/usr/bin/docker"
DOCKER_COMPOSE = "/usr/bin/docker-compose"
DONE = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
CONTAINER_TAG = "docker/container_id"  # the DockerRunLauncher's tag on each run
DAGSTER_SERVICES = ("code-server", "webserver", "daemon")
SERVING_SERVICES = ("serving-a", "serving-b")


@dataclass
class Timeline:
    """What happened when, in seconds since the test began (printed at the end)."""

    began: float = field(default_factory=time.monotonic)
    marks: list[tuple[float, str]] = field(default_factory=list)

    def mark(self, what: str) -> None:
        self.marks.append((time.monotonic() - self.began, what))

    def render(self) -> str:
        return "\n".join(f"  +{at:7.1f} s  {what}" for at, what in self.marks)


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> str:
    done = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _inspect(container: str) -> dict[str, Any]:
    (details,) = json.loads(_run([DOCKER, "inspect", container]))
    assert isinstance(details, dict)
    return details


def _compose_variables(text: str) -> set[str]:
    import re

    return set(re.findall(r"\$\{([A-Z0-9_]+)", text))


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    webserver: str
    serving: dict[str, str]  # service -> base URL
    s3_endpoint: str
    timeline: Timeline

    def compose(self, *args: str, timeout: float = 600) -> str:
        command = [DOCKER_COMPOSE, "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        return _run(command, env=self.env, timeout=timeout)

    def settings(self) -> Settings:
        """The settings of the code server (and so of the runs) as compose resolves its file."""
        resolved = yaml.safe_load(self.compose("config"))
        env = resolved["services"]["code-server"]["environment"]
        return Settings.from_env({key: str(value) for key, value in env.items()})

    def containers(self) -> dict[str, str]:
        """Service name -> container id, for the project's containers."""
        found: dict[str, str] = {}
        for container in self.compose("ps", "-q").split():
            labels = _inspect(container)["Config"]["Labels"]
            found[labels["com.docker.compose.service"]] = container
        return found


@pytest.fixture
def images(request: pytest.FixtureRequest) -> float:
    """`make deploy-images` (what CI runs on a fresh machine); its wall time in seconds."""
    began = time.monotonic()
    _run(["make", "--no-print-directory", "deploy-images"], timeout=1800)
    return time.monotonic() - began


@pytest.fixture
def stack(
    images: float,
    pg_database: str,
    s3_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Stack]:
    timeline = Timeline()
    sizes = ", ".join(
        f"{image} {int(_run([DOCKER, 'image', 'inspect', '-f', '{{.Size}}', image])) / 1e6:.0f} MB"
        for image in (_compose_default("LTR_DAGSTER_IMAGE"), _compose_default("LTR_SERVING_IMAGE"))
    )
    timeline.mark(f"make deploy-images done ({images:.0f} s): {sizes}")
    broker = Broker()
    broker.start()
    # (moto loads its backends on the first request: slow on a busy machine.)
    httpx.post(f"{s3_server}/moto-api/reset", timeout=120).raise_for_status()
    ports = {name: free_port() for name in ("web", "code", "a", "b")}
    # Exactly the variables the compose file reads (checked below): the rest take its defaults.
    variables = {
        "DAGSTER_PG_HOST": PG_HOST,
        "DAGSTER_PG_PORT": str(PG_PORT),
        "DAGSTER_PG_USER": PG_USER,
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "DAGSTER_PG_DB": pg_database,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "KAFKA_TOPIC": "match_events",
        "S3_ENDPOINT": s3_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "LTR_RELOAD_TOKEN": f"token-{uuid.uuid4().hex}",
        "LTR_FEEDBACK_TOKEN": f"feedback-{uuid.uuid4().hex}",
        "LTR_START_DATE": DAYS[0],
        # The small-data gate of the pipeline tests (tests/conftest.py, small_data_gate): day 1
        # alone is refused by min_samples, days 2 and 3 publish.
        "LTR_NDCG_MIN": "0.4",
        "LTR_FAIRNESS_MAX": "0.15",
        "LTR_REGRESSION_MARGIN": "0.1",
        "LTR_LATENCY_P95_MS": "250",
        "WEIGHTS_POLL_SECONDS": "2",
        "LTR_WEBSERVER_PORT": str(ports["web"]),
        "LTR_CODE_SERVER_PORT": str(ports["code"]),
        "LTR_SERVING_PORT_A": str(ports["a"]),
        "LTR_SERVING_PORT_B": str(ports["b"]),
    }
    unknown = set(variables) - _compose_variables(COMPOSE_FILE.read_text())
    assert not unknown, f"not variables of the compose file: {sorted(unknown)}"
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **variables}
    project = f"ltrtest{uuid.uuid4().hex[:8]}"
    stack = Stack(
        project=project,
        env=env,
        webserver=f"http://127.0.0.1:{ports['web']}",
        serving={
            "serving-a": f"http://127.0.0.1:{ports['a']}",
            "serving-b": f"http://127.0.0.1:{ports['b']}",
        },
        s3_endpoint=s3_server,
        timeline=timeline,
    )
    # The host process reads the same instance (runs, events) to watch the backfill.
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "deploy" / "dagster-postgres.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, variables[name])
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", variables["DAGSTER_PG_PASSWORD"])
    run_ids: list[str] = []
    try:
        _seed(stack, broker)
        timeline.mark("buckets, topic and 3 days of events in place")
        up_began = time.monotonic()
        stack.compose("up", "-d", "--no-build")
        wait_for_webserver(stack.webserver, timeout_s=300)
        # The daemon's health is checked with the others' below: the backfill only needs the
        # webserver now (the daemon dequeues its runs whenever it is up).
        _wait_healthy(stack, ("code-server", "webserver"), timeout_s=300)
        timeline.mark(
            f"compose up: code server and webserver healthy "
            f"({time.monotonic() - up_began:.0f} s after `up`)"
        )
        yield stack
    except BaseException:
        for service, container in _safe_containers(stack).items():
            logs = subprocess.run(
                [DOCKER, "logs", "--tail", "40", container], capture_output=True, text=True
            )
            print(f"==== {service}\n{logs.stdout[-4000:]}{logs.stderr[-4000:]}")
        raise
    finally:
        with DagsterInstance.get() as instance:
            run_ids = [r.dagster_run.run_id for r in _runs(instance)]
        _teardown(stack, run_ids)
        broker.close()


def _safe_containers(stack: Stack) -> dict[str, str]:
    try:
        return stack.containers()
    except AssertionError:
        return {}


def _teardown(stack: Stack, run_ids: list[str]) -> None:
    listed = subprocess.run(
        [DOCKER, "ps", "-a", "--filter", "label=dagster/run_id",
         "--format", '{{.ID}} {{.Label "dagster/run_id"}}'],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    for line in listed.splitlines():
        container, _, run_id = line.partition(" ")
        if run_id in run_ids:  # this test's runs only
            subprocess.run([DOCKER, "rm", "-f", container], capture_output=True, check=False)
    # Then the stack and its volume (which the run containers held too).
    subprocess.run(
        [DOCKER_COMPOSE, "-p", stack.project, "-f", str(COMPOSE_FILE), "down", "-v",
         "--remove-orphans", "-t", "5"],
        cwd=ROOT, env=stack.env, capture_output=True, check=False,
    )  # fmt: skip


def _seed(stack: Stack, broker: Broker) -> None:
    """The buckets (registry mirror, lake), the topic, and three simulated days on it (the
    events the other pipeline tests write to a file: same simulator, same seed)."""
    settings = stack.settings()
    assert settings.s3 is not None and settings.kafka is not None
    s3 = boto3.client(
        "s3", endpoint_url=stack.s3_endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    assert settings.lake_url.startswith("s3://"), settings.lake_url
    lake_bucket = settings.lake_url.removeprefix("s3://").split("/")[0]
    for bucket in {settings.s3.bucket, lake_bucket}:
        s3.create_bucket(Bucket=bucket)
    assert ensure_topic(settings.kafka)
    events = Simulator(SimulatorConfig(start=START, days=len(DAYS), seed=3)).events()
    assert publish_events(settings.kafka, events) == len(events)


def _compose_default(name: str) -> str:
    import re

    match = re.search(r"\$\{" + name + r":-([^}]*)\}", COMPOSE_FILE.read_text())
    assert match, name
    return match.group(1)


def _wait_healthy(stack: Stack, services: tuple[str, ...], timeout_s: float) -> None:
    def healthy() -> bool:
        containers = stack.containers()
        return all(
            name in containers
            and _inspect(containers[name])["State"].get("Health", {}).get("Status") == "healthy"
            for name in services
        )

    _wait(f"{services} to be healthy", timeout_s, healthy)


def _latest(stack: Stack) -> dict[str, Any]:
    settings = stack.settings().s3
    assert settings is not None
    s3 = boto3.client(
        "s3", endpoint_url=stack.s3_endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    body = s3.get_object(Bucket=settings.bucket, Key=f"{settings.prefix}/latest.json")
    pointer = json.loads(body["Body"].read())
    assert isinstance(pointer, dict)
    return pointer


def _version_of(url: str) -> str | None:
    try:
        answer = httpx.get(f"{url}/ltr/health", timeout=3)
    except httpx.HTTPError:
        return None
    version = answer.json().get("version") if answer.status_code == 200 else None
    return str(version) if version else None


@dataclass
class Load:
    """Requests to /rank in a loop on one thread until stopped; counts answers and failures."""

    url: str
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                try:
                    answer = client.post(f"{self.url}/rank", json=rank_body(8, seed=i))
                    if answer.status_code == 200:
                        self.ok += 1
                    else:
                        self.failed.append(f"{answer.status_code}: {answer.text[:200]}")
                except httpx.HTTPError as error:
                    self.failed.append(repr(error))


def _under_load(url: str, action: Callable[[], object]) -> Load:
    load = Load(url)
    thread = threading.Thread(target=load.run)
    thread.start()
    try:
        _wait("the load to be under way", 30, lambda: load.ok >= 20)
        action()
        settled = load.ok
        _wait("more requests after the action", 60, lambda: load.ok >= settled + 50)
    finally:
        load.stop.set()
        thread.join()
    return load


# Images (cached: seconds; on a fresh machine: minutes), the stack's start, four pipeline runs one
# after another (the ltr/pipeline limit) and the serving checks: far above the suite's default.
@pytest.mark.timeout(2400)
def test_the_compose_stack_runs_the_pipeline_and_serves(stack: Stack) -> None:
    timeline = stack.timeline
    try:
        _exercise(stack, timeline)
    finally:
        print(f"\ncompose stack test timeline:\n{timeline.render()}")


def _exercise(stack: Stack, timeline: Timeline) -> None:
    backfill_id = launch_backfill(stack.webserver, DAYS)
    timeline.mark(f"backfill {backfill_id} of {DAYS} launched through GraphQL")
    with DagsterInstance.get() as instance:
        # Day 2's run, once its container has started ltr_model: kill the container.
        victim = _wait(
            "day 2's run to start ltr_model",
            900,
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
        timeline.mark(f"day 2's run {victim.run_id[:8]} started ltr_model")
        _run([DOCKER, "kill", victim.tags[CONTAINER_TAG]])
        timeline.mark(f"its container {victim.tags[CONTAINER_TAG][:12]} killed (SIGKILL)")

        def settled() -> list[RunRecord] | None:
            records = _runs(instance)
            retried = [r for r in records if r.dagster_run.parent_run_id == victim.run_id]
            finished = all(r.dagster_run.status in DONE for r in records)
            return records if retried and len(records) > len(DAYS) and finished else None

        killed = _wait(
            "the killed run to be marked failed",
            300,
            lambda: (
                (r := instance.get_run_by_id(victim.run_id))
                and r.status == DagsterRunStatus.FAILURE
                and r
            ),
        )
        timeline.mark("the killed run marked failed (run monitoring)")
        records = _wait("the backfill and the retry to finish", 900, settled)
        timeline.mark("every run finished (the retry included)")

        day1 = _by_partition(records, DAYS[0])
        day2 = _by_partition(records, DAYS[1])
        day3 = _by_partition(records, DAYS[2])

        # Each run in a container of its own, from the Dagster image, on the host's network,
        # none of them a compose service's.
        services = stack.containers()
        containers = [r.dagster_run.tags.get(CONTAINER_TAG) for r in records]
        assert all(containers) and len(set(containers)) == len(records), containers
        for record, container in zip(records, containers, strict=True):
            assert container is not None and container not in services.values()
            details = _inspect(container)
            assert details["Config"]["Labels"]["dagster/run_id"] == record.dagster_run.run_id
            assert details["Config"]["Image"] == _compose_default("LTR_DAGSTER_IMAGE")
            assert details["HostConfig"]["NetworkMode"] == "host"
            assert details["HostConfig"]["LogConfig"]["Config"]["max-size"] == "20m"

        # The killed run: failed by its container's death (not a step), retried once, and the
        # retry published; day 1 refused by its gate (a successful run that published nothing),
        # not retried; day 3 published.
        assert [r.dagster_run.run_id for r in day2][0] == victim.run_id and len(day2) == 2
        assert killed.tags.get("dagster/failure_reason") != "STEP_FAILURE", killed.tags
        retry = day2[-1].dagster_run
        assert retry.tags["dagster/parent_run_id"] == victim.run_id
        assert retry.tags.get("dagster/backfill") == backfill_id
        assert retry.status == DagsterRunStatus.SUCCESS
        assert len(day1) == 1 and day1[0].dagster_run.status == DagsterRunStatus.SUCCESS
        assert len(day3) == 1 and day3[0].dagster_run.status == DagsterRunStatus.SUCCESS
        exit_code = _inspect(victim.tags[CONTAINER_TAG])["State"]["ExitCode"]
        assert exit_code == 137, exit_code  # SIGKILL

    # The registry's S3 mirror: latest is day 3's; both replicas converge on it and rank with it.
    pointer = _latest(stack)
    assert pointer["partition"] == DAYS[2], pointer
    version = str(pointer["version"])
    for service, url in stack.serving.items():
        _wait(f"{service} to serve {version}", 120, lambda url=url: _version_of(url) == version)
        answer = httpx.post(f"{url}/rank", json=rank_body(8), timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == version
    timeline.mark(f"both replicas serve latest ({version}, day {DAYS[2]}) and answer /rank")
    _check_what_serving_logs_reaches_the_topic(stack)
    timeline.mark("a served list and its feedback are in the topic raw_events reads")
    _wait_healthy(stack, DAGSTER_SERVICES + SERVING_SERVICES, timeout_s=120)
    timeline.mark("all five services healthy")

    _check_the_containers_run_the_compose_file(stack)

    # Stop replica a while replica b is under load: b answers every request.
    load = _under_load(stack.serving["serving-b"], lambda: stack.compose("stop", "serving-a"))
    assert _version_of(stack.serving["serving-a"]) is None, "serving-a still answers"
    assert load.failed == [], load.failed[:5]
    timeline.mark(f"serving-a stopped under load: serving-b answered {load.ok} requests, 0 failed")


def _check_what_serving_logs_reaches_the_topic(stack: Stack) -> None:
    """A replica's impression log and /feedback go to the topic raw_events reads (the
    compose file's LTR_IMPRESSION_LOG=kafka), not to a folder inside its container."""
    request_id = f"compose-{uuid.uuid4().hex[:12]}"
    url = stack.serving["serving-a"]
    answer = httpx.post(f"{url}/rank", json=rank_body(8, request_id=request_id), timeout=10)
    assert answer.status_code == 200, answer.text
    feedback = {
        "event_type": "offer_feedback",
        "timestamp": time.time(),
        "case_id": "c-1",
        "lawyer_id": answer.json()["candidates"][0]["lawyer_id"],
        "action": "click",
        "request_id": request_id,
    }
    token = stack.env["LTR_FEEDBACK_TOKEN"]
    told = httpx.post(
        f"{url}/feedback", json=feedback, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert told.status_code == 200, told.text
    found = _wait(
        "the served list and its feedback in the topic",
        60,
        lambda: (events := _topic_events(stack.env, request_id)) and len(events) == 9 and events,
    )
    kinds = sorted(event["event_type"] for event in found)
    assert kinds == ["match_recommendation"] * 8 + ["offer_feedback"], kinds


def _topic_events(env: dict[str, str], request_id: str) -> list[dict[str, Any]]:
    """The events of `request_id` in the topic, read from its beginning."""
    from aiokafka import AIOKafkaConsumer

    async def read() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            env["KAFKA_TOPIC"],
            bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            found: list[dict[str, Any]] = []
            while batches := await consumer.getmany(timeout_ms=2000):
                for records in batches.values():
                    for record in records:
                        event = json.loads(record.value or b"{}")
                        if event.get("request_id") == request_id:
                            found.append(event)
            return found
        finally:
            await consumer.stop()

    return asyncio.run(read())


def _check_the_containers_run_the_compose_file(stack: Stack) -> None:
    """The running containers are the compose file's services, with its commands and its
    variables as compose resolves them (one source of truth: the test never restates them)."""
    resolved = yaml.safe_load(stack.compose("config"))
    declared = yaml.safe_load(COMPOSE_FILE.read_text())
    containers = stack.containers()
    assert set(containers) == set(declared["services"]) == set(resolved["services"])
    for service, container in containers.items():
        details = _inspect(container)
        spec = resolved["services"][service]
        env = dict(item.split("=", 1) for item in details["Config"]["Env"])
        expected = {key: "" if value is None else str(value) for key, value in
                    spec["environment"].items()}  # fmt: skip
        assert {key: env.get(key) for key in expected} == expected, service
        assert details["Config"]["Cmd"] == spec["command"], service
        assert details["HostConfig"]["NetworkMode"] == "host", service
        assert details["State"]["Health"]["Status"] == "healthy", service
        assert details["HostConfig"]["LogConfig"]["Type"] == "json-file", service


def test_the_serving_image_holds_the_serving_install_alone(images: float) -> None:
    """The ranking service's image has its dependencies and nothing of the pipeline."""
    probe = (
        "import importlib.util as u, json; "
        "print(json.dumps({m: bool(u.find_spec(m)) for m in "
        "('ltr_serving', 'ltr_core', 'lightgbm', 'fastapi', 'aiokafka', "
        "'ltr_assets', 'dagster', 'duckdb', 'pandas', 'pyarrow')}))"
    )
    image = _compose_default("LTR_SERVING_IMAGE")
    found = json.loads(
        _run([DOCKER, "run", "--rm", "--network", "host", image, "python", "-c", probe])
    )
    assert found == {
        "ltr_serving": True, "ltr_core": True, "lightgbm": True, "fastapi": True,
        "aiokafka": True, "ltr_assets": False, "dagster": False, "duckdb": False,
        "pandas": False, "pyarrow": False,
    }  # fmt: skip
