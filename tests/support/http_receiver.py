"""A local HTTP endpoint that records the JSON bodies POSTed to it (a stand-in for Slack)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []


@contextmanager
def http_receiver(status: int = 200, reply: dict[str, Any] | None = None) -> Iterator[Receiver]:
    """Records what is POSTed; answers `status`, with `reply` as a JSON body when given (a
    stand-in for the ranking service's /reload)."""
    receiver = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.messages.append(json.loads(body or b"{}"))
            receiver.headers.append(dict(self.headers))
            self.send_response(status)
            if reply is None:
                self.end_headers()
                return
            data = json.dumps(reply).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_port}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
