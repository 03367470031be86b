"""A module for ``eventstore serve`` with an ``authenticate(store)`` hook (API keys)."""

from __future__ import annotations

from eventstore.auth import Authenticator, Principal, api_key_authenticator, hash_api_key
from eventstore.core.routing import ServiceBinding
from examples.bankaccount import service as bank

API_KEY = "k-teller-1"


def services(store: object) -> list[ServiceBinding]:
    return bank.services(store)  # type: ignore[arg-type]


def authenticate(store: object) -> Authenticator:
    return api_key_authenticator({hash_api_key(API_KEY): Principal("teller-1")})
