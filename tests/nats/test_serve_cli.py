"""``eventstore serve``: its arguments and module loading (serving: test_service_processes)."""

from __future__ import annotations

import pytest

from eventstore.cli import main
from eventstore.serve import load_factory


def test_serve_needs_one_nats_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "tests.nats.service_app", "--store", "sqlite://"]) == 2
    assert "--nats URL" in capsys.readouterr().err
    both = ["--nats", "nats://127.0.0.1:1", "--embedded"]
    assert main(["serve", "tests.nats.service_app", "--store", "sqlite://", *both]) == 2
    assert "not both" in capsys.readouterr().err


def test_load_factory_names_what_is_missing() -> None:
    _, factory = load_factory("tests.nats.service_app")
    assert factory.__name__ == "services"
    with pytest.raises(SystemExit, match="cannot import module 'no_such_module_here'"):
        load_factory("no_such_module_here")
    with pytest.raises(SystemExit, match="has no function 'nothing'"):
        load_factory("tests.nats.service_app:nothing")
