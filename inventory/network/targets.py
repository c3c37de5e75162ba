"""The SNMP targets file: which devices the SNMP inventory asks, with which credentials, and
which CIDRs it may sweep for more — validated at the boundary, secrets read once at load.

```yaml
defaults: {port: 161, version: 2c, community_file: /etc/medsec/snmp.community,
           timeout: 2, retries: 1}
devices:
  - {address: 198.18.4.1, name: border-fw, borders: ["dmz<->his"]}
  - {address: 127.0.0.1, port: 1161, community: fortigate}
  - {address: 198.18.4.2, version: 3, user: medsec,
     auth: {protocol: sha, key_file: auth.key}, priv: {protocol: aes, key_file: priv.key}}
sweep: [198.18.4.0/28]
zones: zones.yaml                 # optional: the borders the devices are judged against
concurrency: 64
well_known_communities: true      # try a short list of public words on the listed devices
```

The file holds or names secrets, so it is refused unless only its owner may read it (mode 0600
or stricter). A device takes each setting it does not give from `defaults`; credentials come as
a group (`community`/`community_file` for v1 and 2c; `user`, `auth`, `priv` for v3): a device
that gives any of its group takes none of that group from the defaults. Relative paths
(`community_file`, `key_file`, `zones`) are relative to the targets file's folder. SNMPv3's
security level follows from what is given: `auth` alone is authNoPriv, `auth` and `priv`
authPriv, neither noAuthNoPriv.

Every problem is a `TargetsError` whose message is one line naming the file and the key
(`devices[2].auth.protocol: ...`), never a secret. Secrets live in `Secret` objects whose repr
and str hide them, so no struct here can print one into a log.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from checks.configtext import ConfigFileError, describe, read_yaml
from checks.facts.devices import SecurityLevel, SnmpVersion

MAX_SWEEP_ADDRESSES = 4096
"""A sweep asks every address of its CIDRs: more than this in one file is refused (a typo such
as /16 for /28 would otherwise send 65,536 probes)."""
MAX_CONCURRENCY = 1024
SECRET_FILE_LIMIT = 4096
"""Bytes read from a secret file: a community or a key is one short line."""
AUTH_PROTOCOLS = ("md5", "sha", "sha224", "sha256", "sha384", "sha512")
PRIV_PROTOCOLS = ("des", "3des", "aes", "aes192", "aes256", "aes192c", "aes256c")
"""As net-snmp names them: `aes192`/`aes256` stretch a short (MD5, SHA-1) key the way
net-snmp and most agents built on it do (draft-blumenthal-aes-usm); `aes192c`/`aes256c` the
way Cisco does (draft-reeder). With a SHA-2 auth key both give the same key."""
MIN_V3_KEY = 8
"""RFC 3414 (11.2): a USM password shorter than 8 characters is refused by agents."""

_ZONE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
_BORDER = re.compile(rf"^{_ZONE}<->{_ZONE}$")
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_USER = re.compile(r"^[\x21-\x7e]{1,32}$")
_SECRET_KEYS = ("community", "key")


class TargetsError(Exception):
    """The targets file cannot be used. The message is the one line the user sees."""


class Secret:
    """A community or an SNMPv3 key: `reveal()` gives it to the SNMP engine; repr and str
    never show it, so a struct holding one can be logged."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __len__(self) -> int:
        return len(self._value)


# --- the file as written ----------------------------------------------------------------------


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Sections are immutable and refuse unknown keys."""


class _KeySpec(_Section, forbid_unknown_fields=True, frozen=True):
    """`auth:` or `priv:`: a protocol and a key, inline or in a file."""

    protocol: str
    key: Secret | None = None
    key_file: str | None = None

    def __post_init__(self) -> None:
        if self.key is not None and self.key_file is not None:
            raise ValueError("key: give key or key_file, not both")
        if self.key is None and self.key_file is None:
            raise ValueError("key_file: give key_file (or key)")
        if self.key_file is not None and not self.key_file.strip():
            raise ValueError("key_file: an empty path")
        if self.key is not None and len(self.key) < MIN_V3_KEY:
            raise ValueError(f"key: at least {MIN_V3_KEY} characters (RFC 3414)")


class _AuthSpec(_KeySpec, forbid_unknown_fields=True, frozen=True):
    def __post_init__(self) -> None:
        _protocol(self.protocol, AUTH_PROTOCOLS)
        super().__post_init__()


class _PrivSpec(_KeySpec, forbid_unknown_fields=True, frozen=True):
    def __post_init__(self) -> None:
        _protocol(self.protocol, PRIV_PROTOCOLS)
        super().__post_init__()


class _Common(_Section, forbid_unknown_fields=True, frozen=True):
    """The settings a device may give and `defaults` may supply."""

    port: int | None = None
    version: str | int | None = None
    community: Secret | None = None
    community_file: str | None = None
    user: str | None = None
    auth: _AuthSpec | None = None
    priv: _PrivSpec | None = None
    timeout: float | None = None
    retries: int | None = None

    def __post_init__(self) -> None:
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError("port: must be between 1 and 65535")
        if self.version is not None:
            _version(self.version)
        if self.community is not None and self.community_file is not None:
            raise ValueError("community: give community or community_file, not both")
        if self.community is not None:
            _community_text(self.community.reveal(), "community")
        if self.user is not None and not _USER.match(self.user):
            raise ValueError("user: 1 to 32 printable characters, no spaces")
        if self.priv is not None and self.auth is None:
            raise ValueError("priv: SNMPv3 privacy needs auth as well")
        if self.timeout is not None and not 0 < self.timeout <= 30:
            raise ValueError("timeout: seconds, more than 0 and at most 30")
        if self.retries is not None and not 0 <= self.retries <= 5:
            raise ValueError("retries: between 0 and 5")


class _Defaults(_Common, forbid_unknown_fields=True, frozen=True):
    pass


class _Device(_Common, forbid_unknown_fields=True, frozen=True, kw_only=True):
    address: str
    name: str | None = None
    borders: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _ipv4(self.address, "address")
        super().__post_init__()
        if self.name is not None and not _NAME.match(self.name):
            raise ValueError("name: 1 to 128 characters, no control characters")
        for index, border in enumerate(self.borders):
            if not _BORDER.match(border):
                raise ValueError(f"borders[{index}]: not ZONE<->ZONE (dmz<->his)")


class _File(_Section, forbid_unknown_fields=True, frozen=True):
    defaults: _Defaults = _Defaults()
    devices: tuple[_Device, ...] = ()
    sweep: tuple[str, ...] = ()
    zones: str | None = None
    concurrency: int = 64
    well_known_communities: bool = True

    def __post_init__(self) -> None:
        if not self.devices and not self.sweep:
            raise ValueError("devices: no device and no sweep: nothing to ask")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency: between 1 and {MAX_CONCURRENCY}")
        total = 0
        for index, cidr in enumerate(self.sweep):
            total += _sweep_network(cidr, f"sweep[{index}]").num_addresses
        if total > MAX_SWEEP_ADDRESSES:
            raise ValueError(
                f"sweep: {total} addresses in total; at most {MAX_SWEEP_ADDRESSES} per run "
                "(split the CIDRs over several targets files)"
            )


def _version(raw: str | int) -> SnmpVersion:
    text = str(raw).lower()
    if text == "1":
        return "1"
    if text == "2c":
        return "2c"
    if text == "3":
        return "3"
    raise ValueError("version: not an SNMP version (1, 2c, 3)")


def _protocol(raw: str, allowed: tuple[str, ...]) -> None:
    if raw.lower() not in allowed:
        raise ValueError(f"protocol: not one of {', '.join(allowed)}")


def _community_text(value: str, key: str) -> None:
    if not value or len(value) > 255 or any(c in value for c in "\r\n\x00"):
        raise ValueError(f"{key}: 1 to 255 characters on one line")


def _ipv4(text: str, key: str) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{key}: not an IP address") from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise ValueError(f"{key}: IPv6 is not supported yet")
    if address.is_multicast or address.is_unspecified or address == _BROADCAST:
        raise ValueError(f"{key}: not a unicast address")
    return address


_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def _sweep_network(text: str, key: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ValueError(f"{key}: not a CIDR ({exc})") from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError(f"{key}: IPv6 is not supported yet")
    if network.is_multicast or network.network_address.is_unspecified:
        raise ValueError(f"{key}: not a unicast range")
    return network


def _decode_hook(kind: type, value: Any) -> Any:
    if kind is Secret:
        if isinstance(value, str):
            return Secret(value)
        raise ValueError("must be a string (quote it in YAML)")
    raise NotImplementedError(kind)


# --- the file as used -------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """What medsec speaks to one device with. Secrets are `Secret`s (hidden in repr)."""

    version: SnmpVersion
    community: Secret | None = None
    """v1/2c."""
    user: str | None = None
    """v3: the USM user name (not a secret)."""
    auth_protocol: str | None = None
    auth_key: Secret | None = None
    priv_protocol: str | None = None
    """One of `PRIV_PROTOCOLS`."""
    priv_key: Secret | None = None

    @property
    def cipher(self) -> str | None:
        """The privacy cipher whatever the key stretching: `aes256c` is `aes256`."""
        if self.priv_protocol in ("aes192c", "aes256c"):
            return self.priv_protocol[:-1]
        return self.priv_protocol

    @property
    def security_level(self) -> SecurityLevel | None:
        if self.version != "3":
            return None
        if self.priv_key is not None:
            return "authPriv"
        if self.auth_key is not None:
            return "authNoPriv"
        return "noAuthNoPriv"


@dataclass(frozen=True)
class SnmpTarget:
    """One device to ask: a `devices` entry with the defaults filled in, or a swept address."""

    address: str
    port: int
    credentials: Credentials
    timeout: float
    """Seconds to wait for each answer."""
    retries: int
    """Requests sent again after a timeout (0: one try)."""
    name: str | None = None
    borders: tuple[str, ...] = ()
    """Borders (`dmz<->his`) the device sits on though its addresses may not show it."""


@dataclass(frozen=True)
class SweepSettings:
    """How swept addresses are asked: the defaults' port and credentials."""

    port: int
    credentials: Credentials
    timeout: float
    retries: int

    def target(self, address: str) -> SnmpTarget:
        return SnmpTarget(address, self.port, self.credentials, self.timeout, self.retries)


@dataclass(frozen=True)
class Targets:
    """A loaded targets file."""

    path: str
    """The targets file (absolute)."""
    devices: tuple[SnmpTarget, ...]
    sweep: tuple[str, ...] = ()
    """CIDRs to sweep, as written."""
    sweep_settings: SweepSettings | None = None
    """None when there is no sweep."""
    zones: str | None = None
    """The zones file whose borders the devices are judged against (absolute), if given."""
    concurrency: int = 64
    """Devices asked at once."""
    well_known_communities: bool = True
    """Try the well-known communities on the listed devices (never on swept ones)."""

    def sweep_addresses(self) -> tuple[str, ...]:
        """Every address the sweep asks (network and broadcast addresses left out for prefixes
        up to /30), in order, without repeats."""
        return sweep_addresses(self.sweep)


def sweep_addresses(cidrs: tuple[str, ...]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for cidr in cidrs:
        network = ipaddress.IPv4Network(cidr)
        hosts = network.hosts() if network.prefixlen < 31 else iter(network)
        for address in hosts:
            seen.setdefault(str(address), None)
    return tuple(seen)


# --- loading ----------------------------------------------------------------------------------


def load_targets(path: str | os.PathLike[str]) -> Targets:
    """Read, check and resolve a targets file (secret files are read here, once)."""
    file = Path(path).absolute()
    try:
        mode = file.stat().st_mode
    except FileNotFoundError:
        raise TargetsError(f"{file}: targets file not found") from None
    except OSError as exc:
        raise TargetsError(f"{file}: cannot read the targets file ({exc.strerror})") from None
    if stat.S_ISREG(mode) and mode & 0o077:
        raise TargetsError(
            f"{file}: mode {stat.S_IMODE(mode):04o} lets group or others read it; it holds or "
            "names secrets (chmod 600)"
        )
    try:
        data = read_yaml(file, "targets", "the targets file")
    except ConfigFileError as exc:
        raise TargetsError(str(exc)) from None
    return parse_targets(data, file)


def parse_targets(data: Any, file: Path) -> Targets:
    """Validate a parsed targets document; `file` anchors relative paths and names errors."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise TargetsError(f"{file}: the top level must be a mapping, got {kind}")
    try:
        raw = msgspec.convert(data, _File, dec_hook=_decode_hook)
    except msgspec.ValidationError as exc:
        raise TargetsError(f"{file}: {describe(exc, data, _SECRET_KEYS)}") from None
    try:
        return _resolve(raw, file)
    except ValueError as exc:
        raise TargetsError(f"{file}: {exc}") from None


def _resolve(raw: _File, file: Path) -> Targets:
    folder = file.parent
    reader = _SecretReader(folder)
    devices: list[SnmpTarget] = []
    seen: dict[tuple[object, ...], int] = {}
    for index, device in enumerate(raw.devices):
        where = f"devices[{index}]"
        target = _device(raw.defaults, device, where, reader)
        # One agent may answer several communities (a simulator, per-VLAN contexts): only the
        # same address, port and credentials twice is a mistake.
        key = (target.address, target.port, target.credentials)
        if key in seen:
            raise ValueError(
                f"{where}.address: {target.address}:{target.port} with the same credentials "
                f"is devices[{seen[key]}] already"
            )
        seen[key] = index
        devices.append(target)
    sweep_settings = None
    if raw.sweep:
        sweep_settings = _sweep_settings(raw.defaults, reader)
    zones = None
    if raw.zones is not None:
        zones_path = _path(raw.zones, folder, "zones")
        if not zones_path.is_file():
            raise ValueError(f"zones: {zones_path} does not exist")
        zones = str(zones_path)
    return Targets(
        path=str(file),
        devices=tuple(devices),
        sweep=raw.sweep,
        sweep_settings=sweep_settings,
        zones=zones,
        concurrency=raw.concurrency,
        well_known_communities=raw.well_known_communities,
    )


def _device(defaults: _Defaults, device: _Device, where: str, reader: _SecretReader) -> SnmpTarget:
    version = _version(device.version if device.version is not None else defaults.version or "2c")
    port = device.port if device.port is not None else defaults.port or 161
    timeout = device.timeout if device.timeout is not None else defaults.timeout or 2.0
    retries = device.retries if device.retries is not None else defaults.retries
    own_community = device.community is not None or device.community_file is not None
    own_usm = device.user is not None or device.auth is not None or device.priv is not None
    if version == "3" and own_community:
        key = "community" if device.community is not None else "community_file"
        raise ValueError(f"{where}.{key}: not used by SNMP v3")
    if version != "3" and own_usm:
        key = "user" if device.user is not None else "auth" if device.auth is not None else "priv"
        raise ValueError(f"{where}.{key}: only SNMP v3 uses {key}")
    source: _Common = device if (own_usm if version == "3" else own_community) else defaults
    prefix = where if source is device else "defaults"
    try:
        credentials = _credentials(version, source, prefix, reader)
    except _Missing as exc:
        raise ValueError(f"{where}: SNMP v{version} needs {exc} (here or in defaults)") from None
    return SnmpTarget(
        address=device.address,
        port=port,
        credentials=credentials,
        timeout=float(timeout),
        retries=1 if retries is None else retries,
        name=device.name,
        borders=device.borders,
    )


def _sweep_settings(defaults: _Defaults, reader: _SecretReader) -> SweepSettings:
    version = _version(defaults.version or "2c")
    try:
        credentials = _credentials(version, defaults, "defaults", reader)
    except _Missing as exc:
        raise ValueError(
            f"defaults: the sweep uses the defaults, and SNMP v{version} needs {exc}"
        ) from None
    return SweepSettings(
        port=defaults.port or 161,
        credentials=credentials,
        timeout=float(defaults.timeout or 2.0),
        retries=1 if defaults.retries is None else defaults.retries,
    )


def _credentials(
    version: SnmpVersion, source: _Common, prefix: str, reader: _SecretReader
) -> Credentials:
    if version != "3":
        if source.community is not None:
            return Credentials(version, community=source.community)
        if source.community_file is None:
            raise _Missing("a community (community or community_file)")
        community = reader.read(source.community_file, f"{prefix}.community_file")
        try:
            _community_text(community.reveal(), f"{prefix}.community_file")
        except ValueError as exc:
            raise ValueError(f"{exc} (the file's first line)") from None
        return Credentials(version, community=community)
    if source.user is None:
        raise _Missing("a user")
    auth_protocol = auth_key = priv_protocol = priv_key = None
    if source.auth is not None:
        auth_protocol = source.auth.protocol.lower()
        auth_key = _key(source.auth, f"{prefix}.auth", reader)
    if source.priv is not None:
        priv_protocol = source.priv.protocol.lower()
        priv_key = _key(source.priv, f"{prefix}.priv", reader)
    return Credentials(
        version,
        user=source.user,
        auth_protocol=auth_protocol,
        auth_key=auth_key,
        priv_protocol=priv_protocol,
        priv_key=priv_key,
    )


class _Missing(Exception):
    """A credential neither the device nor the defaults give: says which."""


def _key(spec: _KeySpec, where: str, reader: _SecretReader) -> Secret:
    if spec.key is not None:
        return spec.key
    key = reader.read(spec.key_file or "", f"{where}.key_file")
    if len(key) < MIN_V3_KEY:
        raise ValueError(
            f"{where}.key_file: the key is shorter than {MIN_V3_KEY} characters (RFC 3414)"
        )
    return key


def _path(text: str, folder: Path, key: str) -> Path:
    if "\x00" in text:
        raise ValueError(f"{key}: a path cannot hold NUL")
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else folder / path


class _SecretReader:
    """Reads each secret file once (several devices often name the same one)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cache: dict[Path, Secret] = {}

    def read(self, text: str, key: str) -> Secret:
        path = _path(text, self.folder, key)
        if path in self.cache:
            return self.cache[path]
        try:
            with path.open("rb") as handle:
                raw = handle.read(SECRET_FILE_LIMIT)
        except FileNotFoundError:
            raise ValueError(f"{key}: {path} does not exist") from None
        except IsADirectoryError:
            raise ValueError(f"{key}: {path} is a directory") from None
        except PermissionError:
            raise ValueError(f"{key}: {path} is not readable by this user") from None
        except OSError as exc:
            raise ValueError(f"{key}: {path} cannot be read ({exc.strerror})") from None
        try:
            first = raw.decode("utf-8").splitlines()[0].strip() if raw.strip() else ""
        except UnicodeDecodeError:
            raise ValueError(f"{key}: {path} is not UTF-8 text") from None
        if not first:
            raise ValueError(f"{key}: {path} is empty (the secret is its first line)")
        secret = Secret(first)
        self.cache[path] = secret
        return secret
