from __future__ import annotations

import logging
from collections.abc import Iterator

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from tests.support.kafka_broker import Broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    """One broker for the session, on a free loopback port with a fresh data dir."""
    broker = Broker()
    broker.start()
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 HTTP server (moto) on 127.0.0.1; yields its endpoint URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A clean server with an empty bucket, and the S3_* / AWS_* variables pointing at it."""
    httpx.post(f"{s3_server}/moto-api/reset").raise_for_status()
    for name, value in {
        "S3_ENDPOINT": s3_server,
        "S3_BUCKET": "ltr-models",
        "S3_PREFIX": "ltr",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client(
        "s3", endpoint_url=s3_server, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    ).create_bucket(Bucket="ltr-models")  # fmt: skip
    yield s3_server
