"""Serving latency and throughput: POST /rank with 100 candidates at 1, 8 and 32 clients.

    python -m benchmarks.serving [--duration 6] [--candidates 100]

The app runs under uvicorn in its own process (`ltr_serving.server.serve`, 127.0.0.1, a free
port) over a registry freshly published into a temporary LTR_HOME. The load comes from another
process: closed-loop clients on keep-alive connections, each sending its next request as soon as
the previous answer is read. The client is a minimal HTTP/1.1 writer/reader on asyncio streams,
so that on a 2-core machine the generator's own CPU does not dominate what is measured; every
response's status is checked and its version tag counted.

A last run at 8 clients publishes a new version and POSTs /reload every `--reload-every` seconds;
its p99 (overall, and of the requests in flight during a reload) is set against the steady one.
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
from ltr_assets.registry import LocalRegistry
from ltr_assets.schema import FEATURES
from ltr_assets.training import normalise

TOKEN = "benchmark-token"
PARTITION = "2026-11-25"
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


def run_load(host: str, port: int, bodies: list[bytes], clients: int, duration_s: float) -> dict:
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

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_server(env: dict[str, str]) -> Server:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = f"from ltr_serving.server import serve; serve(port={port}, log_level='warning')"
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
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
            raise RuntimeError("the server did not answer within 30 s")
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


def summary(result: dict) -> dict[str, float]:
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
            registry.publish(normalise(np.random.default_rng(seed).random(len(FEATURES))),
                             text, {"gated_scorer": "weights"}, PARTITION)  # fmt: skip
            started = time.monotonic()
            response = client.post("/reload", headers={"Authorization": f"Bearer {TOKEN}"})
            windows.append((started, time.monotonic(), response.status_code))
    return windows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--reload-every", type=float, default=1.0)
    parser.add_argument("--model-rounds", type=int, default=300)
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    text = model_text(args.model_rounds)
    print(f"machine: {machine()}")
    print(f"/rank with {args.candidates} candidates, weights scorer, model.txt {len(text)} bytes")
    bodies = rank_bodies(args.candidates)
    figures: dict[str, float | int | str] = {}

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LTR_", "WEIGHTS_"))}
        env.update(LTR_HOME=str(home), LTR_RELOAD_TOKEN=TOKEN, LTR_SCORER="weights")
        registry = LocalRegistry(home / "registry", home / "models" / "ltr_weights.json")
        registry.publish(normalise(np.random.default_rng(1).random(len(FEATURES))),
                         text, {"gated_scorer": "weights"}, PARTITION)  # fmt: skip
        server = start_server(env)
        spawn = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as load:

                def run(clients: int, duration: float) -> dict:
                    return load.submit(
                        run_load, "127.0.0.1", server.port, bodies, clients, duration
                    ).result()

                run(8, args.warmup)
                for clients in levels:
                    s = summary(run(clients, args.duration))
                    print(
                        f"c={clients:>2}: p50 {s['p50_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms, "
                        f"p99 {s['p99_ms']:.2f} ms, {s['rps']:.0f} req/s, "
                        f"{s['requests']} requests, {s['errors']} errors"
                    )
                    for name, value in s.items():
                        figures[f"serving_c{clients}_{name}"] = value

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
        f"p99 {s['p99_ms']:.2f} ms overall, "
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
        }
    )
    if "serving_c8_p99_ms" in figures:
        figures["serving_reload_c8_p99_delta_ms"] = s["p99_ms"] - float(
            figures["serving_c8_p99_ms"]
        )
    print(f"machine: {machine()}")
    report(figures)


if __name__ == "__main__":
    main()
