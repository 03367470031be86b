"""``_pb2`` modules made from descriptors are protoc's ``--python_out``, options relocated."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore.codegen.compiler import compile_files, run_protoc, well_known_include
from eventstore.codegen.errors import ProtoCompileError
from eventstore.codegen.python_out import python_modules, relocate_options_import
from eventstore.proto import INCLUDE_DIR

PROTO = """\
syntax = "proto3";
package j.v1;
import "eventsourcing/options.proto";
import "google/protobuf/descriptor.proto";
message Box {
  option (eventsourcing.aggregate_root).id_field = "box_id";
  string box_id = 1;
  int64 renamed_field = 2 [json_name = "custom"];
  message Inner { string deep_name = 1; }
  Inner inner_box = 4;
  extend google.protobuf.FieldOptions { string field_note = 50100; }
}
extend google.protobuf.MessageOptions { string box_note = 50101; }
"""


def test_modules_from_descriptors_are_protocs_python_output(tmp_path: Path) -> None:
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "box.proto").write_text(PROTO)
    files = compile_files(["j/box.proto"], [tmp_path])
    made = dict(python_modules(["j/box.proto", "eventsourcing/options.proto"], files.file))
    assert sorted(made) == ["j/box_pb2.py", "j/box_pb2.pyi"]
    direct = tmp_path / "direct"
    direct.mkdir()
    code, err = run_protoc(
        [
            *(f"-I{INCLUDE_DIR}", f"-I{tmp_path}", f"-I{well_known_include()}"),
            *(f"--python_out={direct}", f"--pyi_out={direct}", "j/box.proto"),
        ]
    )
    assert code == 0, err
    for name, text in made.items():
        assert text == relocate_options_import((direct / name).read_text())
    assert "from eventstore.proto.eventsourcing import options_pb2" in made["j/box_pb2.py"]


def test_eventstores_own_protos_are_never_written(tmp_path: Path) -> None:
    files = compile_files(["eventsourcing/options.proto"], [])
    assert python_modules(["eventsourcing/options.proto"], files.file) == []


def test_descriptors_missing_an_import_are_a_compile_error(tmp_path: Path) -> None:
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "box.proto").write_text(PROTO)
    box = compile_files(["j/box.proto"], [tmp_path]).file[-1]
    with pytest.raises(ProtoCompileError) as caught:
        python_modules(["j/box.proto"], [box])
    assert "eventsourcing/options.proto" in str(caught.value)
