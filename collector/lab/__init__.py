"""The hospital-in-a-box lab (`medsec lab up|down|status|fault`): zones as network namespaces
joined by a router enforcing the zones file's policy, a WAF-fronted portal, an unprotected app,
the HIS database and web app behind an mTLS gateway, the firewall's SNMP agent and an SSH vantage,
plus switches for the faults a scan must catch. Addresses are 198.18.0.0/15 only; nothing routes
out of the lab. See `Lab` for the Python API and `topology` for every address and name.
"""

from collector.lab.host import LabError, LabUnavailable
from collector.lab.lab import Lab, default_dir, default_prefix
from collector.lab.state import DaemonStatus, DownReport, LabStatus
from collector.lab.topology import FAULTS, PERSONAS

__all__ = [
    "FAULTS",
    "PERSONAS",
    "DaemonStatus",
    "DownReport",
    "Lab",
    "LabError",
    "LabStatus",
    "LabUnavailable",
    "default_dir",
    "default_prefix",
]
