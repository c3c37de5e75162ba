"""Disk-encryption checks: data file systems and swap reach the disk only through dm-crypt, the
volume ciphers are AES-256 or SM4, and LUKS keys are sealed by the TPM 2.0. Pure functions of
`DiskFacts`; one result per mount, swap area or volume, with the device path as target.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from checks.facts import HostFacts
from checks.facts.disk import Cipher, DiskFacts, EncryptedVolume, Mount, Swap, containing_mount
from checks.model import Outcome, Severity, Unavailable, errored, failed, passed, require
from checks.registry import check

BASE_MOUNTS = ("/", "/var", "/home", "/srv", "/opt")
"""Checked by default when they are mount points (else their data is on `/`, checked anyway)."""


def _disk(facts: Any) -> DiskFacts:
    return require(facts.disk, DiskFacts)


def _no_volumes(facts: HostFacts) -> str | None:
    disk = facts.disk
    if isinstance(disk, DiskFacts) and disk.volumes == ():
        return "no encrypted volumes (LUKS or dm-crypt) on this host; see disk.encrypted_mounts"
    return None


def _no_luks(facts: HostFacts) -> str | None:
    disk = facts.disk
    volumes = disk.volumes if isinstance(disk, DiskFacts) else None
    if isinstance(volumes, tuple) and not any(v.kind.startswith("luks") for v in volumes):
        return "no LUKS volumes on this host; see disk.encrypted_mounts"
    return None


def _no_swap(facts: HostFacts) -> str | None:
    disk = facts.disk
    if isinstance(disk, DiskFacts) and disk.swaps == ():
        return "no active swap area"
    return None


# ----------------------------------------------------------------------------- mounts


def _wanted_paths(disk: DiskFacts, mounts: tuple[Mount, ...], required: list[str]) -> list[str]:
    if required:
        return list(required)
    present = {m.mountpoint for m in mounts}
    return [p for p in BASE_MOUNTS if p == "/" or p in present] + list(disk.data_dirs)


def _mount_outcome(mount: Mount, paths: list[str]) -> Outcome:
    where = mount.mountpoint
    moved = [p for p in paths if p != mount.mountpoint]
    if moved:
        where += f" (holding {', '.join(moved)}, not separate mounts)"
    device = mount.device or mount.source
    evidence: dict[str, Any] = {
        "mountpoint": mount.mountpoint,
        "paths": paths,
        "source": mount.source,
        "fstype": mount.fstype,
        "device": mount.device,
        "layers": list(mount.layers),
        "crypt_layers": list(mount.crypt_layers),
    }
    if isinstance(mount.encrypted, Unavailable):
        return errored(
            f"{where}: cannot tell whether it is encrypted: {mount.encrypted.reason}",
            evidence,
            target=device,
        )
    if mount.encrypted:
        return passed(
            f"{where} on {device} is encrypted: dm-crypt layer {', '.join(mount.crypt_layers)} "
            f"lies beneath it",
            evidence,
            target=device,
        )
    if mount.crypt_layers:
        return failed(
            f"{where} on {device} is only partly encrypted: {', '.join(mount.crypt_layers)} "
            f"covers some of the devices beneath it ({' → '.join(mount.layers)}), not all",
            evidence,
            target=device,
        )
    chain = " → ".join(mount.layers) or device
    return failed(
        f"{where} on {device} is not encrypted: no dm-crypt layer between it and the disk "
        f"({chain})",
        evidence,
        target=device,
    )


@check(
    "disk.encrypted_mounts",
    title_en="File systems holding data are on encrypted volumes (LUKS/dm-crypt)",
    title_zh="重要数据所在文件系统位于加密卷（LUKS/dm-crypt）之上",
    severity=Severity.HIGH,
    needs=("disk",),
    params={"required_mounts": []},
)
def encrypted_mounts(facts: HostFacts, required_mounts: list[str]) -> Iterator[Outcome]:
    """One result per file system holding a required path. By default the paths are `/`, those of
    /var, /home, /srv and /opt that are mount points, and every database data directory found.

    A required path that is not a mount point is judged by the file system that holds it: that is
    where its data is written. An encrypted volume that failed to unlock at boot therefore fails
    here when the service wrote into the unencrypted directory underneath instead.
    """
    disk = _disk(facts)
    if isinstance(disk.mounts, Unavailable):
        yield errored(f"mounts unavailable: {disk.mounts.reason}")
        return
    groups: dict[str, tuple[Mount, list[str]]] = {}
    for path in _wanted_paths(disk, disk.mounts, required_mounts):
        mount = containing_mount(disk.mounts, path)
        if mount is None:
            yield errored(f"{path}: no mounted file system holds it", {"path": path}, target=path)
            continue
        paths = groups.setdefault(mount.mountpoint, (mount, []))[1]
        if path not in paths:
            paths.append(path)
    for mount, paths in groups.values():
        yield _mount_outcome(mount, paths)


# ----------------------------------------------------------------------------- ciphers


@dataclass(frozen=True)
class _Policy:
    aes_bits: int | None
    """Least effective AES key length accepted; None when AES is not accepted at all."""
    name: str


def _policy(min_strength: str) -> _Policy:
    text = min_strength.strip().lower()
    if text == "sm4":
        return _Policy(None, "SM4")
    algorithm, _, bits = text.partition("-")
    if algorithm == "aes" and bits in ("128", "192", "256"):
        return _Policy(int(bits), f"AES-{bits} or SM4")
    raise ValueError(f"min_strength must be aes-128, aes-192, aes-256 or sm4, not {min_strength!r}")


def _strength(cipher: Cipher) -> str:
    if cipher.algorithm == "sm4":
        return "SM4"
    return f"{(cipher.algorithm or '?').upper()}-{cipher.effective_bits}"


def _cipher_outcome(volume: EncryptedVolume, policy: _Policy) -> Outcome:  # noqa: PLR0911 — a verdict each
    target = volume.device
    evidence: dict[str, Any] = {
        "device": volume.device,
        "kind": volume.kind,
        "required": policy.name,
    }
    if volume.mapped_path:
        evidence["mapped_path"] = volume.mapped_path
    cipher = volume.cipher
    if isinstance(cipher, Unavailable):
        return errored(f"{target}: cipher unavailable: {cipher.reason}", evidence, target=target)
    evidence.update(
        cipher=cipher.spec,
        key_bits=cipher.key_bits,
        effective_bits=cipher.effective_bits,
        algorithm=cipher.algorithm,
        mode=cipher.mode,
    )
    stated = f"{cipher.spec}, {cipher.key_bits}-bit key"
    if cipher.algorithm is None:
        return errored(
            f"{target}: unknown cipher {cipher.spec!r}: cannot judge its strength",
            evidence,
            target=target,
        )
    if cipher.algorithm == "null":
        return failed(
            f"{target}: data is not encrypted ({cipher.spec}: null cipher)", evidence, target=target
        )
    if cipher.mode == "ecb":
        return failed(
            f"{target}: ECB mode ({stated}) encrypts equal blocks alike and leaks data patterns",
            evidence,
            target=target,
        )
    if cipher.effective_bits is None:
        return errored(
            f"{target}: cannot tell the key strength of {stated}", evidence, target=target
        )
    strength = _strength(cipher)
    accepted = cipher.algorithm == "sm4" or (
        cipher.algorithm == "aes"
        and policy.aes_bits is not None
        and cipher.effective_bits >= policy.aes_bits
    )
    if accepted:
        return passed(f"{target}: {strength} ({stated})", evidence, target=target)
    return failed(
        f"{target}: {strength} ({stated}) is weaker than the required {policy.name}",
        evidence,
        target=target,
    )


@check(
    "disk.cipher_strength",
    title_en="Disk encryption uses AES-256 or SM4",
    title_zh="磁盘加密采用 AES-256 或 SM4 算法",
    severity=Severity.HIGH,
    needs=("disk",),
    applies_to=_no_volumes,
    params={"min_strength": "aes-256"},
)
def cipher_strength(facts: HostFacts, min_strength: str) -> Iterator[Outcome]:
    """One result per LUKS volume or open dm-crypt mapping. `min_strength` "aes-256" (also
    aes-128, aes-192) accepts AES with at least that effective key length, or SM4; "sm4" accepts
    SM4 only. XTS halves the stored key: a 256-bit aes-xts key is AES-128."""
    policy = _policy(min_strength)
    volumes = _disk(facts).volumes
    if isinstance(volumes, Unavailable):
        yield errored(f"encrypted volumes unavailable: {volumes.reason}")
        return
    for volume in volumes:
        yield _cipher_outcome(volume, policy)


# ----------------------------------------------------------------------------- swap


def _swap_outcome(swap: Swap) -> Outcome:
    target = swap.device or swap.path
    evidence: dict[str, Any] = {
        "swap": swap.path,
        "kind": swap.kind,
        "size_bytes": swap.size_bytes,
        "device": swap.device,
        "in_memory": swap.in_memory,
        "layers": list(swap.layers),
        "crypt_layers": list(swap.crypt_layers),
    }
    if swap.in_memory:
        return passed(
            f"swap {swap.path} is zram without a writeback device: it never reaches a disk",
            evidence,
            target=target,
        )
    if isinstance(swap.encrypted, Unavailable):
        return errored(
            f"swap {swap.path}: cannot tell whether it is encrypted: {swap.encrypted.reason}",
            evidence,
            target=target,
        )
    if swap.encrypted:
        return passed(
            f"swap {swap.path} is encrypted by {', '.join(swap.crypt_layers)}",
            evidence,
            target=target,
        )
    where = swap.path if target == swap.path else f"{swap.path} on {target}"
    return failed(
        f"swap {where} is not encrypted: memory paged out to it (patient data "
        f"included) reaches the disk in clear ({' → '.join(swap.layers) or target})",
        evidence,
        target=target,
    )


@check(
    "disk.swap_encrypted",
    title_en="Swap is encrypted or stays in memory",
    title_zh="交换分区已加密或仅驻留内存（zram）",
    severity=Severity.MEDIUM,
    needs=("disk",),
    applies_to=_no_swap,
)
def swap_encrypted(facts: HostFacts) -> Iterator[Outcome]:
    """One result per active swap area: on dm-crypt (a swap file counts when its file system is
    encrypted), or zram that writes back to no device."""
    swaps = _disk(facts).swaps
    if isinstance(swaps, Unavailable):
        yield errored(f"swap areas unavailable: {swaps.reason}")
        return
    for swap in swaps:
        yield _swap_outcome(swap)


# ----------------------------------------------------------------------------- TPM sealing


def _sealing_outcome(volume: EncryptedVolume) -> Outcome:
    target = volume.device
    evidence: dict[str, Any] = {"device": volume.device, "kind": volume.kind, "uuid": volume.uuid}
    keys = volume.keys
    if volume.kind == "luks1":
        return failed(
            f"{target}: LUKS1 header has no token area to hold a TPM 2.0 binding; convert it "
            "(cryptsetup convert --type luks2) and enrol the TPM (systemd-cryptenroll "
            "--tpm2-device=auto, or clevis luks bind … tpm2)",
            evidence,
            target=target,
        )
    if not isinstance(keys, Unavailable) and keys is not None:
        evidence.update(
            tokens=list(keys.tokens),
            tpm2_token=keys.tpm2_token,
            clevis_tpm2=keys.clevis_tpm2,
            tpm2_pcrs=list(keys.tpm2_pcrs),
            keyslots=keys.keyslots,
        )
    if isinstance(keys, Unavailable) or keys is None:
        reason = keys.reason if isinstance(keys, Unavailable) else "no header was read"
        return errored(f"{target}: LUKS keyslots unavailable: {reason}", evidence, target=target)
    how = [
        name
        for name, present in (
            ("systemd-tpm2 token", keys.tpm2_token),
            ("clevis tpm2 binding", keys.clevis_tpm2),
        )
        if present
    ]
    if how:
        pcrs = ", ".join(str(p) for p in keys.tpm2_pcrs) or "none"
        return passed(
            f"{target}: volume key sealed by the TPM 2.0 ({' and '.join(how)}; PCRs {pcrs})",
            evidence,
            target=target,
        )
    tokens = ", ".join(keys.tokens) or "none"
    return failed(
        f"{target}: no systemd-tpm2 token or clevis tpm2 binding on a keyslot that unlocks the "
        f"data (tokens: {tokens})",
        evidence,
        target=target,
    )


@check(
    "disk.key_sealed_by_tpm",
    title_en="LUKS volume keys are sealed by the TPM 2.0",
    title_zh="磁盘加密密钥由 TPM 2.0 芯片密封保护",
    severity=Severity.MEDIUM,
    needs=("disk",),
    applies_to=_no_luks,
)
def key_sealed_by_tpm(facts: HostFacts) -> Iterator[Outcome]:
    """One result per LUKS volume: a systemd-tpm2 token or a clevis binding using the tpm2 pin
    (directly or inside sss) on a keyslot that unlocks the data. Headerless dm-crypt mappings
    (plain swap with a random key, ...) are not judged: there is no header to hold a binding."""
    volumes = _disk(facts).volumes
    if isinstance(volumes, Unavailable):
        yield errored(f"encrypted volumes unavailable: {volumes.reason}")
        return
    for volume in volumes:
        if volume.kind.startswith("luks"):
            yield _sealing_outcome(volume)
