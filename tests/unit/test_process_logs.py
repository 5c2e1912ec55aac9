"""The service's processes log one JSON object a line (`ltr_serving.logs`): libraries' loggers,
asyncio's unretrieved-future report and tracebacks included, with secrets replaced."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ltr_serving.logs import JsonFormatter

CHILD = """
import asyncio, gc, logging, warnings
from ltr_serving.logs import configure_process_logging
configure_process_logging()
logging.getLogger("aiokafka.producer.sender").warning("Got error produce response: %s", "x")
try:
    raise ConnectionError("Unable connect to node, token s3cr3t-feedback")
except ConnectionError:
    logging.getLogger("aiokafka.conn").exception("Unable connect to node")
async def main():
    future = asyncio.get_running_loop().create_future()
    future.set_exception(TimeoutError("never read"))
    del future
    gc.collect()
asyncio.run(main())
warnings.warn("a library's warning")
logging.getLogger().info("root, password hunter2-sasl")
logging.getLogger("ltr_serving.app").info("own")
"""


@pytest.mark.slow
def test_every_logger_of_a_service_process_writes_one_json_object_a_line() -> None:
    env = {
        **os.environ,
        "LTR_FEEDBACK_TOKEN": "s3cr3t-feedback,older-token",
        "KAFKA_SASL_PASSWORD": "hunter2-sasl",
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    entries = [json.loads(line) for line in lines]  # every line: a JSON object
    assert all(isinstance(entry, dict) for entry in entries)
    by_logger = {entry["logger"]: entry for entry in entries}
    assert set(by_logger) >= {
        "aiokafka.producer.sender",
        "aiokafka.conn",
        "asyncio",
        "py.warnings",
        "root",
        "ltr_serving.app",
    }
    assert "ConnectionError" in by_logger["aiokafka.conn"]["exception"]  # inside the object
    assert "never retrieved" in by_logger["asyncio"]["message"]
    assert "s3cr3t-feedback" not in done.stderr and "hunter2-sasl" not in done.stderr
    assert "token ***" in by_logger["aiokafka.conn"]["exception"]


def test_the_formatter_replaces_secrets_also_where_json_escapes_them() -> None:
    import logging

    formatter = JsonFormatter(secrets=['pa"ss\\word'])
    record = logging.makeLogRecord({"msg": 'the secret is pa"ss\\word', "name": "x"})
    assert json.loads(formatter.format(record))["message"] == "the secret is ***"
