"""Signatures of registry versions: HMAC-SHA256 with a key the registry's writers do not hold.

What is signed is a version's whole metadata.json except its `signature` entry, as canonical
JSON (keys sorted, no whitespace, ASCII) after a domain tag. That metadata names the version,
its partition, the scorer its gate evaluated, the features and the sha256 of every file (weights,
model, model card), so one signature covers every byte serving reads and every field that says
what the version is: editing a file, a checksum or the gated scorer, or moving files or metadata
between versions (metadata names its own version), all break it.

The signature is stored in metadata.json:
`"signature": {"alg": "hmac-sha256", "key_id": "k1", "value": "<hex>"}`.

Keys are `key_id:secret` (settings `LTR_ARTIFACT_SIGNING_KEY`, `LTR_ARTIFACT_VERIFY_KEYS`, read
by `ltr_core.settings`). The signing key signs what the pipeline publishes; the verify keys are
the keys a signature may be made with, and configuring any turns the check on: a version whose
signature is missing, made with another key, or wrong is then refused (the signing key is
accepted too). Several verify keys let a key be rotated: accept old and new, sign with the new,
drop the old once no version signed with it is needed. HMAC is symmetric: a process able to
verify could also sign, so the keys are secrets wherever they are.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ALGORITHM = "hmac-sha256"
SIGNATURE_FIELD = "signature"
MIN_SECRET_CHARS = 32
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEX = re.compile(r"[0-9a-f]{64}")
_DOMAIN = b"ltr-registry-version-v1\n"


class BadSignature(ValueError):
    """A version's signature is missing, made with an unknown key, or wrong."""


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    secret: bytes = field(repr=False)  # never in a repr, a log line or a message


@dataclass(frozen=True)
class ArtifactKeys:
    """`signing` signs new versions; `verifying` are the keys accepted, and when there are any,
    a version must carry a valid signature made with one of them (or with `signing`)."""

    signing: SigningKey | None = None
    verifying: tuple[SigningKey, ...] = ()

    @property
    def required(self) -> bool:
        return bool(self.verifying)

    def known(self) -> dict[str, SigningKey]:
        """Every key a signature can be checked with, by id."""
        keys = {key.key_id: key for key in self.verifying}
        if self.signing is not None:
            keys.setdefault(self.signing.key_id, self.signing)
        return keys


def parse_keys(text: str, variable: str) -> tuple[SigningKey, ...]:
    """`id:secret[,id:secret...]`; ValueError naming `variable` (never the secret) otherwise."""
    keys: dict[str, SigningKey] = {}
    for number, part in enumerate((p.strip() for p in text.split(",")), start=1):
        key_id, sep, secret = part.partition(":")
        if not sep or not _KEY_ID.fullmatch(key_id):
            raise ValueError(
                f"{variable}: key {number} is not key_id:secret (an id of letters, digits, '.', "
                "'_' or '-', then ':' and the secret)"
            )
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(
                f"{variable}: the secret of key {key_id!r} is shorter than {MIN_SECRET_CHARS} "
                "characters (e.g. `openssl rand -hex 32`)"
            )
        key = SigningKey(key_id, secret.encode())
        if keys.get(key_id, key) != key:
            raise ValueError(f"{variable}: key id {key_id!r} is given two secrets")
        keys[key_id] = key
    return tuple(keys.values())


def manifest(metadata: Mapping[str, Any]) -> bytes:
    """The bytes signed: the metadata without its signature, as canonical JSON. A JSON round
    trip first, so the dict a publisher holds and the one read back from disk agree."""
    body = {k: v for k, v in metadata.items() if k != SIGNATURE_FIELD}
    canonical = json.dumps(
        json.loads(json.dumps(body)), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return _DOMAIN + canonical.encode()


def _digest(metadata: Mapping[str, Any], key: SigningKey) -> str:
    return hmac.new(key.secret, manifest(metadata), hashlib.sha256).hexdigest()


def sign(metadata: Mapping[str, Any], key: SigningKey) -> dict[str, str]:
    """The `signature` entry for `metadata` (whatever signature it holds is ignored)."""
    return {"alg": ALGORITHM, "key_id": key.key_id, "value": _digest(metadata, key)}


@dataclass(frozen=True)
class SignatureState:
    """`text` as `ltr registry verify` shows it; `acceptable` is False only when the keys
    require a valid signature and there is none."""

    text: str
    valid: bool
    acceptable: bool


def signature_state(metadata: Mapping[str, Any], keys: ArtifactKeys) -> SignatureState:
    """What a version's signature is worth under `keys` (never raises)."""
    entry = metadata.get(SIGNATURE_FIELD)
    known = keys.known()
    key_id = entry.get("key_id") if isinstance(entry, dict) else None
    shown = f"{key_id!r:.40}" if not isinstance(key_id, str) else key_id[:40]
    if entry is None:
        text, valid = "unsigned", False
    elif not isinstance(entry, dict) or entry.get("alg") != ALGORITHM:
        text, valid = f"bad signature (not an {ALGORITHM} signature)", False
    elif not known:
        return SignatureState(f"not checked: no key (signed with key {shown})", False, True)
    elif not isinstance(key_id, str) or key_id not in known:
        text, valid = f"signed with unknown key {shown}", False
    elif not isinstance(value := entry.get("value"), str) or not _HEX.fullmatch(value):
        text, valid = f"bad signature (key {shown}: not a hex digest)", False
    elif not hmac.compare_digest(value, _digest(metadata, known[key_id])):
        text, valid = f"bad signature (key {shown})", False
    else:
        text, valid = f"signed (key {shown}) ok", True
    return SignatureState(text, valid, valid or not keys.required)


def check_signature(metadata: Mapping[str, Any], keys: ArtifactKeys) -> None:
    """BadSignature when `keys` require a valid signature and `metadata` has none."""
    state = signature_state(metadata, keys)
    if not state.acceptable:
        raise BadSignature(f"{state.text}: refused (LTR_ARTIFACT_VERIFY_KEYS is set)")
