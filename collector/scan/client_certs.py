"""The client certificates a ZTNA gateway must refuse, made at scan time: a CA of the scanner's
own making (so no gateway can trust it) issues one current and one expired client certificate.
Both live in memory only, travel to the vantage inside the probe request, and are forgotten
with the scan; the CA's key is dropped as soon as it has signed. When the zones file names the
site's real client certificate, both copy its subject, so a gateway that admits a client by its
name alone, without checking who issued the certificate, is caught too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class StrangerCerts:
    """PEM (certificate, then its unencrypted key) of each refused-by-design client."""

    untrusted: str
    """Valid now, issued by the scanner's CA."""
    expired: str
    """Issued by the same CA, valid from 31 to 1 days ago."""
    subject: str
    """The subject both carry (RFC 4514)."""


def _default_subject() -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "medsec scan"),
            x509.NameAttribute(NameOID.COMMON_NAME, "medsec-untrusted-client"),
        ]
    )


def subject_of(cert_file: str | Path | None) -> x509.Name | None:
    """The subject of the site's client certificate (its public part only), or None when the
    zones file names none or it cannot be read: the default subject then stands in."""
    if cert_file is None:
        return None
    try:
        return x509.load_pem_x509_certificate(Path(cert_file).read_bytes()).subject
    except (OSError, ValueError):
        return None


def stranger_certs(subject: x509.Name | None = None) -> StrangerCerts:
    now = dt.datetime.now(dt.UTC)
    name = subject or _default_subject()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "medsec scan"),
            x509.NameAttribute(NameOID.COMMON_NAME, "medsec throwaway CA (never trusted)"),
        ]
    )

    def issue(not_before: dt.datetime, not_after: dt.datetime) -> str:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return pem.decode("ascii")

    return StrangerCerts(
        untrusted=issue(now - _DAY, now + 30 * _DAY),
        expired=issue(now - 31 * _DAY, now - _DAY),
        subject=name.rfc4514_string(),
    )
