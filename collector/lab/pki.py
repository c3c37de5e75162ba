"""The lab's key material, made fresh by every `up`: a lab CA with server certificates for the
ZTNA gateway and his-web and a client certificate for the gateway, the two client certificates
the gateway must refuse (one expired from the lab CA, one from a CA the gateway does not trust)
that the ZTNA faults are checked with, the office sshd's host key, the probe user's SSH key
pair, and the SNMP secrets. EC P-256 and Ed25519 keep `up` fast.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.lab import topology as t
from collector.lab.configs import LabPaths, SnmpSecrets

_VALIDITY = dt.timedelta(days=30)


@dataclass(frozen=True)
class _Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "medsec lab hospital"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca(now: dt.datetime, common_name: str = "medsec lab CA") -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issued(key, cert)


def _leaf(
    ca: _Issued,
    now: dt.datetime,
    common_name: str,
    *,
    dns: str = "",
    ip: str = "",
    expired: bool = False,
) -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    # An expired certificate ended yesterday, after a validity as long as a current one's.
    end = now - dt.timedelta(days=1) if expired else now + _VALIDITY
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(end - _VALIDITY - dt.timedelta(hours=1))
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if dns:
        alt_names: list[x509.GeneralName] = [x509.DNSName(dns)]
        if ip:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        usage = ExtendedKeyUsageOID.SERVER_AUTH
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return _Issued(key, builder.sign(ca.key, hashes.SHA256()))


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def _write_issued(folder: Path, stem: str, issued: _Issued) -> None:
    _write(folder / f"{stem}.crt", issued.cert.public_bytes(serialization.Encoding.PEM), 0o644)
    key = issued.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(folder / f"{stem}.key", key, 0o600)


def make_pki(paths: LabPaths) -> None:
    """LAB/pki: ca.crt/key, gateway.crt/key, his-web.crt/key, client.crt/key, and the refused
    client certificates client-expired.crt/key (lab CA, expired) and stranger.crt/key (from
    stranger-ca.crt, which the gateway does not trust; its key is not kept). Keys mode 0600."""
    now = dt.datetime.now(dt.UTC)
    ca = _ca(now)
    _write_issued(paths.pki, "ca", ca)
    _write_issued(
        paths.pki,
        "gateway",
        _leaf(ca, now, "ztna.hospital.lab", dns="ztna.hospital.lab", ip=t.GATEWAY[0]),
    )
    _write_issued(
        paths.pki,
        "his-web",
        _leaf(ca, now, "his-web.hospital.lab", dns="his-web.hospital.lab", ip=t.HIS_WEB[0]),
    )
    _write_issued(paths.pki, "client", _leaf(ca, now, "medsec-probe"))
    _write_issued(paths.pki, "client-expired", _leaf(ca, now, "medsec-probe", expired=True))
    stranger = _ca(now, "medsec lab stranger CA")
    _write(
        paths.pki / "stranger-ca.crt", stranger.cert.public_bytes(serialization.Encoding.PEM), 0o644
    )
    _write_issued(paths.pki, "stranger", _leaf(stranger, now, "medsec-probe"))


def stranger_client() -> tuple[bytes, bytes]:
    """A client certificate and its key (PEM) from a CA made here and forgotten: one no
    gateway can trust."""
    now = dt.datetime.now(dt.UTC)
    issued = _leaf(_ca(now, "medsec lab stranger CA"), now, "medsec-probe")
    key = issued.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return issued.cert.public_bytes(serialization.Encoding.PEM), key


def _ssh_pair(comment: str) -> tuple[bytes, bytes]:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public + b" " + comment.encode() + b"\n"


def make_ssh(paths: LabPaths) -> None:
    """LAB/ssh: the sshd host key, known_hosts naming it, the probe key pair, authorized_keys."""
    host_private, host_public = _ssh_pair("medsec-lab-office")
    _write(paths.ssh / "host_ed25519_key", host_private, 0o600)
    _write(paths.ssh / "host_ed25519_key.pub", host_public, 0o644)
    _write(paths.known_hosts, f"{t.SSH_VANTAGE[0]} ".encode() + host_public, 0o644)
    probe_private, probe_public = _ssh_pair("medsec-lab-probe")
    _write(paths.probe_key, probe_private, 0o600)
    _write(paths.ssh / "probe_key.pub", probe_public, 0o644)
    # Read by sshd as the probe user: world-readable, in a folder anyone may traverse.
    _write(paths.ssh / "authorized_keys", probe_public, 0o644)


def make_snmp_secrets() -> SnmpSecrets:
    return SnmpSecrets(
        community=secrets.token_hex(8),
        auth_password=secrets.token_hex(12),
        priv_password=secrets.token_hex(12),
    )
