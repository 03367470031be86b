"""The second probe of the notebook layer: secrets in the session, 64-bit payloads,
map keys in the form, names %%es_generate and %es_store refuse, enum pictures."""

from __future__ import annotations

import sys
from types import ModuleType
from urllib.parse import urlsplit, urlunsplit

import pytest
from IPython.utils.capture import capture_output

from eventstore import SQLiteEventStore
from eventstore.codegen import generate_module
from eventstore.notebook import frames
from eventstore.notebook.magics import MagicError, generated_names
from eventstore.notebook.widgets import CommandForm, FormValueError


# -- the session never shows a store URL's password -------------------------------------------
def with_password(dsn: str, password: str) -> str:
    """``dsn`` with ``password`` (the embedded server trusts local users, so any will do)."""
    parts = urlsplit(dsn)
    if parts.password:
        return dsn
    host = parts.hostname or "localhost"
    netloc = f"{parts.username or 'postgres'}:{password}@{host}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit(parts._replace(netloc=netloc))


def test_es_session_and_its_store_path_hide_a_postgresql_password(shell):
    from tests.support import postgres

    url = with_password(postgres.server_dsn(), "S3cretPw")
    secret = urlsplit(url).password
    shell.user_ns["url"] = f"{url}?schema={postgres.fresh_schema()}"
    with capture_output() as captured:
        result = shell.run_cell("%es_store $url")
        shown = shell.run_cell("es_session")
    assert result.success, result.error_in_exec
    session = shell.user_ns["es_session"]
    try:
        assert shell.user_ns["store"].head_position() == 0  # opened with the password
        assert secret not in captured.stdout
        assert secret not in repr(shown.result)
        assert secret not in session.store_path
        assert session.store_path.startswith(f"postgresql://{urlsplit(url).username}:***@")
        assert repr(shown.result).startswith("<NotebookSession postgresql://")
    finally:
        shell.user_ns["store"].close()


# -- expand_payload with 64-bit unsigned values -------------------------------------------------
METER = """syntax = "proto3";
package meter.v1;
import "eventsourcing/options.proto";
message MeterState {
  option (eventsourcing.aggregate_root) = { id_field: "meter_id" type_name: "Meter" };
  string meter_id = 1;
}
message ReadingTakenEvent {
  option (eventsourcing.event).aggregate_name = "Meter";
  uint64 counter = 1;
}
message MeterAdjustedEvent {
  option (eventsourcing.event).aggregate_name = "Meter";
  int64 counter = 1;
}
"""


class MeterApplier:
    def apply_reading_taken_event(self, agg, event):
        pass

    def apply_meter_adjusted_event(self, agg, event):
        pass


@pytest.fixture(scope="module")
def meter() -> ModuleType:
    return generate_module(METER, name="probe2_meter")


def save_meter(store: SQLiteEventStore, meter: ModuleType, *events: object) -> object:
    repo = meter.MeterRepository(store, MeterApplier())
    aggregate = repo.factory("m-1")
    for event in events:
        aggregate.apply_change(event)
    repo.save(aggregate)
    return repo


def test_expanded_uint64_values_above_the_int64_range_make_a_uint64_column(store, meter):
    top = 2**64 - 1
    repo = save_meter(
        store, meter, meter.ReadingTakenEvent(counter=5), meter.ReadingTakenEvent(counter=top)
    )
    frame = frames.store_events_frame(store, types=repo, expand_payload=True)
    assert str(frame["payload.counter"].dtype) == "UInt64"
    assert frame["payload.counter"].tolist() == [5, top]
    last = frames.store_events_frame(store, types=repo, expand_payload=True, last=1)
    assert last["payload.counter"].tolist() == [top]


def test_expanded_integers_no_64_bit_type_holds_make_an_object_column_of_ints(store, meter):
    top = 2**64 - 1
    repo = save_meter(
        store,
        meter,
        meter.MeterAdjustedEvent(counter=-1),
        meter.ReadingTakenEvent(counter=top),
    )
    frame = frames.store_events_frame(store, types=repo, expand_payload=True)
    assert str(frame["payload.counter"].dtype) == "object"
    assert frame["payload.counter"].tolist() == [-1, top]


# -- a map entry that repeats a key is refused ----------------------------------------------------
def test_a_map_entry_repeating_an_earlier_key_is_refused_naming_both_entries(nbforms):
    sent = []
    form = CommandForm(nbforms.PlaceOrder, sent.append)
    limits = form.input("limits")
    for value in (3, 5):
        entry = limits.add()
        entry.editor("key").widget.value = "apple"
        entry.editor("value").widget.value = value
    form.click()
    assert sent == []
    error = form.last_error
    assert isinstance(error, FormValueError)
    assert error.path == "limits[1].key"
    assert "limits[1] repeats the key of limits[0]" in str(error)
    assert "limits[1].key" in form.status.value


def test_map_entries_with_different_keys_are_all_sent(nbforms):
    sent = []
    form = CommandForm(nbforms.PlaceOrder, sent.append)
    limits = form.input("limits")
    for key, value in (("apple", 3), ("pear", 5)):
        entry = limits.add()
        entry.editor("key").widget.value = key
        entry.editor("value").widget.value = value
    form.click()
    (message,) = sent
    assert dict(message.limits) == {"apple": 3, "pear": 5}


# -- %%es_generate --name NAME where the proto makes NAME too ---------------------------------
GARDEN = """syntax = "proto3";
package garden.v1;
import "eventsourcing/options.proto";
message Plant {
  option (eventsourcing.aggregate_root) = { id_field: "plant_id" };
  string plant_id = 1;
}
message PlantGrewEvent {
  option (eventsourcing.event).aggregate_name = "Plant";
  int32 cm = 1;
}
"""


def test_es_generate_named_after_a_class_it_makes_fails_and_binds_nothing(shell):
    module_before = sys.modules.get("eventstore.codegen.live.Plant")
    result = shell.run_cell("%%es_generate --name Plant\n" + GARDEN)
    error = result.error_in_exec
    assert isinstance(error, MagicError)
    assert "the proto makes the class `Plant`" in str(error)
    assert "--name plant" in str(error)
    assert "Plant" not in shell.user_ns and "PlantGrewEvent" not in shell.user_ns
    assert sys.modules.get("eventstore.codegen.live.Plant") is module_before
    shell.run_cell_magic("es_generate", "--name plant", GARDEN)
    assert shell.user_ns["Plant"](plant_id="p1").plant_id == "p1"


def test_a_refused_es_generate_leaves_the_earlier_run_of_that_name_in_place(shell):
    other = 'syntax = "proto3";\npackage other.v1;\nmessage Leaf { string x = 1; }\n'
    shell.run_cell_magic("es_generate", "--name Plant", other)
    earlier = shell.user_ns["Plant"]
    result = shell.run_cell("%%es_generate --name Plant\n" + GARDEN)
    assert isinstance(result.error_in_exec, MagicError)
    assert shell.user_ns["Plant"] is earlier
    assert sys.modules["eventstore.codegen.live.Plant"] is earlier


# -- a message named `annotations` -------------------------------------------------------------
def test_only_the_future_import_named_annotations_is_left_out_of_the_generated_names():
    future = ModuleType("with_future_import")
    exec("from __future__ import annotations\nclass Note: pass\n", vars(future))
    assert set(generated_names(future)) == {"Note"}
    generated = ModuleType("with_a_class_named_annotations")
    exec("class annotations: pass\nclass Note: pass\n", vars(generated))
    assert set(generated_names(generated)) == {"annotations", "Note"}


def test_a_message_named_annotations_is_never_silently_left_unbound(shell):
    notes = (
        'syntax = "proto3";\npackage notes.v1;\n'
        "message annotations { string text = 1; }\nmessage Note { string text = 1; }\n"
    )
    with capture_output():
        result = shell.run_cell("%%es_generate --name notes\n" + notes)
    assert result.success, result.error_in_exec  # live modules compile with the future flag
    assert shell.user_ns["annotations"].DESCRIPTOR.full_name == "notes.v1.annotations"


def test_a_message_whose_name_starts_with_an_underscore_does_not_fail_the_cell(shell):
    # Such names are not bound in the notebook (as ever); they were counted as "lost".
    proto = (
        'syntax = "proto3";\npackage under.v1;\n'
        "message _Internal { string a = 1; }\nmessage Shown { _Internal inner = 1; }\n"
    )
    with capture_output():
        result = shell.run_cell("%%es_generate --name under\n" + proto)
    assert result.success, result.error_in_exec
    assert "Shown" in shell.user_ns and "_Internal" not in shell.user_ns


# -- %es_store --var KEYWORD ------------------------------------------------------------------
def test_es_store_var_keyword_fails_before_closing_the_open_store(shell):
    shell.run_line_magic("es_store", "")
    before = shell.user_ns["store"]
    result = shell.run_cell("%es_store --var class")
    error = result.error_in_exec
    assert isinstance(error, MagicError)
    assert "'class' is a reserved word in Python" in str(error)
    assert "--var class_" in str(error)
    assert not before.closed
    assert shell.user_ns["es_session"].store is before
    assert "class" not in shell.user_ns


# -- the static picture of an enum dropdown --------------------------------------------------
def test_the_static_picture_shows_an_enum_dropdown_by_its_label(nbforms):
    form = CommandForm(nbforms.PlaceOrder, lambda m: None)
    form.input("priority").value = nbforms.PRIORITY_HIGH
    page = form._repr_mimebundle_()["text/html"]
    assert "<b>priority</b> <code>PRIORITY_HIGH</code>" in page
    assert "<b>priority</b> <code>2</code>" not in page
