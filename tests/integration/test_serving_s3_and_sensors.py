"""Serving from the S3 mirror, and the Dagster sensors that tell a live app to reload."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    SensorEvaluationContext,
    build_run_status_sensor_context,
    build_sensor_context,
)

from ltr_assets.definitions import defs
from ltr_assets.defs.sensors import reload_after_rollback_sensor, reload_serving_sensor
from ltr_assets.registry.local import LocalRegistry
from ltr_assets.registry.s3_mirror import mirror_from_settings, sync, version_files
from ltr_core.settings import Settings
from tests.support.cli import run_ltr
from tests.support.dagster_results import run_by_id
from tests.support.faulty_proxy import faulty_proxy
from tests.support.http_receiver import http_receiver
from tests.support.kafka_broker import free_port
from tests.support.serving import (
    PARTITION,
    TOKEN,
    Publisher,
    RunningServer,
    ServerProcess,
    metric_value,
    rank_body,
    wait_for,
    weights_for,
)


def _health(server: RunningServer) -> dict[str, Any]:
    with server.client() as client:
        health: dict[str, Any] = client.get("/ltr/health").json()
        return health


class S3Publisher:
    """The pipeline's side of an S3-served replica: its own local registry (serving sees only
    S3), every publish synced to the mirror."""

    def __init__(self, settings: Settings, root: Path, model_text: str) -> None:
        mirror = mirror_from_settings(settings)
        assert mirror is not None
        self.mirror = mirror
        self.pipeline = LocalRegistry(root)
        self.model_text = model_text

    def publish(self, second: int) -> str:
        now = datetime(2026, 11, 26, 2, 15, second, tzinfo=UTC)
        meta = {"gated_scorer": "weights"}
        version = self.pipeline.publish(
            weights_for(second), self.model_text, meta, PARTITION, now=now
        ).version
        sync(self.pipeline, self.mirror)
        return version


def test_serving_from_s3_reloads_on_the_pointer_etag_and_refuses_a_bad_artifact(
    s3_env: str,
    tmp_path: Path,
    serving_env: Callable[..., Settings],
    model_text: str,
    start_server: Callable[[], RunningServer],
) -> None:
    # The pipeline's registry lives elsewhere; serving sees only S3.
    settings = serving_env(WEIGHTS_POLL_SECONDS="0.2", LTR_REGISTRY_DIR=str(tmp_path / "empty"))
    s3 = S3Publisher(settings, tmp_path / "pipeline-registry", model_text)
    pipeline, mirror, publish = s3.pipeline, s3.mirror, s3.publish

    first = publish(1)
    server = start_server()
    health = _health(server)
    assert (health["version"], health["source"]) == (first, "s3")
    with server.client() as client:
        ranked = client.post("/rank", json=rank_body(20)).json()
    assert ranked["version"] == first

    second = publish(2)
    wait_for(lambda: _health(server)["version"] == second, 10, "the poller to see the new ETag")

    # A version whose model on S3 no longer matches its checksum is refused; second serves on.
    # The bad model is on S3 before the pointer names the version (uploading it and then
    # overwriting model.txt raced the 0.2 s poller, which loaded the good one in between).
    third = pipeline.publish(
        weights_for(3), model_text, {"gated_scorer": "weights"}, PARTITION,
        now=datetime(2026, 11, 26, 2, 15, 3, tzinfo=UTC),
    ).version  # fmt: skip
    files = version_files(pipeline, third)
    files["model.txt"] = b"tree\n" + b"0" * 64
    mirror.upload_version(third, files)
    assert mirror.move_pointer(third, PARTITION)
    with server.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        refused = client.post("/reload")
        assert refused.status_code == 409 and "checksum" in refused.json()["error"]
        assert client.post("/rank", json=rank_body(5)).json()["version"] == second
    assert _health(server)["version"] == second


def test_a_version_repaired_on_s3_is_read_again_without_a_reload(
    s3_env: str,
    tmp_path: Path,
    serving_env: Callable[..., Settings],
    model_text: str,
    start_server: Callable[[], RunningServer],
) -> None:
    """A live version damaged on S3 in place (its weights overwritten): a replica started then
    refuses it. `sync` puts the local bytes back under the same id, and rewrites latest.json
    so its ETag moves: the replica's poller loads the version without a POST /reload. Before,
    the ETags stayed and the replica stayed unavailable (or kept forged bytes) until a reload."""
    settings = serving_env(WEIGHTS_POLL_SECONDS="0.2", LTR_REGISTRY_DIR=str(tmp_path / "empty"))
    s3 = S3Publisher(settings, tmp_path / "pipeline-registry", model_text)
    version = s3.publish(1)
    s3.mirror.client.put_object(
        Bucket=s3.mirror.bucket,
        Key=s3.mirror.key(version, "ltr_weights.json"),
        Body=b'{"not": "the weights"}',
    )
    server = start_server()
    health = _health(server)
    assert health["status"] == "unavailable" and "checksum" in str(health["last_reload_error"])
    etag = s3.mirror.pointer()[1]
    report = sync(s3.pipeline, s3.mirror)
    assert report.repaired == [version] and report.pointers_changed == ["latest.json"]
    assert s3.mirror.pointer()[0] is not None and s3.mirror.pointer()[1] != etag
    wait_for(
        lambda: (_health(server)["status"], _health(server)["version"]) == ("ok", version),
        10,
        "the poller to read the repaired version",
    )
    with server.client() as client:
        assert client.post("/rank", json=rank_body(5)).json()["version"] == version
    assert sync(s3.pipeline, s3.mirror).pointers_changed == []  # whole: nothing to refresh


@pytest.fixture
def live_app(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[RunningServer, Publisher, str]:
    first = publisher.publish(weights_for(1))
    server = start_server()
    monkeypatch.setenv("LTR_SERVING_URL", server.url)
    return server, publisher, first


def _tick(instance: DagsterInstance) -> SensorEvaluationContext:
    """A sensor tick's context with the location's resources (the settings resource)."""
    return build_sensor_context(
        instance=instance, repository_def=defs.get_repository_def(), resources=defs.resources
    )


def test_publication_sensor_reloads_a_live_app(live_app) -> None:
    server, publisher, first = live_app
    second = publisher.publish(weights_for(2))  # the poller is off: only the sensor can tell it
    assert _health(server)["version"] == first
    instance = DagsterInstance.ephemeral()
    instance.report_runless_asset_event(AssetMaterialization("published_weights"))
    context = _tick(instance)
    # evaluate_tick, as the daemon does: a direct call of an asset sensor that needs a resource
    # fails in Dagster 1.13 (it passes the resource as an argument its wrapper does not take).
    outcome = reload_serving_sensor.evaluate_tick(context)
    assert "serving reloaded" in str(outcome.skip_message)
    assert _health(server)["version"] == second


def test_rollback_job_then_its_sensor_reloads_a_live_app(live_app) -> None:
    server, publisher, first = live_app
    second = publisher.publish(weights_for(2))
    with server.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        assert client.post("/reload").json()["version"] == second
    instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def("ltr_rollback_job").execute_in_process(
        run_config={"ops": {"rollback_to_version": {"config": {"version": first}}}},
        instance=instance,
    )
    success = next(e for e in result.all_events if e.event_type_value == "PIPELINE_SUCCESS")
    reload_after_rollback_sensor(
        build_run_status_sensor_context(
            sensor_name=reload_after_rollback_sensor.name,
            dagster_event=success,
            dagster_instance=instance,
            dagster_run=run_by_id(instance, result.run_id),
            resources=defs.resources,
        )
    )
    assert _health(server)["version"] == first


def test_a_wrong_token_makes_the_sensor_fail_loudly(
    live_app, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LTR_RELOAD_TOKEN", "not-the-token")
    instance = DagsterInstance.ephemeral()
    instance.report_runless_asset_event(AssetMaterialization("published_weights"))
    context = _tick(instance)
    with pytest.raises(Exception, match="reload request failed"):
        reload_serving_sensor.evaluate_tick(context)


def test_the_sensor_sends_the_first_of_a_rotated_token(
    live_app, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LTR_RELOAD_TOKEN=new,old on the daemon: it sends `new` alone (the server here accepts
    TOKEN only, so `new` must be TOKEN for the reload to succeed)."""
    server, publisher, _ = live_app
    second = publisher.publish(weights_for(2))
    instance = DagsterInstance.ephemeral()
    instance.report_runless_asset_event(AssetMaterialization("published_weights"))
    monkeypatch.setenv("LTR_RELOAD_TOKEN", f"old-token,{TOKEN}")
    with pytest.raises(Exception, match="reload request failed"):
        reload_serving_sensor.evaluate_tick(_tick(instance))
    monkeypatch.setenv("LTR_RELOAD_TOKEN", f"{TOKEN},old-token")
    outcome = reload_serving_sensor.evaluate_tick(_tick(instance))
    assert "serving reloaded" in str(outcome.skip_message)
    assert _health(server)["version"] == second


def test_a_refused_artifact_is_notified_once_and_the_sensor_moves_on(
    live_app, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, publisher, first = live_app
    bad = publisher.publish(weights_for(3))
    model = publisher.registry.versions_dir / bad / "model.txt"
    model.write_text(model.read_text() + "\n")  # no longer matches its checksum
    instance = DagsterInstance.ephemeral()
    instance.report_runless_asset_event(AssetMaterialization("published_weights"))
    with http_receiver() as receiver:
        monkeypatch.setenv("NOTIFY_WEBHOOK_URL", receiver.url)  # before the tick reads settings
        outcome = reload_serving_sensor.evaluate_tick(_tick(instance))
    assert "refused" in str(outcome.skip_message)
    assert len(receiver.messages) == 1 and "keeps serving" in receiver.messages[0]["text"]
    assert _health(server)["version"] == first


def test_an_s3_outage_during_a_download_is_retried_not_refused(
    s3_env: str,
    tmp_path: Path,
    serving_env: Callable[..., Settings],
    model_text: str,
    start_server_process: Callable[[], ServerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S3 answering 503 while a replica downloads a new version used to be taken for a bad
    artifact: /reload answered 409 (final for the sensor) and the poller never tried again, so
    the replica stayed on the old version after S3 recovered."""
    settings = serving_env(LTR_REGISTRY_DIR=str(tmp_path / "empty"))
    publish = S3Publisher(settings, tmp_path / "pipeline-registry", model_text).publish

    first = publish(1)
    with faulty_proxy(s3_env) as proxy:
        monkeypatch.setenv("S3_ENDPOINT", proxy.url)  # the replica reaches S3 through it
        monkeypatch.setenv("WEIGHTS_POLL_SECONDS", "0.5")
        server = start_server_process()
        with server.client() as client:
            assert client.get("/ltr/health").json()["version"] == first
        second = publish(2)
        proxy.fail(f"/{second}/model.txt")  # the new version's download fails, the pointer not
        with server.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            during = client.post("/reload")
            assert during.status_code == 503, during.text  # retryable, not a refusal
            assert during.json()["version"] == first
            assert client.post("/rank", json=rank_body(5)).json()["version"] == first
        assert proxy.failed > 0
        proxy.heal()

        def serves_second() -> bool:
            with server.client() as client:
                return bool(client.get("/ltr/health").json()["version"] == second)

        wait_for(serves_second, 30, "the poller to load the version once S3 recovered")


def test_a_replica_denied_candidate_json_still_polls_latest_and_sees_it_vanish(
    s3_env: str,
    tmp_path: Path,
    serving_env: Callable[..., Settings],
    model_text: str,
    start_server: Callable[[], RunningServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S3 denies a reader without s3:ListBucket a key that does not exist (403, not 404), so
    a replica with read access only is denied the absent candidate.json. It used to stop
    seeing any new latest.json (the poller took the denial for "nothing changed"); and a
    deleted latest.json went unnoticed, health "ok"."""
    settings = serving_env(LTR_REGISTRY_DIR=str(tmp_path / "empty"), WEIGHTS_POLL_SECONDS="0.2")
    publish = S3Publisher(settings, tmp_path / "pipeline-registry", model_text).publish
    first = publish(1)
    with faulty_proxy(s3_env) as proxy:
        proxy.fail("candidate.json", status=403)
        monkeypatch.setenv("S3_ENDPOINT", proxy.url)  # the replica reaches S3 through it
        server = start_server()
        assert _health(server)["version"] == first
        second = publish(2)
        wait_for(lambda: _health(server)["version"] == second, 10, "the poller to load it")
        health = _health(server)
        assert health["candidate"]["state"] == "unavailable", health["candidate"]

        proxy.heal()
        S3Publisher(settings, tmp_path / "unused", model_text).mirror.client.delete_object(
            Bucket="ltr-models", Key="ltr/latest.json"
        )
        wait_for(lambda: _health(server)["status"] == "degraded", 10, "health to say why")
        health = _health(server)
        assert health["version"] == second
        assert "latest.json does not exist" in health["last_reload_error"], health
        with server.client() as client:
            assert client.post("/rank", json=rank_body(5)).json()["version"] == second
        server.stop()  # before the proxy it polls through closes


def _poll_failures(server: RunningServer) -> float:
    with server.client() as client:
        text = client.get("/metrics").text
    return metric_value(text, "ltr_reload_failures_total", 'trigger="poll"')


def test_a_replica_that_cannot_read_latest_json_says_so(
    s3_env: str,
    tmp_path: Path,
    serving_env: Callable[..., Settings],
    model_text: str,
    start_server: Callable[[], RunningServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S3 answering 503 for latest.json, or not answering at all, used to be taken for
    "nothing changed": health stayed ok with no error and no poll failure was counted, only a
    WARNING in the log each poll. The loaded version serves on; health and the counter tell."""
    settings = serving_env(LTR_REGISTRY_DIR=str(tmp_path / "empty"), WEIGHTS_POLL_SECONDS="0.2")
    first = S3Publisher(settings, tmp_path / "pipeline-registry", model_text).publish(1)
    with faulty_proxy(s3_env) as proxy:
        monkeypatch.setenv("S3_ENDPOINT", proxy.url)  # the replica reaches S3 through it
        server = start_server()
        assert _health(server)["status"] == "ok"
        before = _poll_failures(server)

        proxy.fail("latest.json")  # 503 ServiceUnavailable
        wait_for(lambda: _health(server)["status"] == "degraded", 10, "health to say why")
        health = _health(server)
        assert health["version"] == first
        assert "latest.json" in health["last_reload_error"], health
        assert "503" in health["last_reload_error"], health
        wait_for(lambda: _poll_failures(server) >= before + 2, 10, "the poll failures counted")
        with server.client() as client:
            assert client.post("/rank", json=rank_body(5)).json()["version"] == first

        proxy.heal()  # the next successful poll clears it
        wait_for(lambda: _health(server)["status"] == "ok", 10, "health to recover")
        health = _health(server)
        assert (health["version"], health["last_reload_error"]) == (first, None)
    # The proxy is gone: S3 refuses the connection.
    wait_for(lambda: _health(server)["status"] == "degraded", 20, "health to say why")
    health = _health(server)
    assert health["version"] == first
    assert "latest.json" in health["last_reload_error"], health
    server.stop()


def test_a_hung_artifact_read_never_starves_health(
    s3_env: str,
    tmp_path: Path,
    serving_env: Callable[..., Settings],
    model_text: str,
    start_server_process: Callable[[], ServerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reload whose read hung (a stalled store) used to hold the reload lock with no bound:
    reload requests piled up on the worker threads the synchronous health route also needs, and
    health stopped answering. Here S3 holds the new version's model.txt unanswered."""
    settings = serving_env(LTR_REGISTRY_DIR=str(tmp_path / "empty"), LTR_RELOAD_TIMEOUT_SECONDS="2")
    publish = S3Publisher(settings, tmp_path / "pipeline-registry", model_text).publish

    live = publish(1)
    with faulty_proxy(s3_env) as proxy:
        monkeypatch.setenv("S3_ENDPOINT", proxy.url)  # the replica reaches S3 through it
        server = start_server_process()
        hung = publish(2)
        proxy.stall(f"/{hung}/model.txt")
        answers: list[tuple[int, str]] = []

        def ask_reload() -> None:
            with server.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
                response = client.post("/reload")
                answers.append((response.status_code, response.json()["error"]))

        callers = [threading.Thread(target=ask_reload) for _ in range(60)]  # more than the pool
        for caller in callers:
            caller.start()
        try:
            deadline = time.monotonic() + 8
            with server.client(timeout=3) as client:
                while time.monotonic() < deadline:
                    health = client.get("/ltr/health")
                    assert health.status_code == 200 and health.json()["version"] == live
                    ranked = client.post("/rank", json=rank_body(5))
                    assert ranked.json()["version"] == live
                    time.sleep(0.2)
                assert health.json()["reload_stuck_since"] is not None
        finally:
            for caller in callers:
                caller.join(timeout=60)
        assert proxy.stalled > 0
        assert len(answers) == 60 and {code for code, _ in answers} == {503}
        errors = [error for _, error in answers]
        assert any("took longer than 2 s" in error for error in errors)
        assert any("reload in progress" in error for error in errors)
        # The store recovers: the slot frees and the new version loads.
        proxy.heal()
        with server.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            wait_for(
                lambda: client.get("/ltr/health").json()["reload_stuck_since"] is None,
                30,
                "the hung read to return",
            )
            wait_for(
                lambda: client.post("/reload").json()["version"] == hung, 30, "the new version"
            )


def test_a_cli_rollback_whose_s3_pointer_did_not_move_fails_and_says_how_to_finish(
    s3_env: str,
    tmp_path: Path,
    serving_env: Callable[..., Settings],
    model_text: str,
    start_server: Callable[[], RunningServer],
) -> None:
    """A replica that reads S3 keeps serving the old version when the CLI could not move S3's
    pointer: the rollback exits 1, says the service serves the old version and that
    `ltr registry sync --force` finishes it (plain sync refuses an older partition, which a
    rollback target usually is); it does, and the replica then serves the rolled-back
    version."""
    settings = serving_env(LTR_REGISTRY_DIR=str(tmp_path / "empty"))
    s3 = S3Publisher(settings, tmp_path / "pipeline", model_text)
    first, second = s3.publish(1), s3.publish(2)
    server = start_server()
    assert _health(server)["version"] == second
    s3_vars = {
        name: str(getattr(settings.s3, attr))
        for name, attr in (("S3_BUCKET", "bucket"), ("S3_PREFIX", "prefix"))
    }
    s3_vars.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1"
    )
    cli = {
        "LTR_REGISTRY_DIR": str(tmp_path / "pipeline"),
        "LTR_SERVING_URL": server.url,
        "LTR_RELOAD_TOKEN": TOKEN,
        "LTR_SCORER": "weights",
        **s3_vars,
    }
    down = run_ltr(
        "registry", "rollback", first, home=tmp_path / "home",
        S3_ENDPOINT=f"http://127.0.0.1:{free_port()}", **cli,
    )  # fmt: skip
    assert down.returncode == 1, down.stdout + down.stderr
    assert f"reload: FAILED the service serves {second}, not {first}" in down.stdout
    assert "ltr registry sync --force" in down.stdout
    assert _health(server)["version"] == second

    forced = run_ltr(
        "registry", "sync", "--force", home=tmp_path / "home", S3_ENDPOINT=s3_env, **cli
    )
    assert forced.returncode == 0, forced.stdout + forced.stderr
    with server.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        assert client.post("/reload").json()["version"] == first
