"""The deploy tier's PostgreSQL: the server on 127.0.0.1:5432 (trust auth, user postgres), in a
database of each test's own that is dropped afterwards. Without a server the test fails, saying
so."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
import pytest

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"


def _admin() -> psycopg2.extensions.connection:
    try:
        connection = psycopg2.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=5
        )
    except psycopg2.OperationalError as error:
        pytest.fail(
            f"No PostgreSQL server answers at {PG_HOST}:{PG_PORT} as user {PG_USER} (trust "
            f"auth): this test needs one (start it, e.g. `pg_ctlcluster 15 main start`): {error}"
        )
    connection.autocommit = True
    return connection


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh database of the test's own, dropped afterwards (with any connection left)."""
    name = f"ltr_test_{uuid.uuid4().hex[:12]}"
    admin = _admin()
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
