"""The ``Es-*`` headers that travel beside a request's message, and how metadata goes into them.

A client puts the command id and the event metadata (correlation, principal,
tenant, custom entries) into headers; the server side reads them back into
``RequestContext.command_id`` and ``RequestContext.metadata``. Every
transport carries the same headers, so a handler sees the same context
in process and over a wire.

HTTP lowercases header names and carries only ASCII in header values, so an
``Es-Meta-OrderRef`` header would reach the server as ``es-meta-orderref``
and a value ``café`` would not be sent at all. Over HTTP the custom entries
therefore travel together in one ``Es-Metadata`` header (``METADATA_HEADER``)
as percent-encoded ``key=value`` pairs joined by ``&`` (RFC 3986, UTF-8:
``OrderRef=X-7&note=caf%C3%A9``); ``pack_custom_metadata`` makes it and
``decode_metadata`` reads it. NATS keeps one ``Es-Meta-<key>`` header per
entry (its headers keep their case and carry UTF-8), unless an entry is one
a NATS header cannot carry as it is (a key outside the token characters, a
value with a line break or leading or trailing blanks): then its custom
entries travel packed in ``Es-Metadata`` too, so they arrive as sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote, unquote

from .events import EventMetadata

#: Header carrying the command id; a retry with the same id is applied once.
COMMAND_ID_HEADER = "Es-Command-Id"
CORRELATION_ID_HEADER = "Es-Correlation-Id"
PRINCIPAL_ID_HEADER = "Es-Principal-Id"
TENANT_ID_HEADER = "Es-Tenant-Id"
#: Prefix of headers carrying ``EventMetadata.custom`` entries.
CUSTOM_METADATA_PREFIX = "Es-Meta-"
#: Header carrying every custom metadata entry as percent-encoded ``key=value`` pairs (HTTP).
METADATA_HEADER = "Es-Metadata"
#: Header naming the request's proto type on a wire (the message itself travels as bytes).
MESSAGE_TYPE_HEADER = "Es-Message-Type"
#: The W3C trace context header (``00-<trace id>-<span id>-<flags>``).
TRACEPARENT_HEADER = "traceparent"

_METADATA_HEADERS = {
    "correlation_id": CORRELATION_ID_HEADER,
    "principal_id": PRINCIPAL_ID_HEADER,
    "tenant_id": TENANT_ID_HEADER,
}


def metadata_headers(metadata: EventMetadata | Mapping[str, str] | None) -> dict[str, str]:
    """Headers that carry ``metadata`` to the handler (``RequestContext.metadata`` reads them).

    A mapping may use the keys ``correlation_id``, ``principal_id`` and
    ``tenant_id``; any other key becomes a custom metadata entry.
    """
    if metadata is None:
        return {}
    if isinstance(metadata, EventMetadata):
        fields = {
            "correlation_id": metadata.correlation_id,
            "principal_id": metadata.principal_id,
            "tenant_id": metadata.tenant_id,
        }
        custom: Mapping[str, str] = metadata.custom
    else:
        fields = {k: v for k, v in metadata.items() if k in _METADATA_HEADERS}
        custom = {k: v for k, v in metadata.items() if k not in _METADATA_HEADERS}
    headers = {_METADATA_HEADERS[k]: v for k, v in fields.items() if v}
    headers.update({CUSTOM_METADATA_PREFIX + k: v for k, v in custom.items()})
    return headers


_PERCENT_ENCODED = re.compile(r"(?:[^%]|%[0-9A-Fa-f]{2})*")


def encode_metadata(custom: Mapping[str, str]) -> str:
    """The ``Es-Metadata`` value of ``custom`` entries: ``key=value`` pairs joined by ``&``,
    each key and value percent-encoded as UTF-8 (printable ASCII, any case kept)."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in custom.items())


def decode_metadata(value: str) -> dict[str, str]:
    """The custom entries of an ``Es-Metadata`` value (``encode_metadata``'s inverse).

    Raises ``ValueError`` naming the first pair that is not a percent-encoded
    ``key=value`` of UTF-8 text. Empty pairs (``a=1&&b=2``) are skipped; a key
    given twice keeps its last value.
    """
    entries: dict[str, str] = {}
    for index, pair in enumerate(value.split("&")):
        pair = pair.strip(" \t")
        if not pair:
            continue
        key, sep, text = pair.partition("=")
        where = f"pair {index + 1} ({pair[:40]!r})"
        if not sep:
            raise ValueError(f"{where} is not key=value")
        if not (_PERCENT_ENCODED.fullmatch(key) and _PERCENT_ENCODED.fullmatch(text)):
            raise ValueError(f"{where} has a '%' that is not followed by two hex digits")
        try:
            entries[unquote(key, errors="strict")] = unquote(text, errors="strict")
        except UnicodeDecodeError:
            raise ValueError(f"{where} does not decode to UTF-8 text") from None
    return entries


def pack_custom_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with every ``Es-Meta-<key>`` entry moved into one ``Es-Metadata`` header.

    What the HTTP client sends (see the module's docstring); other headers are
    kept as they are. The prefix is matched in any case, the key kept as given.
    """
    prefix = CUSTOM_METADATA_PREFIX.lower()
    custom = {k[len(prefix) :]: v for k, v in headers.items() if k.lower().startswith(prefix)}
    out = {k: v for k, v in headers.items() if not k.lower().startswith(prefix)}
    if custom:
        given = out.get(METADATA_HEADER, "")  # pairs the caller encoded; later pairs win
        out[METADATA_HEADER] = "&".join(p for p in (given, encode_metadata(custom)) if p)
    return out


def unpack_custom_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with an ``Es-Metadata`` header read back into ``Es-Meta-<key>`` entries
    (``pack_custom_metadata``'s inverse; a key in both forms takes the packed value).

    Raises ``ValueError`` (``decode_metadata``'s) when the packed value is malformed.
    """
    packed = next((v for k, v in headers.items() if k.lower() == METADATA_HEADER.lower()), None)
    out = {k: v for k, v in headers.items() if k.lower() != METADATA_HEADER.lower()}
    if packed is not None:
        out.update({CUSTOM_METADATA_PREFIX + k: v for k, v in decode_metadata(packed).items()})
    return out


__all__ = [
    "COMMAND_ID_HEADER",
    "CORRELATION_ID_HEADER",
    "CUSTOM_METADATA_PREFIX",
    "MESSAGE_TYPE_HEADER",
    "METADATA_HEADER",
    "PRINCIPAL_ID_HEADER",
    "TENANT_ID_HEADER",
    "TRACEPARENT_HEADER",
    "decode_metadata",
    "encode_metadata",
    "metadata_headers",
    "pack_custom_metadata",
    "unpack_custom_metadata",
]
