"""Outgoing calls: Slack-compatible notifications and the serving app's reload request."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

log = logging.getLogger("ltr.notify")
# httpx logs each request's full URL at INFO: a webhook's secret is in its path, so that line
# must not appear whatever level a deployment logs at.
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Delivery:
    ok: bool
    attempts: int
    status: int | None
    error: str
    answer: Any = None  # the JSON body of a successful response (None if it had none)


DEADLINE_S = 8.0  # every attempt of one POST, backoff included


def post_json(
    url: str,
    payload: dict[str, Any],
    token: str = "",
    attempts: int = 3,
    backoff_s: float = 0.5,
    timeout_s: float = 5.0,
    deadline_s: float = DEADLINE_S,
) -> Delivery:
    """POST with retries and backoff, each attempt within `timeout_s` and all of them within
    `deadline_s`, however slowly the server answers (httpx's timeout bounds each read, so a
    server sending a byte at a time held one call past a sensor tick's limit); never
    raises (the caller reports the outcome). A redirect is not followed (a POST would turn into
    a GET): the error names where it points."""
    # On a thread of its own, waited for at most the deadline: a name lookup runs in a thread
    # the event loop cannot stop, and asyncio.run would wait for it at exit (a slow resolver
    # held a post past its deadline). Such a thread is left to finish alone. This also serves
    # callers that are inside an event loop already.
    done: list[Delivery] = []
    coroutine = _post_json(url, payload, token, attempts, backoff_s, timeout_s, deadline_s)
    worker = threading.Thread(
        target=lambda: done.append(asyncio.run(coroutine)), name="ltr-notify", daemon=True
    )
    worker.start()
    worker.join(deadline_s + 1.0)
    if done:
        return done[0]
    error = f"no answer within {deadline_s:g} s (the name lookup or the connection hung)"
    log.warning("POST to %s failed: %s", _host(url), error)
    return Delivery(False, 0, None, error)


async def _post_json(
    url: str,
    payload: dict[str, Any],
    token: str,
    attempts: int,
    backoff_s: float,
    timeout_s: float,
    deadline_s: float,
) -> Delivery:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    error = ""
    status = None
    attempt = 0
    async with httpx.AsyncClient(follow_redirects=False) as client:
        while attempt < attempts:
            attempt += 1
            wait_s = min(timeout_s, end - loop.time())
            try:
                response = await asyncio.wait_for(
                    client.post(url, json=payload, headers=headers, timeout=wait_s), wait_s
                )
            except TimeoutError:
                error = f"no answer within {wait_s:.3g} s"
            except Exception as exc:  # httpx's errors, and an URL httpx cannot use
                error = f"{type(exc).__name__}: {exc}".replace(url, _host(url))
            else:
                status = response.status_code
                if response.is_success:
                    return Delivery(True, attempt, status, "", _json_or_none(response))
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    where = _host(urljoin(url, location)) if location else "no Location"
                    error = (
                        f"HTTP {status}: redirected to {where}, not followed: set the URL it "
                        "redirects to (its path is not shown, it may hold a secret: "
                        "`curl -si -X POST <your URL>` shows it in Location)"
                    )
                    break
                error = f"HTTP {status}: {_without_secrets(response.text[:200], url)}"
                if 400 <= status < 500 and status != 429:
                    break  # our request is wrong; retrying will not help
            pause = backoff_s * 2 ** (attempt - 1)
            if attempt < attempts and loop.time() + pause < end:
                await asyncio.sleep(pause)
            elif attempt < attempts:
                error += f"; no time left for another attempt within {deadline_s:g} s"
                break
    log.warning("POST to %s failed after %d attempts: %s", _host(url), attempt, error)
    return Delivery(False, attempt, status, error)


def _without_secrets(text: str, url: str) -> str:
    """`text` (a server's answer) with the URL's path, query and user info masked: a webhook's
    secret is in its path, and servers echo the path ("Cannot POST /services/T0/B0/…")."""
    parts = urlsplit(url)
    for secret in (url, parts.path, parts.query, parts.username, parts.password):
        if secret and len(secret) > 1:  # not "/" nor a lone character
            text = text.replace(secret, "…")
    return text


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _host(url: str) -> str:
    """Scheme and host only: webhook URLs (Slack's among them) carry their secret in the path."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a port: shown as absent, never raised from an error message
        port = None
    return f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port else "")


def notify(webhook_url: str, text: str) -> Delivery | None:
    """Log the message, and post it to the webhook (Slack's {"text": …}) when one is set."""
    log.info("notification: %s", text)
    if not webhook_url:
        return None
    return post_json(webhook_url, {"text": text})


def undelivered(delivery: Delivery | None) -> str:
    """ "" when the notification was delivered (or no webhook is set), else what went wrong, for
    the tick's or the run's log."""
    if delivery is None or delivery.ok:
        return ""
    return (
        f"the notification did not reach NOTIFY_WEBHOOK_URL after {delivery.attempts} "
        f"attempt(s): {delivery.error}"
    )


def stays_the_candidate(version: str, day: str = "this day") -> str:
    """What a refused re-run of the canary candidate's own night adds wherever it is told (the
    record, the notification, live_version_age): the earlier build stays the candidate."""
    return f"{version}, an earlier build of {day}, stays the candidate"


def failure_text(
    job: str,
    partition: str,
    run_id: str,
    gate_refused: bool,
    detail: str,
    live: str = "",
    kept_candidate: str = "",
) -> str:
    """A night that did not publish says which it was: the gate refusing a model (working as
    designed; nothing of the night's is published) or a crash (someone has to look). `live`:
    the version live after the run, as its record says (the same run's online comparison may
    have promoted the candidate, so "the previous version" need not be it). `kept_candidate`:
    an earlier build of the same night that stays the candidate (a refused re-run)."""
    where = f"{job} [{partition}] (run {run_id[:8]})"
    if gate_refused:
        after = f"; live: {live}" if live else ""
        if kept_candidate:
            after += f"; {stays_the_candidate(kept_candidate)}"
        return f":no_entry: {where} gate refused: {detail}. Nothing was published{after}."
    return f":x: {where} crashed: {detail}"


def request_reload(serving_url: str, token: str) -> Delivery:
    """Ask the ranking service to load whatever `latest` points at now."""
    parts = urlsplit(serving_url)
    reload_url = urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/reload", fragment=""))
    return post_json(reload_url, {}, token=token)
