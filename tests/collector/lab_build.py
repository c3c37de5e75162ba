"""Building a hospital-in-a-box lab in tests: whether this machine can (root, the tools, network
namespaces), a folder the lab's daemons can read, and the proof that `down` left nothing behind
(no namespace, no link in the root namespace, no process, no folder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from collector.lab import Lab, LabUnavailable
from collector.lab import netns as lab_netns
from collector.lab.host import preflight

PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
IP = shutil.which("ip", path=PATH) or "/usr/sbin/ip"


def cannot_build() -> str | None:
    """Why no lab can be built here, or None."""
    try:
        preflight()
    except LabUnavailable as exc:
        return str(exc)
    name = f"medsec-probe-{os.getpid()}"
    made = subprocess.run(
        [IP, "netns", "add", name], capture_output=True, text=True, timeout=10, check=False
    )
    if made.returncode != 0:
        return f"`ip netns add` is impossible here: {made.stderr.strip()}"
    subprocess.run([IP, "netns", "del", name], capture_output=True, timeout=10, check=False)
    return None


def lab_folder() -> str:
    # Not under pytest's tmp_path: /tmp/pytest-of-root is 0700, and sshd reads the probe's
    # authorized_keys as that user; the web servers' workers run as www-data.
    folder = tempfile.mkdtemp(prefix="medsec-lab-test-")
    os.chmod(folder, 0o755)  # noqa: S103 - must be traversable, holds nothing secret yet
    return folder


OTHERS = ("msb", "msv")
"""Root-namespace links of the Ansible test hosts, which may run beside a lab."""


def root_links() -> set[str]:
    out = subprocess.run(
        [IP, "-o", "link", "show"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def namespace_ids(lab: Lab) -> set[int]:
    return {os.stat(lab_netns.netns_path(name)).st_ino for name in lab.existing_namespaces()}


def assert_nothing_left(lab: Lab, namespace_ids: set[int], root_links_before: set[str]) -> None:
    assert not [name for name in os.listdir("/run/netns") if name.startswith(lab.prefix)]
    # The lab adds nothing to the root namespace. Links another worker's Ansible hosts hold
    # there (tests/ansible/hosts.py: bridge msb*, veths msv*) come and go on their own.
    appeared = {link for link in root_links() - root_links_before if not link.startswith(OTHERS)}
    assert appeared == set()
    assert not lab.directory.exists()
    survivors = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            inode = os.stat(f"/proc/{entry}/ns/net").st_ino
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if inode in namespace_ids or str(lab.directory).encode() in cmdline:
            survivors.append(entry)
    assert survivors == []
