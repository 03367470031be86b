"""ConnectTransport + ConnectApp answer like InProcessTransport: type check, metadata, codes.

Each parity test sends the same request in process and over HTTP (a real
``ConnectApp`` on uvicorn, 127.0.0.1) to the edge bank of tests/support/edge.py,
each over its own SQLite store, and compares the replies and the stored events.
The raw-HTTP tests post what curl would, through httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf.message import Message

from eventstore.auth import Principal
from eventstore.core.headers import (
    COMMAND_ID_HEADER,
    METADATA_HEADER,
    decode_metadata,
    encode_metadata,
    metadata_headers,
)
from eventstore.core.responses import ERROR_CODES, Response
from eventstore.core.transport import InProcessTransport
from eventstore.middleware import default_middlewares
from eventstore.rpc import ConnectApp, ConnectTransport, serve_http
from eventstore.sqlite import SQLiteEventStore
from tests.support.edge import RULES, Accounts, make_app, pb, token

OPEN = "edge.v1.Accounts.Open"
ANN = Principal("ann", roles=("teller",), tenants=("acme",))
TABLE = {row.code for row in ERROR_CODES}


@contextlib.asynccontextmanager
async def served(app: ConnectApp) -> AsyncIterator[str]:
    """``app`` on a real uvicorn server on 127.0.0.1; yields its URL."""
    server = serve_http(app, port=0)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


Send = Callable[[str, Message, dict[str, str]], Awaitable[Response]]


def both_ways(tmp_path: Path, scenario: Callable[[Send], Awaitable[Any]]) -> dict[str, Any]:
    """Run ``scenario(send)`` in process and over HTTP, each on its own store.

    Returns ``{"inproc": (result, events), "http": (result, events)}``.
    """
    out: dict[str, Any] = {}

    async def go() -> None:
        with SQLiteEventStore(tmp_path / "inproc.db") as store:
            chain = default_middlewares(network=True, rules=RULES)
            accounts = Accounts(store)
            transport = InProcessTransport(accounts, middlewares=chain, principal=ANN)
            result = await scenario(transport.request)
            out["inproc"] = (result, store.read_all(0))
            transport.router.close()
        with SQLiteEventStore(tmp_path / "http.db") as store:
            app = make_app(store)
            async with served(app) as url:
                client = ConnectTransport(url, token=token())
                result = await scenario(client.request)
            out["http"] = (result, store.read_all(0))
            app.router.close()

    asyncio.run(go())
    return out


def failure(reply: Response) -> tuple[str, str, dict[str, str]]:
    assert reply.error is not None, "the request was applied"
    return reply.error.code, reply.error.message, dict(reply.error.details)


# -- a request of another type never reaches the handler -----------------------------------


def test_a_request_of_another_type_is_invalid_message_type_over_http_as_in_process(
    tmp_path: Path,
) -> None:
    async def scenario(send: Send) -> tuple[str, str, dict[str, str]]:
        # A Get sent to Open: its bytes also parse as an Open (field 1 is the account id).
        return failure(await send(OPEN, pb.Get(account_id="acc-1"), {COMMAND_ID_HEADER: "c-1"}))

    runs = both_ways(tmp_path, scenario)
    inproc, http = runs["inproc"], runs["http"]
    assert http[0] == inproc[0]
    assert http[0] == (
        "INVALID_MESSAGE_TYPE",
        "edge.v1.Accounts.Open expects edge.v1.Open, got edge.v1.Get",
        {"subject": OPEN, "expected": "edge.v1.Open", "actual": "edge.v1.Get"},
    )
    assert inproc[1] == http[1] == []


# -- custom metadata is stored as sent, whatever its case or text ------------------------

METADATA = {
    "OrderRef": "X-7",
    "Source": "web",
    "note": "café ☕",
    "a key/with=&%": "a value&with=%20 and\nnewline",
}


def test_custom_metadata_keys_and_values_are_stored_over_http_as_in_process(
    tmp_path: Path,
) -> None:
    async def scenario(send: Send) -> str:
        opened = await send(
            OPEN, pb.Open(account_id="acc-1", owner="Ann"), metadata_headers(METADATA)
        )
        return opened.unwrap(pb.Opened).account_id

    runs = both_ways(tmp_path, scenario)
    (inproc_event,), (http_event,) = runs["inproc"][1], runs["http"][1]
    assert dict(inproc_event.metadata.custom) == METADATA
    assert dict(http_event.metadata.custom) == METADATA


def test_a_header_http_cannot_carry_is_invalid_argument_naming_it_and_nothing_is_sent(
    tmp_path: Path,
) -> None:
    """A correlation id (not custom metadata) that is not ASCII: an AppError, never a raw
    UnicodeEncodeError from httpx; the reply names the header and the command id."""

    async def scenario(send: Send) -> Any:
        headers = metadata_headers({"correlation_id": "café"})
        headers[COMMAND_ID_HEADER] = "c-9"
        return await send(OPEN, pb.Open(account_id="acc-1", owner="Ann"), headers)

    http = both_ways(tmp_path, scenario)["http"]
    code, message, details = failure(http[0])
    assert code == "INVALID_ARGUMENT"
    assert "'Es-Correlation-Id'" in message and "café" not in message
    assert details == {"subject": OPEN, "command_id": "c-9", "header": "Es-Correlation-Id"}
    assert http[1] == []


# -- ConnectTransport answers with the error table's codes --------------------------------


def test_an_unknown_method_is_no_handler_over_http_as_in_process(tmp_path: Path) -> None:
    async def scenario(send: Send) -> tuple[str, dict[str, str]]:
        code, _, details = failure(await send("edge.v1.Accounts.Close", pb.Get(), {}))
        return code, details

    runs = both_ways(tmp_path, scenario)
    assert runs["http"][0] == runs["inproc"][0]
    assert runs["http"][0] == ("NO_HANDLER", {"subject": "edge.v1.Accounts.Close"})


def test_a_request_over_max_body_bytes_is_request_too_large_with_command_id_size_and_limit(
    tmp_path: Path,
) -> None:
    big = pb.Open(account_id="acc-1", owner="x" * 5000)

    async def scenario(send: Send) -> Any:
        return await send(OPEN, big, {COMMAND_ID_HEADER: "big-1"})

    http = both_ways(tmp_path, scenario)["http"]
    code, message, details = failure(http[0])
    size = str(big.ByteSize())
    assert code == "REQUEST_TOO_LARGE" and code in TABLE
    assert details == {"subject": OPEN, "command_id": "big-1", "size": size, "limit": "4096"}
    assert "max_body_bytes" in message
    assert http[1] == []


async def _not_a_connect_app(scope: Any, receive: Any, send: Any) -> None:
    """What a proxy or an older server may answer: a status, maybe a Connect code, no AppError."""
    status, body = {
        "/edge.v1.Accounts/Open": (404, b"no route"),
        "/edge.v1.Accounts/Deposit": (429, b'{"code": "resource_exhausted", "message": "max"}'),
        "/edge.v1.Accounts/Get": (503, b"upstream down"),
        "/edge.v1.Accounts/List": (413, b"too large"),
        "/edge.v1.Accounts/ReadLog": (415, b""),
    }[scope["path"]]
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize(
    ("method", "code"),
    [
        ("Open", "NO_HANDLER"),
        ("Deposit", "REQUEST_TOO_LARGE"),
        ("Get", "UNAVAILABLE"),
        ("List", "REQUEST_TOO_LARGE"),
        ("ReadLog", "INVALID_REQUEST"),
    ],
)
def test_a_refusal_without_an_app_error_is_mapped_to_the_tables_code_with_the_command_id(
    method: str, code: str
) -> None:
    async def go() -> Response:
        asgi = httpx.ASGITransport(app=_not_a_connect_app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=asgi) as client:
            transport = ConnectTransport("http://proxy", client=client)
            return await transport.request(
                f"edge.v1.Accounts.{method}", pb.Get(account_id="a"), {COMMAND_ID_HEADER: "c-3"}
            )

    error = asyncio.run(go()).error
    assert error is not None
    assert (error.code, error.details["command_id"]) == (code, "c-3")
    assert error.code in TABLE


# -- raw HTTP clients (curl): the same headers, and refusals that carry the AppError -------


def _post(
    app: ConnectApp,
    path: str,
    body: bytes,
    headers: dict[str, Any],
    method: str = "POST",
) -> httpx.Response:
    async def go() -> httpx.Response:
        asgi = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=asgi, base_url="http://edge") as client:
            sent = {"Content-Type": "application/json", "Authorization": f"Bearer {token()}"}
            return await client.request(method, path, content=body, headers={**sent, **headers})

    return asyncio.run(go())


def _app_error(reply: httpx.Response) -> tuple[str, str, str, dict[str, str]]:
    """(HTTP status and Connect code, AppError code, its message, its details) of a reply."""
    from eventstore.proto.eventsourcing import response_pb2

    body = reply.json()
    (detail,) = [d for d in body.get("details", []) if d["type"] == "eventsourcing.AppError"]
    error = response_pb2.AppError.FromString(base64.b64decode(detail["value"] + "=="))
    return f"{reply.status_code} {body['code']}", error.code, error.message, dict(error.details)


@pytest.fixture
def app(tmp_path: Path) -> Any:
    with SQLiteEventStore(tmp_path / "raw.db") as store:
        app = make_app(store)
        yield app, store
        app.router.close()


_OPEN_JSON = json.dumps({"accountId": "acc-1", "owner": "Ann"}).encode()


def test_a_raw_client_keeps_metadata_keys_in_es_metadata_and_old_es_meta_headers_still_work(
    app: Any,
) -> None:
    connect_app, store = app
    encoded = encode_metadata({"OrderRef": "X-7", "note": "café"})
    assert encoded == "OrderRef=X-7&note=caf%C3%A9"
    reply = _post(
        connect_app,
        "/edge.v1.Accounts/Open",
        _OPEN_JSON,
        {METADATA_HEADER: encoded, "Es-Meta-Source": "curl", "Es-Message-Type": "edge.v1.Open"},
    )
    assert reply.status_code == 200, reply.text
    (event,) = store.read_all(0)
    # Es-Meta-<key>, what older clients send, arrives with its key lowercased by HTTP.
    assert dict(event.metadata.custom) == {"OrderRef": "X-7", "note": "café", "source": "curl"}


@pytest.mark.parametrize(
    ("path", "body", "headers", "method", "expected"),
    [
        pytest.param(
            "/edge.v1.Accounts/Open",
            _OPEN_JSON,
            {"Es-Message-Type": "edge.v1.Get"},
            "POST",
            ("400 invalid_argument", "INVALID_MESSAGE_TYPE"),
            id="another-message-type",
        ),
        pytest.param(
            "/edge.v1.Accounts/Close",
            _OPEN_JSON,
            {},
            "POST",
            ("404 unimplemented", "NO_HANDLER"),
            id="unknown-method",
        ),
        pytest.param(
            "/edge.v1.Accounts/Open",
            json.dumps({"owner": "x" * 5000}).encode(),
            {},
            "POST",
            ("429 resource_exhausted", "REQUEST_TOO_LARGE"),
            id="body-over-the-limit",
        ),
        pytest.param(
            "/edge.v1.Accounts/Open",
            b'{"accountId": ',
            {},
            "POST",
            ("400 invalid_argument", "INVALID_REQUEST"),
            id="malformed-json",
        ),
        pytest.param(
            "/edge.v1.Accounts/Open",
            _OPEN_JSON,
            {"Content-Type": "text/plain"},
            "POST",
            ("415 invalid_argument", "INVALID_REQUEST"),
            id="content-type",
        ),
        pytest.param(
            "/edge.v1.Accounts/Open",
            b"",
            {},
            "GET",
            ("405 invalid_argument", "INVALID_REQUEST"),
            id="http-get",
        ),
        pytest.param(
            "/edge.v1.Accounts/Open",
            _OPEN_JSON,
            {METADATA_HEADER: "OrderRef"},
            "POST",
            ("400 invalid_argument", "INVALID_REQUEST"),
            id="malformed-es-metadata",
        ),
        pytest.param(
            "/edge.v1.Accounts/Open",
            _OPEN_JSON,
            {"X-Note": "caf\xe9".encode("latin-1")},
            "POST",
            ("400 invalid_argument", "INVALID_REQUEST"),
            id="header-not-utf8",
        ),
    ],
)
def test_a_refusal_before_the_handler_carries_the_app_error_of_the_table_and_writes_nothing(
    app: Any,
    path: str,
    body: bytes,
    headers: dict[str, Any],
    method: str,
    expected: tuple[str, str],
) -> None:
    connect_app, store = app
    reply = _post(connect_app, path, body, headers, method)
    wire, code, message, details = _app_error(reply)
    assert (wire, code) == expected
    assert code in TABLE
    assert details["subject"] == path.lstrip("/").replace("/", ".")
    assert store.head_position() == 0


def test_decode_metadata_names_the_pair_it_cannot_read() -> None:
    assert decode_metadata("a=1&&B=%E2%98%95&a=2") == {"a": "2", "B": "☕"}
    for bad, problem in [
        ("a=1&b", "pair 2 ('b') is not key=value"),
        ("a=%G1", "not followed by two hex digits"),
        ("a=%FF", "does not decode to UTF-8"),
    ]:
        with pytest.raises(ValueError, match=re.escape(problem)):
            decode_metadata(bad)
