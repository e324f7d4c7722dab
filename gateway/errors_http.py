"""Errors in the caller's API shape (OpenAI's `{"error": {...}}`)."""

from __future__ import annotations

import json

from starlette.responses import Response


def error_body(message: str, error_type: str, code: str) -> bytes:
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return json.dumps(body).encode()


def openai_error(status: int, message: str, error_type: str, code: str) -> Response:
    return Response(
        error_body(message, error_type, code), status_code=status, media_type="application/json"
    )
