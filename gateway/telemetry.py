"""Traces of calls as OpenTelemetry spans, following the GenAI semantic conventions, for
the collectors observability teams already run — and off unless asked for.

On when the standard variables name an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and `OTEL_SDK_DISABLED` is not `true`; the OTLP/HTTP
exporter reads the rest of its configuration (headers, timeouts, protocol) from the
same variables. Off, the SDK is never imported and each call holds `NO_SPAN`, whose
methods do nothing.

One span per call, named `<operation> <model>` (`chat gpt-4o`; an MCP tool call
`execute_tool <tool>`, the tool as the pack declares it), with `gen_ai.*`
attributes (operation, system, request and response model, token usage, finish
reasons) and the record's id (`cordon.record.id`); never prompt or answer content.
Children: the pack's input rules (`cordon.policy`), the provider call
(`cordon.upstream`), each record commit (`cordon.record.commit`). A caller's W3C
`traceparent` is the parent; the provider gets the call span's. The record carries the
trace id (`trace_id`), so a slow trace leads to its signed record and a record to its
trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

__all__ = ["NO_SPAN", "CallSpan", "Tracing", "enabled_by"]


def enabled_by(environ: Mapping[str, str]) -> bool:
    """Whether the standard OTEL_* variables ask for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


class CallSpan:
    """A call's span; this base is the one used when tracing is off (it does nothing)."""

    trace_id: str | None = None

    def set(self, attributes: Mapping[str, Any]) -> None:
        return None

    def child(self, name: str) -> contextlib.AbstractContextManager[None]:
        return _NOTHING  # one shared no-op: off, a call builds nothing per step

    def traceparent(self) -> str | None:
        """What the provider gets as `traceparent`: this span, as its parent."""
        return None

    def end(self, error: str | None = None) -> None:
        return None


_NOTHING: contextlib.nullcontext[None] = contextlib.nullcontext()
NO_SPAN = CallSpan()


class Tracing:
    """The replica's tracer: `Tracing(False)` hands out `NO_SPAN` and loads nothing."""

    def __init__(self, on: bool, resource: Mapping[str, str] | None = None) -> None:
        self.on = on
        self._tracer: Any = None
        self._provider: Any = None
        if on:
            self._tracer, self._provider = _otel_tracer(dict(resource or {}))

    def start(self, operation: str, system: str, headers: Mapping[str, str]) -> CallSpan:
        if not self.on:
            return NO_SPAN
        return _OtelSpan(self._tracer, operation, system, headers)

    def flush(self) -> None:
        """Export what is buffered now (blocking: call it off the event loop)."""
        if self._provider is not None:
            self._provider.force_flush()

    def shutdown(self) -> None:
        """Send what is buffered (a replica stopping should not lose its last spans)."""
        if self._provider is not None:
            self._provider.shutdown()


def _otel_tracer(resource: dict[str, str]) -> tuple[Any, Any]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": "cordon-gateway", **resource})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider.get_tracer("cordon.gateway"), provider


class _Step:
    """A child span around one step of the call: ended when the step is, marked as an
    error if the step raised."""

    __slots__ = ("_span", "_trace")

    def __init__(self, span: Any, trace: Any) -> None:
        self._span, self._trace = span, trace

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            status = self._trace.Status(self._trace.StatusCode.ERROR, kind.__name__)
            self._span.set_status(status)
        self._span.end()


class _OtelSpan(CallSpan):
    def __init__(
        self, tracer: Any, operation: str, system: str, headers: Mapping[str, str]
    ) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        parent = TraceContextTextMapPropagator().extract(headers)
        self._tracer, self._trace = tracer, trace
        self._span = tracer.start_span(
            operation,
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={"gen_ai.operation.name": operation, "gen_ai.system": system},
        )
        self._context = trace.set_span_in_context(self._span)  # the children's parent
        self._operation = operation
        self.trace_id = format(self._span.get_span_context().trace_id, "032x")

    def set(self, attributes: Mapping[str, Any]) -> None:
        clean = {k: v for k, v in attributes.items() if v is not None}
        named = clean.get("gen_ai.request.model") or clean.get("gen_ai.tool.name")
        if named is not None:  # `chat gpt-4o`, `execute_tool lookup`
            self._span.update_name(f"{self._operation} {named}")
        self._span.set_attributes(clean)

    def child(self, name: str) -> contextlib.AbstractContextManager[None]:
        # started and ended around the step, never made the current span: nothing of
        # ours reads the current context, and attaching it costs each step
        return _Step(self._tracer.start_span(name, context=self._context), self._trace)

    def traceparent(self) -> str | None:
        context = self._span.get_span_context()
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"

    def end(self, error: str | None = None) -> None:
        if error is not None:
            self._span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error))
        self._span.end()
