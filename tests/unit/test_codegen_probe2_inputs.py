"""What ``generate_module`` is given: proto files on disk (``paths=``) and proto text by name.

A file protoc would not read (another file under the same name) and a name that would
write outside the compile folder are refused before anything is compiled or written.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

from eventstore.codegen import generate_module

HEAD = 'syntax = "proto3";\npackage {package};\nimport "eventsourcing/options.proto";\n'


def aggregate_proto(package: str, name: str) -> str:
    return HEAD.format(package=package) + (
        f"message {name} {{ option (eventsourcing.aggregate_root).id_field = 'id';"
        " string id = 1; }\n"
        f"message {name}Made {{ option (eventsourcing.event).aggregate_name = '{name}'; }}\n"
    )


@pytest.fixture
def same_base_names(tmp_path: Path) -> tuple[Path, Path]:
    """``billing/model.proto`` (aggregate Invoice) and ``crm/model.proto`` (Contact)."""
    billing, crm = tmp_path / "billing" / "model.proto", tmp_path / "crm" / "model.proto"
    billing.parent.mkdir()
    crm.parent.mkdir()
    billing.write_text(aggregate_proto("billing.v1", "Invoice"))
    crm.write_text(aggregate_proto("crm.v1", "Contact"))
    return billing, crm


# -- paths=: two files protoc would read under one name -----------------------------------
def test_two_paths_with_one_base_name_are_refused_naming_both_and_the_fix(
    same_base_names: tuple[Path, Path], tmp_path: Path
) -> None:
    billing, crm = same_base_names
    with pytest.raises(ValueError) as caught:
        generate_module(paths=[billing, crm], name="two_models")
    message = str(caught.value)
    assert repr(str(billing)) in message and repr(str(crm)) in message
    assert "would both be compiled as 'model.proto'" in message
    assert f"include_paths=[{str(tmp_path)!r}]" in message
    assert "'billing/model.proto' and 'crm/model.proto'" in message


def test_two_paths_with_one_base_name_compile_both_under_a_common_include_path(
    same_base_names: tuple[Path, Path], tmp_path: Path
) -> None:
    module = generate_module(
        paths=list(same_base_names), include_paths=[tmp_path], name="two_models_rooted"
    )
    assert module.__es_model__.summary()["aggregates"] == ["Invoice", "Contact"]
    assert hasattr(module, "ContactAggregate") and hasattr(module, "InvoiceAggregate")


def test_relative_paths_get_a_relative_include_path_in_the_fix(
    same_base_names: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path.parent)
    billing, crm = (os.path.relpath(p) for p in same_base_names)
    with pytest.raises(ValueError) as caught:
        generate_module(paths=[billing, crm], name="two_models_relative")
    assert f"include_paths=[{tmp_path.name!r}]" in str(caught.value)


def test_a_path_that_an_earlier_include_path_shadows_is_refused(tmp_path: Path) -> None:
    shadowing = tmp_path / "lib" / "model.proto"
    given = tmp_path / "app" / "model.proto"
    shadowing.parent.mkdir()
    given.parent.mkdir()
    shadowing.write_text(aggregate_proto("lib.v1", "Invoice"))
    given.write_text(aggregate_proto("app.v1", "Contact"))
    with pytest.raises(ValueError) as caught:
        generate_module(paths=[given], include_paths=[shadowing.parent], name="shadowed")
    message = str(caught.value)
    assert repr(str(given)) in message and repr(str(shadowing)) in message
    assert "include_paths" in message


def test_the_same_file_given_twice_is_compiled_once(same_base_names: tuple[Path, Path]) -> None:
    billing, _ = same_base_names
    module = generate_module(paths=[billing, billing], name="one_model_twice")
    assert module.__es_model__.summary()["aggregates"] == ["Invoice"]


# -- {name: text}: names that would leave the compile folder --------------------------------
TEXT = 'syntax = "proto3";\npackage dd;\nmessage Ping { string text = 1; }\n'


@pytest.mark.parametrize(
    ("make_name", "cause"),
    [
        (lambda unique: f"../{unique}.proto", "climbs out of its folder with '..'"),
        (lambda unique: f"shop/../../{unique}.proto", "climbs out of its folder with '..'"),
        (lambda unique: f"{tempfile.gettempdir()}/{unique}.proto", "is an absolute path"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute"],
)
def test_a_source_name_outside_the_compile_folder_is_refused_and_nothing_is_written(
    make_name: object, cause: str
) -> None:
    unique = f"es-probe-{uuid.uuid4().hex}"
    name = make_name(unique)  # type: ignore[operator]
    with pytest.raises(ValueError) as caught:
        generate_module({name: TEXT}, name="escape")
    message = str(caught.value)
    assert f"proto file name {name!r}" in message and cause in message
    assert "use a relative name such as 'shop/order.proto'" in message
    assert not (Path(tempfile.gettempdir()) / f"{unique}.proto").exists()


def test_an_absolute_source_name_leaves_the_file_at_that_path_as_it_was(tmp_path: Path) -> None:
    victim = tmp_path / "notes.proto"
    victim.write_text("// my own file, not to be touched\n")
    with pytest.raises(ValueError, match="is an absolute path"):
        generate_module({"ok.proto": TEXT, str(victim): TEXT}, name="victim")
    assert victim.read_text() == "// my own file, not to be touched\n"


def test_an_empty_source_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'' .* is not a file name"):
        generate_module({"": TEXT}, name="empty_name")


@pytest.mark.parametrize("name", ["./order.proto", "shop//order.proto", "shop/order.proto/"])
def test_a_source_name_protoc_cannot_resolve_is_refused_naming_it(name: str) -> None:
    with pytest.raises(ValueError) as caught:
        generate_module({name: TEXT}, name="unresolvable")
    assert f"proto file name {name!r}" in str(caught.value)
    assert "'shop/order.proto'" in str(caught.value)


def test_a_relative_nested_source_name_still_compiles() -> None:
    module = generate_module({"shop/v1/order.proto": TEXT}, name="nested_name")
    assert module.Ping(text="x").text == "x"


def test_a_posix_name_with_a_letter_and_a_colon_is_no_absolute_path_off_windows():
    # "c:order.proto" was refused as a Windows drive on every OS (this suite runs on POSIX).
    module = generate_module(
        {"c:order.proto": 'syntax = "proto3";\npackage s.v1;\nmessage M { string a = 1; }\n'},
        name="probe2_colon_name",
    )
    assert module.M(a="x").a == "x"
    with pytest.raises(ValueError, match="is an absolute path"):
        generate_module({"c:\\order.proto": "syntax = 'proto3';"}, name="probe2_drive")
