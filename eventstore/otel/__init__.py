"""OpenTelemetry for the service edge: a span per request, child spans, metrics, W3C context.

This package is the only one importing ``opentelemetry`` (the ``otel``
extra). ``otel_middleware()`` is a ``Router`` middleware: it continues the
caller's trace from the W3C ``traceparent`` header, opens a span named
``<package>.<Service>/<Method>``, and installs a core instrumentation hook
(``eventstore.core.instrumentation``) so the repository's load, append and
snapshot, and projection batches, become child spans and metrics. Outgoing
requests of ``ConnectTransport`` carry the current trace context.

Metrics (the Go original's): ``eventstore.commands.handled``,
``eventstore.commands.failed``, ``eventstore.command.duration`` (ms),
``eventstore.events.appended``, ``eventstore.snapshots.hits`` and
``.misses``, ``eventstore.projection.events_handled`` and ``.lag``,
``eventstore.relay.lag``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from google.protobuf.message import Message
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import Status, StatusCode

from ..core import instrumentation
from ..core.errors import AggregateNotFoundError, AppError
from ..core.responses import app_error_for
from ..core.routing import Middleware, NextCall, RequestContext, observes_refusals

SCOPE = "eventstore"


def span_name(subject: str) -> str:
    """``<package>.<Service>/<Method>`` of a subject ``<package>.<Service>.<Method>``."""
    service, _, method = subject.rpartition(".")
    return f"{service}/{method}" if service else subject


class OtelHook:
    """The core instrumentation hook backed by an OpenTelemetry tracer and meter."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, meter_provider=meter_provider)
        self.handled = meter.create_counter("eventstore.commands.handled", "{command}")
        self.failed = meter.create_counter("eventstore.commands.failed", "{command}")
        self.duration = meter.create_histogram("eventstore.command.duration", "ms")
        self._counters = {
            name: meter.create_counter(name, "{event}")
            for name in (
                instrumentation.EVENTS_APPENDED,
                instrumentation.SNAPSHOT_HITS,
                instrumentation.SNAPSHOT_MISSES,
                instrumentation.PROJECTION_EVENTS_HANDLED,
            )
        }
        self._gauges = {
            name: meter.create_gauge(name, "{position}")
            for name in (instrumentation.PROJECTION_LAG, instrumentation.RELAY_LAG)
        }

    @contextmanager
    def operation(self, name: str, attributes: dict[str, Any]) -> Iterator[None]:
        # Recorded here, once (the tracer's own recording would add a second copy).
        with self.tracer.start_as_current_span(
            f"eventstore.{name}", record_exception=False, set_status_on_exception=False
        ) as span:
            learned: dict[str, Any] = {}
            try:
                yield
            except AggregateNotFoundError as exc:
                # An answer, not a failure: retry_on_conflict creates the aggregate next,
                # and a request that opens an account succeeds.
                span.add_event("aggregate not found", {"eventstore.aggregate_id": exc.aggregate_id})
                learned = _learned_from(exc)
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                learned = _learned_from(exc)
                raise
            finally:
                # What the operation set wins over what its exception names.
                span.set_attributes(_attributes({**learned, **attributes}))

    def record(self, metric: str, value: float, attributes: dict[str, Any]) -> None:
        attrs = _attributes(attributes)
        if metric in self._counters:
            self._counters[metric].add(value, attrs)
        elif metric in self._gauges:
            self._gauges[metric].set(value, attrs)

    def inject(self, headers: MutableMapping[str, str]) -> None:
        propagate.inject(headers)


def _learned_from(exc: BaseException) -> dict[str, Any]:
    """The aggregate type an operation's exception names (``AggregateNotFoundError`` does):
    a load that fails has not set it, and every span of an aggregate carries it."""
    aggregate_type = getattr(exc, "aggregate_type", "")
    if isinstance(aggregate_type, str) and aggregate_type:
        return {"aggregate_type": aggregate_type}
    return {}


def _attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        f"eventstore.{k}": v
        for k, v in attributes.items()
        if isinstance(v, str | int | float | bool)
    }


def _header(headers: Any, name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def otel_middleware(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Middleware:
    """A span and metrics per request; installs the core hook for child spans.

    Put it first (outermost) in the chain so the span covers every other
    middleware. Without providers, the global ones are used (the API's no-op
    ones until an SDK is configured). It observes refusals
    (``observes_refusals``): a request the host or the ``Router`` refused before
    the chain (bad credentials, a forbidden tenant, no such method, bytes that
    are no request) gets the same span and metrics, with an error status
    carrying the refusal's code.
    """
    hook = OtelHook(tracer_provider, meter_provider)
    for old in instrumentation.installed():
        if isinstance(old, OtelHook):
            instrumentation.uninstall(old)
    instrumentation.install(hook)

    async def traced(message: Message, ctx: RequestContext, call_next: NextCall) -> Message:
        carrier = {
            k: v
            for k in ("traceparent", "tracestate")
            if (v := _header(ctx.headers, k)) is not None
        }
        parent = propagate.extract(carrier)
        name = span_name(ctx.subject)
        start = time.perf_counter()
        outcome = "ok"
        # The status and the exception are set here, once: the tracer's own handling would
        # replace the status's description (the error code) by the exception's text.
        with hook.tracer.start_as_current_span(
            name,
            context=parent,
            kind=trace.SpanKind.SERVER,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            span.set_attribute("eventstore.command_id", ctx.command_id)
            span.set_attribute("eventstore.subject", ctx.subject)
            if ctx.tenant:
                span.set_attribute("eventstore.tenant", ctx.tenant)
            if ctx.principal is not None:
                span.set_attribute("enduser.id", ctx.principal.id)
            try:
                reply = await call_next(message, ctx)
                return reply
            except AppError as error:
                outcome = error.code
                span.record_exception(error)
                raise
            except Exception as exc:
                mapped = app_error_for(exc, ctx.command_id)
                outcome = mapped.code if mapped is not None else "INTERNAL"
                span.record_exception(exc)
                raise
            except asyncio.CancelledError:  # a deadline or a client that went away
                outcome = "CANCELLED"
                raise
            finally:
                span.set_attribute("eventstore.outcome", outcome)
                if outcome != "ok":
                    span.set_status(Status(StatusCode.ERROR, outcome))
                attrs = {"eventstore.subject": ctx.subject, "eventstore.outcome": outcome}
                hook.handled.add(1, attrs)
                if outcome != "ok":
                    hook.failed.add(1, attrs)
                hook.duration.record((time.perf_counter() - start) * 1000, attrs)

    return observes_refusals(traced)


__all__ = ["OtelHook", "otel_middleware", "span_name"]
