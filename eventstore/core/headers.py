"""The ``Es-*`` headers that travel beside a request's message, and how metadata goes into them.

A client puts the command id and the event metadata (correlation, principal,
tenant, custom entries) into headers; the server side reads them back into
``RequestContext.command_id`` and ``RequestContext.metadata``. Every
transport carries the same headers, so a handler sees the same context
in process and over a wire.
"""

from __future__ import annotations

from collections.abc import Mapping

from .events import EventMetadata

#: Header carrying the command id; a retry with the same id is applied once.
COMMAND_ID_HEADER = "Es-Command-Id"
CORRELATION_ID_HEADER = "Es-Correlation-Id"
PRINCIPAL_ID_HEADER = "Es-Principal-Id"
TENANT_ID_HEADER = "Es-Tenant-Id"
#: Prefix of headers carrying ``EventMetadata.custom`` entries.
CUSTOM_METADATA_PREFIX = "Es-Meta-"
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


__all__ = [
    "COMMAND_ID_HEADER",
    "CORRELATION_ID_HEADER",
    "CUSTOM_METADATA_PREFIX",
    "MESSAGE_TYPE_HEADER",
    "PRINCIPAL_ID_HEADER",
    "TENANT_ID_HEADER",
    "TRACEPARENT_HEADER",
    "metadata_headers",
]
