"""The shipped options protos: Go-compatible names and numbers, and no top-level package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eventstore.codegen.bootstrap import BootstrapError, build
from eventstore.proto import INCLUDE_DIR
from eventstore.proto.eventsourcing import options_pb2, response_pb2

from .conftest import ROOT


def test_extension_names_and_numbers_match_the_go_original() -> None:
    assert (options_pb2.service.full_name, options_pb2.service.number) == (
        "eventsourcing.service",
        50002,
    )
    assert (options_pb2.aggregate_root.full_name, options_pb2.aggregate_root.number) == (
        "eventsourcing.aggregate_root",
        50003,
    )
    assert (options_pb2.event.full_name, options_pb2.event.number) == ("eventsourcing.event", 50004)
    fields = {
        m.name: [(f.name, f.number) for f in m.fields]
        for m in options_pb2.DESCRIPTOR.message_types_by_name.values()
    }
    assert fields["ServiceOptions"] == [("aggregate_name", 1), ("aggregate_root_message", 2)]
    assert fields["AggregateRootOptions"][:2] == [("id_field", 1), ("type_name", 2)]
    assert fields["EventOptions"] == [("aggregate_name", 1)]
    response = response_pb2.Response.DESCRIPTOR
    assert [(f.name, f.number) for f in response.fields] == [
        ("success", 1),
        ("error", 2),
        ("data", 3),
    ]


def test_checked_in_modules_match_the_proto_files(tmp_path: Path) -> None:
    for fresh in build(tmp_path):
        shipped = INCLUDE_DIR / "eventsourcing" / fresh.name
        assert fresh.read_text() == shipped.read_text(), (
            f"{shipped} is stale: run python -m eventstore.codegen.bootstrap"
        )


def test_bootstrap_failure_shows_protocs_message_and_the_fix(tmp_path: Path) -> None:
    protos = tmp_path / "proto"
    shutil.copytree(ROOT / "proto" / "eventsourcing", protos / "eventsourcing")
    options = protos / "eventsourcing" / "options.proto"
    text = options.read_text()
    options.write_text(text.replace("message ServiceOptions", "mesage ServiceOptions", 1))
    line = text[: text.index("message ServiceOptions")].count("\n") + 1
    with pytest.raises(BootstrapError) as caught:
        build(tmp_path / "out", proto_root=protos)
    message = str(caught.value)
    assert caught.value.exit_code == 1
    assert f"options.proto:{line}:1: Expected top-level statement" in message
    assert message.endswith("run python -m eventstore.codegen.bootstrap again.")
    assert not (tmp_path / "out").exists()


def test_repository_copies_equal_the_shipped_protos() -> None:
    for name in ("options.proto", "response.proto"):
        shipped = (INCLUDE_DIR / "eventsourcing" / name).read_text()
        assert (ROOT / "proto" / "eventsourcing" / name).read_text() == shipped


def test_generating_never_imports_a_top_level_eventsourcing_module() -> None:
    script = (
        "import sys\n"
        "from eventstore.codegen import generate_module\n"
        "generate_module(open(sys.argv[1]).read(), name='bank')\n"
        "assert 'eventsourcing' not in sys.modules, sys.modules['eventsourcing']\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(ROOT / "proto/examples/bank/account.proto")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
