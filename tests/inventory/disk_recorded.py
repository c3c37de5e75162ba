"""The recorded LVM-on-LUKS server the disk tests gather from (tests/fixtures/raw/disk/his-db): a
runner answering commands from recordings, and small accessors over what `collect_disk` found."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from checks.facts import HostFacts
from checks.facts.disk import BlockDevice, DiskFacts, EncryptedVolume, Mount
from checks.host import disk as disk_checks
from checks.model import Status, Unavailable
from checks.registry import Registry
from checks.runner import evaluate
from inventory.host.disk import collect_disk
from inventory.runner import CommandFailed, CommandResult, LocalRunner, ToolMissing

RAW = Path(__file__).resolve().parent.parent / "fixtures" / "raw" / "disk"
HIS_DB = RAW / "his-db"
LUKS_UUID = "3f6c2a4e-8b1d-4c7a-9e52-1d0b6f7a9c21"
LUKS_MAPPING = f"/dev/mapper/luks-{LUKS_UUID}"
# The hex key of the plain mapping in his-db/dmsetup-table-crypt.txt.
PLAIN_KEY = (HIS_DB / "dmsetup-table-crypt.txt").read_text().split("\n")[1].split()[5]


@dataclass(frozen=True)
class Call:
    argv: tuple[str, ...]
    timeout: float


@dataclass
class RecordedRunner(LocalRunner):
    """`LocalRunner` over a recorded root, answering commands from `commands.json` (command line
    without the tool's directory → output file) plus `extra` recordings and `failures`.

    A tool in `missing`, or with no recording at all, is not installed; a known tool asked for
    an unrecorded command line fails as tools do on an unknown option.
    """

    scenario: Path = HIS_DB
    extra: Mapping[str, str] = field(default_factory=dict)
    failures: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    missing: Collection[str] = ()
    root: Path | None = None
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(root=self.root or self.scenario / "root")
        index = json.loads((self.scenario / "commands.json").read_text())
        self.recordings = {k: (self.scenario / v).read_text() for k, v in index.items()}
        self.recordings.update(self.extra)

    def _known(self, tool: str) -> bool:
        if tool in self.missing:
            return False
        lines = [*self.recordings, *self.failures]
        return any(line.split()[0] == tool for line in lines)

    def which(self, name: str) -> str | None:
        return f"/usr/sbin/{name}" if self._known(name) else None

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        self.calls.append(Call(tuple(argv), timeout))
        tool = PurePath(argv[0]).name
        line = " ".join([tool, *argv[1:]])
        if not self._known(tool):
            raise ToolMissing(f"{argv[0]} is not installed")
        if line in self.failures:
            code, stderr = self.failures[line]
            if check:
                raise CommandFailed(f"{tool} exited {code}: {stderr.strip()}", code, stderr)
            return CommandResult(tuple(argv), code, "", stderr)
        if line in self.recordings:
            return CommandResult(tuple(argv), 0, self.recordings[line], "")
        stderr = f"{tool}: unknown option -- '{argv[1:]}'\n"
        if check:
            raise CommandFailed(f"{tool} exited 1: unknown option", 1, stderr)
        return CommandResult(tuple(argv), 1, "", stderr)

    def ran(self, tool: str) -> list[tuple[str, ...]]:
        return [c.argv for c in self.calls if PurePath(c.argv[0]).name == tool]


def gather(**kwargs: object) -> tuple[DiskFacts, RecordedRunner]:
    runner = RecordedRunner(**kwargs)  # type: ignore[arg-type]
    facts = collect_disk(runner)
    assert isinstance(facts, DiskFacts), facts
    return facts, runner


def by_path(facts: DiskFacts) -> dict[str, EncryptedVolume]:
    assert isinstance(facts.volumes, tuple)
    return {v.device: v for v in facts.volumes}


def mounts(facts: DiskFacts) -> dict[str, Mount]:
    assert isinstance(facts.mounts, tuple)
    return {m.mountpoint: m for m in facts.mounts}


def devices(facts: DiskFacts) -> dict[str, BlockDevice]:
    assert isinstance(facts.block_devices, tuple)
    return {d.kname: d for d in facts.block_devices}


DISK_CHECKS = Registry.from_modules([disk_checks])


def results(facts: DiskFacts | Unavailable) -> dict[tuple[str, str | None], Status]:
    return {(r.check_id, r.target): r.status for r in evaluate(DISK_CHECKS, HostFacts(disk=facts))}
