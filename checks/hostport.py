"""The one reading of a "host:port" address shared by the log retention check (the central log
servers a site declares) and the log gatherer (rsyslog forwarding targets), so that a target the
gatherer reads and a server the site declares are compared in the same terms.
"""

from __future__ import annotations


def parse_host_port(text: str) -> tuple[str, int | None]:
    """(host, port) of `host`, `host:port`, `[v6]` or `[v6]:port`; an address with more than one
    colon and no brackets is a bare IPv6 address without a port. The host is returned as written
    (no case folding, no whitespace trimmed); the port is None unless it is ASCII decimal digits."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    # str.isdigit alone admits digits int() refuses ("²").
    return host, int(port) if port.isascii() and port.isdigit() else None
