"""The protoc plugin writes ``_pb2`` modules that import the options from inside eventstore,
so its output imports beside the ``eventsourcing`` library (DESIGN decision 12). Real protoc
(grpcio-tools), the installed plugin, imports in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "proto" / "examples"
PLUGIN = Path(sys.executable).parent / "protoc-gen-eventsourcing"
OPTIONS_DIR = ROOT / "eventstore" / "proto"
KEYWORD_PROTO = """\
syntax = "proto3";
package school.v1;
import "eventsourcing/options.proto";
message Thing { option (eventsourcing.aggregate_root).id_field = "id"; string id = 1; }
message Counted { option (eventsourcing.event).aggregate_name = "Thing"; }
"""


def env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def protoc(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{OPTIONS_DIR}",
            f"--plugin=protoc-gen-eventsourcing={PLUGIN}",
            f"--eventsourcing_out={out}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
    )


@pytest.fixture(scope="module")
def plugin_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    protos = tmp_path_factory.mktemp("protos")
    (protos / "class" / "v1").mkdir(parents=True)
    (protos / "class" / "v1" / "thing.proto").write_text(KEYWORD_PROTO)
    out = tmp_path_factory.mktemp("out")
    result = protoc(
        out, f"-I{EXAMPLES}", f"-I{protos}", "bank/account.proto", "class/v1/thing.proto"
    )
    assert result.returncode == 0, result.stderr
    return out


def test_plugin_writes_pb2_modules_importing_the_options_from_eventstore(plugin_out: Path) -> None:
    for name in ("bank/account_pb2.py", "bank/account_pb2.pyi", "class/v1/thing_pb2.py"):
        text = (plugin_out / name).read_text()
        assert "from eventstore.proto.eventsourcing import options_pb2" in text
        assert "from eventsourcing import" not in text
    assert not (plugin_out / "eventsourcing").exists()


def test_plugin_pb2_is_what_eventstore_generate_writes(tmp_path: Path) -> None:
    result = protoc(tmp_path, f"-I{EXAMPLES / 'bank'}", "account.proto")
    assert result.returncode == 0, result.stderr
    checked_in = ROOT / "examples" / "bankaccount" / "generated"
    for name in ("account_pb2.py", "account_pb2.pyi", "account_es.py"):
        assert (tmp_path / name).read_text() == (checked_in / name).read_text(), name


def test_plugin_output_imports_beside_the_eventsourcing_library(plugin_out: Path) -> None:
    script = textwrap.dedent("""\
        import importlib, sys
        import eventsourcing  # the library of that name is installed in this environment
        from bank.account_es import AccountAggregate, AccountOpenedEvent
        thing = importlib.import_module("class.v1.thing_es")
        assert "eventsourcing.options_pb2" not in sys.modules
        print(AccountAggregate.aggregate_type, thing.ThingAggregate.aggregate_type)
        """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=plugin_out,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env(), "PYTHONPATH": os.pathsep.join([str(plugin_out), env()["PYTHONPATH"]])},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Account", "Thing"]
