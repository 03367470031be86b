"""Service-edge refusals found by probe 3, each on a real uvicorn server on 127.0.0.1.

A small live-generated service (``probe3.v1.Box``): ``Put`` records the bytes it
received, ``Nap`` sleeps; the app's ``authenticate`` hook fails like a key
lookup against a database that is down when ``X-Api-Key: down`` is sent.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from eventstore.codegen import generate_module
from eventstore.core.identity import Principal
from eventstore.core.routing import RequestContext, Route
from eventstore.rpc import ConnectApp, ConnectTransport, serve_http
from eventstore.rpc.app import app_error_from_details

PROTO = """
syntax = "proto3";
package probe3.v1;
message Put { string id = 1; bytes blob = 2; repeated bytes parts = 3; map<string, bytes> named = 4; }
message Done { int64 count = 1; }
message Nap { double seconds = 1; }
"""
pb = generate_module(PROTO, name="probe3")
SECRET = "postgresql://admin:S3cretPw@db.internal:5432/users"
PUT = "/probe3.v1.Box/Put"
NAP = "/probe3.v1.Box/Nap"


class Box:
    def __init__(self) -> None:
        self.received: list[Any] = []
        self.naps_done = 0

    def put(self, message: Any, ctx: RequestContext) -> Any:
        self.received.append(message)
        return pb.Done(count=len(self.received))

    async def nap(self, message: Any, ctx: RequestContext) -> Any:
        await asyncio.sleep(message.seconds)
        self.naps_done += 1
        return pb.Done(count=self.naps_done)

    @property
    def routes(self) -> list[Route]:
        return [
            Route("probe3.v1.Box.Put", pb.Put, pb.Done, self.put),
            Route("probe3.v1.Box.Nap", pb.Nap, pb.Done, self.nap),
        ]


def authenticate(headers: dict[str, str]) -> Principal | None:
    if headers.get("x-api-key") == "down":
        raise ConnectionError(f"could not connect to {SECRET}")
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, box: Box, url: str) -> None:
        self.box = box
        self.url = url

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers=headers or {}, timeout=10)


@pytest.fixture
def served() -> Iterator[Served]:
    import threading

    box = Box()
    app = ConnectApp(box, authenticate=authenticate, allow_anonymous=True)
    server = serve_http(app, port=free_port())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),))
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Served(box, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(10)
        loop.close()
        app.router.close()


def app_error(reply: httpx.Response) -> Any:
    found = app_error_from_details(reply.json().get("details", []))
    assert found is not None, reply.text
    return found


# -- 1. a failing authenticate hook -------------------------------------------------------


def test_a_failing_authenticate_hook_replies_a_generic_internal_with_an_error_id(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    reply = served.post(PUT, {"id": "a"}, {"X-Api-Key": "down", "Es-Command-Id": "cmd-1"})
    assert reply.status_code == 500
    assert reply.json()["code"] == "internal"
    assert "S3cretPw" not in reply.text
    error = app_error(reply)
    assert error.code == "INTERNAL"
    assert error.details["error_id"] in error.message
    assert error.details["error_id"] in caplog.text and "S3cretPw" in caplog.text
    (record,) = (r for r in caplog.records if r.name == "eventstore.requests")
    assert (record.outcome, record.command_id) == ("INTERNAL", "cmd-1")
    assert served.box.received == []


# -- 3. a Connect deadline that runs out in the handler -----------------------------------


def test_a_connect_deadline_in_the_handler_is_timeout_with_the_command_id(served: Served) -> None:
    headers = {"Connect-Timeout-Ms": "200", "Es-Command-Id": "cmd-late"}
    reply = served.post(NAP, {"seconds": 2}, headers)
    assert reply.status_code == 504
    error = app_error(reply)
    assert error.code == "TIMEOUT"
    assert error.details == {
        "subject": "probe3.v1.Box.Nap",
        "command_id": "cmd-late",
        "timeout": "0.2",
    }
    assert "may or may not have been applied" in error.message
    assert "cmd-late" in error.solution


# -- 4. bytes that are not base64 ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"blob": "!!!"}, "blob", id="not-base64"),
        pytest.param({"blob": "hello world!"}, "blob", id="blank-and-bang"),
        pytest.param({"blob": "aGVsbG8=garbage"}, "blob", id="after-padding"),
        pytest.param({"parts": ["aGk=", "ab%cd"]}, "parts[1]", id="repeated"),
        pytest.param({"named": {"k": "ab!cd"}}, 'named["k"]', id="map-value"),
    ],
)
def test_a_bytes_field_that_is_not_base64_is_refused_naming_the_field(
    served: Served, body: dict[str, Any], field: str
) -> None:
    reply = served.post(PUT, {"id": "a", **body})
    assert reply.status_code == 400
    error = app_error(reply)
    assert error.code == "INVALID_REQUEST"
    assert f"bytes field {field} is not base64" in error.message
    assert served.box.received == []


@pytest.mark.parametrize("text", ["aGVsbG8=", "aGVsbG8", "aGVs-_8=", ""])
def test_base64_bytes_in_either_alphabet_padded_or_not_are_accepted(
    served: Served, text: str
) -> None:
    reply = served.post(PUT, {"id": "a", "blob": text})
    assert reply.status_code == 200, reply.text
    (put,) = served.box.received
    padded = text + "=" * (-len(text) % 4)
    assert put.blob == base64.urlsafe_b64decode(padded)


# -- 5. bad Connect protocol headers ------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Connect-Timeout-Ms", "abc"),
        ("Connect-Timeout-Ms", "-5"),
        ("Connect-Timeout-Ms", "99999999999"),
        ("Connect-Protocol-Version", "2"),
    ],
)
def test_a_bad_connect_protocol_header_is_refused_naming_the_header(
    served: Served, header: str, value: str
) -> None:
    reply = served.post(PUT, {"id": "a"}, {header: value})
    assert reply.status_code == 400
    error = app_error(reply)
    assert error.code == "INVALID_REQUEST"
    assert error.details == {"subject": "probe3.v1.Box.Put", "header": header}
    assert header in error.message and header in error.solution
    assert "body" not in error.message
    assert served.box.received == []


# -- 2 and 6. ConnectTransport ------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "header"),
    [
        ({"Es-Command-Id": " cmd-1"}, "Es-Command-Id"),
        ({"Es-Correlation-Id": "corr-1\t"}, "Es-Correlation-Id"),
        ({"Authorization": "Bearer tok-S3cret "}, "Authorization"),
    ],
)
def test_a_header_value_with_an_outer_blank_is_invalid_argument_never_quoting_it(
    served: Served, headers: dict[str, str], header: str
) -> None:
    async def go() -> Any:
        transport = ConnectTransport(served.url)
        return await transport.request("probe3.v1.Box.Put", pb.Put(id="a"), headers)

    reply = asyncio.run(go())
    assert reply.error is not None
    assert reply.error.code == "INVALID_ARGUMENT"
    assert reply.error.details["header"] == header
    shown = reply.error.message + reply.error.solution + reply.error.details["header"]
    assert headers[header].strip() not in shown
    assert served.box.received == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999",
        "http://[::1",
        "http://127.0.0.1:0",
        "ftp://127.0.0.1:80",
        "127.0.0.1:8080",
        "http://",
        "http://127.0.0.1:8080?x=1",
    ],
)
def test_a_malformed_url_is_refused_when_the_transport_is_made(url: str) -> None:
    with pytest.raises(ValueError, match="expected http://host:port") as caught:
        ConnectTransport(url)
    assert repr(url) in str(caught.value)


def test_a_call_after_aclose_is_unavailable_and_sends_nothing(served: Served) -> None:
    async def go() -> tuple[Any, Any]:
        own = ConnectTransport(served.url)
        await own.aclose()
        given = ConnectTransport(served.url, client=httpx.AsyncClient())
        await given.aclose()
        first = await own.request("probe3.v1.Box.Put", pb.Put(id="a"), {"Es-Command-Id": "c1"})
        second = await given.request("probe3.v1.Box.Put", pb.Put(id="b"), {})
        return first, second

    for reply in asyncio.run(go()):
        assert reply.error is not None and reply.error.code == "UNAVAILABLE"
        assert "is closed" in reply.error.message
        assert reply.error.details["command_id"]
    assert served.box.received == []


def test_an_unreachable_server_is_unavailable_without_httpxs_text() -> None:
    async def go() -> Any:
        transport = ConnectTransport(f"http://127.0.0.1:{free_port()}", token="tok-S3cret")
        return await transport.request("probe3.v1.Box.Put", pb.Put(id="a"), {})

    reply = asyncio.run(go())
    assert reply.error is not None and reply.error.code == "UNAVAILABLE"
    assert "could not connect to http://127.0.0.1:" in reply.error.message
    assert "S3cret" not in str(reply.error)
