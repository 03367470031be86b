"""The middlewares that ship: logging, recovery, validation, required metadata, authorization.

Each is ``async def mw(message, ctx, call_next)`` as the ``Router`` defines
(``eventstore.core.routing.Middleware``) and runs the same in process, over
NATS and over HTTP. ``default_middlewares(network=...)`` is the chain a host
gets when given none (docs/service-edge.md).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from .errors import AppError, AuthenticationError, PermissionDeniedError, ValidationError
from .responses import MISSING_METADATA, app_error_for
from .routing import Middleware, NextCall, RequestContext, internal_error, observes_refusals

Violation = tuple[str, str, str]
"""``(field, rule, message)``: one broken validation rule."""

Validator = Callable[[Message], Iterable[Violation]]
"""A message's rules as Python: yields a ``Violation`` per broken rule."""

_VALIDATORS: dict[str, list[Validator]] = {}

request_log = logging.getLogger("eventstore.requests")


def register_validator(message_type: type[Message] | str, validator: Validator) -> None:
    """Add ``validator`` to the rules of ``message_type`` (a class or a full proto name).

    A validator of the same module and qualified name replaces the earlier one, so a
    notebook cell or a module run again fixes a rule instead of stacking a second
    copy beside the old one (``unregister_validator`` removes rules).
    """
    name = _type_name(message_type)
    rules = _VALIDATORS.setdefault(name, [])
    rules[:] = [v for v in rules if _identity(v) != _identity(validator)]
    rules.append(validator)


def unregister_validator(
    message_type: type[Message] | str, validator: Validator | None = None
) -> int:
    """Remove ``validator`` (matched as ``register_validator`` replaces), or every rule of
    ``message_type`` when it is None; returns how many were removed."""
    name = _type_name(message_type)
    rules = _VALIDATORS.get(name, [])
    kept = [v for v in rules if validator is not None and _identity(v) != _identity(validator)]
    removed = len(rules) - len(kept)
    if kept:
        _VALIDATORS[name] = kept
    else:
        _VALIDATORS.pop(name, None)
    return removed


def _type_name(message_type: type[Message] | str) -> str:
    return message_type if isinstance(message_type, str) else message_type.DESCRIPTOR.full_name


def _identity(validator: Validator) -> tuple[str, str] | int:
    """A plain function's module and qualified name (the same rule defined again);
    anything else is itself: a lambda, a callable object, and a closure (each call of
    a factory such as ``max_len(5)`` makes a rule of its own under one name)."""
    qualname = getattr(validator, "__qualname__", "")
    closure = getattr(validator, "__closure__", None)
    if not qualname or "<lambda>" in qualname or "<locals>" in qualname or closure:
        return id(validator)
    return (getattr(validator, "__module__", "") or "", qualname)


def validators_for(message_type: str) -> list[Validator]:
    return list(_VALIDATORS.get(message_type, ()))


def logging_middleware(logger: logging.Logger | None = None) -> Middleware:
    """One structured log record per request, with its outcome and duration.

    The record's ``extra`` fields: ``subject``, ``command_id``, ``principal``,
    ``tenant``, ``correlation_id``, ``duration_ms``, ``event_count`` (when the
    reply has an ``events`` or ``event_count`` field, else -1) and ``outcome``
    (``ok``, the error code, or ``CANCELLED`` when a deadline or the client
    cancelled the request).

    It observes refusals (``observes_refusals``): a request the host or the
    ``Router`` refused before the chain (bad credentials, a forbidden tenant,
    no such method, bytes that are no request) gets the same record, with the
    refusal's code as ``outcome``.
    """
    out = logger or request_log

    async def log_request(message: Message, ctx: RequestContext, call_next: NextCall) -> Message:
        start = time.perf_counter()
        outcome = "ok"
        reply: Message | None = None
        try:
            reply = await call_next(message, ctx)
            return reply
        except AppError as error:
            outcome = error.code
            raise
        except Exception as exc:
            mapped = app_error_for(exc, ctx.command_id)
            outcome = mapped.code if mapped is not None else "INTERNAL"
            raise
        except asyncio.CancelledError:  # a deadline or a client that went away
            outcome = "CANCELLED"
            raise
        finally:
            fields = _fields(ctx, start, outcome, reply)
            level = logging.INFO if outcome == "ok" else logging.WARNING
            out.log(
                level,
                "%s %s in %.1f ms (command %s)",
                ctx.subject,
                outcome,
                fields["duration_ms"],
                ctx.command_id,
                extra=fields,
            )

    return observes_refusals(log_request)


def _fields(
    ctx: RequestContext, start: float, outcome: str, reply: Message | None
) -> dict[str, Any]:
    return {
        "subject": ctx.subject,
        "command_id": ctx.command_id,
        "principal": ctx.principal.id if ctx.principal is not None else "",
        "tenant": ctx.tenant,
        "correlation_id": ctx.metadata.correlation_id,
        "duration_ms": (time.perf_counter() - start) * 1000,
        "event_count": _event_count(reply),
        "outcome": outcome,
    }


#: Proto field types that hold a count (an enum or a bool is no count).
_INTEGER_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


def _event_count(reply: Message | None) -> int:
    """The reply's ``events`` (repeated: its length) or ``event_count`` (an integer), else -1.

    Any other shape (a single message named ``events``, a bool, a float) is no count:
    the log record says -1 rather than failing a request whose command was applied.
    """
    if reply is None:
        return -1
    for name in ("event_count", "events"):
        field = reply.DESCRIPTOR.fields_by_name.get(name)
        if field is None:
            continue
        value = getattr(reply, name)
        if field.is_repeated:
            return len(value)
        if field.type in _INTEGER_TYPES:
            return int(value)
    return -1


def recovery_middleware() -> Middleware:
    """Turn an unexpected exception into a generic ``INTERNAL`` with an error id (also logged).

    The framework's own errors (not found, conflicts) and ``AppError`` pass
    through untouched; anything else would otherwise reach the caller with its
    text, which may name files, SQL or values.
    """

    async def recover(message: Message, ctx: RequestContext, call_next: NextCall) -> Message:
        try:
            return await call_next(message, ctx)
        except AppError:
            raise
        except Exception as exc:
            if app_error_for(exc, ctx.command_id) is not None:
                raise
            raise internal_error(ctx.subject, exc) from exc

    return recover


def validation_middleware(
    rules: Mapping[str, Iterable[Validator]] | None = None,
) -> Middleware:
    """Check the request against its message's rules before the handler runs.

    Rules are Python callables registered per message (``register_validator``)
    or passed here as ``{full proto name: [validator, ...]}``; every violated
    rule is listed in one ``ValidationError`` (``VALIDATION_FAILED``).
    """
    extra = {name: list(fns) for name, fns in (rules or {}).items()}

    async def validate(message: Message, ctx: RequestContext, call_next: NextCall) -> Message:
        name = message.DESCRIPTOR.full_name
        violations: list[Violation] = []
        for validator in validators_for(name) + extra.get(name, []):
            violations.extend(validator(message))
        if violations:
            raise ValidationError(name, violations)
        return await call_next(message, ctx)

    return validate


def require_metadata(*names: str) -> Middleware:
    """Refuse a request missing any of ``names``: ``principal_id``, ``tenant_id``,
    ``correlation_id`` or a custom metadata key (``Es-Meta-<name>`` header)."""

    async def require(message: Message, ctx: RequestContext, call_next: NextCall) -> Message:
        meta = ctx.metadata
        missing = []
        for name in names:
            if name == "principal_id":
                value = meta.principal_id
            elif name == "tenant_id":
                value = meta.tenant_id
            elif name == "correlation_id":
                value = ctx.headers.get("Es-Correlation-Id", "")
            else:
                value = meta.custom.get(name, "")
            if not value:
                missing.append(name)
        if missing:
            raise AppError(
                MISSING_METADATA,
                f"{ctx.subject} needs metadata {', '.join(missing)}, which the request lacks",
                "Send the request with that metadata (the client's metadata= argument).",
                {"subject": ctx.subject, "missing": ",".join(missing)},
            )
        return await call_next(message, ctx)

    return require


def require_principal() -> Middleware:
    """Refuse a request with no principal (``UNAUTHENTICATED``)."""

    async def authenticated(message: Message, ctx: RequestContext, call_next: NextCall) -> Message:
        if ctx.principal is None:
            raise AuthenticationError("no credentials were sent")
        return await call_next(message, ctx)

    return authenticated


def authorization_middleware(
    rules: Mapping[str, Iterable[str]], *, deny_unlisted: bool | None = None
) -> Middleware:
    """Which roles may call which subject: ``{"bank.v1.AccountCommandService.*": ["teller"]}``.

    Keys are subjects or ``fnmatch`` patterns; the most specific (longest)
    matching key wins; a role ``"*"`` admits any authenticated principal. A
    subject with no rule is denied on a network host and allowed in process
    (``deny_unlisted`` overrides). A request without a principal gets
    ``UNAUTHENTICATED``, one without a role ``PERMISSION_DENIED``. A key that
    cannot match a subject is refused (the HTTP path's ``pkg.Service/Method``,
    NATS's ``pkg.Service.>``, an empty part or end blanks): the calls it meant to
    guard would go unchecked in process. Keys match subjects exactly, case included.
    """
    for key in rules:
        if "/" in key:
            raise ValueError(
                f"authorization rule {key!r}: subjects are dotted (pkg.Service.Method), so "
                f"it would match none; write {key.replace('/', '.')!r}"
            )
        if ">" in key:
            raise ValueError(
                f"authorization rule {key!r}: keys are fnmatch patterns, not NATS subjects "
                f"('>' matches only itself); write {key.replace('>', '*')!r}"
            )
        if (
            not key
            or key != key.strip()
            or ".." in key
            or key.startswith(".")
            or (key.endswith("."))
        ):
            raise ValueError(
                f"authorization rule {key!r} is not a dotted subject or pattern "
                "(pkg.Service.Method, pkg.Service.*): it would match none, and the calls it "
                "meant to guard would go unchecked in process"
            )
    table = {key: tuple(roles) for key, roles in rules.items()}
    ordered = sorted(table, key=len, reverse=True)

    async def authorize(message: Message, ctx: RequestContext, call_next: NextCall) -> Message:
        key = next((k for k in ordered if fnmatch.fnmatchcase(ctx.subject, k)), None)
        if key is None:
            deny = ctx.network if deny_unlisted is None else deny_unlisted
            if deny:
                if ctx.principal is None:
                    raise AuthenticationError("no credentials were sent")
                raise PermissionDeniedError(ctx.principal.id, ctx.subject)
            return await call_next(message, ctx)
        if ctx.principal is None:
            raise AuthenticationError("no credentials were sent")
        allowed = table[key]
        if "*" not in allowed and not ctx.principal.has_role(*allowed):
            raise PermissionDeniedError(ctx.principal.id, ctx.subject, allowed)
        return await call_next(message, ctx)

    return authorize


def default_middlewares(
    *,
    network: bool = True,
    rules: Mapping[str, Iterable[str]] | None = None,
    logger: logging.Logger | None = None,
    anonymous: bool = False,
) -> list[Middleware]:
    """The chain a host gets when given none.

    ``network=True`` (NATS and HTTP hosts): logging, recovery, authentication
    required, authorization by ``rules`` when given (a subject with no rule is
    then denied), validation. ``network=False`` (in process, notebooks, tests,
    which have no principal): logging, recovery, validation. ``anonymous=True``
    (a host built with ``allow_anonymous=True``) leaves authentication out.
    """
    chain: list[Middleware] = [logging_middleware(logger), recovery_middleware()]
    if network:
        if not anonymous:
            chain.append(require_principal())
        if rules is not None:
            chain.append(authorization_middleware(rules, deny_unlisted=True))
    chain.append(validation_middleware())
    return chain


__all__ = [
    "Validator",
    "Violation",
    "authorization_middleware",
    "default_middlewares",
    "logging_middleware",
    "observes_refusals",
    "recovery_middleware",
    "register_validator",
    "require_metadata",
    "require_principal",
    "unregister_validator",
    "validation_middleware",
    "validators_for",
]
