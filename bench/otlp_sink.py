"""A stand-in OTLP/HTTP trace collector for the benches: it accepts `POST /v1/traces`,
answers 200 and counts what it was sent (exports, bytes, spans), in a process of its own
so that neither its CPU nor its GIL is the gateway's or the load generator's.

    sink = OtlpSink()  # started; sink.url + "/v1/traces" for OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    ... sink.counts() -> {"exports": 12, "bytes": 345678, "spans": 4096}
    sink.stop()
"""

from __future__ import annotations

import gzip
import multiprocessing
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.sharedctypes import Synchronized
from typing import Any

__all__ = ["OtlpSink"]


def _span_count(body: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest.FromString(body)
    return sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)


def _serve(
    conn: Any,
    exports: Synchronized[int],
    size: Synchronized[int],
    spans: Synchronized[int],
) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # the exporter keeps its connection open

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            encoding = self.headers.get("content-encoding", "")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            if self.path != "/v1/traces":
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            count = _span_count(body)
            with exports.get_lock():
                exports.value += 1
            with size.get_lock():
                size.value += len(body)
            with spans.get_lock():
                spans.value += count
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    conn.send(server.server_address[1])
    conn.close()
    server.serve_forever()


class OtlpSink:
    """The collector, started in its own process on a free loopback port."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._exports = context.Value("q", 0)
        self._bytes = context.Value("q", 0)
        self._spans = context.Value("q", 0)
        ours, theirs = context.Pipe()
        self.process = context.Process(
            target=_serve,
            args=(theirs, self._exports, self._bytes, self._spans),
            name="otlp-sink",
            daemon=True,
        )
        self.process.start()
        if not ours.poll(30):
            self.process.kill()
            raise RuntimeError("the OTLP sink did not start")
        self.url = f"http://127.0.0.1:{ours.recv()}"

    def counts(self) -> dict[str, int]:
        return {
            "exports": self._exports.value,
            "bytes": self._bytes.value,
            "spans": self._spans.value,
        }

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)
