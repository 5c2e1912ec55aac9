"""A service killed outright (SIGKILL, the OOM killer) leaves its log's open `.jsonl.part`
files behind; the next service to start on the host completes them, so the ingest, which reads
complete files only, reads what they hold."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from ltr_core.events import EventRow, parse_event
from ltr_core.settings import Settings
from ltr_serving.impressions import FeedbackRecord, FileSink, Line, complete_orphaned_files
from ltr_serving.log_process import REPORT_S, encode_record
from tests.serving.test_impressions import log_files
from tests.support.serving import (
    Publisher,
    ServerProcess,
    children,
    rank_body,
    wait_for,
    weights_for,
    writer_of,
)

HOST = socket.gethostname()


def _part(folder: Path, name: str, lines: list[bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"".join(lines))
    return path


def test_only_the_files_no_writer_holds_are_completed(tmp_path: Path) -> None:
    """A writer's open file is locked (a FileSink's, or any process's flock): left alone, as
    are other hosts' files and a .part whose complete name exists; the others are completed,
    torn last line and all."""
    day = tmp_path / "2026-11-25"
    orphan = _part(day, f"{HOST}-4242-000001.jsonl.part", [b'{"a": 1}\n', b'{"b"'])
    spill = _part(day, f"{HOST}-4242-server-000002.jsonl.part", [b'{"c": 3}\n'])
    held = _part(day, f"{HOST}-{os.getpid()}-000009.jsonl.part", [b'{"d": 4}\n'])
    elsewhere = _part(day, "other-host-4242-000001.jsonl.part", [b'{"e": 5}\n'])
    taken = _part(day, f"{HOST}-4242-000003.jsonl.part", [b'{"f": 6}\n'])
    (day / taken.name.removesuffix(".part")).write_bytes(b'{"g": 7}\n')
    sink = FileSink(tmp_path)
    sink.write_data("2026-11-26", b'{"h": 8}\n', 1)  # a live writer's open file
    with open(held, "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        completed = complete_orphaned_files(tmp_path)
    assert completed == sorted(p.with_name(p.name.removesuffix(".part")) for p in (orphan, spill))
    # the torn last line is kept for the ingest to quarantine, not cut off unseen
    assert completed[0].read_bytes() == b'{"a": 1}\n{"b"'
    assert held.exists() and elsewhere.exists() and taken.exists()
    assert (day / taken.name.removesuffix(".part")).read_bytes() == b'{"g": 7}\n'
    assert len(list((tmp_path / "2026-11-26").glob("*.jsonl.part"))) == 1
    sink.close()
    assert [p.read_bytes() for p in (tmp_path / "2026-11-26").glob("*.jsonl")] == [b'{"h": 8}\n']


def _complete_in_time(directory: Path, fifos: list[Path]) -> list[Path]:
    """`complete_orphaned_files`, failing the test if it blocks (on a FIFO: then the FIFOs
    are opened for writing, so the blocked call returns and the thread ends)."""
    result: list[list[Path]] = []
    worker = threading.Thread(target=lambda: result.append(complete_orphaned_files(directory)))
    worker.start()
    worker.join(10)
    hung = worker.is_alive()
    if hung:
        for fifo in fifos:
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
    assert not hung, "complete_orphaned_files blocked"
    assert result, "complete_orphaned_files raised"
    return result[0]


def test_part_names_that_are_not_regular_files_are_left_alone_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A FIFO, a directory or a symlink with a `.part` name of this host, or a `.part` file
    this process may not open (another user's 0600 file), is never opened to wait, never
    followed and never a crash: left as it is, named in a warning; the real orphans beside
    them are completed."""
    day = tmp_path / "2026-12-07"
    orphan = _part(day, f"{HOST}-4242-000009.jsonl.part", [b'{"a": 1}\n'])
    fifo = day / f"{HOST}-1-000001.jsonl.part"
    os.mkfifo(fifo)
    folder = day / f"{HOST}-1-000002.jsonl.part"
    folder.mkdir()
    target = _part(tmp_path / "elsewhere", "target.jsonl", [b'{"b": 2}\n'])
    link = day / f"{HOST}-1-000003.jsonl.part"
    link.symlink_to(target)
    unreadable = _part(day, f"{HOST}-1-000004.jsonl.part", [b'{"c": 3}\n'])
    real_open = os.open

    def refusing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(path) == unreadable:  # as root, a 0600 file of another user opens anyway
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    with caplog.at_level(logging.WARNING, logger="ltr_serving.impressions"):
        completed = _complete_in_time(tmp_path, [fifo])
    monkeypatch.undo()
    assert completed == [orphan.with_name(orphan.name.removesuffix(".part"))]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and folder.is_dir() and link.is_symlink()
    assert unreadable.exists() and target.read_bytes() == b'{"b": 2}\n'
    skipped = [r.skipped for r in caplog.records if hasattr(r, "skipped")]
    assert len(skipped) == 1
    assert sorted(skipped[0]) == sorted(str(p) for p in (fifo, folder, link, unreadable))
    assert "FIFO" in skipped[0][str(fifo)] and "directory" in skipped[0][str(folder)]
    assert "symlink" in skipped[0][str(link)] and "Permission" in skipped[0][str(unreadable)]


def test_a_service_starts_whatever_its_log_folder_holds(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server_process: Callable[..., ServerProcess],
    tmp_path: Path,
) -> None:
    """A FIFO and a directory named as this host's orphaned `.part` files: the service still
    starts (no start-up blocked on the FIFO, no crash on the directory), says which it left
    alone, and logs what it is asked to."""
    settings = serving_env(LTR_IMPRESSION_LOG="file")
    publisher.publish(weights_for(1))
    day = settings.serving_log_dir / "2026-12-07"
    day.mkdir(parents=True)
    fifo = day / f"{HOST}-1-000001.jsonl.part"
    os.mkfifo(fifo)
    (day / f"{HOST}-1-000002.jsonl.part").mkdir()
    stderr = tmp_path / "stderr.log"
    try:
        server = start_server_process(stderr=stderr)
    finally:  # a blocked start-up: its open of the FIFO returns, and the test ends
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    with server.client() as client:
        assert client.post("/rank", json=rank_body(5)).status_code == 200
    assert "left alone files in the serving-log folder" in stderr.read_text()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_killed_service_loses_none_of_what_its_log_wrote(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server_process: Callable[[], ServerProcess],
) -> None:
    """SIGKILL the server and its writer process after their events were written: the files
    stay `.part`; the next service completes them and every impression of every answered
    request is in a complete file, ingestible."""
    settings = serving_env(LTR_SERVING_LOG_ROTATE_SECONDS="3600")
    publisher.publish(weights_for(1))
    server = start_server_process()
    with server.client() as client:
        ids = [client.post("/rank", json=rank_body(10, seed=i)).json()["request_id"]
               for i in range(20)]  # fmt: skip

        def written() -> bool:
            logged: int = client.get("/ltr/health").json()["event_log"]["logged_impressions"]
            return logged >= 200

        wait_for(written, 60, "the writer to write the impressions")
    for pid in [*children(server.process.pid), server.process.pid]:
        os.kill(pid, signal.SIGKILL)
    server.process.wait(10)
    time.sleep(0.2)
    complete, partial = log_files(settings.serving_log_dir)
    assert partial and not complete  # killed with its file open

    start_server_process()  # completes them as it starts
    complete, partial = log_files(settings.serving_log_dir)
    assert partial == []
    events = [orjson.loads(line) for path in complete for line in path.read_bytes().splitlines()]
    assert all(isinstance(parse_event(orjson.dumps(e)), EventRow) for e in events)
    shown = [e["request_id"] for e in events if e["event_type"] == "match_recommendation"]
    assert sorted(set(shown)) == sorted(ids) and len(shown) == 200


def test_a_killed_writer_is_replaced_and_loses_nothing_it_was_handed(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server_process: Callable[[], ServerProcess],
) -> None:
    """The writer process stopped while frames wait in its pipe, then killed (the OOM killer):
    the server starts another, which writes what the dead one had not confirmed, and completes
    the file the dead one left open; every impression of every answered request is in complete
    files (some twice, with one event id, which the ingest deduplicates), and /ltr/health says
    what happened."""
    settings = serving_env(LTR_SERVING_LOG_ROTATE_SECONDS="3600")
    publisher.publish(weights_for(1))
    server = start_server_process()
    with server.client() as client:
        ids = [client.post("/rank", json=rank_body(5, seed=i)).json()["request_id"]
               for i in range(5)]  # fmt: skip
        wait_for(  # written and confirmed: in the file the writer holds open
            lambda: client.get("/ltr/health").json()["event_log"]["logged_impressions"] >= 25,
            60,
            "the writer to write the first impressions",
        )
        writer = writer_of(server)
        os.kill(writer, signal.SIGSTOP)  # behind: frames wait in its pipe, unconfirmed
        ids += [client.post("/rank", json=rank_body(5, seed=i)).json()["request_id"]
                for i in range(5, 25)]  # fmt: skip
        os.kill(writer, signal.SIGKILL)
        ids += [client.post("/rank", json=rank_body(5, seed=i)).json()["request_id"]
                for i in range(25, 35)]  # fmt: skip

        def replaced() -> bool:
            log = client.get("/ltr/health").json()["event_log"]
            return bool(log["writer_restarts"] == 1 and log["logged_impressions"] >= 175)

        wait_for(replaced, 60, "a new writer to write the impressions")
        health = client.get("/ltr/health").json()
        assert writer_of(server) != writer
    assert health["status"] == "degraded" and health["event_log"]["failed"] == 0
    assert "writer process is gone" in health["event_log"]["last_error"]
    server.process.terminate()
    server.process.wait(30)
    complete, partial = log_files(settings.serving_log_dir)
    assert partial == []
    events = [orjson.loads(line) for path in complete for line in path.read_bytes().splitlines()]
    shown = {e["event_id"]: e["request_id"] for e in events}
    assert sorted(set(shown.values())) == sorted(ids) and len(shown) == 35 * 5


def _feedback_frame(i: int) -> bytes:
    event = {
        "event_id": f"fb-{i}", "event_type": "offer_feedback",
        "timestamp": "2026-12-03T10:00:00Z", "request_id": f"r-{i}", "case_id": "c-1",
        "lawyer_id": "l-1", "action": "click",
    }  # fmt: skip
    line = Line(orjson.dumps(event) + b"\n", None, 1_796_292_000_000, "feedback")
    return encode_record(FeedbackRecord([("2026-12-03", line)]))


def test_a_writer_whose_server_is_gone_writes_everything_and_exits_cleanly(
    serving_env: Callable[..., Settings],
) -> None:
    """The writer started as the server starts it (`ProcessSink`: its input and its reports
    on pipes, in a session of its own). The server's end of the report pipe closes (the server
    killed outright) while the writer still has input: it writes every frame, completes its
    files and exits with 0, with no traceback, saying once that the server is gone."""
    settings = serving_env(LTR_SERVING_LOG_ROTATE_SECONDS="3600")
    writer = subprocess.Popen(
        [sys.executable, "-m", "ltr_serving.log_process"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert writer.stdin is not None and writer.stdout is not None and writer.stderr is not None
    try:
        given = pickle.dumps(settings)
        writer.stdin.write(len(given).to_bytes(4, "little") + given)
        writer.stdin.writelines(_feedback_frame(i) for i in range(50))
        writer.stdin.flush()
        assert orjson.loads(writer.stdout.readline())["counters"]  # it runs and reports
        writer.stdout.close()  # the server is gone: nothing reads the reports any more
        time.sleep(4 * REPORT_S)  # reports meanwhile find the pipe closed
        writer.stdin.writelines(_feedback_frame(i) for i in range(50, 100))
        writer.stdin.close()  # ... and its end of the input closes too
        code = writer.wait(60)
        errors = writer.stderr.read()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert code == 0, errors
    assert b"Traceback" not in errors and b"BrokenPipeError" not in errors, errors
    lines = [orjson.loads(line) for line in errors.splitlines()]  # JSON log lines only
    assert [line["level"] for line in lines if "gone" in line["message"]] == ["WARNING"], lines
    complete, partial = log_files(settings.serving_log_dir)
    assert partial == []
    written = [orjson.loads(x) for path in complete for x in path.read_bytes().splitlines()]
    assert sorted(e["event_id"] for e in written) == sorted(f"fb-{i}" for i in range(100))
