"""`medsec`: the collector's CLI. The service itself is not built yet; this says so plainly."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        print("medsec 0.1.0")
        return 0
    print(
        "medsec: the collector is not built yet; use medsec-agent on each server for now",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
