"""A live module's messages take the well-known types users import from google.protobuf.

The module's pool holds its own copy of them; these tests use only the classes a
user imports, as with a generated file module.
"""

from __future__ import annotations

from types import ModuleType

from google.protobuf.any_pb2 import Any
from google.protobuf.duration_pb2 import Duration
from google.protobuf.empty_pb2 import Empty
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from google.protobuf.wrappers_pb2 import StringValue

from eventstore.codegen import generate_module

from .conftest import HEADER

IMPORTS = [
    f'import "google/protobuf/{f}.proto";'
    for f in ("timestamp", "duration", "empty", "wrappers", "struct", "any")
]
THING = (
    "message Thing { option (eventsourcing.aggregate_root) = { id_field: 'id' }; string id = 1;"
    " message Step { google.protobuf.Timestamp at = 1; } Step step = 2; }"
)
EVENT = """message ThingMadeEvent {
  option (eventsourcing.event).aggregate_name = "Thing";
  google.protobuf.Timestamp at = 1;
  google.protobuf.Duration took = 2;
  google.protobuf.Empty nothing = 3;
  google.protobuf.StringValue note = 4;
  google.protobuf.Struct extra = 5;
  google.protobuf.Any detail = 6;
  repeated google.protobuf.Timestamp seen = 7;
  map<string, google.protobuf.Duration> waits = 8;
}"""


def things(name: str = "things", event: str = EVENT) -> ModuleType:
    return generate_module("\n".join([*HEADER, *IMPORTS, THING, event]), name=name)


def test_constructor_takes_imported_well_known_types() -> None:
    extra = Struct()
    extra.update({"k": "v"})
    given = {
        "at": Timestamp(seconds=5),
        "took": Duration(seconds=3),
        "nothing": Empty(),
        "note": StringValue(value="hi"),
        "extra": extra,
        "detail": Any(type_url="type.googleapis.com/x.Y", value=b"\x08\x01"),
    }
    event = things().ThingMadeEvent(**given)
    for field, value in given.items():
        assert getattr(event, field).SerializeToString() == value.SerializeToString(), field
    assert event.HasField("nothing")


def test_repeated_and_map_fields_take_imported_well_known_types() -> None:
    event = things().ThingMadeEvent(
        seen=[Timestamp(seconds=1), Timestamp(seconds=2)], waits={"a": Duration(seconds=4)}
    )
    assert [t.seconds for t in event.seen] == [1, 2]
    assert event.waits["a"].seconds == 4


def test_a_message_given_as_a_dict_takes_imported_well_known_types() -> None:
    thing = things().Thing(id="t-1", step={"at": Timestamp(seconds=7)})
    assert thing.step.at.seconds == 7


def test_copy_from_and_merge_from_take_imported_well_known_types() -> None:
    event = things().ThingMadeEvent()
    event.at.CopyFrom(Timestamp(seconds=5, nanos=1))
    event.note.MergeFrom(StringValue(value="hi"))
    event.seen.add().CopyFrom(Timestamp(seconds=9))
    assert (event.at.seconds, event.at.nanos, event.note.value) == (5, 1, "hi")
    assert event.seen[0].seconds == 9


def test_a_field_compares_equal_to_the_imported_value() -> None:
    stamp = Timestamp(seconds=5)
    event = things().ThingMadeEvent(at=stamp)
    assert event.at == stamp
    assert (event.at != stamp) is False
    assert event.at != Timestamp(seconds=6)


def test_well_known_classes_name_the_live_module_not_main() -> None:
    event = things(name="named").ThingMadeEvent()
    assert type(event.at).__module__ == "eventstore.codegen.live.named"


def test_regenerating_a_module_with_a_changed_schema_still_takes_imported_types() -> None:
    things(name="again")
    changed = things(name="again", event=EVENT.replace("Empty nothing = 3", "Empty none = 3"))
    event = changed.ThingMadeEvent(at=Timestamp(seconds=2), none=Empty())
    assert event.at.seconds == 2
    assert event.HasField("none")
