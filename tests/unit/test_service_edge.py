"""Identity, middlewares, authenticators and tenancy below the HTTP layer (no sockets)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from eventstore import AppError
from eventstore.auth import Principal, api_key_authenticator, hash_api_key, jwt_authenticator
from eventstore.core.errors import AuthenticationError
from eventstore.core.headers import PRINCIPAL_ID_HEADER, TENANT_ID_HEADER
from eventstore.core.routing import RequestContext, Route, Router
from eventstore.core.transport import InProcessTransport
from eventstore.middleware import (
    authorization_middleware,
    default_middlewares,
    logging_middleware,
    recovery_middleware,
    require_metadata,
    validation_middleware,
)
from eventstore.sqlite import SQLiteEventStore
from eventstore.tenancy import (
    InvalidTenantError,
    TenantMismatchError,
    TenantStores,
    current_tenant,
    with_tenant,
)
from tests.support.bank import account_repository
from tests.support.edge import AUDIENCE, ISSUER, pb, public_pem, rsa_key, token


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def seen_route(seen: list[RequestContext], subject: str = "edge.v1.Accounts.Open") -> Route:
    def handler(message: Any, ctx: RequestContext) -> Any:
        seen.append(ctx)
        return pb.Opened(account_id=message.account_id)

    return Route(subject, pb.Open, pb.Opened, handler)


# -- identity ----------------------------------------------------------------------------


def test_a_network_router_drops_principal_and_tenant_headers_from_metadata() -> None:
    seen: list[RequestContext] = []
    router = Router(network=True)
    router.register(seen_route(seen))
    headers = {PRINCIPAL_ID_HEADER: "root", TENANT_ID_HEADER: "acme", "es-principal-roles": "x"}
    assert run(router.dispatch("edge.v1.Accounts.Open", pb.Open(), headers)).success
    (ctx,) = seen
    assert (ctx.metadata.principal_id, ctx.metadata.tenant_id, ctx.principal) == ("", "", None)
    assert not any(k.lower().startswith(("es-principal", "es-tenant")) for k in ctx.headers)


def test_the_principal_passed_by_the_host_is_the_metadata_and_picks_its_only_tenant() -> None:
    seen: list[RequestContext] = []
    router = Router(network=True)
    router.register(seen_route(seen))
    ann = Principal("ann", roles=("teller",), tenants=("acme",))
    assert run(router.dispatch("edge.v1.Accounts.Open", pb.Open(), {}, principal=ann)).success
    assert (seen[0].metadata.principal_id, seen[0].metadata.tenant_id) == ("ann", "acme")


def test_a_tenant_the_principal_does_not_belong_to_is_forbidden_before_any_handler() -> None:
    seen: list[RequestContext] = []
    router = Router()
    router.register(seen_route(seen))
    ann = Principal("ann", tenants=("acme",))
    reply = run(router.dispatch("edge.v1.Accounts.Open", pb.Open(), principal=ann, tenant="beta"))
    assert reply.error is not None and reply.error.code == "TENANT_FORBIDDEN"
    assert seen == []


def test_in_process_the_caller_names_its_principal_and_tenant() -> None:
    seen: list[RequestContext] = []
    transport = InProcessTransport(seen_route(seen))
    headers = {PRINCIPAL_ID_HEADER: "teller-7", TENANT_ID_HEADER: "acme"}
    assert run(transport.request("edge.v1.Accounts.Open", pb.Open(), headers)).success
    assert (seen[0].metadata.principal_id, seen[0].tenant) == ("teller-7", "acme")


def test_a_principal_needs_an_id() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Principal("")


# -- tenancy -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["Acme", "../x", "a:b", "", "a" * 65, "acme\n", "-x", "a/b"])
def test_tenant_ids_outside_the_pattern_are_invalid(bad: str) -> None:
    with pytest.raises(InvalidTenantError) as caught:
        with with_tenant(bad or "X"):
            pass
    assert caught.value.code == "INVALID_TENANT"


def test_with_tenant_sets_and_restores_the_tenant() -> None:
    assert current_tenant() == ""
    with with_tenant("acme"):
        with with_tenant("b-2_x"):
            assert current_tenant() == "b-2_x"
        assert current_tenant() == "acme"
    assert current_tenant() == ""


def test_a_synchronous_handler_in_the_pool_runs_in_the_tenant_and_gets_tenant_mismatch(
    tmp_path: Path,
) -> None:
    import threading

    with SQLiteEventStore(tmp_path / "t.db") as store:
        repo = account_repository(store, tenant_isolation=True)
        with with_tenant("acme"):
            account = repo.factory("acc-1")
            account.open("Ann")
            repo.save(account)
            held = repo.load("acc-1")  # an aggregate of acme, kept across requests
        seen: list[tuple[str, str]] = []  # (tenant, thread) each handler ran in

        def load(message: Any, ctx: RequestContext) -> Any:
            seen.append((current_tenant(), threading.current_thread().name))
            repo.load(message.account_id)
            return pb.Opened()

        def save_held(message: Any, ctx: RequestContext) -> Any:
            seen.append((current_tenant(), threading.current_thread().name))
            held.deposit(5)
            repo.save(held)
            return pb.Opened()

        router = Router(handler_threads=2)
        router.register(Route("edge.v1.Accounts.Open", pb.Open, pb.Opened, load))
        router.register(Route("edge.v1.Accounts.Deposit", pb.Deposit, pb.Opened, save_held))
        bob = Principal("bob", tenants=("beta",))

        async def both() -> list[Any]:
            return [
                await router.dispatch(
                    "edge.v1.Accounts.Open", pb.Open(account_id="acme::acc-1"), principal=bob
                ),
                await router.dispatch(
                    "edge.v1.Accounts.Deposit", pb.Deposit(account_id="acc-1"), principal=bob
                ),
            ]

        replies = run(both())
        router.close()
        assert [tenant for tenant, _ in seen] == ["beta", "beta"]
        assert all(name.startswith("eventstore-handler") for _, name in seen)  # the pool
        assert [r.error.code if r.error else "ok" for r in replies] == ["TENANT_MISMATCH"] * 2
        assert [e.aggregate_id for e in store.read_all(0)] == ["acme::acc-1"]


def test_an_aggregate_loaded_in_one_tenant_cannot_be_saved_in_another_sync_or_async(
    tmp_path: Path,
) -> None:
    with SQLiteEventStore(tmp_path / "t.db") as store:
        repo = account_repository(store, tenant_isolation=True)
        with with_tenant("acme"):
            account = repo.factory("acc-1")
            account.open("Ann")
            repo.save(account)
            loaded = repo.load("acc-1")
        loaded.deposit(5)
        with with_tenant("beta"):
            with pytest.raises(TenantMismatchError):
                repo.save(loaded)

            async def save_async() -> None:
                await repo.save_async(loaded)

            with pytest.raises(TenantMismatchError):
                run(save_async())
        with pytest.raises(TenantMismatchError, match="no tenant"):
            repo.load("acc-1")
        assert store.head_position() == 1


def test_the_aggregate_cache_is_kept_per_tenant(tmp_path: Path) -> None:
    with SQLiteEventStore(tmp_path / "t.db") as store:
        repo = account_repository(store, tenant_isolation=True, cache=8)
        with with_tenant("acme"):
            account = repo.factory("acc-1")
            account.open("Ann", 10)
            repo.save(account)
            assert repo.load("acc-1").state.balance == 10
        with with_tenant("beta"):
            with pytest.raises(Exception, match="no events"):
                repo.load("acc-1")
            assert not repo.exists("acc-1")
        assert repo.cached_ids == ["acme::acc-1"]


def test_tenant_stores_open_one_file_per_tenant_lazily_and_close_together(
    tmp_path: Path,
) -> None:
    with TenantStores(tmp_path / "tenants") as stores:
        assert stores.open_tenants == []
        for tenant in ("acme", "beta"):
            with with_tenant(tenant):
                repo = account_repository(stores.for_tenant())
                account = repo.factory("acc-1")
                account.open(tenant)
                repo.save(account)
        assert stores.for_tenant("acme").load_stream("acc-1")[0].aggregate_id == "acc-1"
        assert stores.open_tenants == ["acme", "beta"]
        with pytest.raises(InvalidTenantError):
            stores.for_tenant("../x")
    assert sorted(p.name for p in (tmp_path / "tenants").iterdir() if p.suffix == ".db") == [
        "acme.db",
        "beta.db",
    ]
    assert not (tmp_path / "x.db").exists()


def test_tenant_stores_take_a_url_template(tmp_path: Path) -> None:
    stores = TenantStores(f"sqlite:///{tmp_path}/t_{{tenant}}.db")
    assert stores.location("acme") == f"sqlite:///{tmp_path}/t_acme.db"
    assert stores.for_tenant("acme").head_position() == 0
    stores.close()
    assert (tmp_path / "t_acme.db").exists()
    with pytest.raises(RuntimeError, match="closed"):
        stores.for_tenant("acme")


# -- authenticators ----------------------------------------------------------------------


def test_api_keys_are_stored_hashed_and_matched() -> None:
    ann = Principal("ann", roles=("teller",))
    auth = api_key_authenticator({hash_api_key("k-123"): ann})
    assert auth({"X-Api-Key": "k-123"}) == ann
    assert auth({"authorization": "ApiKey k-123"}) == ann
    assert auth({}) is None
    with pytest.raises(AuthenticationError, match="not known"):
        auth({"x-api-key": "k-124"})


def test_jwt_keys_come_from_a_jwks_file_by_kid(tmp_path: Path) -> None:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key().public_key()))
    jwk["kid"] = "k1"
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    auth = jwt_authenticator(audience=AUDIENCE, issuer=ISSUER, jwks_file=tmp_path / "jwks.json")
    now = int(time.time())
    claims = {"sub": "ann", "aud": AUDIENCE, "iss": ISSUER, "exp": now + 60, "roles": "teller"}
    good = jwt.encode(claims, rsa_key(), algorithm="RS256", headers={"kid": "k1"})
    assert auth({"Authorization": f"Bearer {good}"}) == Principal("ann", roles=("teller",))
    other = jwt.encode(claims, rsa_key(), algorithm="RS256", headers={"kid": "k2"})
    with pytest.raises(AuthenticationError, match="key id"):
        auth({"Authorization": f"Bearer {other}"})


def test_an_expired_token_within_the_leeway_is_accepted() -> None:
    auth = jwt_authenticator(audience=AUDIENCE, issuer=ISSUER, key=public_pem(), leeway=30)
    assert auth({"Authorization": f"Bearer {token(exp_in=-10)}"}) is not None
    with pytest.raises(AuthenticationError, match="expired"):
        auth({"Authorization": f"Bearer {token(exp_in=-60)}"})


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_a_token_signed_with_another_kind_of_key_is_unauthenticated_not_a_crash(
    algorithm: str,
) -> None:
    # PyJWT's InvalidKeyError is not an InvalidTokenError: it escaped as a 500 whose
    # message was PyJWT's internal text, for any caller with no credentials at all.
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    key = (
        ec.generate_private_key(ec.SECP256R1())
        if algorithm == "ES256"
        else (ed25519.Ed25519PrivateKey.generate())
    )
    now = int(time.time())
    claims = {"sub": "ann", "aud": AUDIENCE, "iss": ISSUER, "exp": now + 60}
    forged = jwt.encode(claims, key, algorithm=algorithm)
    auth = jwt_authenticator(audience=AUDIENCE, issuer=ISSUER, key=public_pem())
    with pytest.raises(AuthenticationError, match="not valid"):
        auth({"Authorization": f"Bearer {forged}"})


def test_a_token_with_an_empty_subject_is_unauthenticated() -> None:
    now = int(time.time())
    claims = {"sub": "", "aud": AUDIENCE, "iss": ISSUER, "exp": now + 60}
    empty = jwt.encode(claims, rsa_key(), algorithm="RS256")
    auth = jwt_authenticator(audience=AUDIENCE, issuer=ISSUER, key=public_pem())
    with pytest.raises(AuthenticationError, match="'sub' claim is empty"):
        auth({"Authorization": f"Bearer {empty}"})


@pytest.mark.parametrize(
    "location",
    [
        "postgresql://127.0.0.1:1/db?password=s3cret&bogus=1",
        "host=127.0.0.1 port=1 password=s3cret bogus=1",
        "host=h password='s3cret and more' x=1",
        "postgres://ann:s3/cret@127.0.0.1:1/db?bogus=1",
        "postgresql://ann:p@s3cret@h/db",
    ],
)
def test_messages_never_repeat_a_password_in_any_form_a_store_location_takes(
    location: str,
) -> None:
    from eventstore.core.errors import StoreURLError, redact_url

    assert "s3cret" not in redact_url(location)
    assert "s3cret" not in str(StoreURLError(location, "a cause", "A fix."))


@pytest.mark.parametrize("algorithms", [("none",), ("HS256", "RS256"), ()])
def test_jwt_algorithm_lists_refuse_none_and_mixed_families(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="algorithms"):
        jwt_authenticator(audience="a", issuer="i", key="k", algorithms=algorithms)


# -- middlewares -------------------------------------------------------------------------


def dispatch(
    middlewares: list[Any],
    message: Any = None,
    *,
    principal: Principal | None = None,
    network: bool = False,
    handler: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    seen: list[RequestContext] = []
    router = Router(middlewares, network=network, handler_threads=0)
    route = seen_route(seen)
    if handler is not None:
        route = Route(route.subject, pb.Open, pb.Opened, handler)
    router.register(route)
    return run(router.dispatch(route.subject, message or pb.Open(), headers, principal=principal))


def test_a_field_that_breaks_two_rules_names_both_in_the_details() -> None:
    from eventstore.core.errors import ValidationError

    error = ValidationError(
        "edge.v1.Open", [("owner", "required", "is required"), ("owner", "min_len", "too short")]
    )
    assert error.details["field.owner"] == "required,min_len"


def test_an_authorization_key_in_the_http_paths_form_is_refused_naming_the_dotted_one() -> None:
    # It matched no subject, so in process every call went unchecked.
    with pytest.raises(ValueError, match="'edge.v1.Accounts.\\*'"):
        authorization_middleware({"edge.v1.Accounts/*": ["teller"]})


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("edge.v1.Accounts.>", "'edge.v1.Accounts.*'"),
        ("edge.v1.Accounts.", "not a dotted subject"),
        ("edge.v1..Accounts.*", "not a dotted subject"),
        (" edge.v1.Accounts.*", "not a dotted subject"),
    ],
)
def test_an_authorization_key_that_can_match_no_subject_is_refused(key: str, said: str) -> None:
    # Each matched nothing, so in process the calls it meant to guard went unchecked.
    with pytest.raises(ValueError, match=re.escape(said)):
        authorization_middleware({key: ["admin"]})


def test_authorization_denies_a_missing_role_and_unlisted_subjects_on_a_network_host() -> None:
    rules = {"edge.v1.Accounts.*": ["teller"]}
    auditor = Principal("amy", roles=("auditor",))
    reply = dispatch([authorization_middleware(rules)], principal=auditor)
    assert reply.error.code == "PERMISSION_DENIED"
    assert dispatch([authorization_middleware(rules)]).error.code == "UNAUTHENTICATED"
    assert dispatch([authorization_middleware({})], principal=auditor).success
    unlisted = dispatch([authorization_middleware({})], principal=auditor, network=True)
    assert unlisted.error.code == "PERMISSION_DENIED"
    anyone = dispatch([authorization_middleware({"edge.*": ["*"]})], principal=auditor)
    assert anyone.success


def test_the_network_default_chain_requires_a_principal_and_the_local_one_does_not() -> None:
    assert dispatch(default_middlewares(network=True)).error.code == "UNAUTHENTICATED"
    assert dispatch(default_middlewares(network=False)).success


def test_validation_lists_every_violated_field_and_the_handler_does_not_run() -> None:
    def rules(message: Any) -> list[tuple[str, str, str]]:
        return [("owner", "min_len", "is required"), ("initial", "gte", "must be >= 0")]

    ran: list[int] = []

    def handler(message: Any, ctx: RequestContext) -> Any:
        ran.append(1)
        return pb.Opened()

    reply = dispatch([validation_middleware({"edge.v1.Open": [rules]})], handler=handler)
    assert reply.error.code == "VALIDATION_FAILED"
    assert reply.error.details["field.owner"] == "min_len"
    assert reply.error.details["field.initial"] == "gte"
    assert "owner: is required" in reply.error.message and ran == []


def test_recovery_turns_a_crash_into_a_generic_internal_error_in_process_too() -> None:
    def handler(message: Any, ctx: RequestContext) -> Any:
        raise KeyError("secret-column")

    reply = dispatch([recovery_middleware()], handler=handler)
    assert reply.error.code == "INTERNAL" and "secret" not in reply.error.message
    assert reply.error.details["error_id"]


def test_require_metadata_names_what_is_missing() -> None:
    reply = dispatch([require_metadata("principal_id", "source")], headers={"Es-Meta-source": "ui"})
    assert reply.error.code == "MISSING_METADATA"
    assert reply.error.details["missing"] == "principal_id"
    ok = dispatch(
        [require_metadata("principal_id", "correlation_id")],
        principal=Principal("ann"),
        headers={"Es-Correlation-Id": "c-1"},
    )
    assert ok.success


def test_logging_records_the_structured_fields_of_each_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "eventstore.requests")
    ann = Principal("ann", tenants=("acme",))
    dispatch([logging_middleware()], principal=ann)

    def refuse(message: Any, ctx: RequestContext) -> Any:
        raise AppError("NOPE", "no")

    dispatch([logging_middleware()], principal=ann, handler=refuse)
    first, second = (r for r in caplog.records if r.name == "eventstore.requests")
    fields = {k: getattr(first, k) for k in ("subject", "principal", "tenant", "outcome")}
    assert fields == {
        "subject": "edge.v1.Accounts.Open",
        "principal": "ann",
        "tenant": "acme",
        "outcome": "ok",
    }
    assert first.command_id and first.correlation_id and first.duration_ms >= 0
    assert second.outcome == "NOPE" and second.levelno == logging.WARNING


def test_a_request_cancelled_by_its_deadline_is_logged_as_cancelled_not_ok(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "eventstore.requests")

    async def slow(message: Any, ctx: RequestContext) -> Any:
        await asyncio.sleep(5)

    router = Router([logging_middleware()], handler_threads=0)
    route = seen_route([])
    router.register(Route(route.subject, pb.Open, pb.Opened, slow))

    async def call_with_a_deadline() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(router.dispatch(route.subject, pb.Open(), None), 0.05)

    run(call_with_a_deadline())
    (record,) = (r for r in caplog.records if r.name == "eventstore.requests")
    assert record.outcome == "CANCELLED" and record.levelno == logging.WARNING


@pytest.mark.parametrize(
    ("subject", "message", "tenant", "code", "recorded_tenant"),
    [
        ("edge.v1.Accounts.Open", pb.Open(), "beta", "TENANT_FORBIDDEN", "beta"),
        ("edge.v1.Accounts.Open", pb.Open(), "../x", "INVALID_TENANT", ""),
        ("edge.v1.Accounts.Open", pb.Get(), None, "INVALID_MESSAGE_TYPE", "acme"),
        ("edge.v1.Accounts.Drop", pb.Open(), None, "NO_HANDLER", "acme"),
    ],
)
def test_a_request_the_router_refuses_before_the_chain_is_logged_and_nothing_else_runs(
    caplog: pytest.LogCaptureFixture,
    subject: str,
    message: Any,
    tenant: str | None,
    code: str,
    recorded_tenant: str,
) -> None:
    caplog.set_level(logging.INFO, "eventstore.requests")
    ran: list[str] = []

    async def noting(message: Any, ctx: RequestContext, call_next: Any) -> Any:
        ran.append("middleware")
        return await call_next(message, ctx)

    def handler(message: Any, ctx: RequestContext) -> Any:
        ran.append("handler")
        return pb.Opened()

    router = Router([logging_middleware(), noting], network=True, handler_threads=0)
    router.register(Route("edge.v1.Accounts.Open", pb.Open, pb.Opened, handler))
    ann = Principal("ann", tenants=("acme",))
    headers = {"Es-Command-Id": "c-9", "Es-Correlation-Id": "corr-1"}
    reply = run(router.dispatch(subject, message, headers, principal=ann, tenant=tenant))
    assert reply.error is not None and reply.error.code == code
    assert ran == []
    (record,) = (r for r in caplog.records if r.name == "eventstore.requests")
    fields = {
        k: getattr(record, k)
        for k in ("subject", "command_id", "principal", "tenant", "correlation_id", "outcome")
    }
    assert fields == {
        "subject": subject,
        "command_id": "c-9",
        "principal": "ann",
        "tenant": recorded_tenant,
        "correlation_id": "corr-1",
        "outcome": code,
    }
    assert record.levelno == logging.WARNING
    assert record.event_count == -1 and record.duration_ms >= 0


def test_a_host_refusal_is_logged_without_a_principal_and_without_identity_headers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from eventstore.middleware import observes_refusals

    caplog.set_level(logging.INFO, "eventstore.requests")
    seen: list[RequestContext] = []

    @observes_refusals
    async def observer(message: Any, ctx: RequestContext, call_next: Any) -> Any:
        seen.append(ctx)
        return await call_next(message, ctx)

    router = Router([logging_middleware(), observer], network=True)
    router.register(seen_route([]))
    refusal = AuthenticationError("the token has expired")
    forged = {PRINCIPAL_ID_HEADER: "root", TENANT_ID_HEADER: "beta", "Es-Command-Id": "c-1"}
    reply = run(router.refuse("edge.v1.Accounts.Open", refusal, forged, tenant="acme"))
    assert reply.error is refusal
    (record,) = (r for r in caplog.records if r.name == "eventstore.requests")
    assert (record.outcome, record.principal, record.tenant) == ("UNAUTHENTICATED", "", "acme")
    (ctx,) = seen
    assert ctx.refused and ctx.principal is None and ctx.command_id == "c-1"
    assert not any(k.lower().startswith(("es-principal", "es-tenant")) for k in ctx.headers)


def test_an_observer_cannot_turn_a_refusal_into_a_reply() -> None:
    from eventstore.middleware import observes_refusals

    ran: list[str] = []

    @observes_refusals
    async def swallowing(message: Any, ctx: RequestContext, call_next: Any) -> Any:
        ran.append("observer")
        try:
            return await call_next(message, ctx)
        except AppError:
            return pb.Opened(account_id="forged")

    router = Router([swallowing], network=True)
    router.register(seen_route([]))
    ann = Principal("ann", tenants=("acme",))
    reply = run(router.dispatch("edge.v1.Accounts.Open", pb.Open(), principal=ann, tenant="beta"))
    assert ran == ["observer"]
    assert reply.error is not None and reply.error.code == "TENANT_FORBIDDEN"


def test_the_buf_validate_spike_fails_in_process_protoc_has_no_validate_proto() -> None:
    """Why validation rules are Python callables (docs/decisions.md, "Validation rules as
    Python callables"): grpc_tools bundles no buf/validate/validate.proto. If it ever does,
    this fails and the decision is worth revisiting."""
    import importlib.resources

    include = importlib.resources.files("grpc_tools") / "_proto"
    assert not (include / "buf" / "validate" / "validate.proto").is_file()
    assert (include / "google" / "protobuf" / "any.proto").is_file()


def test_a_process_manager_acts_in_the_tenant_of_the_triggering_event(tmp_path: Path) -> None:
    from eventstore.core.events import EventMetadata
    from eventstore.core.projections import ProjectionManager

    with SQLiteEventStore(tmp_path / "t.db") as store:
        repo = account_repository(store, tenant_isolation=True)
        for tenant in ("acme", "beta"):
            with with_tenant(tenant):
                account = repo.factory("acc-1")
                account.open(tenant)
                repo.save(account, EventMetadata(tenant_id=tenant))
        seen: list[tuple[str, str, str]] = []

        class Welcome:
            """On each opening, deposit a bonus to the same account of the same tenant."""

            name = "welcome"

            def reset(self, ctx: Any) -> None:
                pass

            def handle(self, event: Any, ctx: Any) -> None:
                if event.event_type.endswith("AccountOpened"):
                    seen.append((ctx.tenant, current_tenant(), event.aggregate_id))
                    account = repo.load("acc-1")
                    account.deposit(1)
                    repo.save_with_command(account, f"bonus-{event.event_id}")

        manager = ProjectionManager(store)
        manager.register(Welcome())
        manager.catch_up()
        assert seen == [("acme", "acme", "acme::acc-1"), ("beta", "beta", "beta::acc-1")]
        assert [store.stream_version(i) for i in ("acme::acc-1", "beta::acc-1")] == [2, 2]


def test_a_tenant_event_source_feeds_a_projection_only_that_tenants_events(
    tmp_path: Path,
) -> None:
    from eventstore.core.projections import ProjectionManager
    from eventstore.tenancy import TenantEventSource

    with SQLiteEventStore(tmp_path / "t.db") as store:
        repo = account_repository(store, tenant_isolation=True)
        for i in range(5):
            for tenant in ("acme", "beta"):
                with with_tenant(tenant):
                    account = repo.factory(f"acc-{i}")
                    account.open(f"{tenant}-{i}")
                    repo.save(account)
        acme = TenantEventSource(store, "acme")
        assert [e.aggregate_id for e in acme.read_all()] == [f"acme::acc-{i}" for i in range(5)]
        assert len(acme.read_all(0, limit=2)) == 2
        owners: list[str] = []

        class Owners:
            name = "owners"

            def reset(self, ctx: Any) -> None:
                owners.clear()

            def handle(self, event: Any, ctx: Any) -> None:
                owners.append(pb_bank.AccountOpened.FromString(event.data).owner)

        from tests.support.bank import pb as pb_bank

        manager = ProjectionManager(acme, batch_size=2)
        manager.register(Owners())
        manager.catch_up()
        assert owners == [f"acme-{i}" for i in range(5)]
        with pytest.raises(InvalidTenantError):
            TenantEventSource(store, "../x")


def test_a_unit_of_work_keeps_tenant_isolation(tmp_path: Path) -> None:
    from eventstore import UnitOfWork

    with SQLiteEventStore(tmp_path / "t.db") as store:
        repo = account_repository(store, tenant_isolation=True)
        for tenant in ("acme", "beta"):
            with with_tenant(tenant):
                with UnitOfWork(store, command_id="open-both") as uow:
                    for name in ("a", "b"):
                        account = repo.factory(name)
                        account.open(f"{tenant}-{name}")
                        repo.save(account, unit=uow)
                assert uow.result is not None and not uow.result.already_processed
        assert sorted({e.aggregate_id for e in store.read_all(0)}) == [
            "acme::a",
            "acme::b",
            "beta::a",
            "beta::b",
        ]
        with with_tenant("acme"):
            loaded = repo.load("a")
        loaded.deposit(1)
        with with_tenant("beta"), pytest.raises(TenantMismatchError):
            with UnitOfWork(store, command_id="x") as uow:
                repo.save(loaded, unit=uow)
        assert store.head_position() == 4


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_unique_conflict_in_an_isolated_unit_shows_the_clients_value_and_no_owner(
    tmp_path: Path, mode: str
) -> None:
    from eventstore import UnitOfWork
    from eventstore.core.errors import UniqueConstraintError
    from eventstore.core.responses import app_error_for

    with SQLiteEventStore(tmp_path / "t.db") as store:
        repo = account_repository(store, tenant_isolation=True)
        for tenant, account_id in (("acme", "acc-1"), ("beta", "acc-9")):
            with with_tenant(tenant):
                account = repo.factory(account_id)
                account.open("Ann", unique_owner=True)  # one value, no conflict across tenants
                repo.save(account)

        async def commit_async(uow: UnitOfWork) -> None:
            await uow.commit_async()

        with with_tenant("acme"), pytest.raises(UniqueConstraintError) as caught:
            uow = UnitOfWork(store, command_id="open-two")
            for name in ("acc-2", "acc-3"):
                account = repo.factory(name)
                account.open("Ann" if name == "acc-3" else "Bo", unique_owner=True)
                repo.save(account, unit=uow)
            uow.commit() if mode == "sync" else run(commit_async(uow))
        error = caught.value
        assert (error.index, error.value, error.owner, error.requester) == (
            "account_owner",
            "Ann",
            None,
            "acc-3",
        )
        assert "acme::" not in str(error) and "acc-1" not in str(error)
        wire = app_error_for(error)
        assert wire is not None and wire.code == "UNIQUE_CONSTRAINT"
        assert wire.details == {"index": "account_owner", "value": "Ann"}
        assert sorted({e.aggregate_id for e in store.read_all(0)}) == ["acme::acc-1", "beta::acc-9"]
        assert store.head_position() == 2


def test_a_projection_context_carries_the_tenant_of_the_stored_id_before_the_metadatas(
    tmp_path: Path,
) -> None:
    from eventstore.core.events import EventMetadata
    from eventstore.core.projections import ProjectionManager

    with SQLiteEventStore(tmp_path / "t.db") as store:
        repo = account_repository(store, tenant_isolation=True)
        with with_tenant("acme"):  # no tenant in the metadata: the stored id says acme
            account = repo.factory("acc-1")
            account.open("Ann")
            repo.save(account)
        with with_tenant("beta"):  # metadata naming another tenant does not move the event
            account = repo.factory("acc-1")
            account.open("Bob")
            repo.save(account, EventMetadata(tenant_id="acme"))
        plain = account_repository(store)  # a store of one tenant: the metadata says it
        account = plain.factory("solo")
        account.open("Cy")
        plain.save(account, EventMetadata(tenant_id="gamma"))
        seen: list[tuple[str, str, str]] = []

        class Tenants:
            name = "tenants"

            def reset(self, ctx: Any) -> None:
                pass

            def handle(self, event: Any, ctx: Any) -> None:
                seen.append((event.aggregate_id, ctx.tenant, current_tenant()))

        manager = ProjectionManager(store)
        manager.register(Tenants())
        manager.catch_up()
        assert seen == [
            ("acme::acc-1", "acme", "acme"),
            ("beta::acc-1", "beta", "beta"),
            ("solo", "gamma", "gamma"),
        ]


def test_a_tenant_event_source_has_no_unscoped_read(tmp_path: Path) -> None:
    from eventstore.tenancy import TenantEventSource

    with SQLiteEventStore(tmp_path / "t.db") as store:
        repo = account_repository(store, tenant_isolation=True)
        for tenant in ("acme", "beta"):
            with with_tenant(tenant):
                account = repo.factory("acc-1")
                account.open(tenant)
                account.deposit(1)
                repo.save(account)
        beta = TenantEventSource(store, "beta")
        assert [e.aggregate_id for e in beta.load_stream("acc-1")] == ["beta::acc-1"] * 2
        assert beta.stream_version("acc-1") == 2 and beta.stream_version("acc-2") == 0
        assert [e.position for e in beta.iter_all(page_size=1)] == [3, 4]
        with pytest.raises(TenantMismatchError):
            beta.load_stream("acme::acc-1")
        for unscoped in ("count_events", "constraint_owner", "append", "find_command"):
            with pytest.raises(AttributeError, match="scoped to that tenant"):
                getattr(beta, unscoped)
        assert store.count_events() == 4  # the store itself is the operator's view


def test_a_repositorys_event_log_is_the_requests_tenants_own(tmp_path: Path) -> None:
    with SQLiteEventStore(tmp_path / "t.db") as store:
        repo = account_repository(store, tenant_isolation=True)
        for tenant in ("acme", "beta"):
            with with_tenant(tenant):
                account = repo.factory("acc-1")
                account.open(tenant)
                repo.save(account)
        with with_tenant("acme"):
            assert [e.aggregate_id for e in repo.event_log().read_all()] == ["acme::acc-1"]
        with pytest.raises(TenantMismatchError, match="no tenant"):
            repo.event_log()
        assert account_repository(store).event_log() is store  # no isolation: the store


# -- the request at fault: an empty aggregate id, a JSON body that is no object ----------


def bank_app(store: SQLiteEventStore) -> Any:
    """The example bank (generated aggregates, id field ``account_id``) on an anonymous host."""
    from eventstore.rpc import ConnectApp
    from examples.bankaccount.service import services

    return ConnectApp(*services(store), allow_anonymous=True)


def post_json(app: Any, path: str, body: bytes) -> Any:
    import httpx

    async def go() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            return await client.post(
                path, content=body, headers={"Content-Type": "application/json"}
            )

    return run(go())


def app_error_of(reply: Any) -> AppError:
    from eventstore.rpc.app import app_error_from_details

    error = app_error_from_details(reply.json().get("details", []))
    assert error is not None, reply.text
    return error


@pytest.mark.parametrize(
    "path",
    ["/account.v1.AccountCommandService/Deposit", "/account.v1.AccountQueryService/GetAccount"],
)
def test_an_empty_aggregate_id_over_http_is_invalid_argument_naming_the_id_field(
    tmp_path: Path, path: str
) -> None:
    with SQLiteEventStore(tmp_path / "bank.db") as store:
        app = bank_app(store)
        try:
            reply = post_json(app, path, b"{}")
        finally:
            app.router.close()
        assert (reply.status_code, reply.json()["code"]) == (400, "invalid_argument")
        error = app_error_of(reply)
        assert error.code == "INVALID_ARGUMENT"
        assert error.details == {"aggregate_type": "Account", "id_field": "account_id"}
        assert "'account_id'" in error.message and "aggregate's id" in error.solution
        assert store.head_position() == 0


def test_an_empty_aggregate_id_in_process_is_invalid_argument_and_writes_nothing(
    tmp_path: Path,
) -> None:
    with SQLiteEventStore(tmp_path / "bank.db") as store:
        repository = account_repository(store)

        def open_(cmd: Any, ctx: RequestContext) -> Any:
            result = repository.retry_on_conflict(
                cmd.account_id, lambda a: a.open(cmd.owner), command_id=ctx.command_id
            )
            return pb.Opened(account_id=cmd.account_id, version=result.version)

        transport = InProcessTransport(Route("edge.v1.Accounts.Open", pb.Open, pb.Opened, open_))
        reply = run(transport.request("edge.v1.Accounts.Open", pb.Open(owner="Ann")))
        transport.router.close()
        assert reply.error.code == "INVALID_ARGUMENT"
        assert reply.error.details == {"aggregate_type": "Account", "id_field": ""}
        assert isinstance(reply.exception, ValueError)  # `except ValueError` callers still work
        assert store.head_position() == 0


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"[]", "array"),
        (b' "str"', "string"),
        (b"42", "number"),
        (b"null", "null"),
        (b"true", "boolean"),
    ],
)
def test_a_json_body_that_is_not_an_object_is_refused_before_the_handler(
    tmp_path: Path, body: bytes, kind: str
) -> None:
    with SQLiteEventStore(tmp_path / "bank.db") as store:
        app = bank_app(store)
        try:
            reply = post_json(app, "/account.v1.AccountCommandService/Deposit", body)
        finally:
            app.router.close()
        assert (reply.status_code, reply.json()["code"]) == (400, "invalid_argument")
        message = reply.json()["message"]
        assert f"is a JSON {kind}" in message and "must be a JSON object" in message
        assert "account.v1.DepositCommand" in message


_SHAPES = """
syntax = "proto3";
package logshapes.v1;
message Summary { int64 total = 1; }
message SummaryReply { Summary events = 1; }
message FlagReply { bool event_count = 1; }
message ListReply { repeated string events = 1; }
message CountReply { uint32 event_count = 1; }
"""


@pytest.mark.parametrize(
    ("reply_name", "fields", "count"),
    [
        ("SummaryReply", {"events": {"total": 3}}, -1),
        ("FlagReply", {"event_count": True}, -1),
        ("ListReply", {"events": ["a", "b"]}, 2),
        ("CountReply", {"event_count": 4}, 4),
    ],
)
def test_the_log_record_counts_events_only_from_a_count_and_never_fails_the_reply(
    caplog: pytest.LogCaptureFixture, reply_name: str, fields: dict[str, Any], count: int
) -> None:
    # A reply with a singular message named `events` came back INTERNAL (len() of a
    # message) though the command was applied; the record was never written.
    from google.protobuf.json_format import ParseDict

    from eventstore.codegen import generate_module

    shapes = generate_module(_SHAPES, name="logshapes")
    reply_type = getattr(shapes, reply_name)
    caplog.set_level(logging.INFO, "eventstore.requests")

    async def handler(message: Any, ctx: RequestContext) -> Any:
        return ParseDict(fields, reply_type())

    router = Router([logging_middleware()], handler_threads=0)
    router.register(Route("logshapes.v1.S.Do", shapes.Summary, reply_type, handler))
    response = run(router.dispatch("logshapes.v1.S.Do", shapes.Summary(), None))
    assert response.success, response.error
    (record,) = (r for r in caplog.records if r.name == "eventstore.requests")
    assert record.outcome == "ok" and record.event_count == count


def test_a_validator_defined_again_replaces_the_old_one_and_can_be_removed() -> None:
    # A notebook cell run again with a fixed rule stacked it beside the buggy one, which
    # went on refusing valid requests; there was no way to take a rule back.
    from eventstore.core.middleware import validators_for
    from eventstore.middleware import register_validator, unregister_validator

    name = "revalidate.v1.Thing"
    cell: dict[str, Any] = {"__name__": "__main__"}  # a notebook's namespace
    exec("def rule(message):\n    return [('owner', 'max_len', 'too long')]", cell)
    register_validator(name, cell["rule"])
    buggy = cell["rule"]
    exec("def rule(message):\n    return []", cell)  # the cell, fixed and run again
    register_validator(name, cell["rule"])
    register_validator(name, lambda message: [])
    assert validators_for(name)[0] is cell["rule"] and buggy not in validators_for(name)
    assert len(validators_for(name)) == 2
    assert unregister_validator(name, cell["rule"]) == 1 and len(validators_for(name)) == 1
    assert unregister_validator(name) == 1 and validators_for(name) == []


def test_rules_made_by_one_factory_are_rules_of_their_own() -> None:
    # Closures share a qualified name: the identity of plain functions dropped all but the
    # last, and invalid requests went through.
    from eventstore.core.middleware import validators_for
    from eventstore.middleware import register_validator, unregister_validator

    def not_containing(text: str) -> Any:
        def rule(message: Any) -> list[tuple[str, str, str]]:
            return [("owner", "not_contains", text)] if text in message.owner else []

        return rule

    name = "factory.v1.Thing"
    for text in ("x", "@", "#"):
        register_validator(name, not_containing(text))
    try:
        assert len(validators_for(name)) == 3
    finally:
        unregister_validator(name)


# -- the chain's own mistakes are named as such ------------------------------------------------
def test_a_middleware_that_forgets_to_return_is_an_error_not_an_empty_success() -> None:
    async def forgetful(message: Any, ctx: RequestContext, call_next: Any) -> Any:
        await call_next(message, ctx)  # no return

    reply = dispatch([forgetful])
    assert not reply.success and reply.error.code == "INTERNAL"
    assert "a middleware of edge.v1.Accounts.Open failed" in reply.error.message
    assert "return await call_next" in reply.error.message


def test_a_middleware_that_is_not_async_is_named_not_the_handler() -> None:
    ran: list[str] = []

    def plain(message: Any, ctx: RequestContext, call_next: Any) -> Any:
        ran.append("mw")
        return pb.Opened()

    def handler(message: Any, ctx: RequestContext) -> Any:
        ran.append("handler")
        return pb.Opened()

    reply = dispatch([plain], handler=handler)
    assert not reply.success and ran == ["mw"]
    assert "a middleware of" in reply.error.message and "not an awaitable" in reply.error.message
    assert "the handler of" not in reply.error.message


def test_a_handler_raising_cancelled_error_gets_a_reply() -> None:
    # Over NATS the caller waited its whole timeout for a TIMEOUT ("may have been applied").
    async def handler(message: Any, ctx: RequestContext) -> Any:
        raise asyncio.CancelledError("gave up")

    reply = dispatch([], handler=handler)
    assert not reply.success and reply.error.code == "INTERNAL"
    assert "the handler of" in reply.error.message and "CancelledError" in reply.error.message


def test_a_sync_handler_raising_system_exit_on_a_thread_does_not_stop_the_host() -> None:
    def handler(message: Any, ctx: RequestContext) -> Any:
        raise SystemExit(3)

    async def twice() -> list[Any]:
        router = Router([], handler_threads=2)
        router.register(Route("edge.v1.Accounts.Open", pb.Open, pb.Opened, handler))
        try:
            return [await router.dispatch("edge.v1.Accounts.Open", pb.Open(), None) for _ in "ab"]
        finally:
            router.close()

    replies = run(twice())
    assert [r.error.code for r in replies] == ["INTERNAL", "INTERNAL"]
    assert "SystemExit" in replies[0].error.message


def test_a_principals_only_tenant_that_is_no_tenant_id_is_refused_logged_and_blames_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "eventstore.requests")
    odd = Principal("ann", roles=("teller",), tenants=("Acme",))
    reply = dispatch([logging_middleware()], principal=odd, network=True)
    assert reply.error.code == "INVALID_TENANT"
    assert "authenticator" in reply.error.solution and "'Acme'" in reply.error.message
    (record,) = (r for r in caplog.records if r.name == "eventstore.requests")
    assert record.outcome == "INVALID_TENANT"


def test_a_middleware_that_changes_the_tenant_moves_the_handler_there_checked() -> None:
    # The handler acted in the tenant resolved before the chain while ctx.tenant (and the
    # metadata) said another, and the principal's membership was never checked for it.
    from eventstore.tenancy import current_tenant

    def switching(to: str) -> Any:
        async def lookup(message: Any, ctx: RequestContext, call_next: Any) -> Any:
            ctx.tenant = to
            return await call_next(message, ctx)

        return lookup

    seen: list[tuple[str, str]] = []

    def handler(message: Any, ctx: RequestContext) -> Any:
        seen.append((current_tenant(), ctx.metadata.tenant_id))
        return pb.Opened()

    both = Principal("ann", roles=("teller",), tenants=("acme", "globex"))
    headers = {TENANT_ID_HEADER: "acme"}
    reply = dispatch([switching("globex")], principal=both, handler=handler, headers=headers)
    assert reply.success and seen == [("globex", "globex")]
    refused = dispatch([switching("initech")], principal=both, handler=handler, headers=headers)
    assert refused.error.code == "TENANT_FORBIDDEN" and len(seen) == 1
