"""Serving: POST /rank over HTTP against a bare FastAPI endpoint, the in-process request path,
and reloads under load.

    python -m benchmarks.serving [--duration 5] [--repeats 3] [--clients 1,8,32]
                                 [--candidates 100,1000]

Run it on a quiet machine (`flock -x /tmp/ltr-cpu.lock ...` here): on 2 cores anything else
running moves every figure.

1. HTTP, measured with wrk (Debian's `wrk`, a C load generator on one thread, so the client does
   not compete for the 2 cores): the app under uvicorn in its own process
   (`ltr_serving.server.serve`, weights scorer, a registry freshly published into a temporary
   LTR_HOME) and, in another process with the same uvicorn settings, a bare FastAPI endpoint that
   only reads the same body (`await request.body()`) and answers `{}`. Each (clients, candidates)
   level runs both, alternating, `--repeats` times; the figures are medians over the repeats, and
   `ratio` is /rank's req/s over the bare endpoint's in the same round. The headline is
   `serving_ratio_c8_n100` (100 candidates, 8 connections; target >= 0.5).
2. In-process: `ltr_core.codec.time_request_path_groups` (what the gate calls) at list sizes
   5-30 and at 1,000 candidates, 1,000 requests each after warm-up (target p95 <= 10 ms at 1,000).
3. Reloads under load: 8 closed-loop clients (a minimal asyncio HTTP client in another process,
   which records each request's start and end) while a new version is published and POSTed to
   /reload every `--reload-every` seconds: zero failed requests, p99 during reloads.
4. The impression log's cost (`--only log` runs this section alone): three /rank servers, with
   LTR_IMPRESSION_LOG=off, =file and =kafka (a noida-db broker on 127.0.0.1, the topic created
   with retention.ms=-1), exploration and interleaving at the service's defaults, measured with
   wrk at `--log-candidates` candidates and `--log-clients` connections in alternating rounds
   (`--log-repeats`). Before each run the previous server's log has settled (every served
   impression written, sent or spilled), so one server's backlog never runs during another's
   measurement; the time it took is reported. Figures: req/s medians, `log_{file,kafka}_ratio`
   (log-on req/s over log-off req/s in the same round, median; target >= 0.9 for kafka), and,
   after the servers are SIGTERM'd, what reached the files and the topic against the impressions
   served (`log_*_missing` must be 0; `log_*_dropped` counts a full queue's drops).
5. /feedback's latency (`--only feedback` runs this section alone): one server with the file
   log; `--feedback-requests` single-event POSTs one after another, idle, then again while wrk
   loads /rank (100 candidates, 8 connections). /feedback answers once the writer process
   confirms the events written, behind the impressions queued before them, so its latency under
   load is the writer's lag. Figures: p50/p99 ms of each, and the statuses (all 200).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import numpy as np
import orjson

from benchmarks.common import machine, report
from ltr_assets.learning.training import normalise
from ltr_assets.registry.local import LocalRegistry
from ltr_core.features import FEATURES

TOKEN = "benchmark-token"
PARTITION = "2026-11-25"
JSON_HEADERS = {"Content-Type": "application/json"}
CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)
VERSION = re.compile(rb'"version":"([^"]+)"')


# -- the load generator (runs in a separate process) ------------------------------------------


def request_bytes(host: str, port: int, body: bytes) -> bytes:
    head = (
        f"POST /rank HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _client(
    host: str, port: int, requests: list[bytes], deadline: float, out: dict[str, Any]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = 0
    try:
        while time.monotonic() < deadline:
            started = time.monotonic()
            writer.write(requests[i % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            match = CONTENT_LENGTH.search(head)
            body = await reader.readexactly(int(match.group(1))) if match else b""
            ended = time.monotonic()
            status = int(head[9:12])
            out["starts"].append(started)
            out["latencies"].append(ended - started)
            if status != 200:
                out["errors"] += 1
            else:
                version = VERSION.search(body)
                key = version.group(1).decode() if version else "?"
                out["versions"][key] = out["versions"].get(key, 0) + 1
            i += 1
    finally:
        writer.close()


def run_load(
    host: str, port: int, bodies: list[bytes], clients: int, duration_s: float
) -> dict[str, Any]:
    """Entry point of the load process: `clients` closed-loop connections for `duration_s`.

    Times are time.monotonic(), which is one system-wide clock on Linux, so the parent can line
    them up with its reload timestamps.
    """
    out: dict[str, Any] = {"starts": [], "latencies": [], "errors": 0, "versions": {}}
    requests = [request_bytes(host, port, b) for b in bodies]

    async def main() -> None:
        deadline = time.monotonic() + duration_s
        await asyncio.gather(
            *(_client(host, port, requests, deadline, out) for _ in range(clients))
        )

    asyncio.run(main())
    out["starts"] = np.array(out["starts"])
    out["latencies"] = np.array(out["latencies"])
    out["duration_s"] = duration_s
    return out


# -- the server and the registry -------------------------------------------------------------


def model_text(rounds: int) -> str:
    """A model of realistic size (the reload parses it), trained on synthetic lists."""
    rng = np.random.default_rng(0)
    X = rng.random((4000, len(FEATURES)))
    y = np.clip((X @ rng.random(len(FEATURES)) * 1.5).astype(int), 0, 3)
    data = lgb.Dataset(X, y, group=[20] * 200, feature_name=list(FEATURES))
    params = {"objective": "lambdarank", "verbosity": -1, "seed": 1, "deterministic": True}
    return lgb.train(params, data, num_boost_round=rounds).model_to_string()


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]

    def stop(self, timeout_s: float = 10.0) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_server(env: dict[str, str]) -> Server:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = f"from ltr_serving.server import serve; serve(port={port}, log_level='warning')"
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            raise RuntimeError("the server exited during startup")
        try:
            if httpx.get(url + "/ltr/health", timeout=1).status_code == 200:
                return Server(url, port, process)
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the server did not answer within 90 s")
        time.sleep(0.1)


def rank_bodies(n_candidates: int, count: int = 16) -> list[bytes]:
    rng = np.random.default_rng(42)
    bodies = []
    for q in range(count):
        values = rng.random((n_candidates, len(FEATURES))).round(4)
        candidates = [
            {"lawyer_id": f"l-{q}-{i}", "features": dict(zip(FEATURES, row.tolist(), strict=True))}
            for i, row in enumerate(values)
        ]
        bodies.append(orjson.dumps({"case_id": f"c-{q}", "candidates": candidates}))
    return bodies


def summary(result: dict[str, Any]) -> dict[str, float]:
    ms = result["latencies"] * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "rps": len(ms) / result["duration_s"],
        "requests": len(ms),
        "errors": result["errors"],
    }


def reload_repeatedly(
    server: Server, registry: LocalRegistry, text: str, every_s: float, stop: threading.Event
) -> list[tuple[float, float, int]]:
    """Publish a new version and POST /reload every `every_s`; (start, end, status) of each."""
    windows = []
    seed = 100
    with httpx.Client(base_url=server.url, timeout=30) as client:
        while not stop.wait(every_s):
            seed += 1
            weights = normalise(np.random.default_rng(seed).random(len(FEATURES)))
            registry.publish(weights, text, {"gated_scorer": "weights"}, PARTITION)
            started = time.monotonic()
            response = client.post("/reload", headers={"Authorization": f"Bearer {TOKEN}"})
            windows.append((started, time.monotonic(), response.status_code))
    return windows


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {}
for path in string.gmatch(os.getenv("LTR_BENCH_BODIES"), "[^:]+") do
  local f = assert(io.open(path, "rb"))
  bodies[#bodies + 1] = f:read("*a")
  f:close()
end
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    e.connect, e.read + e.write, e.status, e.timeout))
end
"""

BARE_APP = """
import uvicorn
from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/rank")
async def rank(request: Request) -> Response:
    await request.body()
    return Response(b"{}", media_type="application/json")


uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", access_log=False,
            workers=1, loop="asyncio")
"""


def start_bare_server(env: dict[str, str]) -> Server:
    """A bare FastAPI endpoint reading the body, with the same uvicorn settings as serve()."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-c", BARE_APP.replace("PORT", str(port))],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError("the bare server exited during startup")
        try:
            probe = httpx.post(url + "/rank", content=b"{}", headers=JSON_HEADERS, timeout=1)
            if probe.status_code == 200:
                return Server(url, port, process)
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the bare server did not answer within 30 s")
        time.sleep(0.1)


def wrk(
    url: str, script: Path, bodies: list[Path], clients: int, duration: float
) -> dict[str, Any]:
    """One wrk run (one thread, `clients` keep-alive connections); its figures."""
    env = {**os.environ, "LTR_BENCH_BODIES": ":".join(map(str, bodies))}
    seconds = max(1, round(duration))  # wrk takes whole seconds
    command = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "-s", str(script), url + "/rank"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    requests, micros, p50, p95, p99, connect, io_errors, status, timeouts = map(
        int, line.split()[1:]
    )
    return {
        "rps": requests / (micros / 1e6),
        "p50_ms": p50 / 1000,
        "p95_ms": p95 / 1000,
        "p99_ms": p99 / 1000,
        "requests": requests,
        "errors": connect + io_errors + status + timeouts,
    }


def http_figures(
    rank_url: str, bare_url: str, args: argparse.Namespace, folder: Path
) -> dict[str, float | int | str]:
    """/rank and the bare endpoint, alternating, at every (clients, candidates) level."""
    script = folder / "rank.lua"
    script.write_text(WRK_SCRIPT)
    figures: dict[str, float | int | str] = {}
    for n in [int(c) for c in args.candidates.split(",")]:
        bodies = []
        for q, body in enumerate(rank_bodies(n)):
            path = folder / f"body-{n}-{q}.json"
            path.write_bytes(body)
            bodies.append(path)
        wrk(rank_url, script, bodies, 8, args.warmup)
        wrk(bare_url, script, bodies, 8, args.warmup)
        for clients in [int(c) for c in args.clients.split(",")]:
            rounds = []
            for _ in range(args.repeats):
                rank = wrk(rank_url, script, bodies, clients, args.duration)
                bare = wrk(bare_url, script, bodies, clients, args.duration)
                rounds.append((rank, bare, rank["rps"] / bare["rps"]))
            name = f"c{clients}_n{n}"
            for key in ("rps", "p50_ms", "p95_ms", "p99_ms"):
                figures[f"serving_{name}_{key}"] = float(np.median([r[0][key] for r in rounds]))
                figures[f"bare_{name}_{key}"] = float(np.median([r[1][key] for r in rounds]))
            figures[f"serving_{name}_errors"] = sum(r[0]["errors"] for r in rounds)
            figures[f"serving_ratio_{name}"] = float(np.median([r[2] for r in rounds]))
            print(
                f"n={n:>4} c={clients:>2}: /rank {figures[f'serving_{name}_rps']:,.0f} req/s "
                f"p50 {figures[f'serving_{name}_p50_ms']:.2f} p95 "
                f"{figures[f'serving_{name}_p95_ms']:.2f} p99 "
                f"{figures[f'serving_{name}_p99_ms']:.2f} ms, "
                f"{figures[f'serving_{name}_errors']} errors | bare "
                f"{figures[f'bare_{name}_rps']:,.0f} req/s | ratio "
                f"{figures[f'serving_ratio_{name}']:.2f} "
                f"(rounds: {', '.join(f'{r[2]:.2f}' for r in rounds)})",
                flush=True,
            )
    return figures


LOG_MODES = ("off", "file", "kafka")
RANK_SERVED = re.compile(
    r'^ltr_http_request_duration_seconds_count\{method="POST",route="/rank",status="200"\} (\S+)$',
    re.MULTILINE,
)


def metric(text: str, name: str, labels: str = "") -> float:
    """A sample of the Prometheus text `text` (0 when absent)."""
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" (\S+)$"
    found = re.search("^" + pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@dataclass
class LogState:
    """What a server's /metrics says of its log: served /rank requests and where their
    impressions are."""

    served: int
    settled: int  # written to a file, or acknowledged by Kafka (spilled ones are in the files)
    dropped: int
    failed: int


def log_state(server: Server) -> LogState:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    served = RANK_SERVED.search(text)
    kind = 'kind="impression"'
    return LogState(
        served=int(float(served.group(1))) if served else 0,
        settled=int(
            metric(text, "ltr_events_written_to_file_total")
            + metric(text, "ltr_events_sent_to_kafka_total")
        ),
        dropped=int(metric(text, "ltr_events_dropped_total", kind)),
        failed=int(metric(text, "ltr_events_failed_total", kind)),
    )


def wait_settled(server: Server, per_request: int, timeout_s: float = 120.0) -> float:
    """Seconds until every impression the server served is written, sent or dropped."""
    started = time.monotonic()
    while True:
        state = log_state(server)
        if state.settled + state.dropped + state.failed >= state.served * per_request:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"the log did not settle in {timeout_s:g} s: {state}")
        time.sleep(0.05)


def jsonl_lines(directory: Path) -> tuple[int, int]:
    """(lines in complete .jsonl files, .jsonl.part files left) under `directory`."""
    lines = 0
    for path in directory.rglob("*.jsonl"):
        with open(path, "rb") as handle:
            lines += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return lines, len(list(directory.rglob("*.jsonl.part")))


async def _topic_records(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            await consumer.topics()
            found = consumer.partitions_for_topic(topic) or set()
            partitions = [TopicPartition(topic, p) for p in found]
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        return int(sum(ends[p] - starts[p] for p in partitions))
    finally:
        await consumer.stop()


async def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:  # retention.ms=-1: the broker applies time retention to record timestamps at once
        await admin.create_topics(
            [NewTopic(topic, partitions, 1, topic_configs={"retention.ms": "-1"})]
        )
    finally:
        await admin.close()


def log_figures(
    args: argparse.Namespace, home: Path, env: dict[str, str]
) -> dict[str, float | int | str]:
    """/rank with the impression log off, to files and to Kafka, side by side."""
    from tests.support.kafka_broker import Broker

    n, clients = args.log_candidates, args.log_clients
    folder = home / "log-bench"
    folder.mkdir()
    script = folder / "rank.lua"
    script.write_text(WRK_SCRIPT)
    bodies = []
    for q, body in enumerate(rank_bodies(n)):
        path = folder / f"body-{q}.json"
        path.write_bytes(body)
        bodies.append(path)
    broker = Broker()
    broker.start()
    servers: dict[str, Server] = {}
    figures: dict[str, float | int | str] = {}
    try:
        topic = "serving_bench"
        asyncio.run(_create_topic(broker.bootstrap, topic, 3))
        for mode in LOG_MODES:
            servers[mode] = start_server(
                {
                    **env,
                    "LTR_IMPRESSION_LOG": mode,
                    "LTR_SERVING_LOG_DIR": str(folder / f"log-{mode}"),
                    "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                    "KAFKA_TOPIC": topic,
                }
            )
        per_request = {"off": 0, "file": n, "kafka": n}  # impressions per request
        for mode, server in servers.items():
            wrk(server.url, script, bodies, clients, args.warmup)
            wait_settled(server, per_request[mode])
        rounds: list[dict[str, dict[str, Any]]] = []
        for r in range(args.log_repeats):
            modes = LOG_MODES if r % 2 == 0 else LOG_MODES[::-1]
            results: dict[str, dict[str, Any]] = {}
            for mode in modes:
                results[mode] = wrk(servers[mode].url, script, bodies, clients, args.duration)
                results[mode]["settle_s"] = wait_settled(servers[mode], per_request[mode])
            rounds.append(results)
            print(
                f"log round {r + 1}: "
                + ", ".join(
                    f"{m} {results[m]['rps']:,.0f} req/s (settled {results[m]['settle_s']:.1f} s)"
                    for m in LOG_MODES
                ),
                flush=True,
            )
        states = {mode: log_state(server) for mode, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop(60.0)  # SIGTERM: the log is flushed, the files completed
    try:
        in_topic = asyncio.run(_topic_records(broker.bootstrap, topic))
    finally:
        broker.close()
    name = f"c{clients}_n{n}"
    for mode in LOG_MODES:
        figures[f"log_{mode}_{name}_rps"] = float(np.median([r[mode]["rps"] for r in rounds]))
        figures[f"log_{mode}_{name}_p99_ms"] = float(np.median([r[mode]["p99_ms"] for r in rounds]))
        figures[f"log_{mode}_errors"] = sum(r[mode]["errors"] for r in rounds)
        figures[f"log_{mode}_settle_s_max"] = max(r[mode]["settle_s"] for r in rounds)
    for mode in ("file", "kafka"):
        ratios = [r[mode]["rps"] / r["off"]["rps"] for r in rounds]
        figures[f"log_{mode}_ratio_{name}"] = float(np.median(ratios))
        state = states[mode]
        files, parts = jsonl_lines(folder / f"log-{mode}")
        reached = files + (in_topic if mode == "kafka" else 0)
        served = state.served * n
        figures[f"log_{mode}_served_impressions"] = served
        figures[f"log_{mode}_in_files"] = files
        if mode == "kafka":
            figures["log_kafka_in_topic"] = in_topic
        figures[f"log_{mode}_dropped"] = state.dropped
        figures[f"log_{mode}_missing"] = served - state.dropped - reached
        figures[f"log_{mode}_part_files_left"] = parts
        print(
            f"log {mode}: ratio to off {figures[f'log_{mode}_ratio_{name}']:.3f} (rounds "
            f"{', '.join(f'{x:.3f}' for x in ratios)}); {served:,} impressions served, "
            f"{reached:,} reached {'Kafka and the files' if mode == 'kafka' else 'the files'}"
            f" ({files:,} in files), {state.dropped:,} dropped, "
            f"{figures[f'log_{mode}_missing']:,} missing, {parts} .part files left",
            flush=True,
        )
    return figures


def feedback_figures(
    args: argparse.Namespace, home: Path, env: dict[str, str]
) -> dict[str, float | int | str]:
    """/feedback's latency with the file log, idle and while wrk loads /rank."""
    folder = home / "feedback-bench"
    folder.mkdir()
    script = folder / "rank.lua"
    script.write_text(WRK_SCRIPT)
    bodies = []
    for q, body in enumerate(rank_bodies(100)):
        path = folder / f"body-{q}.json"
        path.write_bytes(body)
        bodies.append(path)
    server = start_server(
        {**env, "LTR_IMPRESSION_LOG": "file", "LTR_FEEDBACK_TOKEN": TOKEN, "LTR_EXPLORE_RATE": "0"}
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def post_all(client: httpx.Client, tag: str) -> tuple[np.ndarray, set[int]]:
        latencies, statuses = [], set()
        for i in range(args.feedback_requests):
            event = {
                "event_id": f"e-{tag}-{i}",
                "event_type": "offer_feedback",
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "request_id": f"r-{i}",
                "case_id": "c-1",
                "lawyer_id": "l-1",
                "action": "click",
            }
            started = time.perf_counter()
            statuses.add(client.post("/feedback", json=event, headers=headers).status_code)
            latencies.append(time.perf_counter() - started)
        return np.array(latencies) * 1000, statuses

    figures: dict[str, float | int | str] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            post_all(client, "warmup")
            idle, idle_statuses = post_all(client, "idle")
            load = threading.Thread(
                target=wrk, args=(server.url, script, bodies, 8, args.duration + 30)
            )
            load.start()
            time.sleep(2)  # wrk's connections up and the writer busy
            busy, busy_statuses = post_all(client, "busy")
            load.join()
    finally:
        server.stop()
    for name, ms, statuses in (("idle", idle, idle_statuses), ("rank_load", busy, busy_statuses)):
        p50, p99 = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
        print(f"/feedback {name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, statuses {sorted(statuses)}")
        figures[f"feedback_{name}_p50_ms"] = p50
        figures[f"feedback_{name}_p99_ms"] = p99
        figures[f"feedback_{name}_statuses"] = ",".join(map(str, sorted(statuses)))
    return figures


def in_process_figures(weights: dict[str, float]) -> dict[str, float | int | str]:
    """What the gate measures: the request path in-process, with the scorer serving runs."""
    from ltr_core.codec import time_request_path_groups
    from ltr_core.scoring import WeightsScorer

    timing = time_request_path_groups(WeightsScorer(weights), list(range(5, 31)), 1000)
    data, at_max = timing.groups
    print(
        f"in-process request path: sizes 5-30 p50 {data.report.p50_ms:.3f} p95 "
        f"{data.report.p95_ms:.3f} ms; 1,000 candidates p50 {at_max.report.p50_ms:.3f} p95 "
        f"{at_max.report.p95_ms:.3f} p99 {at_max.report.p99_ms:.3f} ms",
        flush=True,
    )
    return {
        "inprocess_sizes_5_30_p95_ms": data.report.p95_ms,
        "inprocess_n1000_p50_ms": at_max.report.p50_ms,
        "inprocess_n1000_p95_ms": at_max.report.p95_ms,
        "inprocess_n1000_p99_ms": at_max.report.p99_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3, help="rounds per level (medians)")
    parser.add_argument("--candidates", default="100,1000")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--reload-every", type=float, default=1.0)
    parser.add_argument("--model-rounds", type=int, default=300)
    parser.add_argument(
        "--only",
        choices=("all", "log", "feedback"),
        default="all",
        help="log: the impression log alone; feedback: /feedback's latency alone",
    )
    parser.add_argument("--feedback-requests", type=int, default=300)
    parser.add_argument("--log-candidates", type=int, default=100)
    parser.add_argument("--log-clients", type=int, default=8)
    parser.add_argument("--log-repeats", type=int, default=5)
    args = parser.parse_args()

    text = model_text(args.model_rounds)
    print(f"machine: {machine()}")
    print(f"/rank, weights scorer, model.txt {len(text)} bytes; wrk -t1, {args.duration:g} s runs")
    weights = normalise(np.random.default_rng(1).random(len(FEATURES)))
    figures: dict[str, float | int | str] = {}
    gated = {"gated_scorer": "weights"}

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LTR_", "WEIGHTS_"))}
        env.update(LTR_HOME=str(home), LTR_RELOAD_TOKEN=TOKEN, LTR_SCORER="weights")
        registry = LocalRegistry(home / "registry", home / "models" / "ltr_weights.json")
        registry.publish(weights, text, gated, PARTITION)
        if args.only in ("all", "feedback"):
            figures.update(feedback_figures(args, home, env))
        if args.only == "feedback":
            print(f"machine: {machine()}")
            report(figures)
            return
        figures.update(log_figures(args, home, env))
        if args.only == "log":
            print(f"machine: {machine()}")
            report(figures)
            return
        figures.update(in_process_figures(weights))
        server = start_server(env)
        try:
            bare = start_bare_server(env)
            try:
                figures.update(http_figures(server.url, bare.url, args, home))
            finally:
                bare.stop()
        except BaseException:
            server.stop()
            raise
        spawn = multiprocessing.get_context("spawn")
        bodies = rank_bodies(100)
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as load:

                def run(clients: int, duration: float) -> dict[str, Any]:
                    return load.submit(
                        run_load, "127.0.0.1", server.port, bodies, clients, duration
                    ).result()

                run(8, args.warmup)
                steady = summary(run(8, args.duration))
                stop = threading.Event()
                windows: list[tuple[float, float, int]] = []
                reloader = threading.Thread(
                    target=lambda: windows.extend(
                        reload_repeatedly(server, registry, text, args.reload_every, stop)
                    )
                )
                reloader.start()
                try:
                    result = run(8, args.duration)
                finally:
                    stop.set()
                    reloader.join()
        finally:
            server.stop()

    s = summary(result)
    starts, latencies = result["starts"], result["latencies"]
    ends = starts + latencies
    during = np.zeros(len(starts), dtype=bool)
    for started, ended, _ in windows:  # requests in flight at any moment of a reload
        during |= (starts <= ended) & (ends >= started)
    during_ms = latencies[during] * 1000
    reload_ms = [(e - b) * 1000 for b, e, _ in windows]
    print(
        f"c= 8 with a reload every {args.reload_every:g} s: {len(windows)} reloads "
        f"(statuses {sorted({w[2] for w in windows})}, {np.median(reload_ms):.1f} ms median), "
        f"p99 {s['p99_ms']:.2f} ms overall (steady {steady['p99_ms']:.2f} ms), "
        f"p99 {np.percentile(during_ms, 99) if len(during_ms) else float('nan'):.2f} ms over "
        f"the {len(during_ms)} requests in flight during a reload, max "
        f"{latencies.max() * 1000:.2f} ms, {s['errors']} errors, "
        f"{len(result['versions'])} versions seen"
    )
    figures.update(
        {
            "serving_reload_c8_p99_ms": s["p99_ms"],
            "serving_reload_c8_p99_in_flight_ms": (
                float(np.percentile(during_ms, 99)) if len(during_ms) else float("nan")
            ),
            "serving_reload_c8_max_ms": float(latencies.max() * 1000),
            "serving_reload_c8_rps": s["rps"],
            "serving_reload_count": len(windows),
            "serving_reload_median_ms": float(np.median(reload_ms)) if reload_ms else float("nan"),
            "serving_reload_errors": s["errors"] + sum(1 for w in windows if w[2] != 200),
            "serving_reload_versions_seen": len(result["versions"]),
            "serving_reload_c8_p99_delta_ms": s["p99_ms"] - steady["p99_ms"],
        }
    )
    print(f"machine: {machine()}")
    report(figures)


if __name__ == "__main__":
    main()
