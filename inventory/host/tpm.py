"""TPM facts: what the TPM says about itself through tpm2-pytss (ESAPI over the configured TCTI),
and, when no TSS or no TPM connection is available, what the kernel lists under /sys/class/tpm.

`collect_tpm()` does the I/O; the `parse_*`, `decode_*` and `format_*` functions are pure and are
tested on values recorded from swtpm and from real TPMs. Every source consulted is recorded in
`TpmFacts.looked_at`, so an absent TPM comes with the evidence of where it was looked for.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, TypeVar

from cryptography import x509

from checks.facts import EkCertificate, TpmFacts, TpmLockout
from checks.model import Unavailable
from inventory.runner import AccessDenied, GatherError, Runner, SourceMissing

DEFAULT_TCTI = "device:/dev/tpmrm0"
SYSFS_TPM = "/sys/class/tpm"
CONNECT_TIMEOUT_S = 2.0
"""Socket TCTIs (swtpm, mssim) connect with a blocking connect(); we probe first with this limit."""

# TPM2_PT_* property tags (TPM 2.0 Part 2, TPM_PT).
PT_FAMILY_INDICATOR = 0x100
PT_LEVEL = 0x101
PT_REVISION = 0x102
PT_DAY_OF_YEAR = 0x103
PT_YEAR = 0x104
PT_MANUFACTURER = 0x105
PT_VENDOR_STRING_1 = 0x106
PT_VENDOR_STRING_4 = 0x109
PT_FIRMWARE_VERSION_1 = 0x10B
PT_FIRMWARE_VERSION_2 = 0x10C
PT_NV_BUFFER_MAX = 0x12C
PT_PERMANENT = 0x200
PT_LOCKOUT_COUNTER = 0x20E
PT_MAX_AUTH_FAIL = 0x20F
PT_LOCKOUT_INTERVAL = 0x210
PT_LOCKOUT_RECOVERY = 0x211
_PT_FIXED_LAST = 0x1FF
_PT_VAR_LAST = 0x2FF

# TPMA_PERMANENT bits.
PERMANENT_OWNER_AUTH_SET = 0x1
PERMANENT_ENDORSEMENT_AUTH_SET = 0x2
PERMANENT_LOCKOUT_AUTH_SET = 0x4
PERMANENT_IN_LOCKOUT = 0x200

# TPMA_NV bits used to choose how an EK certificate index may be read.
_NV_OWNERREAD = 0x00020000
_NV_AUTHREAD = 0x00040000
_NV_NO_DA = 0x02000000
_NV_WRITTEN = 0x20000000

# The most entries one TPM2_GetCapability returns (MAX_CAP_DATA / entry size on a 1 KiB buffer).
_MAX_CAP_ENTRIES = 127
_NV_INDEX_FIRST = 0x01000000
_EK_RANGE_LAST = 0x01C07FFF

EK_CERT_INDICES: Mapping[int, Literal["rsa", "ecc", "sm2"]] = {
    # TCG EK Credential Profile 2.x, low range (the two every vendor uses) ...
    0x01C00002: "rsa",  # RSA 2048
    0x01C0000A: "ecc",  # ECC NIST P-256
    # ... and high range (swtpm puts its ECC certificate at P-384; SM2 matters in China).
    0x01C00012: "rsa",  # RSA 2048
    0x01C00014: "ecc",  # ECC NIST P-256
    0x01C00016: "ecc",  # ECC NIST P-384
    0x01C00018: "ecc",  # ECC NIST P-521
    0x01C0001A: "sm2",  # ECC SM2 P-256
    0x01C0001C: "rsa",  # RSA 3072
    0x01C0001E: "rsa",  # RSA 4096
}
"""NV indices where an EK certificate may live, and the key type each holds."""

TCG_VENDORS: Mapping[str, str] = {
    "AMD": "AMD",
    "ATML": "Atmel",
    "BRCM": "Broadcom",
    "CSCO": "Cisco",
    "FLYS": "Flyslice Technologies",
    "ROCC": "Fuzhou Rockchip",
    "GOOG": "Google",
    "HPI": "HPI",
    "HPE": "HPE",
    "HISI": "Huawei",
    "IBM": "IBM",
    "IFX": "Infineon",
    "INTC": "Intel",
    "LEN": "Lenovo",
    "MSFT": "Microsoft",
    "NSM": "National Semiconductor",
    "NTZ": "Nationz",
    "NTC": "Nuvoton Technology",
    "QCOM": "Qualcomm",
    "SMSC": "SMSC",
    "STM": "STMicroelectronics",
    "SMSN": "Samsung",
    "SNS": "Sinosun",
    "TXN": "Texas Instruments",
    "WEC": "Winbond",
    "SECE": "SecEdge",
}
"""TPM2_PT_MANUFACTURER ids from the TCG TPM Vendor ID Registry (only entries we are sure of)."""

TPM_ALGORITHMS: Mapping[int, str] = {
    0x0001: "rsa",
    0x0003: "tdes",
    0x0004: "sha1",
    0x0005: "hmac",
    0x0006: "aes",
    0x0007: "mgf1",
    0x0008: "keyedhash",
    0x000A: "xor",
    0x000B: "sha256",
    0x000C: "sha384",
    0x000D: "sha512",
    0x0010: "null",
    0x0012: "sm3_256",
    0x0013: "sm4",
    0x0014: "rsassa",
    0x0015: "rsaes",
    0x0016: "rsapss",
    0x0017: "oaep",
    0x0018: "ecdsa",
    0x0019: "ecdh",
    0x001A: "ecdaa",
    0x001B: "sm2",
    0x001C: "ecschnorr",
    0x001D: "ecmqv",
    0x0020: "kdf1_sp800_56a",
    0x0021: "kdf2",
    0x0022: "kdf1_sp800_108",
    0x0023: "ecc",
    0x0025: "symcipher",
    0x0026: "camellia",
    0x0027: "sha3_256",
    0x0028: "sha3_384",
    0x0029: "sha3_512",
    0x003F: "cmac",
    0x0040: "ctr",
    0x0041: "ofb",
    0x0042: "cbc",
    0x0043: "cfb",
    0x0044: "ecb",
}
"""TPM_ALG_ID → the lower-case names tpm2-tools uses (TCG Algorithm Registry)."""

_T = TypeVar("_T")


# ----------------------------------------------------------------------------- pure parsers


def decode_ascii(value: int) -> str:
    """A 32-bit property holding up to 4 ASCII characters (manufacturer, vendor string)."""
    raw = (value & 0xFFFFFFFF).to_bytes(4, "big").replace(b"\0", b"")
    return raw.decode("ascii", errors="replace").strip()


def decode_vendor_strings(values: Iterable[int]) -> str | None:
    """TPM2_PT_VENDOR_STRING_1..4 joined as the TPM spells them ("SW   TPM"), None when blank."""
    raw = b"".join((v & 0xFFFFFFFF).to_bytes(4, "big") for v in values).replace(b"\0", b"")
    text = raw.decode("ascii", errors="replace").strip()
    return text or None


def manufacturer_name(vendor_id: str) -> str | None:
    return TCG_VENDORS.get(vendor_id)


def format_firmware_version(version_1: int, version_2: int | None) -> str:
    """FIRMWARE_VERSION_1 and _2, each as its high and low 16 bits: "major.minor.build.patch"."""
    parts = [version_1 >> 16 & 0xFFFF, version_1 & 0xFFFF]
    if version_2 is not None:
        parts += [version_2 >> 16 & 0xFFFF, version_2 & 0xFFFF]
    return ".".join(str(p) for p in parts)


def format_spec_revision(
    revision: int, level: int | None = None, year: int | None = None, day: int | None = None
) -> str:
    """TPM2_PT_REVISION (164 → "1.64"), then the spec level and date when the TPM gives them."""
    text = f"{revision // 100}.{revision % 100:02d}"
    extra = []
    if level is not None:
        extra.append(f"level {level}")
    if year and day and 1 <= day <= 366 and 1 <= year <= 9999:
        published = date(year, 1, 1) + timedelta(days=day - 1)
        extra.append(published.isoformat())
    return f"{text} ({', '.join(extra)})" if extra else text


@dataclass(frozen=True)
class TpmIdentity:
    """The identity part of `TpmFacts`, decoded from the fixed TPM properties."""

    family: str | None
    manufacturer: str | None
    manufacturer_name: str | None
    vendor_strings: str | None
    firmware_version: str | None
    spec_revision: str | None


def parse_fixed_properties(props: Mapping[int, int]) -> TpmIdentity:
    """Decode TPM2_PT_FAMILY_INDICATOR, _MANUFACTURER, _VENDOR_STRING_*, _FIRMWARE_*, _REVISION."""
    family = decode_ascii(props[PT_FAMILY_INDICATOR]) if PT_FAMILY_INDICATOR in props else None
    vendor = decode_ascii(props[PT_MANUFACTURER]) if PT_MANUFACTURER in props else None
    strings = [props[p] for p in range(PT_VENDOR_STRING_1, PT_VENDOR_STRING_4 + 1) if p in props]
    firmware = None
    if PT_FIRMWARE_VERSION_1 in props:
        firmware = format_firmware_version(
            props[PT_FIRMWARE_VERSION_1], props.get(PT_FIRMWARE_VERSION_2)
        )
    revision = None
    if PT_REVISION in props:
        revision = format_spec_revision(
            props[PT_REVISION], props.get(PT_LEVEL), props.get(PT_YEAR), props.get(PT_DAY_OF_YEAR)
        )
    return TpmIdentity(
        family=family or None,
        manufacturer=vendor or None,
        manufacturer_name=manufacturer_name(vendor) if vendor else None,
        vendor_strings=decode_vendor_strings(strings),
        firmware_version=firmware,
        spec_revision=revision,
    )


def parse_lockout(props: Mapping[int, int]) -> TpmLockout | Unavailable:
    """TPMA_PERMANENT and the TPM2_PT_LOCKOUT_* / MAX_AUTH_FAIL variable properties."""
    needed = {
        PT_PERMANENT: "TPM2_PT_PERMANENT",
        PT_LOCKOUT_COUNTER: "TPM2_PT_LOCKOUT_COUNTER",
        PT_MAX_AUTH_FAIL: "TPM2_PT_MAX_AUTH_FAIL",
        PT_LOCKOUT_INTERVAL: "TPM2_PT_LOCKOUT_INTERVAL",
        PT_LOCKOUT_RECOVERY: "TPM2_PT_LOCKOUT_RECOVERY",
    }
    missing = [name for tag, name in needed.items() if tag not in props]
    if missing:
        return Unavailable("the TPM did not report " + ", ".join(missing))
    permanent = props[PT_PERMANENT]
    return TpmLockout(
        in_lockout=bool(permanent & PERMANENT_IN_LOCKOUT),
        counter=props[PT_LOCKOUT_COUNTER],
        max_tries=props[PT_MAX_AUTH_FAIL],
        recovery_seconds=props[PT_LOCKOUT_INTERVAL],
        lockout_recovery_seconds=props[PT_LOCKOUT_RECOVERY],
        owner_auth_set=bool(permanent & PERMANENT_OWNER_AUTH_SET),
        endorsement_auth_set=bool(permanent & PERMANENT_ENDORSEMENT_AUTH_SET),
        lockout_auth_set=bool(permanent & PERMANENT_LOCKOUT_AUTH_SET),
    )


def algorithm_name(alg_id: int) -> str:
    return TPM_ALGORITHMS.get(alg_id, f"0x{alg_id:04x}")


def parse_algorithms(alg_ids: Iterable[int]) -> tuple[str, ...]:
    """TPM2_CAP_ALGS: the implemented algorithms, by name, in the TPM's (id) order."""
    return tuple(algorithm_name(a) for a in alg_ids)


def parse_pcr_banks(selections: Iterable[tuple[int, bytes]]) -> tuple[str, ...]:
    """TPM2_CAP_PCRS: (hash algorithm, pcrSelect bitmap) → the banks with any PCR allocated."""
    return tuple(algorithm_name(alg) for alg, bitmap in selections if any(bitmap))


def der_length(data: bytes) -> int | None:
    """Length of the DER SEQUENCE at the start of `data` (header included), None if there is none.

    EK certificate indices are often sized larger than the certificate and padded after it;
    cryptography refuses trailing bytes, so the certificate is cut to its own length first.
    """
    if len(data) < 2 or data[0] != 0x30:
        return None
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < 2 + count:
        return None
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ek_certificate(
    nv_index: int, data: bytes, key_type: Literal["rsa", "ecc", "sm2"] | None = None
) -> EkCertificate:
    """Parse the content of an EK certificate NV index; unparsable data sets `parse_error`."""
    kind = key_type or EK_CERT_INDICES.get(nv_index, "rsa")
    length = der_length(data)
    der = data[:length] if length is not None and length <= len(data) else data
    digest = hashlib.sha256(der).hexdigest()
    try:
        cert = x509.load_der_x509_certificate(der)
        subject = cert.subject.rfc4514_string() or None
        issuer = cert.issuer.rfc4514_string()
        not_before = _iso_utc(cert.not_valid_before_utc)
        not_after = _iso_utc(cert.not_valid_after_utc)
        serial = format(cert.serial_number, "x")
    except ValueError as exc:
        return EkCertificate(
            nv_index=nv_index,
            key_type=kind,
            subject=None,
            issuer=None,
            not_before=None,
            not_after=None,
            serial=None,
            sha256=digest,
            parse_error=f"{len(data)} bytes at NV 0x{nv_index:08X} are not a DER X.509 "
            f"certificate ({exc})",
        )
    return EkCertificate(
        nv_index=nv_index,
        key_type=kind,
        subject=subject,
        issuer=issuer,
        not_before=not_before,
        not_after=not_after,
        serial=serial,
        sha256=digest,
    )


def parse_tpm_version_major(text: str) -> str | None:
    """sysfs `tpm_version_major`: "2" → "2.0", "1" → "1.2"; None for anything else."""
    return {"2": "2.0", "1": "1.2"}.get(text.strip())


def split_tcti(tcti: str) -> tuple[str, str]:
    """A tpm2-tools style TCTI string "name:conf" → (name, conf)."""
    name, _, conf = tcti.partition(":")
    return name.strip(), conf.strip()


def socket_address(conf: str) -> tuple[str, int] | None:
    """host and port of a swtpm/mssim TCTI conf ("host=127.0.0.1,port=2321"); None for a path."""
    values = {}
    for item in conf.split(","):
        key, _, value = item.partition("=")
        values[key.strip()] = value.strip()
    if "path" in values:
        return None
    try:
        port = int(values.get("port", "2321"))
    except ValueError:
        return None
    return values.get("host", "localhost"), port


def explain_device_errno(path: str, err: int | None) -> GatherError | None:
    """Why the device TCTI could not open `path`, from the errno of opening it ourselves."""
    if err is None:
        return None
    if err in (errno.EACCES, errno.EPERM):
        return AccessDenied(
            f"TPM present but access denied: {path} (add the agent user to the tss group)"
        )
    if err == errno.ENOENT:
        return SourceMissing(f"{path} does not exist")
    if err == errno.EBUSY:
        return SourceMissing(f"{path} is busy: another process holds it (use /dev/tpmrm0)")
    return SourceMissing(f"{path}: {os.strerror(err)}")


# ----------------------------------------------------------------------------- collection


def collect_tpm(runner: Runner, tcti: str | None) -> TpmFacts | Unavailable:
    """Ask the TPM through tpm2-pytss over `tcti`; fall back to sysfs when that is impossible.

    `tcti` None means "do not use the TSS" (e.g. a remote host read through an SSH runner: the
    TSS only ever talks to a TPM from this process). A TPM whose device node exists but may not be
    opened is `Unavailable`, so its checks say `error` rather than claim the TPM is missing.
    """
    looked_at: list[str] = []
    if tcti is None:
        looked_at.append("tss: no TCTI configured")
        why = "no TCTI configured"
    else:
        try:
            return _collect_tss(tcti, looked_at)
        except AccessDenied as exc:
            return Unavailable(str(exc))
        except SourceMissing as exc:
            looked_at.append(f"tss {tcti}: {exc}")
            why = f"{tcti}: {exc}"
    return _collect_sysfs(runner, looked_at, Unavailable(f"TSS not available: {why}"))


def _collect_sysfs(
    runner: Runner, looked_at: list[str], no_tss: Unavailable
) -> TpmFacts | Unavailable:
    try:
        names = [n for n in runner.list_dir(SYSFS_TPM) if re.fullmatch(r"tpm\d+", n)]
    except SourceMissing:
        looked_at.append(f"sysfs {SYSFS_TPM}: does not exist")
        return TpmFacts(present=False, source="none", looked_at=tuple(looked_at))
    except GatherError as exc:
        return Unavailable(f"{no_tss.reason}; sysfs {SYSFS_TPM}: {exc}")
    if not names:
        looked_at.append(f"sysfs {SYSFS_TPM}: no tpm* entries")
        return TpmFacts(present=False, source="none", looked_at=tuple(looked_at))
    name = names[0]
    family, said = _sysfs_family(runner, name)
    looked_at.append(f"sysfs {SYSFS_TPM}/{name}: {said}")
    if family is None:
        return Unavailable(
            f"a TPM is listed at {SYSFS_TPM}/{name} but its family is unknown: "
            f"{said}; {no_tss.reason}"
        )
    return TpmFacts(
        present=True,
        source="sysfs",
        looked_at=tuple(looked_at),
        family=family,
        pcr_banks=no_tss,
        algorithms=no_tss,
        ek_certificates=no_tss,
        lockout=no_tss,
    )


def _sysfs_family(runner: Runner, name: str) -> tuple[str | None, str]:
    base = f"{SYSFS_TPM}/{name}"
    try:
        text = runner.read_text(f"{base}/tpm_version_major")
    except GatherError as exc:
        # Kernels before 5.6 have no tpm_version_major. Only TPM 1.2 chips get the legacy `caps`
        # attribute, and only TPM 2.0 chips get a resource manager (/sys/class/tpmrm, 4.12+).
        if runner.exists(f"{base}/caps") or runner.exists(f"{base}/device/caps"):
            return "1.2", f"{exc}; has the TPM 1.2 `caps` attribute"
        rm = "/sys/class/tpmrm/tpmrm" + name.removeprefix("tpm")
        if runner.exists(rm):
            return "2.0", f"{exc}; has the TPM 2.0 resource manager {rm}"
        return None, str(exc)
    family = parse_tpm_version_major(text)
    return family, f"tpm_version_major={text.strip()!r}" + (f" (TPM {family})" if family else "")


class _Tss:
    """The names from tpm2_pytss this module uses, imported on first use (slow, optional)."""

    def __init__(self) -> None:
        try:
            import tpm2_pytss
            from tpm2_pytss import constants
        except (ImportError, OSError) as exc:
            raise SourceMissing(f"tpm2-pytss cannot be loaded ({exc})") from None
        self.ESAPI: Any = tpm2_pytss.ESAPI
        self.TCTILdr: Any = tpm2_pytss.TCTILdr
        self.Error: type[Exception] = tpm2_pytss.TSS2_Exception
        self.CAP: Any = constants.TPM2_CAP
        self.ESYS_TR: Any = constants.ESYS_TR


def _rc(exc: Exception) -> int:
    return int(getattr(exc, "rc", 0))


def _from_tpm(exc: Exception) -> bool:
    """A response code from the TPM itself (layer 0), as opposed to the TSS or the TCTI."""
    return _rc(exc) & 0xFFFF0000 == 0


_TSS2_TCTI_RC_NOT_SUPPORTED = 0x000A0015


class _NvNotReadable(Exception):
    """An EK certificate index this agent must not try to read (it would need a password)."""


@contextmanager
def _esapi(tss: _Tss, tcti: str) -> Iterator[Any]:
    """An ESAPI context on `tcti`, closed (and its TCTI finalized) however the block ends."""
    name, conf = split_tcti(tcti)
    if name in ("swtpm", "mssim"):
        address = socket_address(conf)
        if address is not None:
            host, port = address
            _probe_socket(host, port, "TPM")
            # Both TCTIs talk to the simulator's control channel on the next port.
            _probe_socket(host, port + 1, "control")
    try:
        # The TCTI is loaded here rather than by ESAPI(str): ESAPI leaks a TCTI it loaded itself
        # when Esys_Initialize then fails.
        loaded = tss.TCTILdr(name, conf or None)
    except tss.Error as exc:
        raise _tcti_failure(name, conf, exc) from None
    try:
        try:
            esapi = tss.ESAPI(loaded)
        except tss.Error as exc:
            raise SourceMissing(f"ESAPI initialization failed: {exc}") from None
        try:
            yield esapi
        finally:
            esapi.close()
    finally:
        loaded.close()


def _probe_socket(host: str, port: int, channel: str) -> None:
    # The swtpm/mssim TCTIs connect() without a timeout: a filtered host would hang the agent
    # for minutes. A refused connection fails at once either way. Responses are not bounded:
    # ESAPI's one-call functions block by design, and they retry on TSS2_TCTI_RC_TRY_AGAIN.
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except ConnectionRefusedError:
        raise SourceMissing(f"{channel} port {host}:{port}: connection refused") from None
    except TimeoutError:
        raise SourceMissing(
            f"{channel} port {host}:{port}: no answer within {CONNECT_TIMEOUT_S:g} s"
        ) from None
    except OSError as exc:
        raise SourceMissing(f"{channel} port {host}:{port}: {exc.strerror or exc}") from None


def _tcti_failure(name: str, conf: str, exc: Exception) -> GatherError:
    if _rc(exc) == _TSS2_TCTI_RC_NOT_SUPPORTED:
        return SourceMissing(f"TCTI {name!r} is not available (is libtss2-tcti-{name} installed?)")
    if name == "device" and conf:
        # The device TCTI reports every open() failure as TSS2_TCTI_RC_IO_ERROR and keeps errno
        # to its log. The TSS runs in this process on this host, so opening the same node the
        # same way, here, is the faithful way to learn why: "missing", "no permission" (the TPM
        # exists: an `error`, not a `fail`) or "busy". Not through the runner: its root may be
        # re-based (tests) or remote (SSH), while the TSS only ever sees this machine.
        explained = explain_device_errno(conf, _open_errno(conf))
        if explained is not None:
            return explained
    return SourceMissing(str(exc))


def _open_errno(path: str) -> int | None:
    """errno of opening `path` read-write as the device TCTI does; None if it opens."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return exc.errno
    os.close(fd)
    return None


def _collect_tss(tcti: str, looked_at: list[str]) -> TpmFacts | Unavailable:
    tss = _Tss()
    with _esapi(tss, tcti) as esapi:
        try:
            fixed = _read_properties(tss, esapi, PT_FAMILY_INDICATOR, _PT_FIXED_LAST)
        except tss.Error as exc:
            if not _from_tpm(exc):
                raise SourceMissing(f"no answer to TPM2_GetCapability: {exc}") from None
            return Unavailable(f"the TPM at {tcti} answered TPM2_GetCapability with: {exc}")
        looked_at.append(f"tss {tcti}: answered")
        identity = parse_fixed_properties(fixed)

        def read(what: str, func: Callable[[], _T]) -> _T | Unavailable:
            try:
                return func()
            except tss.Error as exc:
                return Unavailable(f"{what} failed: {exc}")

        variable = read(
            "TPM2_GetCapability(TPM_PROPERTIES, PT_VAR)",
            lambda: _read_properties(tss, esapi, PT_PERMANENT, _PT_VAR_LAST),
        )
        lockout = variable if isinstance(variable, Unavailable) else parse_lockout(variable)
        pcr_banks = read("TPM2_GetCapability(PCRS)", lambda: _read_pcr_banks(tss, esapi))
        algorithms = read("TPM2_GetCapability(ALGS)", lambda: _read_algorithms(tss, esapi))
        owner_auth_set = None if isinstance(lockout, Unavailable) else lockout.owner_auth_set
        ek_certificates = read(
            "TPM2_GetCapability(HANDLES, NV)",
            lambda: _read_ek_certificates(
                tss, esapi, fixed.get(PT_NV_BUFFER_MAX) or 512, owner_auth_set, looked_at
            ),
        )
    return TpmFacts(
        present=True,
        source="tss",
        looked_at=tuple(looked_at),
        family=identity.family,
        manufacturer=identity.manufacturer,
        manufacturer_name=identity.manufacturer_name,
        vendor_strings=identity.vendor_strings,
        firmware_version=identity.firmware_version,
        spec_revision=identity.spec_revision,
        pcr_banks=pcr_banks,
        algorithms=algorithms,
        ek_certificates=ek_certificates,
        lockout=lockout,
    )


def _read_properties(tss: _Tss, esapi: Any, first: int, last: int) -> dict[int, int]:
    props: dict[int, int] = {}
    tag = first
    while tag <= last:
        more, data = esapi.get_capability(tss.CAP.TPM_PROPERTIES, tag, _MAX_CAP_ENTRIES)
        got = [(int(p.property), int(p.value)) for p in data.data.tpmProperties]
        props.update((k, v) for k, v in got if first <= k <= last)
        if not more or not got:
            break
        tag = got[-1][0] + 1
    return props


def _read_pcr_banks(tss: _Tss, esapi: Any) -> tuple[str, ...]:
    _, data = esapi.get_capability(tss.CAP.PCRS, 0, _MAX_CAP_ENTRIES)
    selections = [
        (int(s.hash), bytes(s.pcrSelect)[: int(s.sizeofSelect)]) for s in data.data.assignedPCR
    ]
    return parse_pcr_banks(selections)


def _read_algorithms(tss: _Tss, esapi: Any) -> tuple[str, ...]:
    ids: list[int] = []
    start = 0
    while True:
        more, data = esapi.get_capability(tss.CAP.ALGS, start, _MAX_CAP_ENTRIES)
        got = [int(a.alg) for a in data.data.algorithms]
        ids.extend(got)
        if not more or not got:
            break
        start = got[-1] + 1
    return parse_algorithms(ids)


def _defined_nv_indices(tss: _Tss, esapi: Any, first: int, last: int) -> list[int]:
    found: list[int] = []
    start = first
    while True:
        more, data = esapi.get_capability(tss.CAP.HANDLES, start, _MAX_CAP_ENTRIES)
        got = [int(h) for h in data.data.handles]
        found.extend(h for h in got if first <= h <= last)
        if not more or not got or got[-1] >= last:
            break
        start = got[-1] + 1
    return found


def _read_ek_certificates(
    tss: _Tss, esapi: Any, chunk: int, owner_auth_set: bool | None, looked_at: list[str]
) -> tuple[EkCertificate, ...] | Unavailable:
    defined = _defined_nv_indices(tss, esapi, min(EK_CERT_INDICES), _EK_RANGE_LAST)
    candidates = [i for i in defined if i in EK_CERT_INDICES]
    if not candidates:
        looked_at.append(
            "tss NV: no EK certificate index defined ("
            + ", ".join(f"0x{i:08X}" for i in EK_CERT_INDICES)
            + ")"
        )
        return ()
    certs: list[EkCertificate] = []
    unreadable: list[str] = []
    for index in candidates:
        try:
            data = _read_nv(tss, esapi, index, chunk, owner_auth_set)
        except (tss.Error, _NvNotReadable) as exc:
            unreadable.append(f"NV 0x{index:08X}: {exc}")
            continue
        if data is None:
            looked_at.append(f"tss NV 0x{index:08X}: defined but never written")
            continue
        cert = parse_ek_certificate(index, data, EK_CERT_INDICES[index])
        looked_at.append(
            f"tss NV 0x{index:08X}: {len(data)} bytes, "
            + (cert.parse_error or f"EK certificate issued by {cert.issuer}")
        )
        certs.append(cert)
    looked_at.extend(f"tss {u}" for u in unreadable)
    if unreadable and not any(c.parse_error is None for c in certs):
        # An index we could not read may hold the only good certificate: unknown, not absent.
        return Unavailable("EK certificate index not readable: " + "; ".join(unreadable))
    return tuple(certs)


def _read_nv(
    tss: _Tss, esapi: Any, index: int, chunk: int, owner_auth_set: bool | None
) -> bytes | None:
    handle = esapi.tr_from_tpmpublic(index)
    try:
        public, _ = esapi.nv_read_public(handle)
        attributes = int(public.nvPublic.attributes)
        size = int(public.nvPublic.dataSize)
        if not attributes & _NV_WRITTEN:
            return None
        # Never risk a dictionary-attack strike on the customer's TPM: read with the index's own
        # (empty) auth only when failures there are not counted (NO_DA), and with the owner
        # hierarchy only when ownerAuth is known to be empty.
        if attributes & _NV_AUTHREAD and attributes & _NV_NO_DA:
            auth = handle
        elif attributes & _NV_OWNERREAD and owner_auth_set is False:
            auth = tss.ESYS_TR.OWNER
        else:
            raise _NvNotReadable("readable only with a password")
        data = b""
        while len(data) < size:
            part = bytes(esapi.nv_read(handle, min(chunk, size - len(data)), len(data), auth))
            if not part:
                break
            data += part
        return data
    finally:
        esapi.tr_close(handle)
