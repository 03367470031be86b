"""The one ``store`` fixture of the contract suite, parametrised over every adapter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .adapters import ADAPTERS, Adapter


@pytest.fixture(params=ADAPTERS, ids=str)
def adapter(request: pytest.FixtureRequest) -> Adapter:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def store(adapter: Adapter, tmp_path: Path) -> Iterator[Any]:
    opened = adapter.open(tmp_path)
    try:
        yield opened
    finally:
        opened.close()
