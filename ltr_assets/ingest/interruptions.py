"""DuckDB and interruptions: give back the Ctrl-C or termination a query swallowed.

A SIGINT that arrives while DuckDB runs a query (the orchestrator terminating the run, or
Ctrl-C) runs Python's handler inside DuckDB, which drops whatever the handler raised and raises
its own `RuntimeError("Query interrupted")` (or `duckdb.InterruptException`). To the caller that
looks like a failed query: the orchestrator records a step that failed, not one interrupted,
and goes on with the steps that do not depend on it. Passed on as `KeyboardInterrupt`, it is an
interruption again, and the run stops where it was."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import duckdb

QUERY_INTERRUPTED = "Query interrupted"  # DuckDB's message when a signal handler raised


@contextlib.contextmanager
def interruptions_passed_on() -> Iterator[None]:
    """Within it, DuckDB's interruption errors become `KeyboardInterrupt` (from the error);
    every other error passes unchanged."""
    try:
        yield
    except duckdb.InterruptException as exc:
        raise KeyboardInterrupt(f"DuckDB: {exc}") from exc
    except RuntimeError as exc:
        if str(exc) != QUERY_INTERRUPTED:
            raise
        raise KeyboardInterrupt(f"DuckDB: {exc}") from exc
