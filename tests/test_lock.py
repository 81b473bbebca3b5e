"""The locked set: every dependency pinned with hashes, and what `make install` installed."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
_PIN = re.compile(r"^([^=\s][^=]*?)==(\S+)(?: ; (.+?))? \\$")


def _pins(lock: str) -> dict[str, list[tuple[str, Requirement]]]:
    """Each package of a lock file: its pinned versions (with their markers)."""
    lines = (ROOT / lock).read_text(encoding="utf-8").splitlines()
    pins: dict[str, list[tuple[str, Requirement]]] = {}
    for n, line in enumerate(lines):
        if match := _PIN.match(line):
            assert lines[n + 1].strip().startswith("--hash=sha256:"), line  # hashed, every one
            name, pinned, marker = match.groups()
            requirement = Requirement(f"{name}=={pinned}" + (f"; {marker}" if marker else ""))
            pins.setdefault(canonicalize_name(requirement.name), []).append((pinned, requirement))
    return pins


@pytest.mark.parametrize(
    ("lock", "declared"),
    [
        ("requirements.txt", PROJECT["dependencies"]),
        ("requirements-dev.txt", PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]),
    ],
)
def test_the_lock_pins_every_declared_dependency_within_its_range(
    lock: str, declared: list[str]
) -> None:
    pins = _pins(lock)
    for text in declared:
        wanted = Requirement(text)
        versions = [pinned for pinned, _ in pins.get(canonicalize_name(wanted.name), [])]
        assert versions, f"{wanted.name} is not in {lock}: run make lock"
        assert all(wanted.specifier.contains(v) for v in versions), (text, versions)


def test_make_install_installed_exactly_the_locked_versions() -> None:
    for name, choices in _pins("requirements-dev.txt").items():
        for pinned, requirement in choices:
            if requirement.marker is None or requirement.marker.evaluate():
                assert version(name) == pinned, f"{name}: run make install"
