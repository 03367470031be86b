"""The pytest plugin of ``eventstore.testing`` (entry point ``pytest11``: ``eventstore``).

It loads in every pytest run where eventstore is installed, so it imports
nothing but pytest at import time: the kits (and protobuf, SQLite, the core)
are imported when a test asks for a fixture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def command_kit() -> Iterator[Callable[..., Any]]:
    """``command_kit(repository, handler)``: a ``CommandKit`` whose stores close after the test."""
    from . import CommandKit

    kits: list[Any] = []

    def make(*args: Any, **kwargs: Any) -> Any:
        kit = CommandKit(*args, **kwargs)
        kits.append(kit)
        return kit

    yield make
    for kit in kits:
        kit.close()


@pytest.fixture
def projection_kit() -> Callable[..., Any]:
    """``projection_kit(projection, state)``: a ``ProjectionKit``."""
    from . import ProjectionKit

    return ProjectionKit


@pytest.fixture
def process_kit() -> Callable[..., Any]:
    """``process_kit(manager_factory)``: a ``ProcessKit``."""
    from . import ProcessKit

    return ProcessKit
