"""Outgoing calls: Slack-compatible notifications and the serving app's reload request."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("ltr.notify")


@dataclass(frozen=True)
class Delivery:
    ok: bool
    attempts: int
    status: int | None
    error: str
    answer: Any = None  # the JSON body of a successful response (None if it had none)


def post_json(
    url: str,
    payload: dict[str, Any],
    token: str = "",
    attempts: int = 3,
    backoff_s: float = 0.5,
    timeout_s: float = 5.0,
) -> Delivery:
    """POST with retries and backoff; never raises (the caller reports the outcome)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    error = ""
    status = None
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.post(url, json=payload, headers=headers, timeout=timeout_s)
            status = response.status_code
            if response.is_success:
                return Delivery(True, attempt, status, "", _json_or_none(response))
            error = f"HTTP {status}: {response.text[:200]}"
            if 400 <= status < 500 and status != 429:
                break  # our request is wrong; retrying will not help
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if attempt < attempts:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    log.warning("POST to %s failed after %d attempts: %s", _host(url), attempt, error)
    return Delivery(False, attempt, status, error)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _host(url: str) -> str:
    """Scheme and host only: webhook URLs (Slack's among them) carry their secret in the path."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def notify(webhook_url: str, text: str) -> Delivery | None:
    """Log the message, and post it to the webhook (Slack's {"text": …}) when one is set."""
    log.info("notification: %s", text)
    if not webhook_url:
        return None
    return post_json(webhook_url, {"text": text})


def failure_text(job: str, partition: str, run_id: str, gate_refused: bool, detail: str) -> str:
    """A night that did not publish says which it was: the gate refusing a model (working as
    designed; the previous version stays live) or a crash (someone has to look)."""
    where = f"{job} [{partition}] (run {run_id[:8]})"
    if gate_refused:
        return f":no_entry: {where} gate refused: {detail}. The previous version stays live."
    return f":x: {where} crashed: {detail}"


def request_reload(serving_url: str, token: str) -> Delivery:
    """Ask the ranking service to load whatever `latest` points at now."""
    return post_json(serving_url.rstrip("/") + "/reload", {}, token=token)
