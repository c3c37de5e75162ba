"""`collect_tpm` against a real swtpm through tpm2-pytss, the sysfs fallback on recorded trees,
and the pure parsers. The four TPM checks are evaluated on the gathered facts end to end.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from checks.facts import HostFacts, TpmFacts, TpmLockout
from checks.model import Result, Status, Unavailable
from checks.registry import builtin_registry
from checks.runner import evaluate
from inventory.host.tpm import (
    collect_tpm,
    decode_ascii,
    decode_vendor_strings,
    der_length,
    explain_device_errno,
    format_firmware_version,
    format_spec_revision,
    manufacturer_name,
    parse_algorithms,
    parse_ek_certificate,
    parse_fixed_properties,
    parse_lockout,
    parse_pcr_banks,
    parse_tpm_version_major,
    socket_address,
    split_tcti,
)
from inventory.runner import AccessDenied, LocalRunner, SourceMissing
from tests.swtpm import start_swtpm, swtpm_binary

SYSFS = Path(__file__).resolve().parent.parent / "fixtures" / "sysfs"
REPO = Path(__file__).resolve().parents[2]


def _results(facts: TpmFacts | Unavailable) -> dict[str, Result]:
    results = evaluate(builtin_registry(), HostFacts(tpm=facts))
    return {r.check_id: r for r in results if r.check_id.startswith("tpm.")}


@pytest.fixture
def closed_tcti() -> Iterator[str]:
    """A swtpm TCTI on a loopback port that refuses connections (bound, never listening)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield f"swtpm:host=127.0.0.1,port={held.getsockname()[1]}"


@pytest.fixture
def empty_root(tmp_path: Path) -> LocalRunner:
    return LocalRunner(root=tmp_path)


# ----------------------------------------------------------------------------- real swtpm


def test_swtpm_with_ek_certificate_passes_every_check(
    swtpm_ek: str, empty_root: LocalRunner
) -> None:
    facts = collect_tpm(empty_root, swtpm_ek)

    assert isinstance(facts, TpmFacts)
    assert facts.present
    assert facts.source == "tss"
    assert facts.looked_at[0] == f"tss {swtpm_ek}: answered"
    assert facts.family == "2.0"
    assert facts.manufacturer == "IBM"
    assert facts.manufacturer_name == "IBM"
    assert facts.vendor_strings == "SW   TPM"
    assert facts.firmware_version == "8217.4131.22.13878"  # 0x20191023, 0x00163636
    assert facts.spec_revision is not None
    assert facts.spec_revision.startswith("1.")
    assert facts.pcr_banks == ("sha256",)  # swtpm_setup activated only sha256
    assert not isinstance(facts.algorithms, Unavailable)
    assert {"rsa", "ecc", "sha256", "aes"} <= set(facts.algorithms)
    assert isinstance(facts.lockout, TpmLockout)
    assert not facts.lockout.in_lockout

    assert not isinstance(facts.ek_certificates, Unavailable)
    by_index = {c.nv_index: c for c in facts.ek_certificates}
    assert set(by_index) == {0x01C00002, 0x01C00016}  # swtpm: RSA 2048 low, ECC P-384 high
    rsa = by_index[0x01C00002]
    assert rsa.key_type == "rsa"
    assert rsa.parse_error is None
    assert rsa.issuer == "CN=swtpm-localca"
    assert rsa.not_before.endswith("Z")
    assert len(rsa.sha256) == 64
    assert by_index[0x01C00016].key_type == "ecc"

    results = _results(facts)
    assert set(results) == {"tpm.present", "tpm.pcr_bank", "tpm.ek_certificate", "tpm.lockout"}
    assert {r.check_id: r.status for r in results.values()} == dict.fromkeys(results, Status.PASS)
    assert "CN=swtpm-localca" in results["tpm.ek_certificate"].message


def test_fresh_swtpm_without_ek_certificate(swtpm_fresh: str, empty_root: LocalRunner) -> None:
    facts = collect_tpm(empty_root, swtpm_fresh)

    assert isinstance(facts, TpmFacts)
    assert facts.ek_certificates == ()
    assert facts.pcr_banks == ("sha1", "sha256", "sha384", "sha512")
    assert any("no EK certificate index defined" in line for line in facts.looked_at)
    results = _results(facts)
    assert results["tpm.ek_certificate"].status is Status.FAIL
    assert "0x01C00002" in results["tpm.ek_certificate"].message
    assert "0x01C0000A" in results["tpm.ek_certificate"].message
    assert results["tpm.present"].status is Status.PASS


def _drive_into_lockout(tcti: str, max_tries: int) -> None:
    """Lower maxTries through the lockout hierarchy, then fail a password until TPM_RC_LOCKOUT."""
    from tpm2_pytss import ESAPI, TCTILdr, TSS2_Exception
    from tpm2_pytss.constants import TPM2_ALG, TPM2_RC, TPMA_NV
    from tpm2_pytss.types import TPM2B_NV_PUBLIC, TPMS_NV_PUBLIC

    name, conf = split_tcti(tcti)
    with TCTILdr(name, conf) as loaded, ESAPI(loaded) as esapi:
        esapi.dictionary_attack_parameters(max_tries, 1000, 1000)
        public = TPM2B_NV_PUBLIC(
            nvPublic=TPMS_NV_PUBLIC(
                nvIndex=0x01800001,
                nameAlg=TPM2_ALG.SHA256,
                attributes=TPMA_NV.AUTHREAD | TPMA_NV.AUTHWRITE,  # DA-protected: no NO_DA
                dataSize=8,
            )
        )
        index = esapi.nv_define_space(b"right", public)
        esapi.tr_set_auth(index, b"right")
        esapi.nv_write(index, b"medsec!!")
        esapi.tr_set_auth(index, b"wrong")
        for _ in range(max_tries + 1):
            try:
                esapi.nv_read(index, 8)
            except TSS2_Exception as exc:
                if exc.error == TPM2_RC.LOCKOUT:
                    return
            else:
                raise AssertionError("the wrong password was accepted")
    raise AssertionError("the TPM never entered lockout")


def test_tpm_in_lockout(swtpm_fresh: str, empty_root: LocalRunner) -> None:
    _drive_into_lockout(swtpm_fresh, max_tries=2)

    facts = collect_tpm(empty_root, swtpm_fresh)

    assert isinstance(facts, TpmFacts)
    assert isinstance(facts.lockout, TpmLockout)
    assert facts.lockout.in_lockout
    assert facts.lockout.counter == 2
    assert facts.lockout.max_tries == 2
    assert facts.lockout.recovery_seconds == 1000
    result = _results(facts)["tpm.lockout"]
    assert result.status is Status.FAIL
    assert "after 2 failed authorizations (max 2)" in result.message


def test_tpm_that_answers_with_an_error_is_unavailable(tmp_path: Path) -> None:
    if swtpm_binary() is None:
        pytest.skip("swtpm is not installed (Debian packages swtpm and swtpm-tools)")
    tpm = start_swtpm(tmp_path / "state", startup_clear=False)
    try:
        facts = collect_tpm(LocalRunner(root=tmp_path), tpm.tcti)
    finally:
        tpm.stop()

    assert isinstance(facts, Unavailable)
    assert facts.reason.startswith(f"the TPM at {tpm.tcti} answered TPM2_GetCapability with: ")
    assert "TPM2_Startup" in facts.reason
    assert {r.status for r in _results(facts).values()} == {Status.ERROR}


# ----------------------------------------------------------------------------- nothing there


def test_no_tpm_anywhere(closed_tcti: str, empty_root: LocalRunner) -> None:
    facts = collect_tpm(empty_root, closed_tcti)

    assert facts == TpmFacts(
        present=False,
        source="none",
        looked_at=(
            f"tss {closed_tcti}: TPM port 127.0.0.1:{closed_tcti.rsplit('=', 1)[1]}: "
            "connection refused",
            "sysfs /sys/class/tpm: does not exist",
        ),
    )
    results = _results(facts)
    assert results["tpm.present"].status is Status.FAIL
    assert closed_tcti in results["tpm.present"].message
    assert "/sys/class/tpm" in results["tpm.present"].message
    for check_id in ("tpm.pcr_bank", "tpm.ek_certificate", "tpm.lockout"):
        assert results[check_id].status is Status.NOT_APPLICABLE


def test_missing_device_node_is_named(empty_root: LocalRunner, tmp_path: Path) -> None:
    device = tmp_path / "dev" / "tpmrm0"
    facts = collect_tpm(empty_root, f"device:{device}")

    assert isinstance(facts, TpmFacts)
    assert not facts.present
    assert facts.looked_at[0] == f"tss device:{device}: {device} does not exist"


def test_empty_sysfs_class_is_named(tmp_path: Path) -> None:
    (tmp_path / "sys" / "class" / "tpm").mkdir(parents=True)
    facts = collect_tpm(LocalRunner(root=tmp_path), None)

    assert isinstance(facts, TpmFacts)
    assert facts.looked_at == ("tss: no TCTI configured", "sysfs /sys/class/tpm: no tpm* entries")


# ----------------------------------------------------------------------------- sysfs fallback


@pytest.mark.parametrize("use_tcti", [False, True], ids=["no-tcti", "unreachable-tcti"])
def test_sysfs_fallback_tpm2(use_tcti: bool, closed_tcti: str) -> None:
    tcti = closed_tcti if use_tcti else None
    facts = collect_tpm(LocalRunner(root=SYSFS / "tpm-2.0" / "root"), tcti)

    assert isinstance(facts, TpmFacts)
    assert facts.present
    assert facts.source == "sysfs"
    assert facts.family == "2.0"
    assert facts.looked_at[-1] == "sysfs /sys/class/tpm/tpm0: tpm_version_major='2' (TPM 2.0)"
    for detail in (facts.pcr_banks, facts.algorithms, facts.ek_certificates, facts.lockout):
        assert isinstance(detail, Unavailable)
        assert detail.reason.startswith("TSS not available: ")
    results = _results(facts)
    assert results["tpm.present"].status is Status.PASS
    assert "via sysfs" in results["tpm.present"].message
    for check_id in ("tpm.pcr_bank", "tpm.ek_certificate", "tpm.lockout"):
        assert results[check_id].status is Status.ERROR
        assert "TSS not available" in results[check_id].message


def test_sysfs_fallback_tpm12_fails_presence() -> None:
    facts = collect_tpm(LocalRunner(root=SYSFS / "tpm-1.2" / "root"), None)

    assert isinstance(facts, TpmFacts)
    assert facts.present
    assert facts.family == "1.2"
    results = _results(facts)
    assert results["tpm.present"].status is Status.FAIL
    assert "1.2" in results["tpm.present"].message
    assert results["tpm.pcr_bank"].status is Status.NOT_APPLICABLE


def test_sysfs_without_version_file_uses_resource_manager() -> None:
    # Kernels before 5.6 (e.g. 4.19 on Kylin/UOS) have /sys/class/tpmrm but no tpm_version_major.
    facts = collect_tpm(LocalRunner(root=SYSFS / "tpm-2.0-no-version" / "root"), None)

    assert isinstance(facts, TpmFacts)
    assert facts.family == "2.0"
    assert "/sys/class/tpmrm/tpmrm0" in facts.looked_at[-1]


def test_without_tpm2_pytss_falls_back_to_sysfs(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import tpm2_pytss` raise ImportError, as on a host without it.
    monkeypatch.setitem(sys.modules, "tpm2_pytss", None)
    facts = collect_tpm(LocalRunner(root=SYSFS / "tpm-2.0" / "root"), "device:/dev/tpmrm0")

    assert isinstance(facts, TpmFacts)
    assert facts.source == "sysfs"
    assert isinstance(facts.lockout, Unavailable)
    assert "tpm2-pytss cannot be loaded" in facts.lockout.reason


# ----------------------------------------------------------------------------- access denied


def _unprivileged_python() -> str | None:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return shutil.which(version, path="/usr/bin:/usr/local/bin")


@pytest.mark.root
def test_device_permission_denied_is_unavailable_not_absent() -> None:
    """The real device TCTI, run as `nobody`, on a node only root may open."""
    python = _unprivileged_python()
    if os.geteuid() != 0:
        pytest.skip("needs root to run a probe as the unprivileged user nobody")
    if python is None:
        pytest.skip("needs a system python of this version that nobody may execute")
    site = next(p for p in sys.path if p.endswith("site-packages"))
    work = Path(tempfile.mkdtemp(prefix="medsec-tpm-"))  # /tmp/pytest-of-root is 0700
    try:
        work.chmod(0o755)
        device = work / "tpmrm0"
        device.touch(mode=0o600)
        (work / "root").mkdir(mode=0o755)
        code = (
            "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
            "from inventory.host.tpm import collect_tpm\n"
            "from inventory.runner import LocalRunner\n"
            "print(repr(collect_tpm(LocalRunner(root=sys.argv[3]), 'device:' + sys.argv[4])))\n"
        )
        proc = subprocess.run(
            [python, "-I", "-c", code, str(REPO), site, str(work / "root"), str(device)],
            user=65534, group=65534, extra_groups=[], capture_output=True, text=True,
            timeout=30, cwd="/", check=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr(
        Unavailable(
            f"TPM present but access denied: {device} (add the agent user to the tss group)"
        )
    )


def test_unavailable_tpm_makes_every_check_error() -> None:
    results = _results(Unavailable("TPM present but access denied: /dev/tpmrm0 (...)"))
    assert {r.status for r in results.values()} == {Status.ERROR}


# ----------------------------------------------------------------------------- pure parsers


def test_decode_manufacturer() -> None:
    assert decode_ascii(0x49424D00) == "IBM"
    assert decode_ascii(0x4E545A00) == "NTZ"
    assert decode_ascii(0x49465800) == "IFX"
    assert decode_ascii(0x494E5443) == "INTC"
    assert decode_ascii(0x322E3000) == "2.0"
    assert manufacturer_name("NTZ") == "Nationz"
    assert manufacturer_name("NTC") == "Nuvoton Technology"
    assert manufacturer_name("XXXX") is None


def test_vendor_strings_keep_inner_spacing() -> None:
    assert decode_vendor_strings([0x53572020, 0x2054504D, 0, 0]) == "SW   TPM"
    assert decode_vendor_strings([0x534C4239, 0x36373000, 0, 0]) == "SLB9670"
    assert decode_vendor_strings([0, 0]) is None


def test_firmware_version() -> None:
    assert format_firmware_version(0x00070055, 0x11CB0000) == "7.85.4555.0"
    assert format_firmware_version(0x20191023, 0x00163636) == "8217.4131.22.13878"
    assert format_firmware_version(0x00010002, None) == "1.2"


def test_spec_revision() -> None:
    assert format_spec_revision(159) == "1.59"
    assert format_spec_revision(138, 0) == "1.38 (level 0)"
    assert format_spec_revision(164, 0, 2021, 75) == "1.64 (level 0, 2021-03-16)"


def test_fixed_properties() -> None:
    identity = parse_fixed_properties(
        {0x100: 0x322E3000, 0x102: 159, 0x105: 0x4E545A00, 0x10B: 0x00070002, 0x10C: 0x00030001}
    )
    assert identity.family == "2.0"
    assert identity.manufacturer == "NTZ"
    assert identity.manufacturer_name == "Nationz"
    assert identity.firmware_version == "7.2.3.1"
    assert identity.spec_revision == "1.59"
    assert identity.vendor_strings is None
    assert parse_fixed_properties({}).family is None


def _var(permanent: int) -> dict[int, int]:
    return {0x200: permanent, 0x20E: 5, 0x20F: 32, 0x210: 7200, 0x211: 86400}


def test_permanent_bits() -> None:
    none_set = parse_lockout(_var(0x0))
    assert isinstance(none_set, TpmLockout)
    flags = (none_set.owner_auth_set, none_set.endorsement_auth_set, none_set.lockout_auth_set)
    assert flags == (False, False, False)
    assert none_set.in_lockout is False

    all_set = parse_lockout(_var(0x1 | 0x2 | 0x4 | 0x200 | 0x400))
    assert all_set == TpmLockout(
        in_lockout=True, counter=5, max_tries=32, recovery_seconds=7200,
        lockout_recovery_seconds=86400, owner_auth_set=True, endorsement_auth_set=True,
        lockout_auth_set=True,
    )  # fmt: skip

    only_lockout = parse_lockout(_var(0x200))
    assert isinstance(only_lockout, TpmLockout)
    assert only_lockout.in_lockout
    assert not only_lockout.owner_auth_set


def test_missing_lockout_properties_are_unavailable() -> None:
    props = _var(0)
    del props[0x20E]
    result = parse_lockout(props)
    assert isinstance(result, Unavailable)
    assert "TPM2_PT_LOCKOUT_COUNTER" in result.reason


def test_pcr_banks_and_algorithms() -> None:
    selections = [(0x04, b"\0\0\0"), (0x0B, b"\xff\xff\xff"), (0x12, b"\x01\0\0")]
    assert parse_pcr_banks(selections) == ("sha256", "sm3_256")
    assert parse_algorithms([0x01, 0x04, 0x1B, 0x12, 0x13, 0x7777]) == (
        "rsa", "sha1", "sm2", "sm3_256", "sm4", "0x7777",
    )  # fmt: skip


def _certificate_der() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Nationz TPM Root CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(0x1F2E)
        .not_valid_before(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2044, 1, 1, tzinfo=dt.UTC))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_ek_certificate_with_nv_padding() -> None:
    der = _certificate_der()
    assert der_length(der) == len(der)

    cert = parse_ek_certificate(0x01C0000A, der + b"\xff" * 200)

    assert cert.parse_error is None
    assert cert.key_type == "ecc"
    assert cert.subject is None  # an empty subject: EK identity lives in the SAN
    assert cert.issuer == "CN=Nationz TPM Root CA"
    assert cert.not_before == "2024-01-01T00:00:00Z"
    assert cert.not_after == "2044-01-01T00:00:00Z"
    assert cert.serial == "1f2e"
    assert cert.sha256 == hashlib.sha256(der).hexdigest()


def test_unparsable_ek_certificate() -> None:
    cert = parse_ek_certificate(0x01C00002, b"\xff" * 64)
    assert cert.key_type == "rsa"
    assert cert.parse_error is not None
    assert "64 bytes at NV 0x01C00002" in cert.parse_error
    truncated = parse_ek_certificate(0x01C00002, _certificate_der()[:100])
    assert truncated.parse_error is not None


def test_der_length() -> None:
    assert der_length(b"\x30\x03abc") == 5
    assert der_length(b"\x30\x82\x03\xf4" + b"\0" * 1012) == 1016
    assert der_length(b"\xff\xff") is None
    assert der_length(b"\x30\x80") is None  # indefinite length is not DER


def test_sysfs_version_major() -> None:
    assert parse_tpm_version_major("2\n") == "2.0"
    assert parse_tpm_version_major("1") == "1.2"
    assert parse_tpm_version_major("") is None


def test_tcti_strings() -> None:
    assert split_tcti("device:/dev/tpmrm0") == ("device", "/dev/tpmrm0")
    assert split_tcti("tabrmd") == ("tabrmd", "")
    assert socket_address("host=127.0.0.1,port=2321") == ("127.0.0.1", 2321)
    assert socket_address("port=4000") == ("localhost", 4000)
    assert socket_address("path=/run/swtpm.sock") is None


def test_device_errors_are_explained() -> None:
    denied = explain_device_errno("/dev/tpmrm0", errno.EACCES)
    assert isinstance(denied, AccessDenied)
    assert str(denied) == (
        "TPM present but access denied: /dev/tpmrm0 (add the agent user to the tss group)"
    )
    missing = explain_device_errno("/dev/tpmrm0", errno.ENOENT)
    assert isinstance(missing, SourceMissing)
    assert str(missing) == "/dev/tpmrm0 does not exist"
    assert "busy" in str(explain_device_errno("/dev/tpm0", errno.EBUSY))
    assert explain_device_errno("/dev/tpmrm0", None) is None
