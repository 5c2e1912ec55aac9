"""Artifacts serving must refuse without dying: a model that crashes LightGBM, a version gated
for another scorer, or one that does not say which scorer it was gated for."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from ltr_core.artifacts.format import METADATA_FILE, MODEL_FILE, sha256
from ltr_core.artifacts.signing import ArtifactKeys, SigningKey
from ltr_core.features import FEATURES
from ltr_core.settings import Settings
from tests.support.model_texts import edit_tree, tree_line
from tests.support.serving import (
    TOKEN,
    Publisher,
    RunningServer,
    ServerProcess,
    rank_body,
    wait_for,
    weights_for,
)

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _replace_model(publisher: Publisher, version: str, model: bytes) -> None:
    """Rewrite a published version's model.txt and metadata.json's checksum to match, as an
    attacker with write access to the registry would."""
    folder = publisher.registry.versions_dir / version
    (folder / MODEL_FILE).write_bytes(model)
    metadata = json.loads((folder / METADATA_FILE).read_text())
    metadata["checksums"][MODEL_FILE] = sha256(model)
    (folder / METADATA_FILE).write_text(json.dumps(metadata))


def _publish_crashing_model(publisher: Publisher, weights: dict[str, float]) -> str:
    """A version whose model.txt is cut where its trees begin (LightGBM aborts the process
    parsing that), written whole: with the poller reading the registry every 0.2 s, a version
    tampered with after its publication could be met half-rewritten (a checksum refusal instead
    of the crash this is about)."""
    text = publisher.model_text
    publisher.model_text = text[: text.index("Tree=0")]
    try:
        return publisher.publish(weights)
    finally:
        publisher.model_text = text


def test_a_model_that_crashes_lightgbm_cannot_kill_the_server(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server_process: Callable[[], ServerProcess],
) -> None:
    serving_env(LTR_SCORER="model", WEIGHTS_POLL_SECONDS="0.2")
    good = publisher.publish(weights_for(1))
    server = start_server_process()
    with server.client() as client:
        _publish_crashing_model(publisher, weights_for(2))
        refused = client.post("/reload", headers=AUTH)
        assert refused.status_code == 409, refused.text
        assert "model.txt is malformed: has no trees" in refused.json()["error"]
        assert server.process.poll() is None

        worse = _publish_crashing_model(publisher, weights_for(3))  # the poller meets it
        wait_for(
            lambda: worse in (client.get("/ltr/health").json()["last_reload_error"] or ""),
            10,
            "the poller to refuse the crashing model",
        )
        assert server.process.poll() is None
        health = client.get("/ltr/health").json()
        assert health["version"] == good and "has no trees" in health["last_reload_error"]
        assert client.post("/rank", json=rank_body(5)).json()["version"] == good


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("first", "reason"),
    [("0", "node 0 is reached twice"), ("1000000", "node 0 has child 1000000, out of range")],
    ids=["cycle", "child out of range"],
)
def test_a_tree_that_would_hang_or_crash_prediction_is_refused_and_the_old_version_serves(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server_process: Callable[[], ServerProcess],
    first: str,
    reason: str,
) -> None:
    """Tree 0's root sends right to itself (LightGBM then loops forever on the event loop) or
    to node 1000000 (it reads outside its arrays: SIGSEGV). Either passes LightGBM's parse, one
    scored row of 0.5s and the checksums; serving must refuse it at reload and keep ranking,
    including the rows that take that branch."""
    serving_env(LTR_SCORER="model")
    good = publisher.publish(weights_for(1))
    server = start_server_process()
    text = publisher.model_text
    crafted = edit_tree(
        text, 0, "right_child", " ".join([first, *tree_line(text, 0, "right_child")[1:]])
    )
    root_feature = FEATURES[int(tree_line(text, 0, "split_feature")[0])]
    assert float(tree_line(text, 0, "threshold")[0]) < 1.0
    body = rank_body(5)
    for candidate in body["candidates"]:
        candidate["features"][root_feature] = 1.0  # right at the root: the crafted branch
    with server.client() as client:
        bad = publisher.publish(weights_for(2))
        _replace_model(publisher, bad, crafted.encode())
        refused = client.post("/reload", headers=AUTH)
        ranked = client.post("/rank", json=body)  # hangs or kills the server if it was taken
        assert refused.status_code == 409, refused.text
        assert f"version {bad}: model.txt is malformed: tree 0: {reason}" in refused.json()["error"]
        assert ranked.status_code == 200 and ranked.json()["version"] == good
        health = client.get("/ltr/health").json()
        assert (health["version"], health["status"]) == (good, "degraded")
    assert server.process.poll() is None


def test_an_artifact_gated_for_another_scorer_is_refused_with_the_reason(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
) -> None:
    serving_env(LTR_SCORER="model")
    publisher.publish(weights_for(1), gated_scorer="weights")
    server = start_server()
    with server.client() as client:
        health = client.get("/ltr/health")  # refused at startup
        assert health.status_code == 503
        assert "gated for the weights scorer" in health.json()["last_reload_error"]
        assert "LTR_SCORER=model" in health.json()["last_reload_error"]

        model_version = publisher.publish(weights_for(2), gated_scorer="model")
        assert client.post("/reload", headers=AUTH).json()["version"] == model_version

        publisher.publish(weights_for(3), gated_scorer="weights")
        refused = client.post("/reload", headers=AUTH)
        assert refused.status_code == 409 and "gated for the weights scorer" in refused.text

        unrecorded = publisher.publish(weights_for(4), gated_scorer=None)
        refused = client.post("/reload", headers=AUTH)
        assert refused.status_code == 409
        assert f"version {unrecorded} records no gated_scorer" in refused.json()["error"]
        health = client.get("/ltr/health").json()
        assert health["version"] == model_version and health["status"] == "degraded"
        assert client.post("/rank", json=rank_body(3)).json()["version"] == model_version


def test_the_poller_refuses_an_artifact_gated_for_another_scorer(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
) -> None:
    serving_env(WEIGHTS_POLL_SECONDS="0.1")
    live = publisher.publish(weights_for(1))
    server = start_server()
    with server.client() as client:
        publisher.publish(weights_for(2), gated_scorer="model")
        wait_for(
            lambda: (
                "gated for the model scorer"
                in (client.get("/ltr/health").json()["last_reload_error"] or "")
            ),
            5,
            "the poller to refuse the version",
        )
        assert client.get("/ltr/health").json()["version"] == live


SECRET = "serving-test-secret-" + "d" * 40


@pytest.mark.timeout(180)
def test_with_verify_keys_only_a_version_signed_with_one_of_them_is_served(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server_process: Callable[[], ServerProcess],
) -> None:
    """Someone with write access to the registry but no key can publish unsigned versions,
    rewrite a signed one (a model and its checksum), or sign with a key of their own: serving
    refuses each at reload, with the reason, and the signed version keeps serving."""
    serving_env(LTR_SCORER="model", LTR_ARTIFACT_VERIFY_KEYS=f"k1:{SECRET}")
    signer = ArtifactKeys(signing=SigningKey("k1", SECRET.encode()))
    publisher.registry.keys = signer
    good = publisher.publish(weights_for(1))
    server = start_server_process()
    with server.client(headers=AUTH) as client:
        assert client.get("/ltr/health").json()["version"] == good

        def refused(reason: str) -> None:
            answer = client.post("/reload")
            assert answer.status_code == 409 and reason in answer.json()["error"], answer.text
            assert client.post("/rank", json=rank_body(5)).json()["version"] == good

        publisher.registry.keys = ArtifactKeys()
        unsigned = publisher.publish(weights_for(2))
        refused(f"version {unsigned}: metadata.json unsigned: refused")

        publisher.registry.keys = signer
        rewritten = publisher.publish(weights_for(3))
        model = publisher.model_text.replace("shrinkage=0.1", "shrinkage=0.2", 1).encode()
        _replace_model(publisher, rewritten, model)
        refused(f"version {rewritten}: metadata.json bad signature (key k1)")

        publisher.registry.keys = ArtifactKeys(signing=SigningKey("k1", b"a guess at it" * 4))
        forged = publisher.publish(weights_for(4))
        refused(f"version {forged}: metadata.json bad signature (key k1)")

        publisher.registry.keys = ArtifactKeys(signing=SigningKey("k9", b"their own key" * 4))
        theirs = publisher.publish(weights_for(5))
        refused(f"version {theirs}: metadata.json signed with unknown key k9")

        publisher.registry.keys = signer
        fresh = publisher.publish(weights_for(6))
        assert client.post("/reload").json()["version"] == fresh
        assert client.post("/rank", json=rank_body(5)).json()["version"] == fresh
        assert SECRET not in client.get("/ltr/health").text


def test_a_version_whose_partition_is_not_text_is_refused_and_health_keeps_answering(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server_process: Callable[[], ServerProcess],
) -> None:
    """Taken, a number as the partition made every /ltr/health a 500 from then on."""
    serving_env(LTR_SCORER="model")
    good = publisher.publish(weights_for(1))
    server = start_server_process()
    with server.client() as client:
        bad = publisher.publish(weights_for(2))
        metadata_path = publisher.registry.versions_dir / bad / METADATA_FILE
        metadata = json.loads(metadata_path.read_text())
        metadata["partition"] = 20261125
        metadata_path.write_text(json.dumps(metadata))
        refused = client.post("/reload", headers=AUTH)
        assert refused.status_code == 409, refused.text
        assert "partition that is not a string" in refused.json()["error"]
        health = client.get("/ltr/health")
        assert health.status_code == 200, health.text
        assert (health.json()["version"], health.json()["status"]) == (good, "degraded")
