"""Every file the packages read at run time (templates, stylesheets, rules, catalogs, units,
migrations) is declared as package data, so an installed medsec — a wheel in the offline bundle,
a host converged by Ansible — has what a checkout has. A file left undeclared works in every test
run from the checkout and fails only once installed."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "checks", "collector", "inventory")


def declared() -> list[tuple[str, str]]:
    """(package folder, glob relative to it) from `tool.setuptools.package-data`."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    data = config["tool"]["setuptools"]["package-data"]
    return [(package.replace(".", "/"), glob) for package, globs in data.items() for glob in globs]


def test_every_data_file_of_the_packages_is_declared() -> None:
    globs = declared()
    undeclared = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*")):
            relative = path.relative_to(REPO).as_posix()
            if path.is_dir() or "__pycache__" in relative or path.suffix in (".py", ".pyc"):
                continue
            if not any(
                relative.startswith(f"{folder}/")
                and fnmatch.fnmatchcase(relative.removeprefix(f"{folder}/"), glob)
                for folder, glob in globs
            ):
                undeclared.append(relative)
    assert undeclared == [], "add these to tool.setuptools.package-data in pyproject.toml"


def test_the_declared_globs_each_match_a_file() -> None:
    stale = [
        f"{folder}: {glob}" for folder, glob in declared() if not list((REPO / folder).glob(glob))
    ]
    assert stale == []
