from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from edged.control.canonical import (
    SignatureError,
    canonical_bytes,
    load_private_key,
    load_public_key,
    public_key_text,
    sign_payload,
    verify_signature,
)


def _key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def test_canonical_form_ignores_key_order_whitespace_and_the_signature() -> None:
    a = json.loads('{"version": 3, "patch": {"b": 1, "a": "é"}}')
    b = json.loads('{"patch":{"a":"é","b":1},"signature":"x","version":3}')
    assert canonical_bytes(a) == canonical_bytes(b) == '{"patch":{"a":"é","b":1},"version":3}'.encode()


def test_signature_round_trip_through_pem_and_public_text() -> None:
    pem = _key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private = load_private_key(pem)
    public = load_public_key(public_key_text(private))
    payload = {"version": 4, "patch": {"telemetry": {"period_s": 2}}}
    payload["signature"] = sign_payload(payload, private)
    verify_signature(json.loads(json.dumps(payload)), [load_public_key(public_key_text(_key())), public])


def test_tampered_unsigned_and_foreign_signatures_are_refused() -> None:
    private = _key()
    public = load_public_key(public_key_text(private))
    payload = {"version": 4, "patch": {"telemetry": {"period_s": 2}}}
    signed = dict(payload, signature=sign_payload(payload, private))
    with pytest.raises(SignatureError, match="signature: required"):
        verify_signature(payload, [public])
    with pytest.raises(SignatureError, match="does not verify"):
        verify_signature(dict(signed, version=5), [public])
    with pytest.raises(SignatureError, match="does not verify"):
        verify_signature(dict(payload, signature=sign_payload(payload, _key())), [public])
    with pytest.raises(SignatureError, match="not valid base64"):
        verify_signature(dict(payload, signature="***"), [public])


def test_malformed_keys_are_named() -> None:
    with pytest.raises(SignatureError, match="32 bytes"):
        load_public_key("AAAA")
    with pytest.raises(SignatureError, match="PEM"):
        load_private_key(b"not a key")
