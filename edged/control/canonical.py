"""The canonical byte form of a push that signatures cover, and Ed25519 signing.

Canonical form: the payload object without its ``signature`` member, serialised as JSON
with keys sorted, no insignificant whitespace, UTF-8, non-ASCII characters kept as is.
Signer and verifier both parse before serialising, so whitespace and key order in transit
do not matter. Ed25519 comes from python3-cryptography, imported only when a key is used.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Mapping

from edged.errors import EdgedError

__all__ = [
    "SIGNATURE_FIELD",
    "SignatureError",
    "canonical_bytes",
    "load_public_key",
    "load_private_key",
    "sign_payload",
    "verify_signature",
    "public_key_text",
]

SIGNATURE_FIELD = "signature"


class SignatureError(EdgedError):
    """A signature, key or the library to check them is missing or wrong."""


def canonical_bytes(payload: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in payload.items() if k != SIGNATURE_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise SignatureError(
            "signed pushes need the cryptography library: "
            "apt install python3-cryptography (or pip install cryptography)"
        ) from exc
    return ed25519


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"{what}: not valid base64") from exc


def load_public_key(text: str) -> Any:
    """A public key written as base64 of its 32 raw bytes (``edgectl keygen`` prints one)."""
    raw = _b64(text, "control.public_keys")
    if len(raw) != 32:
        raise SignatureError(f"control.public_keys: an Ed25519 public key is 32 bytes, got {len(raw)}")
    return _ed25519().Ed25519PublicKey.from_public_bytes(raw)


def load_private_key(data: bytes) -> Any:
    """A private key from PEM (PKCS#8, as ``openssl genpkey -algorithm ed25519`` writes)."""
    ed25519 = _ed25519()
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SignatureError("the private key is not an Ed25519 key")
    return key


def public_key_text(private_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign_payload(payload: Mapping[str, Any], private_key: Any) -> str:
    return base64.b64encode(private_key.sign(canonical_bytes(payload))).decode()


def verify_signature(payload: Mapping[str, Any], public_keys: Any) -> None:
    """Raise SignatureError unless ``payload[signature]`` verifies under one of the keys."""
    signature = payload.get(SIGNATURE_FIELD)
    if signature is None:
        raise SignatureError("signature: required (this device has public keys configured)")
    if not isinstance(signature, str):
        raise SignatureError("signature: expected a base64 string")
    raw = _b64(signature, "signature")
    from cryptography.exceptions import InvalidSignature

    message = canonical_bytes(payload)
    for key in public_keys:
        try:
            key.verify(raw, message)
            return
        except InvalidSignature:
            continue
    raise SignatureError("signature: does not verify under any configured public key")
