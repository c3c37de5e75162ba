"""Disk-encryption checks: data file systems and swap reach the disk only through dm-crypt, the
volume ciphers are of the strength the site requires (AES-256 or SM4 by default), and LUKS keys
are sealed by the TPM 2.0. Pure functions of `DiskFacts`; one result per mount, swap area or
volume, with the device path as target.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from checks.facts import HostFacts
from checks.facts.disk import (
    BlockDevice,
    Cipher,
    DataSegment,
    DiskFacts,
    EncryptedVolume,
    Mount,
    Reencryption,
    Swap,
    containing_mount,
)
from checks.model import (
    Msg,
    Outcome,
    Severity,
    Status,
    Unavailable,
    available,
    errored,
    failed,
    outcome,
    passed,
    require,
)
from checks.registry import check

BASE_MOUNTS = ("/", "/var", "/home", "/srv", "/opt")
"""Checked by default when they are mount points (else their data is on `/`, checked anyway)."""


def _disk(facts: Any) -> DiskFacts:
    return require(facts.disk, DiskFacts)


def _unprobed(disk: DiskFacts) -> list[BlockDevice]:
    """Devices whose signature could not be read (blkid denied, no device node, ...) and that
    are not known volumes: any of them may hold an encrypted volume nobody judged."""
    if isinstance(disk.block_devices, Unavailable) or isinstance(disk.volumes, Unavailable):
        return []
    known = {v.device for v in disk.volumes}
    return [
        d for d in disk.block_devices if isinstance(d.fstype, Unavailable) and d.path not in known
    ]


def _unprobed_outcomes(disk: DiskFacts) -> Iterator[Outcome]:
    for device in _unprobed(disk):
        reason = device.fstype.reason if isinstance(device.fstype, Unavailable) else ""
        yield errored(
            Msg(
                f"{device.path}: cannot tell whether it holds an encrypted volume: {reason}",
                f"{device.path}：无法判断其是否为加密卷：{reason}",
            ),
            {"device": device.path, "unavailable": reason},
            target=device.path,
        )


def _no_volumes(facts: HostFacts) -> Msg | None:
    disk = facts.disk
    if isinstance(disk, DiskFacts) and disk.volumes == () and not _unprobed(disk):
        return Msg(
            "no encrypted volumes (LUKS or dm-crypt) on this host; see disk.encrypted_mounts",
            "本机无加密卷（LUKS 或 dm-crypt），参见 disk.encrypted_mounts",
        )
    return None


def _no_luks(facts: HostFacts) -> Msg | None:
    disk = facts.disk
    volumes = disk.volumes if isinstance(disk, DiskFacts) else None
    luks = isinstance(volumes, tuple) and any(v.kind.startswith("luks") for v in volumes)
    if (
        isinstance(disk, DiskFacts)
        and isinstance(volumes, tuple)
        and not luks
        and not _unprobed(disk)
    ):
        return Msg(
            "no LUKS volumes on this host; see disk.encrypted_mounts",
            "本机无 LUKS 加密卷，参见 disk.encrypted_mounts",
        )
    return None


def _no_swap(facts: HostFacts) -> Msg | None:
    disk = facts.disk
    if isinstance(disk, DiskFacts) and disk.swaps == ():
        return Msg("no active swap area", "本机未启用交换空间")
    return None


# ----------------------------------------------------------------------------- mounts


def _wanted_paths(disk: DiskFacts, mounts: tuple[Mount, ...], required: list[str]) -> list[str]:
    if required:
        return list(required)
    present = {m.mountpoint for m in mounts}
    return [p for p in BASE_MOUNTS if p == "/" or p in present] + list(disk.data_dirs)


def _mount_outcome(mount: Mount, paths: list[str]) -> Outcome:
    where = where_zh = mount.mountpoint
    moved = [p for p in paths if p != mount.mountpoint]
    if moved:
        where += f" (holding {', '.join(moved)}, not separate mounts)"
        where_zh += f"（承载 {', '.join(moved)}，其并非独立挂载点）"
    device = mount.device or mount.source
    # Chinese sets no space between a closing full-width parenthesis and the next word.
    on_zh = f"{device} 上的 {where_zh}{'' if moved else ' '}"
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
            Msg(
                f"{where}: cannot tell whether it is encrypted: {mount.encrypted.reason}",
                f"{where_zh}：无法判断是否加密：{mount.encrypted.reason}",
            ),
            evidence,
            target=device,
        )
    crypt = ", ".join(mount.crypt_layers)
    if mount.encrypted:
        return passed(
            Msg(
                f"{where} on {device} is encrypted: dm-crypt layer {crypt} lies beneath it",
                f"{on_zh}已加密：其下层为 dm-crypt 加密层 {crypt}",
            ),
            evidence,
            target=device,
        )
    if mount.crypt_layers:
        layers = " → ".join(mount.layers)
        return failed(
            Msg(
                f"{where} on {device} is only partly encrypted: {crypt} covers some of the "
                f"devices beneath it ({layers}), not all",
                f"{on_zh}仅部分加密，不符合：{crypt} 只覆盖其下层的部分设备"
                f"（{layers}），未覆盖全部",
            ),
            evidence,
            target=device,
        )
    chain = " → ".join(mount.layers) or device
    return failed(
        Msg(
            f"{where} on {device} is not encrypted: no dm-crypt layer between it and the disk "
            f"({chain})",
            f"{on_zh}未加密，不符合：其与磁盘之间无 dm-crypt 加密层（{chain}）",
        ),
        evidence,
        target=device,
    )


@check(
    "disk.encrypted_mounts",
    title_en="File systems holding data are on encrypted volumes (LUKS/dm-crypt)",
    title_zh="重要数据所在文件系统位于加密卷（LUKS/dm-crypt）之上",
    severity=Severity.HIGH,
    needs=("disk.mounts",),
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
    mounts = available(disk.mounts)
    groups: dict[str, tuple[Mount, list[str]]] = {}
    for path in _wanted_paths(disk, mounts, required_mounts):
        mount = containing_mount(mounts, path)
        if mount is None:
            yield errored(
                Msg(
                    f"{path}: no mounted file system holds it",
                    f"{path}：未找到承载该路径的已挂载文件系统",
                ),
                {"path": path},
                target=path,
            )
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
    name_zh: str


def _policy(min_strength: str) -> _Policy:
    text = min_strength.strip().lower()
    if text == "sm4":
        return _Policy(None, "SM4", "SM4")
    algorithm, _, bits = text.partition("-")
    if algorithm == "aes" and bits in ("128", "192", "256"):
        return _Policy(int(bits), f"AES-{bits} or SM4", f"AES-{bits} 或 SM4")
    raise ValueError(f"min_strength must be aes-128, aes-192, aes-256 or sm4, not {min_strength!r}")


def _strength(cipher: Cipher) -> str:
    if cipher.algorithm == "sm4":
        return "SM4"
    return f"{(cipher.algorithm or '?').upper()}-{cipher.effective_bits}"


# Stream modes turn a block cipher into a keystream; with a per-sector IV the same keystream
# encrypts every version of a sector, so two versions XORed together give away the data.
_STREAM_MODES = frozenset({"ctr", "ofb", "cfb"})


@dataclass(frozen=True)
class _Verdict:
    """One cipher judged: a status and what to say after the object's name."""

    status: Status
    en: str
    zh: str


def _judge(cipher: Cipher | Unavailable, policy: _Policy) -> _Verdict:  # noqa: PLR0911 — a verdict each
    if isinstance(cipher, Unavailable):
        return _Verdict(
            Status.ERROR,
            f"cipher unavailable: {cipher.reason}",
            f"无法获取加密算法：{cipher.reason}",
        )
    stated = f"{cipher.spec}, {cipher.key_bits}-bit key"
    stated_zh = f"{cipher.spec}，密钥 {cipher.key_bits} 位"
    if cipher.spec == "linear":
        return _Verdict(
            Status.FAIL,
            "data is not encrypted (a linear LUKS2 segment: plaintext)",
            "数据未加密，不符合（LUKS2 linear 段：明文）",
        )
    if cipher.algorithm is None:
        return _Verdict(
            Status.ERROR,
            f"unknown cipher {cipher.spec!r}: cannot judge its strength",
            f"未知加密算法 {cipher.spec!r}，无法判断其强度",
        )
    if cipher.algorithm == "null":
        return _Verdict(
            Status.FAIL,
            f"data is not encrypted ({cipher.spec}: null cipher)",
            f"数据未加密，不符合（{cipher.spec}：空加密算法）",
        )
    if cipher.mode == "ecb":
        return _Verdict(
            Status.FAIL,
            f"ECB mode ({stated}) encrypts equal blocks alike and leaks data patterns",
            f"ECB 模式（{stated_zh}）对相同明文块生成相同密文，会泄露数据特征，不符合",
        )
    if cipher.mode in _STREAM_MODES:
        mode = cipher.mode.upper()
        return _Verdict(
            Status.FAIL,
            f"{mode} mode ({stated}) encrypts every version of a sector with the same keystream: "
            "two versions compared give the data away",
            f"{mode} 模式（{stated_zh}）对同一扇区的每个版本使用相同密钥流，"
            "比较两个版本即可泄露数据，不符合",
        )
    if cipher.effective_bits is None:
        return _Verdict(
            Status.ERROR,
            f"cannot tell the key strength of {stated}",
            f"无法判断 {stated_zh} 的密钥强度",
        )
    strength = _strength(cipher)
    accepted = cipher.algorithm == "sm4" or (
        cipher.algorithm == "aes"
        and policy.aes_bits is not None
        and cipher.effective_bits >= policy.aes_bits
    )
    if accepted:
        return _Verdict(
            Status.PASS, f"{strength} ({stated})", f"{strength}（{stated_zh}），强度符合要求"
        )
    return _Verdict(
        Status.FAIL,
        f"{strength} ({stated}) is weaker than the required {policy.name}",
        f"{strength}（{stated_zh}）弱于要求的 {policy.name_zh}，不符合",
    )


def _cipher_evidence(cipher: Cipher | Unavailable) -> dict[str, Any]:
    if isinstance(cipher, Unavailable):
        return {"cipher": None, "unavailable": cipher.reason}
    return {
        "cipher": cipher.spec,
        "key_bits": cipher.key_bits,
        "effective_bits": cipher.effective_bits,
        "algorithm": cipher.algorithm,
        "mode": cipher.mode,
    }


def _span(segment: DataSegment) -> tuple[str, str]:
    if segment.length is None:
        return (
            f"bytes {segment.offset} to the end of the device",
            f"字节 {segment.offset} 至设备末尾",
        )
    last = segment.offset + segment.length - 1
    return f"bytes {segment.offset}–{last}", f"字节 {segment.offset}–{last}"


def _in_progress(reencryption: Reencryption | None) -> tuple[str, str]:
    mode = reencryption.mode if reencryption else None
    if mode == "encrypt":
        return "in-place encryption in progress", "正在原地加密"
    if mode == "decrypt":
        return "decryption in progress", "正在解密"
    if mode == "reencrypt":
        return "re-encryption to a new key in progress", "正在重新加密（更换密钥）"
    if reencryption is not None:
        return "re-encryption in progress", "正在重新加密"
    return "several data segments", "存在多个数据段"


def _segments_outcome(
    volume: EncryptedVolume, policy: _Policy, evidence: dict[str, Any]
) -> Outcome:
    """A volume whose data segments differ or that is being re-encrypted: every range is judged
    with its own cipher and key; the weakest decides, and the message names its byte range."""
    target = volume.device
    judged = [(segment, _judge(segment.cipher, policy)) for segment in volume.segments]
    evidence["segments"] = [
        {
            "segment": segment.id,
            "offset": segment.offset,
            "length": segment.length,
            **_cipher_evidence(segment.cipher),
            "status": verdict.status.value,
        }
        for segment, verdict in judged
    ]
    reencryption = volume.reencryption
    evidence["reencryption"] = (
        {"mode": reencryption.mode, "direction": reencryption.direction} if reencryption else None
    )
    state, state_zh = _in_progress(reencryption)
    # A weak or plaintext range fails the volume whatever the others are; one that cannot be
    # judged makes it an error unless another fails; it passes only when every range passes.
    status = next(
        s for s in (Status.FAIL, Status.ERROR, Status.PASS) if any(v.status is s for _, v in judged)
    )
    shown = [(s, v) for s, v in judged if v.status is status]
    en = "; ".join(f"{_span(s)[0]}: {v.en}" for s, v in shown)
    zh = "；".join(f"{_span(s)[1]}：{v.zh}" for s, v in shown)
    if status is Status.PASS:
        en = f"every data segment meets {policy.name}: {en}"
        zh = f"各数据段均满足 {policy.name_zh}：{zh}"
    return outcome(
        status,
        Msg(f"{target}: {state}; {en}", f"{target}：{state_zh}；{zh}"),
        evidence,
        target=target,
    )


def _cipher_outcome(volume: EncryptedVolume, policy: _Policy) -> Outcome:
    target = volume.device
    evidence: dict[str, Any] = {
        "device": volume.device,
        "kind": volume.kind,
        "required": policy.name,
    }
    if volume.mapped_path:
        evidence["mapped_path"] = volume.mapped_path
    if volume.segments and (len(volume.segments) > 1 or volume.reencryption is not None):
        return _segments_outcome(volume, policy, evidence)
    cipher = volume.cipher
    if not isinstance(cipher, Unavailable):
        evidence.update(_cipher_evidence(cipher))
    verdict = _judge(cipher, policy)
    return outcome(
        verdict.status,
        Msg(f"{target}: {verdict.en}", f"{target}：{verdict.zh}"),
        evidence,
        target=target,
    )


@check(
    "disk.cipher_strength",
    title_en="Disk encryption uses a cipher of the required strength (AES or SM4)",
    title_zh="磁盘加密采用满足强度要求的密码算法（AES 或 SM4）",
    severity=Severity.HIGH,
    needs=("disk.volumes",),
    applies_to=_no_volumes,
    params={"min_strength": "aes-256"},
)
def cipher_strength(facts: HostFacts, min_strength: str) -> Iterator[Outcome]:
    """One result per LUKS volume or open dm-crypt mapping. `min_strength` "aes-256" (also
    aes-128, aes-192) accepts AES with at least that effective key length, or SM4; "sm4" accepts
    SM4 only. XTS halves the stored key: a 256-bit aes-xts key is AES-128. ECB and stream modes
    (CTR, OFB, CFB) fail whatever the key. A LUKS2 volume part-way through re-encryption is judged
    range by range, each data segment with the key bound to it; a range still in plaintext fails."""
    policy = _policy(min_strength)
    disk = _disk(facts)
    for volume in available(disk.volumes):
        yield _cipher_outcome(volume, policy)
    yield from _unprobed_outcomes(disk)


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
            Msg(
                f"swap {swap.path} is zram without a writeback device: it never reaches a disk",
                f"交换空间 {swap.path} 为无回写设备的 zram，数据不会写入磁盘",
            ),
            evidence,
            target=target,
        )
    if isinstance(swap.encrypted, Unavailable):
        reason = swap.encrypted.reason
        return errored(
            Msg(
                f"swap {swap.path}: cannot tell whether it is encrypted: {reason}",
                f"交换空间 {swap.path}：无法判断是否加密：{reason}",
            ),
            evidence,
            target=target,
        )
    if swap.encrypted:
        crypt = ", ".join(swap.crypt_layers)
        return passed(
            Msg(
                f"swap {swap.path} is encrypted by {crypt}",
                f"交换空间 {swap.path} 已由 {crypt} 加密",
            ),
            evidence,
            target=target,
        )
    where = swap.path if target == swap.path else f"{swap.path} on {target}"
    where_zh = swap.path if target == swap.path else f"{swap.path}（设备 {target}）"
    chain = " → ".join(swap.layers) or target
    return failed(
        Msg(
            f"swap {where} is not encrypted: memory paged out to it (patient data "
            f"included) reaches the disk in clear ({chain})",
            f"交换空间 {where_zh} 未加密，不符合：换出到其中的内存数据（含患者数据）以明文写入磁盘"
            f"（{chain}）",
        ),
        evidence,
        target=target,
    )


@check(
    "disk.swap_encrypted",
    title_en="Swap is encrypted or stays in memory",
    title_zh="交换分区已加密或仅驻留内存（zram）",
    severity=Severity.MEDIUM,
    needs=("disk.swaps",),
    applies_to=_no_swap,
)
def swap_encrypted(facts: HostFacts) -> Iterator[Outcome]:
    """One result per active swap area: on dm-crypt (a swap file counts when its file system is
    encrypted), or zram that writes back to no device."""
    for swap in available(_disk(facts).swaps):
        yield _swap_outcome(swap)


# ----------------------------------------------------------------------------- TPM sealing


def _sealing_outcome(volume: EncryptedVolume) -> Outcome:
    target = volume.device
    evidence: dict[str, Any] = {"device": volume.device, "kind": volume.kind, "uuid": volume.uuid}
    keys = volume.keys
    if volume.kind == "luks1":
        return failed(
            Msg(
                f"{target}: LUKS1 header has no token area to hold a TPM 2.0 binding; convert it "
                "(cryptsetup convert --type luks2) and enrol the TPM (systemd-cryptenroll "
                "--tpm2-device=auto, or clevis luks bind … tpm2)",
                f"{target}：LUKS1 头部没有可存放 TPM 2.0 绑定的令牌区，不符合；请转换为 LUKS2"
                "（cryptsetup convert --type luks2）并登记 TPM（systemd-cryptenroll "
                "--tpm2-device=auto，或 clevis luks bind … tpm2）",
            ),
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
        if isinstance(keys, Unavailable):
            reason = reason_zh = keys.reason
        else:
            reason, reason_zh = "no header was read", "未读取到 LUKS 头部"
        return errored(
            Msg(
                f"{target}: LUKS keyslots unavailable: {reason}",
                f"{target}：无法获取 LUKS 密钥槽信息：{reason_zh}",
            ),
            evidence,
            target=target,
        )
    how = [
        (name, name_zh)
        for name, name_zh, present in (
            ("systemd-tpm2 token", "systemd-tpm2 令牌", keys.tpm2_token),
            ("clevis tpm2 binding", "clevis tpm2 绑定", keys.clevis_tpm2),
        )
        if present
    ]
    if how:
        pcrs = ", ".join(str(p) for p in keys.tpm2_pcrs)
        return passed(
            Msg(
                f"{target}: volume key sealed by the TPM 2.0 "
                f"({' and '.join(en for en, _ in how)}; PCRs {pcrs or 'none'})",
                f"{target}：卷密钥已由 TPM 2.0 密封"
                f"（{'、'.join(zh for _, zh in how)}；PCR {pcrs or '无'}）",
            ),
            evidence,
            target=target,
        )
    tokens = ", ".join(keys.tokens)
    return failed(
        Msg(
            f"{target}: no systemd-tpm2 token or clevis tpm2 binding on a keyslot that unlocks the "
            f"data (tokens: {tokens or 'none'})",
            f"{target}：可解锁数据的密钥槽均无 systemd-tpm2 令牌或 clevis tpm2 绑定，不符合"
            f"（令牌：{tokens or '无'}）",
        ),
        evidence,
        target=target,
    )


@check(
    "disk.key_sealed_by_tpm",
    title_en="LUKS volume keys are sealed by the TPM 2.0",
    title_zh="磁盘加密密钥由 TPM 2.0 芯片密封保护",
    severity=Severity.MEDIUM,
    needs=("disk.volumes",),
    applies_to=_no_luks,
)
def key_sealed_by_tpm(facts: HostFacts) -> Iterator[Outcome]:
    """One result per LUKS volume: a systemd-tpm2 token or a clevis binding using the tpm2 pin
    (directly or inside sss) on a keyslot that unlocks the data. Headerless dm-crypt mappings
    (plain swap with a random key, ...) are not judged: there is no header to hold a binding."""
    disk = _disk(facts)
    for volume in available(disk.volumes):
        if volume.kind.startswith("luks"):
            yield _sealing_outcome(volume)
    yield from _unprobed_outcomes(disk)
