"""A bank service behind the service edge, for the HTTP and security tests.

Two tenants (``acme``, ``beta``) share one SQLite store through a repository
with ``tenant_isolation=True``; callers prove themselves with RS256 JWTs
signed by a key made once per process.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from eventstore import AppError, UnitOfWork
from eventstore.auth import jwt_authenticator
from eventstore.core.projections import ProjectionManager
from eventstore.core.routing import RequestContext, Route
from eventstore.middleware import default_middlewares, register_validator
from eventstore.rpc import ConnectApp
from eventstore.sqlite import SQLiteEventStore
from eventstore.tenancy import current_tenant, split_stored_id

from .bank import account_repository
from .bank import pb as bank_pb
from .protos import compiled

pb = compiled("edge")
AUDIENCE = "bank-api"
ISSUER = "https://issuer.test"
RULES = {
    "edge.v1.Accounts.Get": ["teller", "auditor"],
    "edge.v1.Accounts.*": ["teller"],
}


@functools.cache
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem() -> bytes:
    return (
        rsa_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def token(
    sub: str = "ann",
    *,
    roles: tuple[str, ...] = ("teller",),
    tenants: tuple[str, ...] = ("acme",),
    aud: str = AUDIENCE,
    iss: str = ISSUER,
    exp_in: float = 300,
    key: Any = None,
    algorithm: str = "RS256",
) -> str:
    now = int(time.time())
    claims = {
        "sub": sub,
        "roles": list(roles),
        "tenants": list(tenants),
        "aud": aud,
        "iss": iss,
        "iat": now,
        "exp": now + int(exp_in),
    }
    return jwt.encode(claims, key if key is not None else rsa_key(), algorithm=algorithm)


def unsigned_token(**claims: Any) -> str:
    """An ``alg=none`` token (PyJWT will not make one for a verifier, so build it by hand)."""
    import base64
    import json

    def part(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    body = {"sub": "ann", "roles": ["teller"], "tenants": ["acme"], "aud": AUDIENCE,
            "iss": ISSUER, "exp": now + 300, **claims}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(body)}."


def hs256_token_signed_with_the_public_key() -> str:
    """An HS256 token whose HMAC secret is the RSA public key (the key-confusion attack).

    PyJWT refuses to sign HS256 with a PEM key, so it is forged by hand.
    """
    import base64
    import hashlib
    import hmac

    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    payload = unsigned_token().split(".")[1].encode()
    mac = hmac.new(public_pem(), header + b"." + payload, hashlib.sha256).digest()
    return (header + b"." + payload + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()


def _positive_amount(message: Any) -> list[tuple[str, str, str]]:
    if message.amount <= 0:
        return [("amount", "gt", "must be greater than 0")]
    return []


register_validator("edge.v1.Deposit", _positive_amount)


class AccountsByTenant:
    """A read model of every tenant's accounts, fed from the shared log, rows keyed by tenant.

    The projection sees composite ids; ``ctx.tenant`` says whose row it is,
    and the query reads the rows of ``current_tenant()`` only.
    """

    name = "accounts-by-tenant"

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def reset(self, ctx: Any) -> None:
        self.rows.clear()

    def handle(self, event: Any, ctx: Any) -> None:
        if event.event_type == bank_pb.AccountOpened.DESCRIPTOR.full_name:
            opened = bank_pb.AccountOpened.FromString(event.data)
            account_id = split_stored_id(event.aggregate_id)[1]
            self.rows.setdefault(ctx.tenant, {})[account_id] = pb.AccountView(
                account_id=account_id, owner=opened.owner, balance=opened.initial_balance
            )


class Accounts:
    """Handlers of a small ``edge.v1.Accounts`` service over the support bank."""

    def __init__(self, store: SQLiteEventStore) -> None:
        self.store = store
        self.repository = account_repository(store, tenant_isolation=True, cache=4)
        self.accounts = AccountsByTenant()
        self.projections = ProjectionManager(store)
        self.projections.register(self.accounts)

    def open(self, cmd: Any, ctx: RequestContext) -> Any:
        def decide(account: Any) -> None:
            account.open(cmd.owner, cmd.initial, unique_owner=True)

        result = self.repository.retry_on_conflict(
            cmd.account_id, decide, command_id=ctx.command_id, metadata=ctx.metadata
        )
        return pb.Opened(account_id=cmd.account_id, version=result.version)

    async def deposit(self, cmd: Any, ctx: RequestContext) -> Any:
        def decide(account: Any) -> None:
            if not account.version:
                raise AppError("ACCOUNT_NOT_FOUND", f"account {cmd.account_id!r} does not exist")
            account.deposit(cmd.amount)

        result = await self.repository.retry_on_conflict_async(
            cmd.account_id, decide, command_id=ctx.command_id, metadata=ctx.metadata
        )
        return pb.Opened(account_id=cmd.account_id, version=result.version)

    def get(self, query: Any, ctx: RequestContext) -> Any:
        state = self.repository.load(query.account_id).state
        return pb.AccountView(account_id=query.account_id, owner=state.owner, balance=state.balance)

    def open_in_unit(self, cmd: Any, ctx: RequestContext) -> Any:
        with UnitOfWork(self.store, command_id=ctx.command_id, metadata=ctx.metadata) as uow:
            account = self.repository.factory(cmd.account_id)
            account.open(cmd.owner, cmd.initial, unique_owner=True)
            self.repository.save(account, unit=uow)
        assert uow.result is not None
        return pb.Opened(account_id=cmd.account_id, version=len(uow.result.events))

    def read_log(self, query: Any, ctx: RequestContext) -> Any:
        entries = [
            pb.LogEntry(
                position=e.position,
                account_id=split_stored_id(e.aggregate_id)[1],
                event_type=e.event_type,
            )
            for e in self.repository.event_log().read_all(query.after, limit=100)
        ]
        return pb.Log(entries=entries)

    def list_accounts(self, query: Any, ctx: RequestContext) -> Any:
        self.projections.catch_up()
        rows = self.accounts.rows.get(current_tenant(), {})
        return pb.AccountList(accounts=[rows[k] for k in sorted(rows)])

    def explode(self, cmd: Any, ctx: RequestContext) -> Any:
        raise RuntimeError("/srv/secret/db.sqlite: password=hunter2")

    @property
    def routes(self) -> list[Route]:
        return [
            Route("edge.v1.Accounts.Open", pb.Open, pb.Opened, self.open),
            Route("edge.v1.Accounts.Deposit", pb.Deposit, pb.Opened, self.deposit),
            Route("edge.v1.Accounts.Get", pb.Get, pb.AccountView, self.get),
            Route("edge.v1.Accounts.OpenInUnit", pb.Open, pb.Opened, self.open_in_unit),
            Route("edge.v1.Accounts.ReadLog", pb.ReadLog, pb.Log, self.read_log),
            Route("edge.v1.Accounts.List", pb.ListAccounts, pb.AccountList, self.list_accounts),
            Route("edge.v1.Accounts.Explode", pb.Open, pb.Opened, self.explode),
        ]


def make_app(store: SQLiteEventStore, **kwargs: Any) -> ConnectApp:
    options: dict[str, Any] = {
        "authenticate": jwt_authenticator(audience=AUDIENCE, issuer=ISSUER, key=public_pem()),
        "middlewares": default_middlewares(network=True, rules=RULES),
        "max_body_bytes": 4096,
    }
    options.update(kwargs)
    return ConnectApp(Accounts(store), **options)


def store_at(path: Path) -> SQLiteEventStore:
    return SQLiteEventStore(path)
