"""An HTTP proxy on 127.0.0.1 in front of a real server (moto's S3) that answers chosen
requests with an error instead of forwarding them, or holds them unanswered (a stalled store):
an S3 outage a test can switch on and off."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class FaultyProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.url = ""
        self.fail_paths: tuple[str, ...] = ()  # substrings of the paths to fail
        self.fail_status = 503
        self.failed = 0  # requests answered with the error so far
        self.stall_paths: tuple[str, ...] = ()  # substrings of the paths to hold unanswered
        self.stalled = 0  # requests held so far
        self.released = threading.Event()

    def fail(self, *path_parts: str, status: int = 503) -> None:
        self.fail_paths, self.fail_status = path_parts, status

    def stall(self, *path_parts: str) -> None:
        """Hold matching requests without an answer until `heal`."""
        self.released.clear()
        self.stall_paths = path_parts

    def heal(self) -> None:
        self.fail_paths = self.stall_paths = ()
        self.released.set()


@contextmanager
def faulty_proxy(upstream: str) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(upstream)
    client = httpx.Client(timeout=30)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if any(part in self.path for part in proxy.stall_paths):
                proxy.stalled += 1
                proxy.released.wait(120)
            if any(part in self.path for part in proxy.fail_paths):
                proxy.failed += 1
                error = (
                    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ServiceUnavailable"
                    b"</Code><Message>injected</Message></Error>"
                )
                self.send_response(proxy.fail_status)
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream = client.request(
                self.command, proxy.upstream + self.path, headers=headers, content=body
            )
            self.send_response(upstream.status_code)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-encoding":
                    self.send_header(name, value)
            data = upstream.content
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    proxy.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.heal()  # nothing held forever
        server.shutdown()
        server.server_close()
        client.close()
