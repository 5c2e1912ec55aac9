"""Run-status notifications posted to a local Slack-compatible receiver."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, build_run_status_sensor_context

from ltr_assets import notify
from ltr_assets.definitions import defs
from ltr_assets.defs.sensors import notify_run_success
from ltr_assets.notify import post_json
from tests.conftest import write_simulated_events
from tests.support.dagster_results import run_by_id
from tests.support.http_receiver import http_receiver


def _run_event(result, kind: str):
    return next(e for e in result.all_events if e.event_type_value == kind)


def _notify_success(instance: DagsterInstance, result: Any) -> None:
    """What the daemon does when the run of `result` succeeded: evaluate notify_run_success."""
    notify_run_success(
        build_run_status_sensor_context(
            sensor_name=notify_run_success.name,
            dagster_event=_run_event(result, "PIPELINE_SUCCESS"),
            dagster_instance=instance,
            dagster_run=run_by_id(instance, result.run_id),
            resources=defs.resources,
        )
    )


def test_published_and_refused_nights_reach_the_webhook_told_apart(
    ltr_home: Path, monkeypatch: pytest.MonkeyPatch, small_data_gate: None
) -> None:
    """A refused night is a successful run: the success sensor sees it and says it was refused,
    with the failing check (crashes: tests/integration/test_run_outcome.py)."""
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=2)
    job = defs.resolve_job_def("ltr_daily_job")
    instance = DagsterInstance.ephemeral()
    refused = job.execute_in_process(partition_key="2026-11-01", instance=instance)
    passed = job.execute_in_process(partition_key="2026-11-02", instance=instance)

    with http_receiver() as receiver:
        monkeypatch.setenv("NOTIFY_WEBHOOK_URL", receiver.url)
        for result in (refused, passed):
            _notify_success(instance, result)
        refusal, success = (m["text"] for m in receiver.messages)
    with http_receiver(status=500) as failing:
        monkeypatch.setenv("NOTIFY_WEBHOOK_URL", failing.url)
        # not delivered: the sensor raises, so its tick shows the failure and the message
        with pytest.raises(RuntimeError, match="did not reach NOTIFY_WEBHOOK_URL after 3 ") as lost:
            _notify_success(instance, passed)
    assert len(failing.messages) == 3 and "HTTP 500" in str(lost.value)
    assert ":white_check_mark: ltr_daily_job [2026-11-02] succeeded" in str(lost.value)
    assert refusal.startswith(":no_entry: ltr_daily_job [2026-11-01]")
    assert "gate refused: min_samples: " in refusal and "Nothing was published" in refusal
    assert success.startswith(":white_check_mark: ltr_daily_job [2026-11-02] succeeded")


def _read_request(connection: socket.socket) -> None:
    """Read what the client sent (until it pauses): closing with it unread would reset the
    connection before the client reads the answer."""
    connection.settimeout(0.2)
    with contextlib.suppress(OSError):
        while connection.recv(65536):
            pass
    connection.settimeout(None)


@contextmanager
def _slow_server(answer: bytes, pause_s: float) -> Iterator[str]:
    """Accepts connections and sends `answer` a byte every `pause_s` (a webhook that trickles)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                _read_request(connection)
                for byte in answer:
                    if stop.wait(pause_s):
                        return
                    with contextlib.suppress(OSError):
                        connection.sendall(bytes([byte]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/T0/B0/s3cr3t"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_post_is_bounded_in_time_however_slowly_the_server_answers() -> None:
    """httpx's timeout bounds each read: a server sending a byte every 0.3 s held a POST for
    its whole answer (a sensor tick past its 60 s, failed, then re-posted). The deadline bounds
    every attempt together."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"  # 40 bytes: 12 s at 0.3 s each
    with _slow_server(answer, 0.3) as url:
        started = time.monotonic()
        delivery = post_json(url, {"text": "x"}, timeout_s=1.0, deadline_s=2.0)
        elapsed = time.monotonic() - started
    assert not delivery.ok and "no answer within" in delivery.error
    assert elapsed < 6.0, elapsed  # the answer alone takes 12 s


def test_a_redirect_or_an_unusable_url_is_a_failed_delivery_not_an_exception() -> None:
    with http_receiver(status=302) as moved:
        delivery = post_json(moved.url, {"text": "x"})
    assert (delivery.ok, delivery.attempts, delivery.status) == (False, 1, 302)
    assert "not followed" in delivery.error
    for url in ("http://127.0.0.1:99999/T0/B0/s3cr3t", "http://127.0.0.1:abc/T0/B0/s3cr3t"):
        delivery = post_json(url, {"text": "x"}, backoff_s=0.0)
        assert not delivery.ok and delivery.error
        assert "s3cr3t" not in delivery.error


def test_a_slow_name_lookup_is_within_the_deadline_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup runs on a thread the event loop cannot stop (asyncio.run waited for it)."""
    real = socket.getaddrinfo

    def slow(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("hooks.slow-dns.test", b"hooks.slow-dns.test"):  # anyio passes bytes
            time.sleep(6.0)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    started = time.monotonic()
    delivery = post_json("http://hooks.slow-dns.test/T0/B0/s3cr3t", {"text": "x"}, deadline_s=1.5)
    assert time.monotonic() - started < 4.0  # the lookup alone takes 6 s
    assert not delivery.ok and "no answer within 1.5 s" in delivery.error


def test_an_answer_echoing_the_path_or_redirecting_relatively_keeps_the_secret() -> None:
    echo = b"Cannot POST /T0/B0/s3cr3t"
    not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(echo), echo)
    with _slow_server(not_found, 0.0) as url:
        delivery = post_json(url, {"text": "x"})
    assert delivery.status == 404 and "Cannot POST" in delivery.error
    assert "s3cr3t" not in delivery.error
    moved = b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
    with _slow_server(moved, 0.0) as url:
        delivery = post_json(url, {"text": "x"})
    host = url.split("/T0")[0]
    assert delivery.error.startswith(
        f"HTTP 302: redirected to {host}, not followed: set the URL it redirects to (its path "
        "is not shown, it may hold a secret: `curl -si -X POST <your URL>` shows it in Location)"
    )


def test_the_reload_request_goes_to_reload_under_the_services_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    posted: list[str] = []
    monkeypatch.setattr(notify, "post_json", lambda url, *args, **kwargs: posted.append(url))
    for url in ("http://serving:8000", "http://serving:8000/", "http://serving:8000/a/?t=1#x"):
        notify.request_reload(url, "token")
    assert posted == [
        "http://serving:8000/reload",
        "http://serving:8000/reload",
        "http://serving:8000/a/reload?t=1",
    ]


def test_no_log_line_holds_the_webhooks_path_at_any_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with http_receiver() as ok, http_receiver(status=500) as failing:
        for receiver in (ok, failing):
            url = receiver.url + "/T0/B0/s3cr3t"
            post_json(url, {"text": "x"}, backoff_s=0.0)
    assert caplog.records and all("s3cr3t" not in r.getMessage() for r in caplog.records)
