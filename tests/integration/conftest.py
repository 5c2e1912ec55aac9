from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kafka_broker import Broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    """One broker for the session, on a free loopback port with a fresh data dir."""
    broker = Broker()
    broker.start()
    yield broker
    broker.close()
