"""The files the generator writes: the protoc plugin on edition protos, and
``eventstore generate`` run again into the same folder.

Real protoc (grpcio-tools) runs the installed plugin in a subprocess; the CLI runs in
this process on real folders.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from eventstore.cli import generate, main
from eventstore.codegen import generate_module
from eventstore.codegen.compiler import run_protoc
from eventstore.codegen.plugin import MAXIMUM_EDITION, MINIMUM_EDITION

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = Path(sys.executable).parent / "protoc-gen-eventsourcing"
OPTIONS_DIR = ROOT / "eventstore" / "proto"


def edition_name(edition: int) -> str:
    """``descriptor_pb2.EDITION_2024`` -> ``"2024"``, as a proto's ``edition =`` line says."""
    return descriptor_pb2.Edition.Name(edition).removeprefix("EDITION_")


def plugin(out: Path, include: Path, *files: str) -> subprocess.CompletedProcess[str]:
    out.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{include}",
            f"-I{OPTIONS_DIR}",
            f"--plugin=protoc-gen-eventsourcing={PLUGIN}",
            f"--eventsourcing_out={out}",
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": path},
    )


def files_under(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*.py*")}


# -- the plugin on edition protos ----------------------------------------------------------
EDITION_PROTO = """\
edition = "{edition}";
package ed.v1;
import "eventsourcing/options.proto";
message ThingState {{
  option (eventsourcing.aggregate_root) = {{ id_field: "thing_id" }};
  string thing_id = 1;
  int32 count = 2;
}}
message ThingMadeEvent {{ option (eventsourcing.event).aggregate_name = "ThingState"; }}
"""


@pytest.mark.parametrize("edition", ["2023", "2024"])
def test_plugin_writes_for_an_edition_proto_what_generate_and_generate_module_accept(
    tmp_path: Path, edition: str
) -> None:
    protos = tmp_path / "protos"
    (protos / "ed").mkdir(parents=True)
    (protos / "ed" / "thing.proto").write_text(EDITION_PROTO.format(edition=edition))
    generate(protos, tmp_path / "cli")
    module = generate_module(
        paths=[protos / "ed" / "thing.proto"], include_paths=[protos], name="edition"
    )
    assert module.__es_model__.summary()["aggregates"] == ["ThingState"]
    result = plugin(tmp_path / "plugin", protos, "ed/thing.proto")
    assert result.returncode == 0, result.stderr
    written = files_under(tmp_path / "plugin")
    assert sorted(written) == ["ed/thing_es.py", "ed/thing_pb2.py", "ed/thing_pb2.pyi"]
    assert written == files_under(tmp_path / "cli")


def test_plugin_declares_the_editions_the_python_generator_it_runs_supports(
    tmp_path: Path,
) -> None:
    # grpcio-tools' Python generator (which the plugin and the CLI run) takes the newest
    # declared edition and refuses the next one: the declaration follows the generator.
    assert MINIMUM_EDITION == descriptor_pb2.EDITION_PROTO2
    later = min(
        e
        for e in descriptor_pb2.Edition.values()
        if MAXIMUM_EDITION < e < descriptor_pb2.EDITION_UNSTABLE
    )
    for edition, accepted in ((MAXIMUM_EDITION, True), (later, False)):
        (tmp_path / "e.proto").write_text(
            f'edition = "{edition_name(edition)}";\npackage e;\nmessage M {{ string a = 1; }}\n'
        )
        code, err = run_protoc([f"-I{tmp_path}", f"--python_out={tmp_path}", "e.proto"])
        assert (code == 0) is accepted, (edition_name(edition), err)


def test_plugin_refuses_an_edition_later_than_it_declares_with_protocs_message(
    tmp_path: Path,
) -> None:
    (tmp_path / "late.proto").write_text('edition = "UNSTABLE";\npackage l;\nmessage M {}\n')
    result = plugin(tmp_path / "out", tmp_path, "late.proto")
    assert result.returncode != 0
    assert "late.proto" in result.stderr and "edition" in result.stderr
    assert not any((tmp_path / "out").iterdir())


# -- eventstore generate into the same folder again -------------------------------------------
ACC = """\
syntax = "proto3";
package a.v1;
import "eventsourcing/options.proto";
message Acc { option (eventsourcing.aggregate_root) = { id_field: "acc_id" }; string acc_id = 1; }
message Opened { option (eventsourcing.event).aggregate_name = "Acc"; }
message OpenCommand { string acc_id = 1; }
message Ack { int64 version = 1; }
service AccCommandService { rpc Open(OpenCommand) returns (Ack); }
"""
OPS = """\
syntax = "proto3";
package b.v1;
message Ping { string text = 1; }
service OpsService { rpc Echo(Ping) returns (Ping); }
"""
OPS_WITHOUT_SERVICE = 'syntax = "proto3";\npackage b.v1;\nmessage Ping { string text = 1; }\n'


def write_protos(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def run_cli(protos: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    assert main(["generate", str(protos), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_generating_again_removes_the_es_and_sdk_files_this_run_no_longer_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    protos = write_protos(tmp_path / "protos", {"a/v1/acc.proto": ACC, "b/v1/ops.proto": OPS})
    out = tmp_path / "out"
    run_cli(protos, out, capsys)
    assert (out / "es_sdk.py").exists() and (out / "b" / "v1" / "ops_es.py").exists()
    write_protos(protos, {"b/v1/ops.proto": OPS_WITHOUT_SERVICE})
    stdout, stderr = run_cli(protos, out, capsys)
    assert not (out / "es_sdk.py").exists()
    assert not (out / "b" / "v1" / "ops_es.py").exists()
    assert (out / "b" / "v1" / "ops_pb2.py").exists() and (out / "a" / "v1" / "acc_es.py").exists()
    assert f"eventstore generate: removed {out / 'b' / 'v1' / 'ops_es.py'}, which an earlier " in (
        stderr
    )
    assert f"eventstore generate: removed {out / 'es_sdk.py'}, which an earlier run" in stderr
    assert "ops_es.py" not in stdout and "es_sdk.py" not in stdout


def test_generating_again_keeps_files_of_those_names_that_a_user_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    protos = write_protos(
        tmp_path / "protos", {"a/v1/acc.proto": ACC, "b/v1/ops.proto": OPS_WITHOUT_SERVICE}
    )
    out = tmp_path / "out"
    mine = {
        out / "b" / "v1" / "ops_es.py": '"""My own helpers for b.v1."""\n',
        out / "es_sdk.py": "# my SDK\nfrom a.v1.acc_es import SDK\n",
    }
    for path, text in mine.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _, stderr = run_cli(protos, out, capsys)
    assert "removed" not in stderr
    for path, text in mine.items():
        assert path.read_text() == text


def test_generating_again_keeps_an_es_file_generated_from_another_proto(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A generated b/v1/ops_es.py names the proto it came from; another proto's is kept.
    protos = write_protos(tmp_path / "protos", {"b/v1/ops.proto": OPS})
    out = tmp_path / "out"
    run_cli(protos, out, capsys)
    elsewhere = tmp_path / "elsewhere"
    text = (out / "b" / "v1" / "ops_es.py").read_text()
    (elsewhere / "b" / "v1").mkdir(parents=True)
    (elsewhere / "b" / "v1" / "ops_es.py").write_text(text.replace("b/v1/ops.proto", "x.proto"))
    write_protos(tmp_path / "protos", {"b/v1/ops.proto": OPS_WITHOUT_SERVICE})
    _, stderr = run_cli(protos, elsewhere, capsys)
    assert "removed" not in stderr
    assert (elsewhere / "b" / "v1" / "ops_es.py").exists()


def test_generating_other_protos_into_the_same_folder_keeps_their_run_sdk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    first = write_protos(tmp_path / "first", {"a/v1/acc.proto": ACC, "b/v1/ops.proto": OPS})
    run_cli(first, out, capsys)
    sdk = (out / "es_sdk.py").read_text()
    second = write_protos(tmp_path / "second", {"c/v1/one.proto": OPS.replace("b.v1", "c.v1")})
    _, stderr = run_cli(second, out, capsys)
    assert "removed" not in stderr
    assert (out / "es_sdk.py").read_text() == sdk
