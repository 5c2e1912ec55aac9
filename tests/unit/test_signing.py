"""Signed registry versions: what a signature covers, the keys and their rotation, and how the
registry and `ltr registry verify` treat signed, unsigned and tampered versions."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltr_assets.registry.local import LocalRegistry
from ltr_core.artifacts.format import (
    METADATA_FILE,
    MODEL_FILE,
    WEIGHTS_FILE,
    RegistryError,
    sha256,
    weights_json,
)
from ltr_core.artifacts.signing import (
    ArtifactKeys,
    BadSignature,
    SigningKey,
    check_signature,
    manifest,
    parse_keys,
    sign,
    signature_state,
)
from ltr_core.settings import ConfigError, Settings
from ltr_serving.store import LocalWeightStore, StoreError
from tests.support.artifacts import tiny_model_text, weights
from tests.support.cli import run_ltr

SECRET_1 = "k1-secret-" + "a" * 40
SECRET_2 = "k2-secret-" + "b" * 40
K1 = SigningKey("k1", SECRET_1.encode())
K2 = SigningKey("k2", SECRET_2.encode())


def _metadata() -> dict[str, Any]:
    return {
        "version": "20261126_021500",
        "partition": "2026-11-25",
        "gated_scorer": "model",
        "features": ["A", "S"],
        "checksums": {WEIGHTS_FILE: "0" * 64, MODEL_FILE: "1" * 64},
        "metrics": {"ndcg@5": 0.81, "by_rank": {1: 0.5, 10: 0.1}},
    }


def _signed(key: SigningKey = K1) -> dict[str, Any]:
    metadata = _metadata()
    metadata["signature"] = sign(metadata, key)
    read_back: dict[str, Any] = json.loads(json.dumps(metadata, indent=2, sort_keys=True))
    return read_back  # as read back from disk


REQUIRE_K1 = ArtifactKeys(verifying=(K1,))


# -- what a signature covers ---------------------------------------------------------------


def test_a_signature_verifies_after_the_round_trip_through_metadata_json() -> None:
    assert signature_state(_signed(), REQUIRE_K1).text == "signed (key k1) ok"
    check_signature(_signed(), REQUIRE_K1)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m["checksums"].update({MODEL_FILE: "2" * 64}),
        lambda m: m.update(gated_scorer="weights"),
        lambda m: m.update(version="20261126_021501"),
        lambda m: m.update(partition="2026-11-26"),
        lambda m: m["features"].reverse(),
        lambda m: m["metrics"].update({"ndcg@5": 0.82}),
        lambda m: m.update(extra=1),
        lambda m: m.pop("metrics"),
    ],
    ids=[
        "checksum",
        "gated scorer",
        "version",
        "partition",
        "features",
        "metric",
        "added",
        "removed",
    ],
)
def test_any_change_to_the_metadata_breaks_the_signature(tamper: Any) -> None:
    metadata = _signed()
    tamper(metadata)
    state = signature_state(metadata, REQUIRE_K1)
    assert (state.text, state.valid, state.acceptable) == ("bad signature (key k1)", False, False)
    with pytest.raises(BadSignature, match=r"bad signature \(key k1\): refused"):
        check_signature(metadata, REQUIRE_K1)


@pytest.mark.parametrize(
    ("entry", "text"),
    [
        (None, "unsigned"),
        ("abc", "bad signature (not an hmac-sha256 signature)"),
        ({"alg": "none", "key_id": "k1", "value": "x"}, "bad signature (not an hmac-sha256"),
        ({"alg": "hmac-sha256", "key_id": "k9", "value": "0" * 64}, "signed with unknown key k9"),
        ({"alg": "hmac-sha256", "key_id": ["k1"], "value": "0" * 64}, "signed with unknown key"),
        ({"alg": "hmac-sha256", "key_id": "k1", "value": "é" * 64}, "not a hex digest"),
        ({"alg": "hmac-sha256", "key_id": "k1", "value": 7}, "not a hex digest"),
        ({"alg": "hmac-sha256", "key_id": "k1", "value": "0" * 64}, "bad signature (key k1)"),
    ],
)
def test_a_missing_or_malformed_signature_is_refused_without_an_error(
    entry: Any, text: str
) -> None:
    metadata = _metadata()
    if entry is not None:
        metadata["signature"] = entry
    state = signature_state(metadata, REQUIRE_K1)
    assert text in state.text and not state.acceptable
    with pytest.raises(BadSignature):
        check_signature(metadata, REQUIRE_K1)


def test_without_verify_keys_nothing_is_refused_and_the_state_is_reported() -> None:
    nothing = ArtifactKeys()
    assert signature_state(_signed(), nothing).text == "not checked: no key (signed with key k1)"
    assert signature_state(_metadata(), nothing).text == "unsigned"
    for metadata in (_signed(), _metadata()):
        check_signature(metadata, nothing)
    signing_only = ArtifactKeys(signing=K1)  # the pipeline signs; nothing is required yet
    tampered = {**_signed(), "gated_scorer": "weights"}
    assert signature_state(tampered, signing_only).text == "bad signature (key k1)"
    check_signature(tampered, signing_only)


def test_rotation_accepts_old_and_new_keys_until_the_old_one_is_dropped() -> None:
    old, new = _signed(K1), _signed(K2)
    during = ArtifactKeys(signing=K2, verifying=(K1,))  # signs with k2, still accepts k1
    assert signature_state(old, during).text == "signed (key k1) ok"
    assert signature_state(new, during).text == "signed (key k2) ok"
    after = ArtifactKeys(signing=K2, verifying=(K2,))
    assert signature_state(old, after).text == "signed with unknown key k1"
    with pytest.raises(BadSignature, match="unknown key k1"):
        check_signature(old, after)
    forged = {**_signed(K1), "signature": {**sign(_metadata(), SigningKey("k2", b"guess" * 8))}}
    assert signature_state(forged, during).text == "bad signature (key k2)"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(metadata=st.dictionaries(st.text(), json_values, max_size=6))
def test_the_manifest_is_the_same_for_the_publisher_and_for_a_reader(
    metadata: dict[str, Any],
) -> None:
    """Whatever JSON the metadata holds, what a reader parses back signs to the same bytes."""
    written = json.dumps({**metadata, "signature": sign(metadata, K1)}, indent=2, sort_keys=True)
    assert manifest(json.loads(written)) == manifest(metadata)
    assert signature_state(json.loads(written), REQUIRE_K1).valid


# -- configuration ---------------------------------------------------------------------------


def test_keys_are_read_from_the_environment_and_never_shown() -> None:
    settings = Settings.from_env(
        {
            "LTR_ARTIFACT_SIGNING_KEY": f"k2:{SECRET_2}",
            "LTR_ARTIFACT_VERIFY_KEYS": f"k1:{SECRET_1}, k2:{SECRET_2}",
        }
    )
    keys = settings.artifact_keys
    assert keys.signing == K2 and keys.verifying == (K1, K2) and keys.required
    serving = Settings.from_env(
        {"LTR_ARTIFACT_VERIFY_KEYS": f"k1:{SECRET_1}", "LTR_HOME": "/tmp/x"}
    )
    assert serving.artifact_keys.verifying == (K1,) and serving.artifact_keys.signing is None
    for text in (repr(settings), repr(serving), repr(keys), str(keys)):
        assert SECRET_1 not in text and SECRET_2 not in text
        assert "k1" in text or "k2" in text
    assert not Settings.from_env({}).artifact_keys.required


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LTR_ARTIFACT_SIGNING_KEY": SECRET_1}, "LTR_ARTIFACT_SIGNING_KEY: key 1 is not"),
        ({"LTR_ARTIFACT_SIGNING_KEY": "k1:short"}, "shorter than 32 characters"),
        ({"LTR_ARTIFACT_SIGNING_KEY": "bad id:" + SECRET_1}, "is not key_id:secret"),
        ({"LTR_ARTIFACT_SIGNING_KEY": f"k1:{SECRET_1},k2:{SECRET_2}"}, "one key"),
        ({"LTR_ARTIFACT_VERIFY_KEYS": f"k1:{SECRET_1},k1:{SECRET_2}"}, "given two secrets"),
        (
            {
                "LTR_ARTIFACT_SIGNING_KEY": f"k1:{SECRET_1}",
                "LTR_ARTIFACT_VERIFY_KEYS": f"k1:{SECRET_2}",
            },
            "has one secret in LTR_ARTIFACT_SIGNING_KEY and another",
        ),
    ],
)
def test_bad_keys_name_the_variable_and_never_the_secret(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        Settings.from_env(env)
    assert SECRET_1 not in str(refused.value) and SECRET_2 not in str(refused.value)


def test_parse_keys_keeps_the_order_given() -> None:
    assert parse_keys(f"k2:{SECRET_2},k1:{SECRET_1}", "X") == (K2, K1)


# -- the registry --------------------------------------------------------------------------------


def _now(second: int) -> datetime:
    return datetime(2026, 11, 26, 2, 15, second, tzinfo=UTC)


def _publish(registry: LocalRegistry, second: int) -> str:
    meta = {"gated_scorer": "model"}
    result = registry.publish(
        weights(second), tiny_model_text(), meta, "2026-11-25", now=_now(second)
    )
    return result.version


def _with(root: Path, keys: ArtifactKeys) -> LocalRegistry:
    return LocalRegistry(root, keys=keys)


def test_publish_signs_and_a_registry_with_verify_keys_loads_only_signed_versions(
    tmp_path: Path,
) -> None:
    root = tmp_path / "registry"
    unsigned = _publish(_with(root, ArtifactKeys()), 0)
    signed = _publish(_with(root, ArtifactKeys(signing=K1)), 1)
    metadata = json.loads((root / "versions" / signed / METADATA_FILE).read_text())
    assert metadata["signature"]["alg"] == "hmac-sha256" and metadata["signature"]["key_id"] == "k1"
    strict = _with(root, REQUIRE_K1)
    assert strict.load(signed).version == signed
    with pytest.raises(RegistryError, match=f"version {unsigned}: metadata.json unsigned: refused"):
        strict.load(unsigned)
    with pytest.raises(RegistryError, match="unsigned"):
        strict.rollback(unsigned)
    assert _with(root, ArtifactKeys()).load(unsigned).version == unsigned  # no key: as before
    with pytest.raises(RegistryError, match="unsigned: refused"):  # required, but cannot sign
        _publish(_with(root, REQUIRE_K1), 2)


def _swap_model(root: Path, version: str, model: bytes) -> None:
    """What an attacker with write access but no key can do: new bytes, matching checksums."""
    folder = root / "versions" / version
    (folder / MODEL_FILE).write_bytes(model)
    metadata = json.loads((folder / METADATA_FILE).read_text())
    metadata["checksums"][MODEL_FILE] = sha256(model)
    (folder / METADATA_FILE).write_text(json.dumps(metadata))


def test_a_signed_version_rewritten_without_the_key_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    signer = _with(root, ArtifactKeys(signing=K1, verifying=(K1,)))
    first, second = _publish(signer, 0), _publish(signer, 1)
    other = tiny_model_text().replace("shrinkage=0.1", "shrinkage=0.2", 1).encode()
    _swap_model(root, second, other)
    with pytest.raises(RegistryError, match=r"bad signature \(key k1\): refused"):
        signer.load(second)
    # The whole of another version's folder moved in place of this one: it names itself.
    shutil.rmtree(root / "versions" / second)
    shutil.copytree(root / "versions" / first, root / "versions" / second)
    with pytest.raises(RegistryError, match=f"says '{first}'"):
        signer.load(second)
    assert signer.load(first).version == first


@pytest.mark.slow  # starts the CLI as a process (or trains): not in make test-fast
def test_verify_reports_each_versions_signature_and_refuses_bad_ones_when_keys_are_set(
    tmp_path: Path,
) -> None:
    root = tmp_path / "registry"
    unsigned = _publish(_with(root, ArtifactKeys()), 0)
    signed = _publish(_with(root, ArtifactKeys(signing=K1)), 1)
    old_key = _publish(_with(root, ArtifactKeys(signing=K2)), 2)
    tampered = _publish(_with(root, ArtifactKeys(signing=K1)), 3)
    _swap_model(
        root, tampered, tiny_model_text().replace("shrinkage=0.1", "shrinkage=0.3", 1).encode()
    )

    # the versions are gated for the model scorer: verify checks them as such a service would
    no_key = run_ltr("registry", "verify", home=tmp_path, LTR_SCORER="model")
    assert no_key.returncode == 0, no_key  # no key configured: nothing refused, as before
    lines = dict(line.split(": ", 1) for line in no_key.stdout.splitlines())
    assert lines[unsigned] == "ok; signature: unsigned"
    assert lines[signed] == "ok; signature: not checked: no key (signed with key k1)"
    assert lines[tampered] == "ok; signature: not checked: no key (signed with key k1)"

    strict = run_ltr(
        "registry", "verify", home=tmp_path, LTR_SCORER="model",
        LTR_ARTIFACT_VERIFY_KEYS=f"k1:{SECRET_1}",
    )  # fmt: skip
    assert strict.returncode == 1, strict
    lines = dict(line.split(": ", 1) for line in strict.stdout.splitlines())
    assert lines[signed] == "ok; signature: signed (key k1) ok"
    assert lines[unsigned].endswith("metadata.json unsigned: refused (LTR_ARTIFACT_VERIFY_KEYS is "
                                    "set); signature: unsigned")  # fmt: skip
    assert lines[old_key].endswith("signature: signed with unknown key k2")
    assert lines[tampered].endswith("signature: bad signature (key k1)")
    assert SECRET_1 not in strict.stdout + strict.stderr

    rotating = run_ltr(
        "registry", "verify", old_key, home=tmp_path, LTR_SCORER="model",
        LTR_ARTIFACT_VERIFY_KEYS=f"k1:{SECRET_1},k2:{SECRET_2}",
    )  # fmt: skip
    assert rotating.returncode == 0, rotating
    assert rotating.stdout == f"{old_key}: ok; signature: signed (key k2) ok\n"


def test_with_verify_keys_serving_refuses_the_unsigned_flat_weights_file(tmp_path: Path) -> None:
    flat = tmp_path / "models" / "ltr_weights.json"
    flat.parent.mkdir()
    flat.write_bytes(weights_json(weights(1)))
    assert LocalWeightStore(tmp_path / "registry", flat, "weights").load().flat
    strict = LocalWeightStore(tmp_path / "registry", flat, "weights", REQUIRE_K1)
    with pytest.raises(StoreError, match="carries no signature and LTR_ARTIFACT_VERIFY_KEYS"):
        strict.load()
