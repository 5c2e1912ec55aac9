"""Health of a Dagster code server: healthy only when its code location loads.

`dagster api grpc-health-check` answers "gRPC connection successful" from a code server whose
definitions failed to import (a bad setting, say): the server runs and reports the error to
whoever asks for its repositories. A container health check needs the second question, so the
webserver and daemon, which wait for a healthy code server, never start on a location that
cannot load. Run as `python -m ltr_assets.defs.code_server_health PORT [HOST]`: exit 0 when
it loads, 1 with the load error when it does not, 2 when the server does not answer.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def check(port: int, host: str = "127.0.0.1") -> tuple[int, str]:
    """(exit status, what to print) for the code server at host:port."""
    from dagster._api.list_repositories import sync_list_repositories_grpc
    from dagster._core.errors import DagsterUserCodeProcessError
    from dagster._grpc.client import DagsterGrpcClient

    client = DagsterGrpcClient(port=port, host=host)
    try:
        client.ping("health")
    except Exception as exc:  # not up (yet): the health check's retries wait
        return 2, f"the code server on {host}:{port} does not answer: {type(exc).__name__}"
    try:
        sync_list_repositories_grpc(client)
    except DagsterUserCodeProcessError as exc:
        info = exc.user_code_process_error_infos[0]
        while info.cause is not None:  # the innermost error: what went wrong in our code
            info = info.cause
        return 1, f"the code location does not load: {info.message.strip()}"
    return 0, f"the code location on {host}:{port} loads"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (1, 2) or not args[0].isdigit():
        print("usage: python -m ltr_assets.defs.code_server_health PORT [HOST]", file=sys.stderr)
        return 2
    status, text = check(int(args[0]), *args[1:])
    print(text, file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())
