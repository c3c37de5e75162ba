"""The signed envelope a host report travels in (the report's own contract is `checks.report`).

The agent signs the exact bytes of the report JSON; the envelope carries them base64-encoded, so
no canonical-JSON rules are needed and the collector verifies exactly what was signed before it
parses anything. Ed25519 by default; with `crypto: sm` the agent signs with SM2 over SM3
(GB/T 32918), which MNDS 6.2.2 asks for in transmission and which TLS in Python cannot
negotiate. Shared by the agent (seal) and the collector (open, verify), so it lives here.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

import msgspec

from checks import report as report_contract
from checks.report import Report, ReportResult

__all__ = ["Envelope", "EnvelopeError", "Report", "ReportResult", "SignatureInvalid"]

ENVELOPE_SCHEMA: Literal["medsec.envelope/v1"] = "medsec.envelope/v1"
ALGORITHMS = ("ed25519", "sm2-sm3")
Alg = Literal["ed25519", "sm2-sm3"]


class EnvelopeError(ValueError):
    """The envelope or the report in it is malformed. `code` is the API's stable error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class SignatureInvalid(EnvelopeError):
    def __init__(self, message: str = "the signature does not verify with the agent's key"):
        super().__init__("bad_signature", message)


# --------------------------------------------------------------------------- keys and signatures


def generate_private_key(alg: Alg) -> str:
    """A new signing key as unencrypted PKCS#8 PEM (the agent keeps it in a 0600 file)."""
    if alg == "ed25519":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        key = ed25519.Ed25519PrivateKey.generate()
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
    from tongsuopy.crypto import serialization as sm_serialization
    from tongsuopy.crypto.asymciphers import ec

    sm_key = ec.generate_private_key(ec.SM2())
    pem: bytes = sm_key.private_bytes(
        sm_serialization.Encoding.PEM,
        sm_serialization.PrivateFormat.PKCS8,
        sm_serialization.NoEncryption(),
    )
    return pem.decode("ascii")


def public_key_pem(private_pem: str, alg: Alg) -> str:
    """The SubjectPublicKeyInfo PEM of a private key, registered with the collector."""
    if alg == "ed25519":
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
        return (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )
    from tongsuopy.crypto import serialization as sm_serialization

    sm_key = sm_serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    pem: bytes = sm_key.public_key().public_bytes(
        sm_serialization.Encoding.PEM, sm_serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode("ascii")


def sign(data: bytes, private_pem: str, alg: Alg) -> bytes:
    if alg == "ed25519":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise EnvelopeError("wrong_key_type", "the agent key is not an Ed25519 key")
        return key.sign(data)
    from tongsuopy.crypto import hashes
    from tongsuopy.crypto import serialization as sm_serialization
    from tongsuopy.crypto.asymciphers import ec

    sm_key = sm_serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    signature: bytes = sm_key.sign(data, ec.ECDSA(hashes.SM3()))
    return signature


def verify(data: bytes, signature: bytes, public_pem: str, alg: Alg) -> None:
    """Raises `SignatureInvalid` unless `signature` is `data` signed by `public_pem`'s key."""
    if alg == "ed25519":
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        key = serialization.load_pem_public_key(public_pem.encode("ascii"))
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise SignatureInvalid("the registered key is not an Ed25519 key")
        try:
            key.verify(signature, data)
        except InvalidSignature:
            raise SignatureInvalid() from None
        return
    from tongsuopy.crypto import hashes
    from tongsuopy.crypto import serialization as sm_serialization
    from tongsuopy.crypto.asymciphers import ec
    from tongsuopy.crypto.exceptions import InternalError as SmInternalError
    from tongsuopy.crypto.exceptions import InvalidSignature as SmInvalidSignature

    try:
        sm_key = sm_serialization.load_pem_public_key(public_pem.encode("ascii"))
    except Exception:  # tongsuopy raises several unrelated types for a bad key
        raise SignatureInvalid("the registered key is not an SM2 key") from None
    try:
        sm_key.verify(signature, data, ec.ECDSA(hashes.SM3()))
    # Tongsuo reports a malformed (not DER) SM2 signature as an internal error.
    except (SmInvalidSignature, SmInternalError, ValueError):
        raise SignatureInvalid() from None


def valid_public_key(public_pem: str, alg: Alg) -> bool:
    """Whether `public_pem` is a public key of the kind `alg` names (checked at enrolment)."""
    try:
        if alg == "ed25519":
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ed25519

            key = serialization.load_pem_public_key(public_pem.encode("ascii"))
            return isinstance(key, ed25519.Ed25519PublicKey)
        from tongsuopy.crypto import serialization as sm_serialization
        from tongsuopy.crypto.asymciphers import ec

        sm_key = sm_serialization.load_pem_public_key(public_pem.encode("ascii"))
        return isinstance(sm_key, ec.EllipticCurvePublicKey) and sm_key.curve.name == "SM2"
    except Exception:  # untrusted input: whatever the parsers raise, it is not a usable key
        return False


# --------------------------------------------------------------------------- the envelope


class Envelope(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    schema: Literal["medsec.envelope/v1"]
    agent: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    alg: Alg
    report: str
    """Base64 of the report's JSON bytes, exactly as signed."""
    signature: str
    """Base64 of the signature over those bytes."""


def seal(report_bytes: bytes, agent: str, private_pem: str, alg: Alg) -> bytes:
    """The envelope (JSON bytes) the agent posts to `/api/v1/reports`."""
    envelope = Envelope(
        schema=ENVELOPE_SCHEMA,
        agent=agent,
        alg=alg,
        report=base64.b64encode(report_bytes).decode("ascii"),
        signature=base64.b64encode(sign(report_bytes, private_pem, alg)).decode("ascii"),
    )
    return msgspec.json.encode(envelope)


def open_envelope(body: bytes) -> tuple[Envelope, bytes, bytes]:
    """Parse an envelope: (envelope, report bytes, signature bytes). Nothing is verified yet."""
    try:
        envelope = msgspec.json.decode(body, type=Envelope)
    except RecursionError:
        raise EnvelopeError("invalid_envelope", "envelope: nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise EnvelopeError("invalid_envelope", f"envelope: {exc}") from None
    except msgspec.DecodeError as exc:
        raise EnvelopeError("invalid_envelope", f"envelope is not JSON: {exc}") from None
    try:
        report = base64.b64decode(envelope.report, validate=True)
        signature = base64.b64decode(envelope.signature, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(
            "invalid_envelope", "envelope: report or signature is not base64"
        ) from None
    return envelope, report, signature


# --------------------------------------------------------------------------- the report in it


def parse_report(report_bytes: bytes) -> Report:
    """Validate the report an envelope carried; raises `EnvelopeError("invalid_report", ...)`."""
    try:
        return report_contract.parse_report(report_bytes)
    except report_contract.ReportInvalid as exc:
        raise EnvelopeError("invalid_report", str(exc)) from None
