"""Run the app under uvicorn. `ltr-serve --host --port` (`main`, the serving install's command)
and the pipeline's `ltr serve` both call `serve`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import uvicorn

from ltr_core.settings import ConfigError, Settings
from ltr_serving.logs import configure_process_logging, uvicorn_log_config

APP = "ltr_serving.app:app"
CONFIG_ERROR_EXIT = 3  # what uvicorn exits with when the app's start-up fails


def port_argument(text: str) -> int:
    """argparse type: a TCP port (0: any free one), or a usage error."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0-65535")
    return port


def serve(
    host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", access_log: bool = False
) -> int:
    """One worker on purpose: the live version, reload and poller are per process, so a single
    POST /reload reaches the only copy. Scale out with more processes behind a balancer, each
    with its own poller. Access logs are off by default (the latency histogram covers requests).

    The stdlib asyncio loop, not uvloop: same throughput, but it serves ready connections in
    arrival order, while under uvloop some requests wait two rounds instead of one, which
    raises /rank's p95 under concurrent clients (docs/benchmarks.md, serving).

    The settings are read once before the server starts, so a bad value is one line naming
    the variable (exit code 3), not a start-up traceback. From then on the process logs one
    JSON object a line, uvicorn's and every library's loggers included (`ltr_serving.logs`).
    """
    try:
        Settings.from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    configure_process_logging()
    uvicorn.run(
        APP,
        log_config=uvicorn_log_config(log_level),
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        workers=1,
        loop="asyncio",
    )
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "ltr-serve") -> int:
    """`ltr-serve`: the ranking service without the pipeline's command line (the `ltr` command
    needs the pipeline extra but for `ltr serve`; this one only what the serving install holds)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="run the ranking service (ltr_serving.app:app)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_argument, default=8000)
    args = parser.parse_args(argv)
    return serve(host=args.host, port=args.port)


if __name__ == "__main__":
    raise SystemExit(main())
