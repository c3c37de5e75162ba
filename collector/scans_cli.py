"""`medsec scans` (being written)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_scans_parser(
    sub: argparse._SubParsersAction[Any],
    parser_class: type[argparse.ArgumentParser],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    sub.add_parser("scans", help="(being written)")


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("medsec scans is being written")
