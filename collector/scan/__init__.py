"""Network scans of a hospital's zones (`medsec scan`): the zones file (`zones`), nmap run from a
vantage inside each zone and its XML parsed with reasons kept (`nmap`, `vantage`), HTTP/TLS/SNMP
probes (`probe_cli`), one scan of everything at once (`runner.scan() -> NetFacts`) and the
command line (`cli`). The checks over the facts live in `checks.net`.

Nothing is imported here: `medsec` starts without loading paramiko, pysnmp or asyncio machinery.
"""

SCAN_HOST_PREFIX = "scan:"
"""The host ids of scans stored as reports (`cli.results_to_report`): they belong to the collector's
scanner, and agents may not report them."""
