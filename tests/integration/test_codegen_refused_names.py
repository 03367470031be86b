"""Names the generators refuse, through their outside faces: ``eventstore generate`` and the
protoc plugin stop with the file, line and column and write no ``_es.py``, as the in-process
``generate_module`` raises. Before, both wrote an ``_es.py`` and exited 0: one a syntax error
(``from shelf_pb2 import None``), one whose builder lost its ``on_reset`` rebuild hook. Real
protoc (grpcio-tools), real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventstore.codegen import ModelError, generate_module

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLUGIN = BIN / "protoc-gen-eventsourcing"
OPTIONS_DIR = ROOT / "eventstore" / "proto"

HEAD = """\
syntax = "proto3";
package shelf.v1;
import "eventsourcing/options.proto";
message Shelf { option (eventsourcing.aggregate_root).id_field = "shelf_id"; string shelf_id = 1; }
message ShelvedEvent { option (eventsourcing.event).aggregate_name = "Shelf"; string title = 1; }
"""

CASES = {
    "keyword message": (
        HEAD + "message None { string x = 1; }\n",
        "shelf.proto:6:1:",
        "message shelf.v1.None is named like the Python keyword 'None'",
    ),
    "keyword enum": (
        HEAD + "enum class { CLASS_UNSPECIFIED = 0; }\n",
        "shelf.proto:6:1:",
        "enum shelf.v1.class is named like the Python keyword 'class'",
    ),
    "rebuild hook": (
        HEAD + 'message ResetEvent { option (eventsourcing.event).aggregate_name = "Shelf"; }\n',
        "shelf.proto:6:1:",
        "would get the projection method ShelfProjectionBuilder.on_reset",
    ),
}


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=dict(os.environ))


@pytest.mark.parametrize("case", sorted(CASES))
def test_eventstore_generate_refuses_the_name_at_its_place(tmp_path: Path, case: str) -> None:
    text, place, words = CASES[case]
    protos = tmp_path / "protos"
    protos.mkdir()
    (protos / "shelf.proto").write_text(text)
    out = tmp_path / "out"
    result = run([str(BIN / "eventstore"), "generate", str(protos), "--out", str(out)])
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{protos / place}" in result.stderr
    assert words in result.stderr
    assert not list(tmp_path.rglob("*_es.py"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_protoc_plugin_refuses_the_name_at_its_place(tmp_path: Path, case: str) -> None:
    text, place, words = CASES[case]
    (tmp_path / "shelf.proto").write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    result = run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{tmp_path}",
            f"-I{OPTIONS_DIR}",
            f"--plugin=protoc-gen-eventsourcing={PLUGIN}",
            f"--eventsourcing_out={out}",
            "shelf.proto",
        ]
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert place in result.stderr
    assert words in result.stderr
    assert not list(out.rglob("*_es.py"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_generate_module_refuses_the_same_name_at_the_same_place(case: str) -> None:
    text, place, words = CASES[case]
    with pytest.raises(ModelError) as caught:
        generate_module(text, name="shelf")
    assert str(caught.value).startswith(place)
    assert words in caught.value.message
