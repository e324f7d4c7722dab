"""The gateway's HTTP surface: an OpenAI-compatible API plus health and metrics."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import chat, metrics
from gateway.errors import AuthError, BadRequestError, BodyTooLargeError
from gateway.errors_http import openai_error
from gateway.runtime import Runtime
from gateway.settings import GatewaySettings


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise BadRequestError("request body must be a JSON object")
    return payload


def create_app(settings: GatewaySettings) -> Starlette:
    runtime = Runtime(settings)

    async def chat_completions(request: Request) -> Response:
        started = time.perf_counter()
        try:
            identity = runtime.auth.authenticate(
                request.headers.get("authorization"), request.headers.get("x-api-key")
            )
            body = await read_body(request, settings.max_body_bytes)
            payload = parse_json_object(body)
        except AuthError as exc:
            metrics.REQUESTS.labels("chat", "unauthenticated").inc()
            return openai_error(401, str(exc), "invalid_request_error", "invalid_api_key")
        except BodyTooLargeError as exc:
            metrics.REQUESTS.labels("chat", "rejected").inc()
            return openai_error(413, str(exc), "invalid_request_error", "request_too_large")
        except BadRequestError as exc:
            metrics.REQUESTS.labels("chat", "rejected").inc()
            return openai_error(400, str(exc), "invalid_request_error", "invalid_json")
        return await chat.complete(runtime, identity, payload, started)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        ready = runtime.ready
        return JSONResponse(
            {"ready": ready, "region": settings.region, "replica": settings.replica},
            status_code=200 if ready else 503,
        )

    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def policy_status(_: Request) -> Response:
        return JSONResponse(runtime.packs.status())

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            Route("/v1/cordon/policy", policy_status),
        ],
        lifespan=lifespan,
    )
