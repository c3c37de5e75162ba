"""SM algorithm gatherer: the parsers on captured output (tests/fixtures/raw/crypto: this VM's
OpenSSL 3.0 and /proc/crypto) and on reconstructed output (an OpenSSL built without SM2/SM4, a
Phytium arm64 kernel with sm3-ce/sm4-ce, OpenSSL 1.1.1), `collect_crypto` on recorded trees, and
`collect_crypto` against the real openssl and /proc/crypto of this machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from checks.facts import HostFacts
from checks.facts.crypto import KernelCryptoFacts, KernelModuleFile, OpenSslFacts
from checks.host import crypto as crypto_checks
from checks.model import Result, Status, Unavailable
from checks.registry import Registry
from checks.runner import evaluate
from inventory.host.crypto import (
    collect_crypto,
    collect_kernel_crypto,
    collect_openssl,
    kernel_families,
    parse_module_file,
    parse_openssl_list,
    parse_proc_crypto,
    sm_family,
)
from inventory.runner import CommandFailed, CommandResult, LocalRunner, ToolMissing

RAW = Path(__file__).resolve().parent.parent / "fixtures" / "raw" / "crypto"
LISTS = ("-digest-algorithms", "-cipher-algorithms", "-public-key-algorithms")
OPENSSL = shutil.which("openssl")


def raw(scenario: str, name: str) -> str:
    return (RAW / scenario / name).read_text()


def sm_names(text: str) -> list[str]:
    return sorted(n for n in parse_openssl_list(text) if sm_family(n))


class OpensslReplay(LocalRunner):
    """`LocalRunner` over a file tree (for /proc and /lib/modules) whose `openssl` answers from
    a recorded scenario folder (`openssl_version.txt`, `openssl_list_<option>.txt`)."""

    def __init__(self, scenario: str | None, root: Path, *, fail: Sequence[str] = ()) -> None:
        super().__init__(root=root)
        self.scenario = scenario
        self.fail = set(fail)
        self.commands_run: list[tuple[str, ...]] = []

    def which(self, name: str) -> str | None:
        return "/usr/bin/openssl" if name == "openssl" and self.scenario else None

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        assert timeout <= 2.0
        self.commands_run.append(tuple(argv))
        if self.scenario is None or argv[0] != "/usr/bin/openssl":
            raise ToolMissing(f"{argv[0]} is not installed")
        name = "_".join(["openssl", *argv[1:]]) + ".txt"
        if argv[-1] in self.fail or not (RAW / self.scenario / name).is_file():
            raise CommandFailed("openssl exited 1: invalid command", 1, "invalid command\n")
        return CommandResult(tuple(argv), 0, raw(self.scenario, name), "")


def host_tree(
    tmp_path: Path, release: str, proc_crypto: str, modules: Mapping[str, Sequence[str]]
) -> Path:
    """A root with /proc/crypto, the kernel release and module files (empty) per folder."""
    root = tmp_path / "root"
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/crypto").write_text(proc_crypto)
    (root / "proc/sys/kernel/osrelease").write_text(release + "\n")
    for folder, names in modules.items():
        path = root / "lib/modules" / release / folder
        path.mkdir(parents=True, exist_ok=True)
        for name in names:
            (path / name).write_bytes(b"")
    return root


def evaluated(facts: HostFacts) -> dict[str | None, Result]:
    results = evaluate(Registry.from_modules([crypto_checks]), facts)
    return {r.target: r for r in results}


# ----------------------------------------------------------------------------- openssl parser


def test_debian_openssl3_offers_sm2_sm3_sm4_from_the_default_provider() -> None:
    scenario = "debian12-vm"

    assert sm_names(raw(scenario, "openssl_list_-digest-algorithms.txt")) == ["SM3"]
    assert sm_names(raw(scenario, "openssl_list_-cipher-algorithms.txt")) == [
        "SM4",
        "SM4-CBC",
        "SM4-CFB",
        "SM4-CFB128",
        "SM4-CTR",
        "SM4-ECB",
        "SM4-OFB",
        "SM4-OFB128",
    ]
    assert sm_names(raw(scenario, "openssl_list_-public-key-algorithms.txt")) == ["SM2"]


def test_openssl_built_without_sm2_and_sm4_keeps_sm3() -> None:
    scenario = "rhel9-openssl3.0.7"

    assert sm_names(raw(scenario, "openssl_list_-digest-algorithms.txt")) == ["SM3"]
    assert sm_names(raw(scenario, "openssl_list_-cipher-algorithms.txt")) == []
    assert sm_names(raw(scenario, "openssl_list_-public-key-algorithms.txt")) == []


def test_openssl_111_flat_lists() -> None:
    scenario = "kylin-v10-phytium"

    assert sm_names(raw(scenario, "openssl_list_-digest-algorithms.txt")) == ["SM3"]
    assert "SM4-CBC" in sm_names(raw(scenario, "openssl_list_-cipher-algorithms.txt"))
    # 1.1.1 knows SM2 as an alias of the EC key type ("Name: sm2 / Alias for: id-ecPublicKey").
    assert sm_names(raw(scenario, "openssl_list_-public-key-algorithms.txt")) == ["sm2"]


def test_legacy_names_no_provider_implements_do_not_count() -> None:
    text = (
        "Legacy:\n  sm4 => SM4-CBC\n  SM4-CBC\n  AES-256-CBC\n"
        "Provided:\n  { 2.16.840.1.101.3.4.1.42, AES-256-CBC, AES256 } @ default\n"
    )

    assert parse_openssl_list(text) == ("AES-256-CBC", "AES256")


def test_list_parser_drops_oids_and_labels() -> None:
    text = (
        "Provided:\n Key Managers:\n  Name: OpenSSL SM2 implementation\n"
        "    Type: Provider Algorithm\n    IDs: { 1.2.156.10197.1.301, SM2 } @ default\n"
        "  MD5-SHA1 @ default\n"
    )

    assert parse_openssl_list(text) == ("OpenSSL SM2 implementation", "SM2", "MD5-SHA1")


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("SM2", "sm2"),
        ("sm2", "sm2"),
        ("SM3", "sm3"),
        ("SM4-GCM", "sm4"),
        ("sm4", "sm4"),
        ("RSA-SM3", None),
        ("sm3WithRSAEncryption", None),
        ("SM9", None),
        ("OpenSSL SM2 implementation", None),
    ],
)
def test_sm_family(name: str, family: str | None) -> None:
    assert sm_family(name) == family


# ----------------------------------------------------------------------------- kernel parsers


def test_phytium_proc_crypto_has_ce_and_generic_sm3_sm4() -> None:
    entries = parse_proc_crypto(raw("kylin-v10-phytium", "proc_crypto.txt"))

    sm = [(e.name, e.driver, e.module, e.priority) for e in entries if kernel_families(e.name)]
    assert sm == [
        ("xts(sm4)", "xts(ecb(sm4-ce))", "kernel", 200),
        ("ecb(sm4)", "ecb(sm4-ce)", "kernel", 200),
        ("sm4", "sm4-ce", "sm4_ce", 200),
        ("sm4", "sm4-generic", "sm4_generic", 100),
        ("sm3", "sm3-ce", "sm3_ce", 200),
        ("sm3", "sm3-generic", "sm3_generic", 100),
    ]
    internal = [e.name for e in entries if e.internal]
    assert internal == ["__xts(aes)"]


def test_this_vms_captured_proc_crypto() -> None:
    text = raw("debian12-vm", "proc_crypto.txt")

    entries = parse_proc_crypto(text)

    assert len(entries) == text.count("\nname ") + text.startswith("name ")
    assert not any(kernel_families(e.name) for e in entries)
    assert all(e.driver and e.module and e.type for e in entries)


@pytest.mark.parametrize(
    ("name", "families"),
    [
        ("sm4", {"sm4"}),
        ("xts(sm4)", {"sm4"}),
        ("hmac(sm3)", {"sm3"}),
        ("authenc(hmac(sm3),cbc(sm4))", {"sm3", "sm4"}),
        ("sm2", {"sm2"}),
        ("xts(aes)", set()),
        ("asm4x", set()),
    ],
)
def test_kernel_families(name: str, families: set[str]) -> None:
    assert kernel_families(name) == families


@pytest.mark.parametrize(
    ("filename", "parsed"),
    [
        ("sm4_generic.ko", ("sm4", "sm4_generic")),
        ("sm4-ce.ko.xz", ("sm4", "sm4_ce")),
        ("sm3-ce.ko.zst", ("sm3", "sm3_ce")),
        ("sm2_generic.ko.gz", ("sm2", "sm2_generic")),
        ("sm4-aesni-avx2-x86_64.ko", ("sm4", "sm4_aesni_avx2_x86_64")),
        ("sm4.ko", ("sm4", "sm4")),
        ("libsm4.ko", None),
        ("sha256_generic.ko", None),
        ("sm4_generic.ko.sig", None),
    ],
)
def test_module_files(filename: str, parsed: tuple[str, str] | None) -> None:
    assert parse_module_file(filename) == parsed


# ----------------------------------------------------------------------------- recorded hosts


PHYTIUM_RELEASE = raw("kylin-v10-phytium", "osrelease.txt").strip()


def test_kylin_phytium_host(tmp_path: Path) -> None:
    root = host_tree(
        tmp_path,
        PHYTIUM_RELEASE,
        raw("kylin-v10-phytium", "proc_crypto.txt"),
        {
            "kernel/crypto": ["sm3_generic.ko", "sm4_generic.ko", "sha3_generic.ko"],
            "kernel/arch/arm64/crypto": ["sm3-ce.ko", "sm4-ce.ko", "aes-neon-blk.ko"],
        },
    )
    runner = OpensslReplay("kylin-v10-phytium", root)

    facts = collect_crypto(runner)

    assert isinstance(facts.openssl, OpenSslFacts)
    assert facts.openssl.version == "OpenSSL 1.1.1f  31 Mar 2020"
    assert facts.openssl.offered["sm2"] == ("sm2",)
    assert facts.openssl.offered["sm3"] == ("SM3",)
    assert facts.openssl.offered["sm4"] == (
        "SM4-CBC",
        "SM4-CFB",
        "SM4-CTR",
        "SM4-ECB",
        "SM4-OFB",
        "sm4",  # the alias of SM4-CBC
    )
    kernel = facts.kernel
    assert isinstance(kernel, KernelCryptoFacts)
    assert kernel.release == PHYTIUM_RELEASE
    assert not isinstance(kernel.registered, Unavailable)
    assert [e.driver for e in kernel.registered["sm4"]] == [
        "xts(ecb(sm4-ce))",
        "ecb(sm4-ce)",
        "sm4-ce",
        "sm4-generic",
    ]
    assert kernel.registered["sm2"] == ()
    assert isinstance(kernel.modules, tuple)
    assert sorted(m.module for m in kernel.modules) == [
        "sm3_ce",
        "sm3_generic",
        "sm4_ce",
        "sm4_generic",
    ]
    assert runner.commands_run == [
        ("/usr/bin/openssl", "version"),
        ("/usr/bin/openssl", "list", "-public-key-algorithms"),
        ("/usr/bin/openssl", "list", "-digest-algorithms"),
        ("/usr/bin/openssl", "list", "-cipher-algorithms"),
    ]
    results = evaluated(HostFacts(crypto=facts))
    assert results["openssl"].status is Status.PASS
    # Kernel 4.19 predates the SM2 akcipher (5.10): SM3 and SM4 run on the CPU's instructions.
    assert results["kernel"].status is Status.FAIL
    assert "lacks sm2" in results["kernel"].message
    assert "sm3 (sm3-ce, sm3-generic)" in results["kernel"].message


def test_modules_installed_but_not_loaded(tmp_path: Path) -> None:
    release = "5.10.0-136.12.0.86.oe2203sp1.x86_64"
    root = host_tree(
        tmp_path,
        release,
        raw("debian12-vm", "proc_crypto.txt"),  # nothing SM registered yet
        {
            "kernel/crypto": ["sm2_generic.ko.xz", "sm3_generic.ko.xz", "sm4_generic.ko.xz"],
            "kernel/arch/x86/crypto": ["sm4-aesni-avx-x86_64.ko.xz"],
        },
    )

    kernel = collect_kernel_crypto(OpensslReplay(None, root))

    assert isinstance(kernel, KernelCryptoFacts)
    assert kernel.modules == (
        KernelModuleFile(
            "sm2", "sm2_generic", f"/lib/modules/{release}/kernel/crypto/sm2_generic.ko.xz"
        ),
        KernelModuleFile(
            "sm3", "sm3_generic", f"/lib/modules/{release}/kernel/crypto/sm3_generic.ko.xz"
        ),
        KernelModuleFile(
            "sm4", "sm4_generic", f"/lib/modules/{release}/kernel/crypto/sm4_generic.ko.xz"
        ),
        KernelModuleFile(
            "sm4",
            "sm4_aesni_avx_x86_64",
            f"/lib/modules/{release}/kernel/arch/x86/crypto/sm4-aesni-avx-x86_64.ko.xz",
        ),
    )
    assert kernel.module_search == (
        f"/lib/modules/{release}/kernel/crypto: sm2_generic, sm3_generic, sm4_generic",
        f"/lib/modules/{release}/kernel/arch/x86/crypto: sm4_aesni_avx_x86_64",
    )
    results = evaluated(HostFacts(crypto=collect_crypto(OpensslReplay("debian12-vm", root))))
    assert results["kernel"].status is Status.PASS
    assert "sm2 available as module sm2_generic, not loaded" in results["kernel"].message
    assert "sm4 available as module sm4_aesni_avx_x86_64, sm4_generic" in results["kernel"].message


def test_rhel_like_openssl_without_sm2_and_sm4(tmp_path: Path) -> None:
    root = host_tree(tmp_path, "5.14.0-362.el9.x86_64", "", {"kernel/crypto": []})

    facts = collect_crypto(OpensslReplay("rhel9-openssl3.0.7", root))

    assert isinstance(facts.openssl, OpenSslFacts)
    assert facts.openssl.offered == {"sm2": (), "sm3": ("SM3",), "sm4": ()}
    results = evaluated(HostFacts(crypto=facts))
    assert results["openssl"].status is Status.FAIL
    assert results["openssl"].message == "OpenSSL 3.0.7 lacks sm2, sm4"


def test_openssl_10_uses_its_own_list_commands(tmp_path: Path) -> None:
    scenario = tmp_path / "centos7"
    scenario.mkdir()
    (scenario / "openssl_version.txt").write_text("OpenSSL 1.0.2k-fips  26 Jan 2017\n")
    (scenario / "openssl_list-cipher-algorithms.txt").write_text("AES-128-CBC\nDES-EDE3-CBC\n")
    (scenario / "openssl_list-message-digest-algorithms.txt").write_text("SHA256\nSHA1\n")
    (scenario / "openssl_list-public-key-algorithms.txt").write_text(
        "Name: OpenSSL RSA method\n\tType: Builtin Algorithm\n\tOID: rsaEncryption\n"
    )
    runner = OpensslReplay(str(scenario), tmp_path)

    openssl = collect_openssl(runner)

    assert isinstance(openssl, OpenSslFacts)
    assert openssl.offered == {"sm2": (), "sm3": (), "sm4": ()}
    assert [argv[1] for argv in runner.commands_run[1:]] == [
        "list-public-key-algorithms",
        "list-message-digest-algorithms",
        "list-cipher-algorithms",
    ]


def test_failing_list_is_unavailable_for_that_family_only(tmp_path: Path) -> None:
    runner = OpensslReplay("debian12-vm", tmp_path, fail=["-public-key-algorithms"])

    openssl = collect_openssl(runner)

    assert isinstance(openssl, OpenSslFacts)
    assert isinstance(openssl.offered["sm2"], Unavailable)
    assert "invalid command" in openssl.offered["sm2"].reason
    assert openssl.offered["sm3"] == ("SM3",)


def test_no_openssl_installed(tmp_path: Path) -> None:
    openssl = collect_openssl(OpensslReplay(None, tmp_path))

    assert openssl == OpenSslFacts(
        binary=None, version=None, offered=dict.fromkeys(("sm2", "sm3", "sm4"), ())
    )


def test_without_proc_the_kernel_is_unavailable(tmp_path: Path) -> None:
    kernel = collect_kernel_crypto(OpensslReplay(None, tmp_path))

    assert isinstance(kernel, Unavailable)
    assert "osrelease" in kernel.reason


def test_unreadable_proc_crypto(tmp_path: Path) -> None:
    root = host_tree(tmp_path, "6.1.0-18-amd64", "", {})
    (root / "proc/crypto").unlink()

    kernel = collect_kernel_crypto(OpensslReplay(None, root))

    assert isinstance(kernel, KernelCryptoFacts)
    assert isinstance(kernel.registered, Unavailable)
    assert kernel.modules == ()
    assert kernel.module_search == (
        "/lib/modules/6.1.0-18-amd64: does not exist (no modules installed for the running kernel)",
    )


# ----------------------------------------------------------------------------- this machine


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")
def test_this_machines_openssl() -> None:
    assert OPENSSL is not None

    openssl = collect_openssl(LocalRunner())

    assert isinstance(openssl, OpenSslFacts)
    assert openssl.binary == OPENSSL
    version = subprocess.run(
        [OPENSSL, "version"], capture_output=True, text=True, check=True, timeout=5
    ).stdout
    assert openssl.version == version.strip()
    for family, option in (
        ("sm2", "-public-key-algorithms"),
        ("sm3", "-digest-algorithms"),
        ("sm4", "-cipher-algorithms"),
    ):
        out = subprocess.run(
            [OPENSSL, "list", option], capture_output=True, text=True, check=True, timeout=5
        ).stdout
        provided = out.partition("Provided:")[2] or out
        expected = sorted(
            {
                token.strip()
                for token in re.split(r"[{},]|\s@\s\S+|IDs:", provided)
                if re.fullmatch(rf"\s*{family}(-[\w-]+)?\s*", token, re.IGNORECASE)
            }
        )
        assert list(openssl.offered[family]) == expected, family


def test_this_machines_kernel() -> None:
    kernel = collect_kernel_crypto(LocalRunner())

    assert isinstance(kernel, KernelCryptoFacts)
    assert kernel.release == os.uname().release
    assert not isinstance(kernel.registered, Unavailable)
    names = re.findall(r"^name\s*:\s*(\S+)", Path("/proc/crypto").read_text(), re.MULTILINE)
    for family in ("sm2", "sm3", "sm4"):
        expected = [n for n in names if re.search(rf"\b{family}\b", n)]
        assert sorted(e.name for e in kernel.registered[family]) <= sorted(expected)
    modules_dir = Path("/lib/modules") / kernel.release
    if not modules_dir.exists():
        assert kernel.modules == ()
        assert "does not exist" in kernel.module_search[0]
    else:
        assert isinstance(kernel.modules, tuple)
        on_disk = sorted(p.name for p in modules_dir.glob("kernel/**/crypto/sm[234]*.ko*"))
        assert sorted(Path(m.path).name for m in kernel.modules) == on_disk


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")
def test_this_machine_end_to_end() -> None:
    facts = collect_crypto(LocalRunner())

    results = evaluated(HostFacts(crypto=facts))

    assert set(results) == {"openssl", "kernel"}
    assert results["openssl"].status in (Status.PASS, Status.FAIL)
    assert results["kernel"].status in (Status.PASS, Status.FAIL)
    assert results["openssl"].evidence["binary"] == OPENSSL


def test_module_tree_without_crypto_folders(tmp_path: Path) -> None:
    root = host_tree(tmp_path, "6.1.0-18-amd64", "", {"kernel/drivers": ["e1000e.ko"]})

    kernel = collect_kernel_crypto(OpensslReplay(None, root))

    assert isinstance(kernel, KernelCryptoFacts)
    assert kernel.modules == ()
    assert kernel.module_search == ("/lib/modules/6.1.0-18-amd64/kernel/crypto: does not exist",)
