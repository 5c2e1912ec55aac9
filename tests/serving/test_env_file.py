"""The ranking service's command (`ltr-serve`, which the pipeline's `ltr serve` also calls)
reads the settings as every other entry point does: the environment over `$LTR_HOME/ltr.env`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from ltr_core.settings import ENV_FILE, Settings
from tests.support.serving import Publisher, rank_body, wait_for, weights_for

FILE_TOKEN = "token-from-the-env-file"


def test_ltr_serve_reads_the_env_file(
    ltr_home: Path, serving_env: Callable[..., Settings], model_text: str
) -> None:
    """`ltr serve` used to ignore ltr.env while the pipeline, sensors and CLI read it, so an
    LTR_SCORER or LTR_RELOAD_TOKEN set there disagreed between the two sides."""
    serving_env(LTR_RELOAD_TOKEN=None, LTR_SCORER=None)  # neither in the environment
    (ltr_home / ENV_FILE).write_text(f"LTR_SCORER=model\nLTR_RELOAD_TOKEN={FILE_TOKEN}\n")
    assert Settings.from_env().scorer == "model"  # what the pipeline's side reads
    publisher = Publisher(Settings.from_env(), model_text)
    first = publisher.publish(weights_for(1), gated_scorer="model")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "ltr_serving.server", "--port", str(port)]
    process = subprocess.Popen(command, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            assert process.poll() is None, "ltr serve exited"
            try:
                return httpx.get(url + "/ltr/health", timeout=1).status_code in (200, 503)
            except httpx.TransportError:
                return False

        wait_for(answers, 90, "ltr serve to answer")
        with httpx.Client(base_url=url, timeout=30) as client:
            health = client.get("/ltr/health").json()
            assert (health["scorer"], health["version"]) == ("model", first), health
            assert health["reload_enabled"] is True
            second = publisher.publish(weights_for(2), gated_scorer="model")
            reloaded = client.post("/reload", headers={"Authorization": f"Bearer {FILE_TOKEN}"})
            assert reloaded.status_code == 200 and reloaded.json()["version"] == second
            assert client.post("/rank", json=rank_body(5)).json()["version"] == second
    finally:
        process.terminate()
        process.wait(timeout=30)
