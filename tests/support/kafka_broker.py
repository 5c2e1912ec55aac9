"""A real Kafka wire-protocol broker (noida-db) on 127.0.0.1 for the tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _binary() -> str:
    found = shutil.which("noida-db") or str(Path(sys.executable).parent / "noida-db")
    if not Path(found).exists():
        raise RuntimeError("noida-db is not installed: pip install -e '.[dev]'")
    return found


class Broker:
    """Start, stop and restart one broker; its data survives a restart (same data dir)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.data_dir = tempfile.mkdtemp(prefix="noida-kafka-")
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(self.data_dir).with_suffix(".log")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [_binary(), "start", "--only", "kafka", "--kafka-port", str(self.port),
                 "--host", "127.0.0.1", "--data-dir", self.data_dir],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.process.poll() is not None and not self._group_alive():
                    break
                time.sleep(0.05)
        raise RuntimeError(f"noida-db did not start on {self.bootstrap}: {self.log.read_text()}")

    def _group_alive(self) -> bool:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def freeze(self) -> None:
        """SIGSTOP the process group: a hung broker. Connections stay open and nothing is
        answered (nor acknowledged) until `stop` (or SIGCONT)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT the process group: a frozen broker answers again."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group (continuing it, if frozen) and wait until the real binary
        (not just the wrapper) is gone, so the data dir is free for a restart."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
            os.killpg(self.process.pid, signal.SIGCONT)
        self.process.wait()
        deadline = time.monotonic() + timeout
        while self._group_alive():
            if time.monotonic() > deadline:
                os.killpg(self.process.pid, signal.SIGKILL)
            time.sleep(0.05)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log.unlink(missing_ok=True)
