"""Services whose requests or replies are messages of files the model does not generate:
well-known types (``google.protobuf.Empty``, ``StringValue``), eventstore's own
``eventsourcing.Response``, and messages of another user file. Both outputs, end to
end over ``InProcessTransport``; the file mode with real protoc, ruff and mypy."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.protobuf import descriptor_pool, empty_pb2, wrappers_pb2

from eventstore.codegen import ModelError, generate_module
from eventstore.codegen.build import build_model
from eventstore.codegen.compiler import compile_sources
from eventstore.codegen.model import ExternalType
from eventstore.core.transport import InProcessTransport, RequestContext
from tests.integration.test_codegen_tools import BIN, ROOT, mypy, mypy_probe, run

LIB = """\
syntax = "proto3";
package lib.v1;
// A request declared in a file of its own.
message Lookup { string key = 1; }
"""

SERVICE = """\
syntax = "proto3";
package t.v1;
import "google/protobuf/empty.proto";
import "google/protobuf/wrappers.proto";
import "eventsourcing/response.proto";
import "lib/lookup.proto";

service PingService {
  rpc Ping(google.protobuf.Empty) returns (google.protobuf.Empty);
  rpc Name(google.protobuf.Empty) returns (google.protobuf.StringValue);
  rpc Find(lib.v1.Lookup) returns (lib.v1.Lookup);
  rpc Wrap(lib.v1.Lookup) returns (eventsourcing.Response);
}
"""

SOURCES = {"lib/lookup.proto": LIB, "ping.proto": SERVICE}


class Pinger:
    """A handler written against the generated Protocol; replies built from the request."""

    def __init__(self, string_value: type[Any]) -> None:
        self.string_value = string_value

    def ping(self, request: Any, ctx: RequestContext) -> Any:
        return type(request)()

    async def name(self, request: Any, ctx: RequestContext) -> Any:
        return self.string_value(value="pong")

    def find(self, request: Any, ctx: RequestContext) -> Any:
        return type(request)(key=request.key.upper())

    def wrap(self, request: Any, ctx: RequestContext) -> Any:
        from eventstore.proto.eventsourcing import response_pb2

        return response_pb2.Response(success=True)


# -- live modules ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ping() -> ModuleType:
    return generate_module(SOURCES, name="ping_foreign")


def sdk(module: ModuleType) -> Any:
    handler = Pinger(module._pb_google_protobuf_StringValue)
    return module.SDK(InProcessTransport(module.PingServiceServer(handler))).ping_service


def test_live_service_taking_and_returning_empty_replies_over_the_transport(
    ping: ModuleType,
) -> None:
    reply = asyncio.run(sdk(ping).ping(empty_pb2.Empty()))
    assert reply.DESCRIPTOR.full_name == "google.protobuf.Empty"


def test_live_service_returns_a_well_known_reply_of_the_runs_own_pool(ping: ModuleType) -> None:
    reply = asyncio.run(sdk(ping).name(empty_pb2.Empty()))
    assert reply.value == "pong"
    assert type(reply) is ping._pb_google_protobuf_StringValue
    assert type(reply) is not wrappers_pb2.StringValue
    assert reply.DESCRIPTOR.file.pool is not descriptor_pool.Default()


def test_live_service_over_a_message_of_another_user_file_replies(ping: ModuleType) -> None:
    reply = asyncio.run(sdk(ping).find(ping.Lookup(key="abc")))
    assert (type(reply), reply.key) == (ping.Lookup, "ABC")


def test_live_service_returning_eventstore_response_replies(ping: ModuleType) -> None:
    reply = asyncio.run(sdk(ping).wrap(ping.Lookup(key="k")))
    assert reply.DESCRIPTOR.full_name == "eventsourcing.Response"
    assert reply.success is True


def test_live_module_keeps_well_known_request_types_out_of_its_public_names(
    ping: ModuleType,
) -> None:
    assert "Empty" not in vars(ping)
    assert "StringValue" not in vars(ping)
    assert not [n for n in ping.__all__ if n.startswith("_")]


def test_well_known_requests_and_replies_are_not_the_domains_commands() -> None:
    model = build_model(compile_sources(SOURCES).file)
    method = model.services[0].methods[0]
    assert isinstance(method.input, ExternalType)
    assert method.input.full_name == "google.protobuf.Empty"
    assert [m.full_name for m in model.commands] == ["lib.v1.Lookup"]


def test_method_type_missing_from_the_given_files_is_an_error_naming_the_method() -> None:
    files = [f for f in compile_sources(SOURCES).file if f.name != "lib/lookup.proto"]
    with pytest.raises(ModelError) as caught:
        build_model(files)
    error = caught.value
    assert (error.file, error.line) == ("ping.proto", 11)
    assert error.element == "t.v1.PingService.Find"
    assert "request type 'lib.v1.Lookup'" in error.message


# -- files on disk ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``eventstore generate`` over the two files (the console script, real protoc)."""
    root = tmp_path_factory.mktemp("foreign")
    for name, text in SOURCES.items():
        (root / "protos" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "protos" / name).write_text(text)
    out = root / "out"
    result = run([str(BIN / "eventstore"), "generate", str(root / "protos"), "--out", str(out)])
    assert result.returncode == 0, result.stderr
    return out


def test_generated_file_imports_well_known_types_from_their_pb2_modules(
    generated: Path,
) -> None:
    text = (generated / "ping_es.py").read_text()
    assert "from google.protobuf.empty_pb2 import Empty\n" in text
    assert "from google.protobuf.wrappers_pb2 import StringValue\n" in text
    assert "from eventstore.proto.eventsourcing.response_pb2 import Response\n" in text
    assert "from lib.lookup_pb2 import Lookup\n" in text


def test_generated_file_service_replies_over_the_transport_in_a_fresh_process(
    generated: Path,
) -> None:
    script = textwrap.dedent("""\
        import asyncio
        from google.protobuf.empty_pb2 import Empty
        from google.protobuf.wrappers_pb2 import StringValue
        from eventstore.core.transport import InProcessTransport
        from eventstore.proto.eventsourcing.response_pb2 import Response
        from ping_es import SDK, PingServiceServer
        from lib.lookup_pb2 import Lookup

        class Pinger:
            def ping(self, request, ctx):
                return Empty()
            async def name(self, request, ctx):
                return StringValue(value="pong")
            def find(self, request, ctx):
                return Lookup(key=request.key.upper())
            def wrap(self, request, ctx):
                return Response(success=True)

        client = SDK(InProcessTransport(PingServiceServer(Pinger()))).ping_service
        empty = asyncio.run(client.ping(Empty()))
        name = asyncio.run(client.name(Empty()))
        found = asyncio.run(client.find(Lookup(key="abc")))
        print(type(empty) is Empty, type(name) is StringValue, name.value, found.key)
        """)
    result = run([sys.executable, "-c", script], cwd=generated, PYTHONPATH=str(generated))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "pong", "ABC"]


def test_generated_file_over_foreign_messages_passes_ruff(generated: Path) -> None:
    args = ["check", "--config", str(ROOT / "pyproject.toml"), str(generated / "ping_es.py")]
    result = run([str(BIN / "ruff"), *args])
    assert result.returncode == 0, result.stdout


def test_generated_file_over_foreign_messages_passes_mypy(generated: Path) -> None:
    result = mypy(generated, "ping_es.py")
    assert result.returncode == 0, result.stdout


def test_mypy_catches_a_handler_returning_the_wrong_well_known_type(generated: Path) -> None:
    result = mypy_probe(
        generated,
        """\
        from google.protobuf.empty_pb2 import Empty
        from google.protobuf.wrappers_pb2 import StringValue
        from eventstore.core.transport import RequestContext
        from eventstore.proto.eventsourcing.response_pb2 import Response
        from lib.lookup_pb2 import Lookup
        from ping_es import PingServiceServer

        class Pinger:
            def ping(self, request: Empty, ctx: RequestContext) -> StringValue:
                return StringValue()
            def name(self, request: Empty, ctx: RequestContext) -> StringValue:
                return StringValue()
            def find(self, request: Lookup, ctx: RequestContext) -> Lookup:
                return request
            def wrap(self, request: Lookup, ctx: RequestContext) -> Response:
                return Response()

        PingServiceServer(Pinger())
        """,
    )
    assert result.returncode == 1, result.stdout
    assert 'Argument 1 to "PingServiceServer" has incompatible type' in result.stdout
