"""Who sent a request: the ``Principal`` a host proved, never a header a client claimed.

Network hosts (NATS, HTTP) drop every incoming ``Es-Principal-*`` and
``Es-Tenant-*`` header and set ``RequestContext.principal`` from their
``authenticate(headers)`` hook; in process the caller passes it. Event
metadata (``principal_id``, ``tenant_id``) is read from here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from .headers import PRINCIPAL_ID_HEADER, TENANT_ID_HEADER

_IDENTITY_PREFIXES = (
    PRINCIPAL_ID_HEADER.rsplit("-", 1)[0].lower() + "-",  # es-principal-
    TENANT_ID_HEADER.rsplit("-", 1)[0].lower() + "-",  # es-tenant-
)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: its id, its roles, and the tenants it may act for."""

    id: str
    roles: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"a Principal needs a non-empty string id, got {self.id!r}")
        object.__setattr__(self, "roles", tuple(self.roles))
        object.__setattr__(self, "tenants", tuple(self.tenants))

    def has_role(self, *roles: str) -> bool:
        return any(role in self.roles for role in roles)


Authenticator = Callable[[Mapping[str, str]], "Principal | Awaitable[Principal | None] | None"]
"""``authenticate(headers) -> Principal | None``: None when the request carries no
credentials; raises ``AuthenticationError`` when it carries bad ones."""


def is_identity_header(name: str) -> bool:
    """True for ``Es-Principal-*`` and ``Es-Tenant-*``: headers a network host never trusts."""
    lowered = name.lower()
    return lowered.startswith(_IDENTITY_PREFIXES)


def without_identity_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if not is_identity_header(k)}


__all__ = ["Authenticator", "Principal", "is_identity_header", "without_identity_headers"]
