"""Run the app under uvicorn. `ltr-serve --host --port` (`main`, the serving install's command)
and the pipeline's `ltr serve` both call `serve`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

APP = "ltr_serving.app:app"


def serve(
    host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", access_log: bool = False
) -> None:
    """One worker on purpose: the live version, reload and poller are per process, so a single
    POST /reload reaches the only copy. Scale out with more processes behind a balancer, each
    with its own poller. Access logs are off by default (the latency histogram covers requests).

    The stdlib asyncio loop, not uvloop: same throughput, but it serves ready connections in
    arrival order, while under uvloop some requests wait two rounds instead of one, which
    raises /rank's p95 under concurrent clients (docs/benchmarks.md, serving).
    """
    uvicorn.run(
        APP,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        workers=1,
        loop="asyncio",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`ltr-serve`: the ranking service without the pipeline's command line (the `ltr` command
    needs the pipeline extra; this one only what the serving install holds)."""
    parser = argparse.ArgumentParser(
        prog="ltr-serve", description="run the ranking service (ltr_serving.app:app)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    serve(host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
