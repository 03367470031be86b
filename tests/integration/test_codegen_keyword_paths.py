"""Protos under folders named like Python keywords (``class/v1/thing.proto``): the generated
modules import each other with importlib, as protoc's own output does. Generated to disk by
``eventstore generate`` and imported in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from eventstore.cli import generate

ROOT = Path(__file__).resolve().parents[2]

THING = """\
syntax = "proto3";
package school.v1;
import "eventsourcing/options.proto";

message Thing {
  option (eventsourcing.aggregate_root).id_field = "id";
  string id = 1;
  int64 count = 2;
}
message Counted {
  option (eventsourcing.event).aggregate_name = "Thing";
  int64 by = 1;
}
message CountCommand { string id = 1; int64 by = 2; }
message CountReply { int64 count = 1; }
service ThingCommandService {
  rpc Count(CountCommand) returns (CountReply);
}
"""

QUERIES = """\
syntax = "proto3";
package school.v1;
import "class/v1/thing.proto";

message GetThingQuery { string id = 1; }
service ThingQueryService {
  rpc GetThing(GetThingQuery) returns (CountReply);
}
"""

SCRIPT = textwrap.dedent("""\
    import asyncio, importlib
    thing = importlib.import_module("class.v1.thing_es")
    queries = importlib.import_module("import.queries_es")
    sdk = importlib.import_module("es_sdk")

    class Applier:
        def apply_counted(self, agg, event):
            agg.count += event.by

    agg = thing.new_thing("t-1", Applier())
    agg.apply_event(thing.Counted(by=3))

    class Handler:
        def count(self, cmd, ctx):
            return thing.CountReply(count=cmd.by)

    from eventstore.core.transport import InProcessTransport
    client = sdk.SDK(InProcessTransport(thing.ThingCommandServiceServer(Handler())))
    reply = asyncio.run(client.thing.count(thing.CountCommand(id="t-1", by=4)))
    print(agg.count, reply.count, queries.GetThingQuery.DESCRIPTOR.full_name)
    """)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    protos = tmp_path_factory.mktemp("protos")
    (protos / "class" / "v1").mkdir(parents=True)
    (protos / "class" / "v1" / "thing.proto").write_text(THING)
    (protos / "import").mkdir()
    (protos / "import" / "queries.proto").write_text(QUERIES)
    out = tmp_path_factory.mktemp("out")
    generate(protos, out)
    return out


def test_generated_modules_under_keyword_folders_import_and_work(generated: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=generated,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(generated), str(ROOT)])},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "4", "school.v1.GetThingQuery"]


@pytest.mark.parametrize("name", ["class/v1/thing_es.py", "import/queries_es.py", "es_sdk.py"])
def test_generated_modules_under_keyword_folders_pass_ruff(generated: Path, name: str) -> None:
    config = str(ROOT / "pyproject.toml")
    for command in (["format", "--check"], ["check"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--config", config, str(generated / name)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
